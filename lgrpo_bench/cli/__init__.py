"""The ``lgrpo-bench`` command line: parse, call the library, print. No logic of its own.

One module per command group registers its commands on :data:`app` (``runs``: train, config, algorithms,
ui). Exit codes: 0 success, 1 a run failed or the MLflow store cannot be used (one line saying why), 2 bad input
(nothing launched, nothing written).

The command modules (and Typer) are imported on first use of :data:`app`, so ``lgrpo-bench --version`` reads
package metadata and nothing else.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def _load_app():
    from lgrpo_bench.cli import evaluate, grid, report, runs, sweep  # noqa: F401  (register their commands)
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
    try:
        _load_app()()
    except Exception as error:  # store trouble is one line and exit 1 in every command, never a traceback
        problem = _store_problem(error)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)


def _store_problem(error: BaseException):
    """The :class:`~lgrpo_bench.tracking.reader.StoreProblem` an uncaught exception amounts to, or None."""
    from lgrpo_bench.tracking.reader import StoreProblem, store_problem

    if isinstance(error, StoreProblem):
        return error
    if not any(type(error).__module__.startswith(lib) for lib in ("sqlite3", "sqlalchemy", "mlflow")):
        return None
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    return store_problem(error, resolve_tracking_uri(None))
