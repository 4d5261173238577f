"""The worker process of one run: ``python -m lgrpo_bench.runs <run folder> [--step all|eval]``.

Reads the resolved ``config.yaml`` that the orchestrator (or ``lgrpo-bench train``) wrote into the run's folder;
the run id is the folder's name. ``all`` executes the run's lifecycle (:func:`~lgrpo_bench.runs.lifecycle.execute_run`),
``eval`` only its evaluation (:func:`~lgrpo_bench.runs.lifecycle.evaluate_step`). Output goes to stdout, which the
job runner appends to ``run.log``. Exit codes: 0 done (or pruned as the lifecycle decided), 1 the run failed (the
reason is its last line and, in the store, its ``lgrpo.error``), 2 the folder holds no readable config or the
evaluation settings cannot work (e.g. more tokens than the model's context), as ``lgrpo-bench eval`` reports them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lgrpo_bench.runs", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run's folder <runs_dir>/<experiment>/<run_id>")
    parser.add_argument("--step", choices=("all", "eval"), default="all")
    args = parser.parse_args(argv)
    if args.step == "all":  # started for a run with training to do: import what the warm server imports, as it does
        from lgrpo_bench.procs import imports_kept_out_of_gc  # (1.5 s less to import, 0.3-0.6 s less per collection)

        with imports_kept_out_of_gc():
            import lgrpo_bench.runs.preload  # noqa: F401
    return run_worker(args.run_dir, step=args.step)


def run_worker(run_dir: str, *, step: str = "all") -> int:
    """What the worker process does (also the entry of a process forked from a warm worker); returns the exit code.

    SIGINT is how the orchestrator stops a run (training then records it ``stopped``), so the worker raises
    KeyboardInterrupt on it whatever it inherited: a grid started as a background job of a script (``cmd &``,
    nohup) starts with SIGINT ignored, Python keeps it ignored, and its runs would train on until SIGKILL."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.runs.lifecycle import EvaluationFailed, RunDidNotLearn, evaluate_step, execute_run
    from lgrpo_bench.runs.owner import FolderConflict
    from lgrpo_bench.runs.resolve import read_resolved
    from lgrpo_bench.tracking.reader import StoreProblem

    try:
        config, run_id = read_resolved(run_dir)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def emit(line: str) -> None:
        print(line, flush=True)

    try:
        if step == "eval":
            from lgrpo_bench.evaluation import BackendUnavailable, BenchmarkDataError, EvalIdentityConflict, RunNotTrained

            try:
                evaluate_step(config, run_id, emit=emit)
            except (BackendUnavailable, BenchmarkDataError, EvalIdentityConflict, RunNotTrained) as error:
                print(f"error: {error}", file=sys.stderr)  # a setting to fix, as `lgrpo-bench eval` says it
                return 2
            return 0
        execute_run(config, run_id, emit=emit)
    except (EvaluationFailed, RunDidNotLearn, FolderConflict, StoreProblem) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return getattr(error, "returncode", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
