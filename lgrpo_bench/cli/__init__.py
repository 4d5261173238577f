"""The ``lgrpo-bench`` command line: parse, call the library, print. No logic of its own.

One module per command group registers its commands on :data:`app` (``runs``: train, config, algorithms,
ui). Exit codes: 0 success, 1 a run failed, 2 bad input (nothing launched, nothing written).
"""

from __future__ import annotations

from lgrpo_bench.cli import runs  # noqa: F401  (registers commands)
from lgrpo_bench.cli import evaluate  # noqa: F401  (registers commands)
from lgrpo_bench.cli import grid  # noqa: F401  (registers commands)
from lgrpo_bench.cli import report  # noqa: F401  (registers commands)
from lgrpo_bench.cli import sweep  # noqa: F401  (registers commands)
from lgrpo_bench.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
