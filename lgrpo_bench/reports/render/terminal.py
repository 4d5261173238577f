"""The terminal: rich tables, and the same rows as plain text for ``--plain``."""

from __future__ import annotations

from dataclasses import dataclass

from lgrpo_bench.reports.render.cells import (
    MDE_LABEL, MISSING, SEED_STD_LABEL, Style, delta_caption, delta_lines, label_columns, per_run_caption, per_run_lines, seeds_label,
    summary_caption, summary_lines,
)
from lgrpo_bench.reports.table import ReportTable

__all__ = ["plain_tables", "rich_tables"]


@dataclass(frozen=True)
class PlainTable:
    """A table as plain text (``--plain``): title, header, rows and caption, no markup; no cell holds a tab or a line
    break (a TSV cell cannot)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str
    name: str = ""
    """Which table it is, for the ``# <name>: <title>`` line ``--plain`` writes above it: ``summary``, ``deltas``, ``per run``."""

    @property
    def heading(self) -> str:
        """The line above the table's TSV header: ``# summary: acc (points, mean ± std over seeds)``."""
        return f"# {self.name}: {self.title}" if self.name else f"# {self.title}"


_PLAIN = Style(escape=str, bold=lambda s: s, pm=" ± ", missing=MISSING)


def _tsv_row(cells) -> list[str]:
    return [" ".join(cell.replace("\t", " ").splitlines()) for cell in cells]


def _summary_title(table: ReportTable) -> str:
    return f"{table.metric} ({table.unit.name}, mean ± std over seeds)"


def _per_run_title(table: ReportTable) -> str:
    return f"{table.metric} ({table.unit.name}), every run"


def _summary_caption_lines(table: ReportTable) -> str:
    return "\n".join([summary_caption(table), *(f"{mark} {text}" if mark else text for mark, text in table.footnotes)])


def plain_tables(table: ReportTable, per_seed: bool = False) -> list[PlainTable]:
    """The tables of :func:`rich_tables` as plain text, built from the same rows (not read back out of rich), each
    named (:attr:`PlainTable.name`)."""
    header, rows, _ = summary_lines(table, _PLAIN)
    tables = [PlainTable(_summary_title(table), _tsv_row(header), [_tsv_row(row) for row in rows], _summary_caption_lines(table),
                         "summary")]
    delta_header, delta_rows, _ = delta_lines(table, _PLAIN)
    if delta_rows:
        tables.append(PlainTable(f"Δ vs {table.baseline} ({table.unit.name}, difference of seed means)", _tsv_row(delta_header),
                                 [_tsv_row(row) for row in delta_rows], delta_caption(table), "deltas"))
    if per_seed:
        run_header, run_rows, _ = per_run_lines(table, _PLAIN)
        tables.append(PlainTable(_per_run_title(table), _tsv_row(run_header), [_tsv_row(row) for row in run_rows],
                                 per_run_caption(table), "per run"))
    return tables


def rich_tables(table: ReportTable, per_seed: bool = False) -> list:
    """``rich.table.Table`` objects: the summary, the Δ table when there is one, and with ``per_seed`` every run's
    values (:func:`~.cells.per_run_lines`)."""
    from rich.markup import escape
    from rich.table import Table

    style = Style(escape=escape, bold=lambda s: f"[bold]{s}[/bold]", pm=" ± ", missing=MISSING)
    header, rows, starts = summary_lines(table, style)
    summary = Table(title=_summary_title(table), caption=escape(_summary_caption_lines(table)), caption_justify="left")
    for index, name in enumerate(header):
        summary.add_column(name, justify="left" if index < label_columns(table) else "right")
    for index, row in enumerate(rows):
        summary.add_row(*row, end_section=index + 1 in starts, style="dim" if row[1] == SEED_STD_LABEL else None)
    tables = [summary]
    delta_header, delta_rows, delta_starts = delta_lines(table, style)
    if delta_rows:
        deltas = Table(title=f"Δ vs {table.baseline}", caption=delta_caption(table), caption_justify="left")
        numeric_from = label_columns(table) + bool(table.row_keys.shown)
        for index, name in enumerate(delta_header):
            deltas.add_column(name, justify="left" if index < numeric_from else "right")
        power_rows = {escape(MDE_LABEL), escape(seeds_label(table.unit))}
        for index, row in enumerate(delta_rows):
            last_of_group = index + 1 in delta_starts or index + 1 == len(delta_rows)
            before_power = index + 1 < len(delta_rows) and delta_rows[index + 1][1] == escape(MDE_LABEL)
            deltas.add_row(*row, end_section=(last_of_group or before_power) and index + 1 != len(delta_rows),
                           style="dim" if row[1] in power_rows else None)
        tables.append(deltas)
    if per_seed:
        run_header, run_rows, run_starts = per_run_lines(table, style)
        per_run = Table(title=_per_run_title(table), caption=escape(per_run_caption(table)), caption_justify="left")
        numeric_from = label_columns(table) + 2 + len(table.row_keys.averaged)
        for index, name in enumerate(run_header):
            per_run.add_column(name, justify="left" if index < numeric_from else "right")
        for index, row in enumerate(run_rows):
            per_run.add_row(*row, end_section=index + 1 in run_starts)
        tables.append(per_run)
    return tables
