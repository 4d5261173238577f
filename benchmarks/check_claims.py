"""Check this machine against the quickstart claims (docs/measurements.md; issue 24 §4): same verdicts, numbers within the spread.

The quickstart starts from a shipped base (the same weights on every machine), so what differs between CPUs is only
the RL trajectory: torch's kernels round differently per CPU (``ATEN_CPU_CAPABILITY``), and a run that is chaotic
lands elsewhere, as another seed would. The claims file (``benchmarks/quickstart_claims.json``, written by
``--record``) holds, per algorithm, the mean over seeds of the arith accuracy and of the sample efficiency, and per
algorithm the paired Δ vs grpo with its p-value. A machine agrees when

* every cell (algorithm × {arith, sample efficiency}) is within ``--tolerance`` points (default 3) of the claim, and
* every significance label agrees where the claim's p-value is below 0.01 (must be significant here, same sign)
  or above 0.2 (must be n.s. here); between those the claim is itself borderline and is not checked.

Usage::

    python benchmarks/check_claims.py --work-dir /tmp/claims                           # run the quickstart, check
    ATEN_CPU_CAPABILITY=avx2 python benchmarks/check_claims.py --work-dir /tmp/c-avx2  # rehearse another CPU
    python benchmarks/check_claims.py --work-dir /tmp/claims --report-only              # re-read a finished store
    python benchmarks/check_claims.py --work-dir /tmp/claims --record                   # write the claims file

Exit status 1 when a cell or a label disagrees. The quickstart runs through the real CLI in its own folder
(``--work-dir``: mlflow.db and runs/ there), ``ATEN_CPU_CAPABILITY`` passed on to every process it starts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from lgrpo_bench.tracking.provenance import cpu_model

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = REPO_ROOT / "experiments" / "quickstart.yaml"
CLAIMS = Path(__file__).resolve().parent / "quickstart_claims.json"
COLUMNS = {"arith": ("arith", "acc"), "sample_eff": ("train", "heldout_acc_curve_mean")}
SIGNIFICANT_BELOW, NS_ABOVE, ALPHA = 0.01, 0.2, 0.05


def run_quickstart(work_dir: Path) -> float:
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "run", str(QUICKSTART)], cwd=work_dir)
    if done.returncode not in (0,):
        raise SystemExit(f"the quickstart exited {done.returncode}; see {work_dir}")
    return time.perf_counter() - start


def read_report(work_dir: Path) -> dict:
    out = work_dir / "report"
    done = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "report", "--grid", str(QUICKSTART), "--format",
                           "csv", "--out", str(out), "--no-plots"], cwd=work_dir, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"report failed ({done.returncode}): {done.stdout}{done.stderr}")
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(out / "results.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            for column, (benchmark, metric) in COLUMNS.items():
                if row["benchmark"] == benchmark and row["metric"] == metric and row["value"]:
                    cells[row["algorithm"]][column].append(100 * float(row["value"]))
    deltas: dict[str, dict[str, dict]] = defaultdict(dict)
    with open(out / "deltas.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["baseline"] != "grpo" or not row["p_value"]:
                continue
            column = "arith" if row["column"].startswith("arith") else "sample_eff"
            deltas[row["algorithm"]][column] = {"delta": 100 * float(row["delta"]), "p": float(row["p_value"])}
    return {
        "cells": {alg: {col: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None, "n": len(v)}
                        for col, v in cols.items()} for alg, cols in cells.items()},
        "deltas": dict(deltas),
    }


def compare(claims: dict, here: dict, tolerance: float) -> list[str]:
    """One line per disagreement (empty: this machine agrees with the claims)."""
    problems = []
    for alg, cols in claims["cells"].items():
        for col, claim in cols.items():
            mine = here["cells"].get(alg, {}).get(col)
            if mine is None:
                problems.append(f"{alg} {col}: no value here")
            elif abs(mine["mean"] - claim["mean"]) > tolerance:
                problems.append(f"{alg} {col}: {mine['mean']:.1f} here vs {claim['mean']:.1f} claimed "
                                f"(|Δ| {abs(mine['mean'] - claim['mean']):.1f} > {tolerance:g})")
    for alg, cols in claims["deltas"].items():
        for col, claim in cols.items():
            mine = here["deltas"].get(alg, {}).get(col)
            if claim["p"] >= SIGNIFICANT_BELOW and claim["p"] <= NS_ABOVE:
                continue
            if mine is None:
                problems.append(f"{alg} vs grpo {col}: no interval here")
                continue
            if claim["p"] < SIGNIFICANT_BELOW and not (mine["p"] < ALPHA and (mine["delta"] > 0) == (claim["delta"] > 0)):
                problems.append(f"{alg} vs grpo {col}: claimed significant ({claim['delta']:+.1f}, p={claim['p']:.3f}), "
                                f"here {mine['delta']:+.1f}, p={mine['p']:.3f}")
            if claim["p"] > NS_ABOVE and mine["p"] < ALPHA:
                problems.append(f"{alg} vs grpo {col}: claimed n.s. (p={claim['p']:.3f}), here significant "
                                f"({mine['delta']:+.1f}, p={mine['p']:.3f})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--report-only", action="store_true", help="read a finished store, run nothing")
    parser.add_argument("--record", action="store_true", help=f"write this machine's numbers as the claims ({CLAIMS.name})")
    parser.add_argument("--tolerance", type=float, default=3.0, help="points a cell may differ (default %(default)s)")
    args = parser.parse_args(argv)

    level = os.environ.get("ATEN_CPU_CAPABILITY", "native")
    wall = None if args.report_only else run_quickstart(args.work_dir)
    here = read_report(args.work_dir)
    here["machine"] = {"cpu": cpu_model(), "aten_cpu_capability": level,
                       "date": time.strftime("%Y-%m-%d"), "quickstart_wall_s": None if wall is None else round(wall, 1)}
    print(f"machine: {here['machine']}")
    for alg in sorted(here["cells"]):
        cols = here["cells"][alg]
        print(f"  {alg:12s} " + "  ".join(f"{col} {c['mean']:.1f} ± {c['std'] or 0:.1f} (n={c['n']})" for col, c in cols.items()))
    for alg in sorted(here["deltas"]):
        print(f"  Δ {alg:10s} vs grpo " + "  ".join(f"{col} {d['delta']:+.1f} p={d['p']:.3f}" for col, d in here["deltas"][alg].items()))
    if args.record:
        CLAIMS.write_text(json.dumps(here, indent=2) + "\n")
        print(f"wrote {CLAIMS}")
        return 0
    claims = json.loads(CLAIMS.read_text())
    problems = compare(claims, here, args.tolerance)
    print(f"claims of {claims['machine']['cpu']} ({claims['machine']['aten_cpu_capability']}, {claims['machine']['date']})")
    for line in problems:
        print(f"DISAGREES: {line}")
    print("agrees with the claims" if not problems else f"{len(problems)} disagreements")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
