"""The Typer app and the helpers every command module shares.

Exit codes: 0 success, 1 a run failed, 2 bad input (nothing launched, nothing written).
"""

from __future__ import annotations

import os
from typing import NoReturn

import typer

app = typer.Typer(
    name="lgrpo-bench",
    help="Fair comparisons of GRPO-family RL algorithms (GRPO, DAPO, Dr. GRPO, λ-GRPO) for LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the typed configuration. Example: lgrpo-bench config schema > run.schema.json",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


def offline_defaults() -> None:
    """Quiet the hub clients (telemetry, tokenizer fork warnings) before heavy imports."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fail_input(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with :data:`EXIT_BAD_INPUT`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)
