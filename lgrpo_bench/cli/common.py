"""The Typer app and the helpers every command module shares.

Exit codes: 0 success, 1 a run failed, 2 bad input (nothing launched, nothing written).

What a terminal shows (one place for every command):

* tables: :func:`make_console`. On a terminal, rich's console at the terminal's width. When stdout is a pipe or
  a file, a console :data:`PIPE_WIDTH` columns wide, so no cell is cut to ``quicks…``. With ``--plain``, every
  table goes to stdout as tab-separated values (one header line; a blank line between two tables) and every
  other line (titles, captions, notes, progress) to stderr, so ``lgrpo-bench plan g.yaml --plain | cut -f2``
  works.
* our lines only: unless ``-v``/``--verbose``, :func:`quiet_libraries` keeps the libraries' logging below
  ERROR, their Python warnings and MLflow's INFO lines off the terminal, and :func:`library_output` sends what
  libraries write straight to stderr during heavy work (lm-eval's and transformers' messages, progress bars,
  subprocesses such as ``git``) to a log: the run's log, or a temporary file that is named if the work fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TextIO

import typer
import typer.core
from rich.console import Console
from rich.table import Table
from rich.text import Text


class _Group(typer.core.TyperGroup):
    """Typer's group, with a ``--help`` option whose value is ``False`` when it is not given.

    Typer coerces an option left at ``None`` through a pydantic adapter, and a group's ``--help`` is processed
    on every command line under it: ``lgrpo-bench run --help`` would import pydantic (0.12 s of the 0.5 s a
    ``--help`` may take) only to learn that the group's own ``--help`` was not given. A ``bool`` value is not
    coerced."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option

    def invoke(self, ctx):
        """Every command: trouble with the MLflow store or the Optuna storage is one line (what, which file, what to do)
        and exit 1, never a traceback (:class:`lgrpo_bench.tracking.reader.StoreProblem`)."""
        try:
            return super().invoke(ctx)
        except Exception as error:
            problem = _store_problem(error)
            if problem is None:
                raise
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(EXIT_RUN_FAILED) from None


def _store_problem(error: BaseException):
    """The :class:`~lgrpo_bench.tracking.reader.StoreProblem` an uncaught exception amounts to, or None: a StoreProblem
    itself, or an error of ``sqlite3``, SQLAlchemy or MLflow (named against the default store)."""
    if not any(type(error).__module__.startswith(lib) for lib in ("lgrpo_bench", "sqlite3", "sqlalchemy", "mlflow")):
        return None
    from lgrpo_bench.tracking.reader import StoreProblem, store_problem

    if isinstance(error, StoreProblem):
        return error
    if type(error).__module__.startswith("lgrpo_bench"):
        return None
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    return store_problem(error, resolve_tracking_uri(None))


app = typer.Typer(
    cls=_Group,
    name="lgrpo-bench",
    help="Fair comparisons of GRPO-family RL algorithms (GRPO, DAPO, Dr. GRPO, λ-GRPO) for LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(cls=_Group, help="Inspect the typed configuration. Example: lgrpo-bench config schema > run.schema.json",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2

PIPE_WIDTH = 100_000
"""Console width when stdout is not a terminal: wide enough that rich never folds or cuts a table cell."""
PLAIN_HELP = "Print tables as tab-separated values (one header line) on stdout; other lines go to stderr"
OUR_LOGGERS = "lgrpo_bench"
"""Logger namespace of our own messages: shown on the terminal from WARNING up, with or without -v."""


# ---------------------------------------------------------------------------------------------------------
# Global options: --version, -v/--verbose
# ---------------------------------------------------------------------------------------------------------
class _Terminal:
    """What this process decided about its terminal (set once, by the app's callback)."""

    verbose = False
    stderr: TextIO | None = None
    """Where our stderr lines go while :func:`library_output` captures file descriptor 2 (None: ``sys.stderr``)."""


def _print_version(value: bool) -> None:
    if value:
        from lgrpo_bench.cli.versions import version_lines

        typer.echo("\n".join(version_lines()))
        raise typer.Exit()


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the libraries' logs, warnings and progress "
                                 "bars (MLflow, lm-eval, transformers, TRL) on the terminal"),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the versions of lgrpo-bench, torch, transformers, TRL, MLflow and lm-eval"),
) -> None:
    """Fair comparisons of GRPO-family RL algorithms (GRPO, DAPO, Dr. GRPO, λ-GRPO) for LLMs."""
    _Terminal.verbose = verbose
    if not verbose:
        quiet_libraries()


def is_verbose() -> bool:
    return _Terminal.verbose


def _is_ours(logger_name: str) -> bool:
    return logger_name == OUR_LOGGERS or logger_name.startswith(OUR_LOGGERS + ".")


class _TerminalHandler(logging.Handler):
    """The root handler of :func:`quiet_libraries`: our records from WARNING up and anyone's from ERROR up go to
    the terminal; other library records go to the log while :func:`library_output` captures, else nowhere.

    Streams are looked up at each record (``sys.stderr`` may be swapped, e.g. by test runners)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            ours = _is_ours(record.name)
            if ours or record.levelno >= logging.ERROR:
                stream = our_stderr()
            elif _Terminal.stderr is not None:
                stream = sys.stderr
            else:
                return
            text = record.getMessage() if ours else f"{record.levelname.lower()}: {record.name}: {record.getMessage()}"
            stream.write(text + "\n")
            stream.flush()
        except Exception:  # a log line must never break a command
            self.handleError(record)


_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of :func:`quiet_libraries`: ours to the terminal, libraries' to the log or nowhere."""
    if str(filename).startswith(_PACKAGE_DIR):
        stream = our_stderr()
    elif _Terminal.stderr is not None:
        stream = sys.stderr
    else:
        return
    try:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))
    except OSError:
        pass


def quiet_libraries() -> None:
    """Keep library chatter off the terminal for this process (see the module docstring). Idempotent.

    * logging: one root handler (:class:`_TerminalHandler`); loggers with handlers of their own (the run's
      ``train.log``) still get every record;
    * ``MLFLOW_LOGGING_LEVEL=WARNING`` unless set (MLflow reads it when imported; its ``Creating initial MLflow
      database tables...`` and alembic's lines are INFO); inherited by the processes we start, so run logs
      lose those INFO lines too; an MLflow imported already gets the level directly;
    * Python warnings: :func:`_show_warning`.
    """
    root = logging.getLogger()
    if not any(isinstance(handler, _TerminalHandler) for handler in root.handlers):
        root.addHandler(_TerminalHandler(logging.WARNING))
    from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", LIBRARY_ENV_DEFAULTS["MLFLOW_LOGGING_LEVEL"])
    if "mlflow" in sys.modules:
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"])
    warnings.showwarning = _show_warning


def our_stderr() -> TextIO:
    """The stream for our own stderr lines: the terminal's stderr even while :func:`library_output` captures fd 2."""
    return _Terminal.stderr or sys.stderr


def echo_err(line: str) -> None:
    """Print one of our lines on stderr (the terminal's, also during :func:`library_output`)."""
    stream = our_stderr()
    stream.write(line + "\n")
    stream.flush()


@contextlib.contextmanager
def library_output(log_path: Path | None = None) -> Iterator[Path | None]:
    """Send what is written to file descriptor 2 inside the block (libraries, progress bars, child processes)
    to a log, unless ``-v``; our own lines (:func:`echo_err`, our loggers) still reach the terminal.

    ``log_path``: append there (a run's log); None: a temporary ``lgrpo-bench-*.log``, deleted when the block
    ends normally. When the block raises, the log's last lines and its path are shown. Yields the log's path
    (None with ``-v``).
    """
    if _Terminal.verbose or _Terminal.stderr is not None:
        yield None
        return
    temporary = log_path is None
    if temporary:
        handle, name = tempfile.mkstemp(prefix="lgrpo-bench-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    terminal = os.fdopen(os.dup(saved_fd), "w", encoding="utf-8", errors="replace", buffering=1)
    failed = False
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 2)
        _Terminal.stderr = terminal
        try:
            yield log_path
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            _Terminal.stderr = None
            terminal.close()
            if failed:
                _show_tail(log_path)
            elif temporary:
                log_path.unlink(missing_ok=True)


def _show_tail(log_path: Path, lines: int = 15) -> None:
    """After a failure inside :func:`library_output`: the end of what was captured, and where the rest is."""
    try:
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    if tail:
        echo_err(f"--- the last {len(tail)} lines of {log_path}:")
        echo_err("\n".join(tail))


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------
def make_console(plain: bool = False) -> Console:
    """The console a command prints its tables and lines with (see the module docstring)."""
    if plain:
        return PlainConsole()
    if not sys.stdout.isatty():
        return Console(width=PIPE_WIDTH, soft_wrap=False)
    return Console(soft_wrap=False)


def table_rows(table: Table) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a rich table as plain text: markup and styles dropped; tabs and line breaks in a cell
    become spaces (a TSV cell cannot hold them)."""
    columns = table.columns
    header = [_plain_text(column.header) for column in columns]
    cells = [[_plain_text(cell) for cell in column.cells] for column in columns]
    rows = [[cells[c][r] if r < len(cells[c]) else "" for c in range(len(columns))] for r in range(table.row_count)]
    return header, rows


def _plain_text(renderable) -> str:
    if isinstance(renderable, Text):
        text = renderable.plain
    elif isinstance(renderable, str):
        text = Text.from_markup(renderable).plain
    else:  # another renderable in a cell: its text, rendered without a width limit
        capture = Console(width=PIPE_WIDTH, no_color=True, force_terminal=False)
        with capture.capture() as captured:
            capture.print(renderable)
        text = captured.get().strip()
    return " ".join(text.replace("\t", " ").splitlines())


class PlainConsole(Console):
    """``--plain``: tables go to stdout as TSV (a blank line between two); everything else, titles and captions
    included, goes to stderr as plain text."""

    def __init__(self) -> None:
        super().__init__(file=our_stderr(), width=PIPE_WIDTH, force_terminal=False, no_color=True, highlight=False,
                         soft_wrap=True)
        self.tables_printed = 0

    def print(self, *objects, **kwargs) -> None:
        for item in objects:
            if isinstance(item, Table):
                self._print_table(item)
            else:
                super().print(item, **kwargs)

    def _print_table(self, table: Table) -> None:
        if table.title:
            super().print(table.title)
        header, rows = table_rows(table)
        lines = ["\t".join(header), *("\t".join(row) for row in rows)]
        sys.stdout.write(("\n" if self.tables_printed else "") + "\n".join(lines) + "\n")
        sys.stdout.flush()
        self.tables_printed += 1
        if table.caption:
            super().print(table.caption)


# ---------------------------------------------------------------------------------------------------------
# Servers (ui, sweep dashboard)
# ---------------------------------------------------------------------------------------------------------
SERVER_START_TIMEOUT_S = 180.0
"""How long a server gets to answer its first request (``mlflow ui`` imports for ~30 s on a busy 2-core machine)."""


def serve_until_stopped(start: Callable[[TextIO | None], subprocess.Popen], url: str, announce: Callable[[], None], *,
                        what: str) -> None:
    """Run a server started by ``start(log)`` (:func:`lgrpo_bench.ui.serve.start_supervised`) in the
    foreground: ``announce()`` once ``url`` answers; Ctrl-C or SIGTERM stops it and every process it started
    (:func:`lgrpo_bench.ui.serve.serve_foreground`), exit 0. A server that exits by itself or never answers:
    exit 1, naming its log and showing the log's tail.

    The server's own output goes to a temporary ``lgrpo-bench-server-*.log`` (deleted after a clean stop), or to
    the terminal with ``-v``.
    """
    from lgrpo_bench.ui.serve import serve_foreground

    log = None if _Terminal.verbose else tempfile.NamedTemporaryFile(
        "w", prefix="lgrpo-bench-server-", suffix=".log", delete=False)
    try:
        outcome = serve_foreground(start(log), url, on_ready=announce, ready_timeout_s=SERVER_START_TIMEOUT_S)
    finally:
        if log is not None:
            log.close()
    if outcome.stopped:
        if log is not None:
            Path(log.name).unlink(missing_ok=True)
        return
    reason = (f"exited with code {outcome.returncode}" if outcome.returncode is not None
              else f"did not answer at {url} within {SERVER_START_TIMEOUT_S:.0f} s")
    tail = ""
    if log is not None:
        lines = Path(log.name).read_text(errors="replace").splitlines()[-20:]
        tail = f"; the end of its output ({log.name}):\n" + "\n".join(lines)
    typer.echo(f"error: {what} {reason}{tail}", err=True)
    raise typer.Exit(EXIT_RUN_FAILED)


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------
def offline_defaults() -> None:
    """Quiet the hub clients (telemetry, tokenizer fork warnings) before heavy imports.

    MLflow's telemetry also delays every exit by seconds (its exit hook waits on a network call): off unless set.
    """
    from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS

    for key in ("HF_HUB_DISABLE_TELEMETRY", "MLFLOW_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM"):
        os.environ.setdefault(key, LIBRARY_ENV_DEFAULTS[key])


def fail_input(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with :data:`EXIT_BAD_INPUT`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)
