"""What a grid looks like while it runs and afterwards: live view, plan/status tables, the results table.

The live view reads what a running run is doing from the last progress line of its ``run.log``, printed by
training: ``step 12/40  reward 0.375 ...`` while it trains, ``building warm start tiny-s (seed 0) 200/1300`` while
its tiny preset's warm start is built (or ``preparing warm start ...`` while it waits for another process building
it); states come from the store. On a terminal it is a rich ``Live`` table; elsewhere (CI, a pipe) it prints one
line per started / finished / failed run and one per warm-start milestone. The ETA leaves out the time spent on
warm starts (built once, then cached): it extrapolates from training progress only.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lgrpo_bench.dispatch.state import DONE, FAILED, GRID_STATES, NEW, PRUNED, QUEUED, RUNNING, STOPPED, TRAINED, RunStatus

__all__ = ["GridProgress", "LogProgress", "format_seconds", "parse_progress", "plan_table", "read_log_progress",
           "result_columns", "states_line"]

PROGRESS_RE = re.compile(r"step (\d+)/(\d+)\s+reward (-?[\d.]+(?:e[-+]?\d+)?|nan)")
WARM_START_RE = re.compile(r"(preparing|building) warm start (\S+) \(seed (\d+)\)(?: (\d+)/(\d+))?")
WARM_START_DONE_RE = re.compile(r"model \S+: [\d,]+ parameters, warm-start greedy accuracy")
WARM_START_RESULT_RE = re.compile(r"^warm start \S+ seed \d+: SFT kept step .*$", re.MULTILINE)
"""A fresh warm start's result line (:func:`lgrpo_bench.models.tiny.build_tiny`): shown on the terminal once per warm start."""
WARM_START_PRINT_EVERY = 500
"""Without a terminal, a line each time a run's warm start passes a multiple of this many SFT steps."""


@dataclass(frozen=True)
class LogProgress:
    """What a run's log says it is doing: training (``step``/``total``/``reward``) or its warm start."""

    step: int
    total: int
    reward: float | None = None
    warm_start: str | None = None
    """``building warm start tiny-s (seed 0)`` (or ``preparing …``) while the run waits for its tiny model."""

    @property
    def in_warm_start(self) -> bool:
        return self.warm_start is not None

    def describe(self) -> str:
        if self.warm_start:
            return f"{self.warm_start} {self.step}/{self.total}" if self.total else self.warm_start
        return f"step {self.step}/{self.total}" + (f", reward {self.reward:.3f}" if self.reward is not None else "")
LOG_TAIL_BYTES = 16384
FINISHED_LOG_BYTES = 1 << 20
"""How much of a finished run's log is searched for its warm-start result line."""
STATE_STYLES = {NEW: "cyan", QUEUED: "bright_blue", RUNNING: "yellow", TRAINED: "blue", STOPPED: "magenta", FAILED: "red", PRUNED: "dim",
                DONE: "green"}


def _log_tail(log_path: str | Path, tail_bytes: int) -> str | None:
    """The last ``tail_bytes`` of a log as text, or None when it cannot be read."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - tail_bytes, 0))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def read_log_progress(log_path: str | Path) -> LogProgress | None:
    """The last progress line in the log's tail (training step or warm start), or None."""
    text = _log_tail(log_path, LOG_TAIL_BYTES)
    return None if text is None else parse_progress(text)


def read_warm_start_result(log_path: str | Path, tail_bytes: int = LOG_TAIL_BYTES) -> str | None:
    """The warm-start result line (``warm start tiny-s seed 0: SFT kept step 1050 ...; held-out greedy 0.294``) in the
    last ``tail_bytes`` of a run's log, or None."""
    text = _log_tail(log_path, tail_bytes)
    if text is None:
        return None
    found = WARM_START_RESULT_RE.findall(text)
    return found[-1].strip() if found else None


def parse_progress(text: str) -> LogProgress | None:
    """The latest of: a training step line, a warm-start line (unless a later line says the model is ready)."""
    step = list(PROGRESS_RE.finditer(text))
    warm = list(WARM_START_RE.finditer(text))
    ready = list(WARM_START_DONE_RE.finditer(text))
    last_step = step[-1] if step else None
    last_warm = warm[-1] if warm else None
    if last_warm is not None and (last_step is None or last_warm.end() > last_step.end()):
        if not ready or ready[-1].start() < last_warm.end():
            verb, preset, seed, done, total = last_warm.groups()
            return LogProgress(int(done or 0), int(total or 0), None, f"{verb} warm start {preset} (seed {seed})")
    if last_step is None:
        return None
    done, total, reward = last_step.groups()
    return LogProgress(int(done), int(total), float(reward))


def plan_line(grid: str, to_run: int, skipped: int, elsewhere: int, executor: str) -> str:
    """The first line ``run`` prints, as soon as the store is read: what it will run, skip and leave to others."""
    return (f"grid {grid}: {to_run} runs to run on {executor}, {skipped} already done, {elsewhere} running elsewhere "
            "(setting up)")


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def states_line(counts: dict[str, int]) -> str:
    return "  ".join(f"{state} {counts.get(state, 0)}" for state in GRID_STATES)


PLAN_TABLE_ROWS = 200
"""Rows a plan or status table shows unless asked for every row (``--all``): a terminal table of 10,000 rows
takes minutes to lay out and nobody reads it; the states line under it counts every run."""


def result_columns(statuses: dict[str, RunStatus], metric: str = "acc") -> dict[str, dict[str, str]]:
    """``{column name: {run id: value}}``: each run's own result, ``metric`` (``acc``: ``eval/<benchmark>/acc`` of each
    benchmark; a full ``eval/...`` or ``train/...`` name: that metric) as logged on its train run, shown in its unit
    from the schema (``arith acc (points)``: 100 × the fraction, one decimal). Runs without it have no entry."""
    from lgrpo_bench.tracking.schema import EVAL_PREFIX, TRAIN_PREFIX, metric_spec, parse_eval_metric

    names: set[str] = set()
    for status in statuses.values():
        for name in status.metrics:
            if name == metric and name.startswith((EVAL_PREFIX, TRAIN_PREFIX)):
                names.add(name)
            elif name.startswith(EVAL_PREFIX) and not metric.startswith((EVAL_PREFIX, TRAIN_PREFIX)):
                try:
                    if parse_eval_metric(name)[1] == metric:
                        names.add(name)
                except ValueError:
                    continue
    columns: dict[str, dict[str, str]] = {}
    for name in sorted(names):
        unit = metric_spec(name).unit
        label = " ".join(parse_eval_metric(name)) if name.startswith(EVAL_PREFIX) else name
        columns[f"{label} ({unit.name})"] = {rid: unit.format(status.metrics[name]) for rid, status in statuses.items()
                                            if name in status.metrics}
    return columns


def plan_table(expanded, statuses: dict[str, RunStatus], *, title: str | None = None,
               progress: dict[str, LogProgress] | None = None, limit: int | None = None,
               results: dict[str, dict[str, str]] | None = None) -> Table:
    """One row per point: index, run id, the values that distinguish it, state, each run's own results (``results``,
    :func:`result_columns`: ``status`` shows them) and detail. With ``limit``, the first ``limit`` points that are not
    ``new`` (the ones with news), then new ones, in grid order, and a title saying how many rows were left out and how
    to see them."""
    keys = expanded.value_keys
    points = list(expanded.points)
    if limit is not None and len(points) > limit:
        def state_of(point) -> str:
            status = statuses.get(point.run_id)
            return status.state if status else NEW

        news_first = [p for p in points if state_of(p) != NEW] + [p for p in points if state_of(p) == NEW]
        chosen = {p.index for p in news_first[:limit]}
        left_out = len(points) - len(chosen)
        points = [p for p in points if p.index in chosen]
        title = (title or "") + (f" (showing {len(points):,} rows, runs with news first: {left_out:,} more not shown; "
                                 "--all lists every run, --json prints them)")
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("run id")
    for key in keys:
        table.add_column(key)
    table.add_column("state")
    for name in results or {}:
        table.add_column(name, justify="right")
    table.add_column("detail", overflow="fold")
    for point in points:
        status = statuses.get(point.run_id)
        state = status.state if status else NEW
        detail = status.detail if status else ""
        if progress and point.run_id in progress:
            detail = progress[point.run_id].describe() + (f"; {detail}" if detail else "")
        cells = [str(point.index), point.run_id]
        cells += ["" if key not in point.values else _cell(point.values[key]) for key in keys]
        cells += [Text(state, style=STATE_STYLES.get(state, ""))]
        cells += [values.get(point.run_id, "—") for values in (results or {}).values()]
        cells.append(detail)
        table.add_row(*cells)
    return table


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


class GridProgress:
    """The live view of :func:`lgrpo_bench.dispatch.orchestrator.run_grid`."""

    def __init__(self, console: Console, expanded, to_run: Sequence, *, skipped: int, elsewhere: int, executor: str):
        self.console = console
        self.expanded = expanded
        self.jobs = {job.run_id: job for job in to_run}
        self.labels = {point.run_id: point.label() for point in expanded.points}
        self.skipped = skipped
        self.elsewhere = elsewhere
        self.executor = executor
        self.started_at = time.monotonic()
        self.run_started: dict[str, float] = {}
        self.done: list[str] = []
        self.failed: dict[str, str] = {}
        self.cancelled: list[str] = []
        self.live: Live | None = None
        self.warm_start_s = 0.0
        """Wall time during which some run of this session was waiting for its warm start (not training)."""
        self._last_update = time.monotonic()
        self._warm_lines: dict[str, int] = {}
        self._warm_results: set[str] = set()
        """Warm starts (``warm start tiny-s seed 0``) whose result line is on the terminal already."""

    def __enter__(self) -> GridProgress:
        if self.console.is_terminal:  # without one, the plan line (:func:`plan_line`, printed by run_grid) heads the lines
            self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self._render(final=True))
            self.live.__exit__(*exc)

    def _line(self, text: str) -> None:
        self.console.print(f"[{format_seconds(time.monotonic() - self.started_at)}] {text}", highlight=False,
                           soft_wrap=True)

    def update(self, running: set[str]) -> None:
        now = time.monotonic()
        for rid in running:
            if rid not in self.run_started:
                self.run_started[rid] = now
                if self.live is None:
                    self._line(f"started {rid} ({self.labels.get(rid, '')})")
        warm = {rid: progress for rid in self.run_started if (progress := self.progress_of(rid)) and progress.in_warm_start}
        if warm:
            self.warm_start_s += now - self._last_update
        self._last_update = now
        if self.live is None:
            for rid, progress in warm.items():  # one line per warm-start milestone, not per poll
                milestone = progress.step // WARM_START_PRINT_EVERY if progress.total else -1
                if self._warm_lines.get(rid) != milestone:
                    self._warm_lines[rid] = milestone
                    self._line(f"{rid}: {progress.describe()}")
        for rid in list(self.run_started):
            self._show_warm_start_result(rid)
        if self.live is not None:
            self.live.update(self._render(), refresh=True)

    def _show_warm_start_result(self, rid: str, tail_bytes: int = LOG_TAIL_BYTES) -> None:
        """Print the result line of a warm start that run ``rid`` built, once per warm start (it is in the run's log
        only, and says what every run of that preset and seed starts from)."""
        job = self.jobs.get(rid)
        line = read_warm_start_result(job.layout.run_log, tail_bytes) if job else None
        if line is None:
            return
        which = line.split(":", 1)[0]
        if which in self._warm_results:
            return
        self._warm_results.add(which)
        if self.live is None:
            self._line(line)
        else:
            self.live.console.print(line, highlight=False, soft_wrap=True)

    def finished(self, result) -> None:
        rid = result.run_id
        self._show_warm_start_result(rid, tail_bytes=FINISHED_LOG_BYTES)  # a run that ended between two polls
        seconds = time.monotonic() - self.run_started.get(rid, time.monotonic())
        if result.ok:
            self.done.append(rid)
            message = f"done {rid} in {format_seconds(seconds)} ({self.labels.get(rid, '')})"
        elif result.cancelled:
            self.cancelled.append(rid)
            message = f"stopped {rid} ({self.labels.get(rid, '')})"
        else:
            self.failed[rid] = result.error
            message = f"FAILED {rid} ({self.labels.get(rid, '')}): {result.error}"
        self.run_started.pop(rid, None)
        if self.live is None:
            self._line(message)
        else:
            self.live.console.print(message, highlight=False, soft_wrap=True)

    def progress_of(self, rid: str) -> LogProgress | None:
        job = self.jobs.get(rid)
        return read_log_progress(job.layout.run_log) if job else None

    def eta_s(self) -> float | None:
        """t · (1 − f) / f, with f the finished fraction of this session's work (running runs count by training step)
        and t the elapsed time minus the time spent waiting for warm starts (a one-off cost, then cached)."""
        total = len(self.jobs)
        if not total:
            return 0.0
        work = len(self.done) + len(self.failed) + len(self.cancelled)
        for rid in self.run_started:
            progress = self.progress_of(rid)
            if progress and progress.total and not progress.in_warm_start:
                work += progress.step / progress.total
        if work <= 0:
            return None
        training = max(time.monotonic() - self.started_at - self.warm_start_s, 0.0)
        return training * (total - work) / work

    def _render(self, final: bool = False):
        elapsed = time.monotonic() - self.started_at
        finished = len(self.done) + len(self.failed) + len(self.cancelled)
        header = Text(
            f"grid {self.expanded.grid.name} on {self.executor}: done {len(self.done)}, running {len(self.run_started)}, "
            f"failed {len(self.failed)}, waiting {len(self.jobs) - finished - len(self.run_started)} "
            f"(+{self.skipped} done before, {self.elsewhere} running elsewhere)   elapsed {format_seconds(elapsed)}   "
            f"ETA {format_seconds(self.eta_s())}")
        if final or not self.run_started:  # nothing runs: no empty table under the summary
            return header
        table = Table(box=None, pad_edge=False)
        for column in ("run id", "point", "step", "reward", "time"):
            table.add_column(column)
        for rid, since in sorted(self.run_started.items(), key=lambda item: item[1]):
            progress = self.progress_of(rid)
            if progress is None:
                step, reward = "starting", ""
            elif progress.in_warm_start:
                step, reward = progress.describe(), ""
            else:
                step, reward = f"{progress.step}/{progress.total}", f"{progress.reward:.3f}"
            table.add_row(rid, self.labels.get(rid, ""), step, reward, format_seconds(time.monotonic() - since))
        return Group(header, table)
