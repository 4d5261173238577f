"""The ``lgrpo-bench`` command line: parse, call the library, print. No logic of its own.

One module per command group registers its commands on :data:`app` (``runs``: train, config, algorithms,
ui). Exit codes: 0 success, 1 a run failed or the MLflow store cannot be used (one line saying why: the app's group
turns store trouble into that line, :class:`lgrpo_bench.cli.common._Group`), 2 bad input (nothing launched, nothing
written).

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
    _load_app()()
