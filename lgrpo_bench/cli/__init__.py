"""The ``lgrpo-bench`` command line: parse, call the library, print. No logic of its own.

One module per command group registers its commands on :data:`app` (``runs``: train, config, algorithms,
ui). Exit codes: 0 success, 1 a run failed or the MLflow store cannot be used (one line saying why: the app's group
turns store trouble into that line, :class:`lgrpo_bench.cli.common._Group`), 2 bad input (nothing launched, nothing
written).

The command modules (and Typer) are imported on first use of :data:`app`, so ``lgrpo-bench --version`` reads
package metadata and nothing else.

A command's process collects cyclic garbage every :data:`GC_THRESHOLDS` [0] allocations, not Python's 700: importing
MLflow, torch, transformers and lm-eval creates ~650,000 long-lived objects, and at 700 the collector walks the
growing heap over and over while they are created (``lgrpo-bench eval --model oracle:gold``: 4.3 → 3.7 CPU-s; the
orchestrator's store opening 1.8 → 1.6 s; measured on a 2-core EPYC). Garbage is still collected, in larger batches.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["GC_THRESHOLDS", "app", "main"]

GC_THRESHOLDS = (10_000, 10, 10)
"""``gc.set_threshold`` of a command's process (Python's default: 700, 10, 10)."""


def _load_app():
    from lgrpo_bench.cli import evaluate, findings, grid, report, runs, sweep  # noqa: F401  (register their commands)
    from lgrpo_bench.cli.common import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from lgrpo_bench.cli.versions import version_lines

        print("\n".join(version_lines()))
        return
    import atexit
    import gc

    gc.set_threshold(*GC_THRESHOLDS)
    atexit.register(_end_process)  # registered first, so it runs after every other exit handler
    try:
        _load_app()()
    except SystemExit as stop:
        _Exit.code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        raise
    except BaseException:
        _Exit.code = 1
        raise


class _Exit:
    code = 0


def _end_process() -> None:
    """The last exit handler: flush our output and end the process without Python's module teardown, which takes
    0.7–3 s once MLflow, SQLAlchemy and matplotlib are loaded (measured: ``benchmarks/cli_speed.py``). Every other
    exit handler (multiprocessing's, the loggers') has run by then."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_Exit.code)
