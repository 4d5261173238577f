"""Experiment grids at run time: state from the store, jobs, executors (local / Ray / SLURM), progress.

    from lgrpo_bench.runs.resolve import load_grid
    from lgrpo_bench.dispatch import plan_grid, run_grid

    grid = load_grid("experiments/quickstart.yaml")   # validated, checked, every point with its run id
    statuses = plan_grid(grid)                         # run id -> RunStatus (new/running/trained/stopped/failed/pruned/done)
    summary = run_grid(grid)                           # launch what is not done; summary.exit_code

Modules: :mod:`.state` (states, liveness, bulk store reads), :mod:`.commands` (the worker's argv, accelerate launch,
GPU packing), :mod:`.job` (one run's worker as a subprocess, failure records), :mod:`.executors` (the three
engines), :mod:`.orchestrator` (``run``), :mod:`.progress` (live view, plan and results tables).
"""

from lgrpo_bench.dispatch.commands import GpuPool, run_argv
from lgrpo_bench.dispatch.executors import (
    Executor,
    LocalExecutor,
    RayExecutor,
    SubmititExecutor,
    make_executor,
    slurm_parameters,
    submitit_parameters,
)
from lgrpo_bench.dispatch.job import JobResult, RunJob, execute_job
from lgrpo_bench.dispatch.orchestrator import GridBusy, GridRunSummary, plan_grid, run_grid
from lgrpo_bench.dispatch.state import GRID_STATES, RunStatus, classify, grid_status

__all__ = [
    "GRID_STATES", "Executor", "GpuPool", "GridBusy", "GridRunSummary", "JobResult", "LocalExecutor",
    "RayExecutor", "RunJob", "RunStatus", "SubmititExecutor", "classify", "execute_job", "grid_status",
    "make_executor", "plan_grid", "run_grid", "slurm_parameters", "run_argv", "submitit_parameters",
]
