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

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "commands": ("GpuPool", "run_argv"),
    "executors": ("Executor", "LocalExecutor", "RayExecutor", "SubmititExecutor", "make_executor", "slurm_parameters",
                  "submitit_parameters"),
    "job": ("JobResult", "RunJob", "execute_job"),
    "orchestrator": ("GridBusy", "GridRunSummary", "run_grid"),
    "state": ("GRID_STATES", "RunStatus", "classify", "grid_status", "plan_grid"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """The names of ``__all__``, imported from their module on first use (``plan`` reads states without importing
    the executors)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
