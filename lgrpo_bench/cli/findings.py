"""``lgrpo-bench findings``: run the grids of published findings (positive and negative controls) and print a verdict
per finding (holds / reversed / inconclusive / too few bases; :mod:`lgrpo_bench.reports.findings`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from lgrpo_bench.cli.common import EXIT_RUN_FAILED, PLAIN_HELP, app, fail_input, make_console, offline_defaults

DEFAULT_FOLDER = Path("experiments/findings")


def _grid_files(files: list[Path]) -> list[Path]:
    if not files:
        if not DEFAULT_FOLDER.is_dir():
            fail_input(f"no grid files given and no folder {DEFAULT_FOLDER} here: name the findings' grid files")
        found = sorted(DEFAULT_FOLDER.glob("*.yaml"))
        if not found:
            fail_input(f"{DEFAULT_FOLDER} holds no *.yaml grid file")
        return found
    for path in files:
        if not path.is_file():
            fail_input(f"{path}: no such grid file")
    return files


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


@app.command("findings")
def findings(
    files: Optional[List[Path]] = typer.Argument(None, help="Grid YAMLs with a finding: block (default: every *.yaml "
                                                "in experiments/findings/)"),
    no_run: bool = typer.Option(False, "--no-run", help="Only read the store: run nothing, give verdicts on what is done"),
    slots: Optional[int] = typer.Option(None, "--slots", min=1, help="Runs at once (default: each grid's executor)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the verdicts as JSON to this file"),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """Run the findings' grids (what is not done yet) and print one verdict per finding: holds / reversed /
    inconclusive (the paired t interval over base models) or too few bases. Exit code 0 whatever the verdicts.

    Example: lgrpo-bench findings experiments/findings/dr_grpo_length.yaml --no-run --json verdicts.json
    """
    offline_defaults()
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.runs.resolve import load_grid

    paths = _grid_files(list(files or []))
    grids = []
    for path in paths:
        try:
            expanded = load_grid(path)
        except ConfigError as error:
            fail_input(str(error))
        if not expanded.grid.all_findings:
            fail_input(f"{path}: no finding: block (a findings grid states its claim: see docs/findings.md)")
        grids.append(expanded)
    console = make_console(plain)
    failed = 0
    if not no_run:
        from lgrpo_bench.dispatch.orchestrator import GridBusy, run_grid
        from lgrpo_bench.tracking import TrackingUnavailable

        for expanded in grids:
            try:
                summary = run_grid(expanded, slots=slots, console=console)
            except (ConfigError, GridBusy, TrackingUnavailable) as error:
                fail_input(str(error))
            console.print(f"grid {expanded.grid.name}: ran {len(summary.done) + len(summary.failed) + len(summary.cancelled)} "
                          f"in {summary.seconds:.1f} s — done {len(summary.done)}, failed {len(summary.failed)}; skipped "
                          f"{len(summary.skipped_done)} already done", highlight=False, markup=False)
            for rid, error in summary.failed.items():
                console.print(f"failed {rid}: {error}", highlight=False, markup=False)
            failed += summary.exit_code != 0
            if summary.cancelled:  # Ctrl-C or SIGTERM stops the findings, not just this grid
                left = grids[grids.index(expanded) + 1:]
                console.print(f"interrupted: {len(summary.cancelled)} run(s) of {expanded.grid.name} stopped"
                              + (f", {len(left)} grid(s) not started ({', '.join(g.grid.name for g in left)})" if left else "")
                              + "; the verdicts below use the runs that are done", highlight=False, markup=False)
                break
    from lgrpo_bench.reports.findings import read_findings

    results = [(expanded, result) for expanded in grids for result in read_findings(expanded)]
    _print(console, results)
    if json_path is not None:
        payload = [{"grid": str(expanded.path), **result.as_dict()} for expanded, result in results]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
        console.print(f"wrote {json_path}", highlight=False, markup=False)
    if failed:
        raise typer.Exit(EXIT_RUN_FAILED)


def _print(console, results) -> None:
    from rich.table import Table

    table = Table(title="findings: the paired t interval over base models", title_justify="left")
    for column in ("finding", "verdict", "claim", "effect A−B", "interval", "bases", "arm A mean ± std",
                   "arm B mean ± std", "metric", "source"):
        table.add_column(column)
    for _, r in results:
        f = r.finding
        interval = "—" if r.low is None else f"[{_number(r.low)}, {_number(r.high)}] ({f.confidence:.0%})"
        arms = [f"{a.label}: {_number(a.mean)} ± {_number(a.std)}" for a in r.arms]
        sign = ">" if f.direction == "greater" else "<"
        table.add_row(r.name, r.verdict, f"A {sign} B", _number(r.effect), interval, f"{r.n_bases} ({f.pair_over})",
                      arms[0], arms[1], f"{f.metric} ({f.summary})", f.source)
    console.print(table)
    for _, r in results:
        console.print(f"- {r.name}: {r.finding.claim}", highlight=False, markup=False)
        for note in r.notes:
            console.print(f"  {note}", highlight=False, markup=False)
