"""How long the commands a researcher types take, as fresh processes (imports included).

Targets (issue 15, this 2-core machine, median of ``--repeats`` fresh processes):

=========================================  ========
``plan experiments/quickstart.yaml``       ≤ 1.0 s
``plan`` of a 10,000-point grid            ≤ 2.5 s
``status`` / ``status GRID``               ≤ 1.5 s
``config show RUN.yaml``                   ≤ 1.0 s
``report --grid`` of 15 runs (md, no plots) ≤ 3.0 s
every ``--help``                           ≤ 0.5 s
=========================================  ========

The store: a temporary folder with the quickstart grid's 15 runs logged as training and evaluation log them
(tags, flattened params, ``eval/arith/*`` metrics and identity tags, 500 per-problem records each, a held-out
accuracy curve) and its grid parent run, written once with MLflow before timing starts. Also printed: whether
each command imported torch, transformers or MLflow (``-X importtime``), the usual cause of a slow command.

    python benchmarks/cli_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

HEAVY = ("torch", "transformers", "mlflow", "trl", "lm_eval")


def quickstart_store(work: Path) -> Path:
    """``work/quickstart.yaml`` (the shipped grid) and ``work/mlflow.db`` holding its 15 finished runs."""
    from report_store import RunSpec, build_store

    from lgrpo_bench.runs.resolve import load_grid

    grid_file = work / "quickstart.yaml"
    shutil.copy(ROOT / "experiments" / "quickstart.yaml", grid_file)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        expanded = load_grid(grid_file)
    finally:
        os.chdir(cwd)
    specs = []
    for i, point in enumerate(expanded.points):
        from lgrpo_bench.config import flatten_for_params

        correct = [(i * 7 + k) % 5 != 0 for k in range(500)]
        spec = RunSpec(point.config.algorithm.name, point.config.train.seed, model_size="0.2M", model="tiny-s",
                       records={"arith": correct}, grid="quickstart",
                       curves={"train/heldout_acc": [(s, 0.4 + 0.01 * s) for s in (0, 10, 20, 30, 40)]},
                       params=flatten_for_params(point.config))
        spec.run_id_override = point.run_id
        specs.append(spec)
    build_store(work, specs, experiment="quickstart", grid="quickstart")
    return grid_file


def big_grid(work: Path) -> Path:
    grid = {"name": "ten-thousand", "base": {"model": {"name": "tiny-s"}},
            "axes": {"algorithm.name": ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"],
                     "train.learning_rate": [5e-5, 1e-4, 2e-4, 3e-4], "train.seed": list(range(500))}}
    path = work / "big.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def timed(argv: list[str], cwd: Path, repeats: int) -> tuple[float, list[float], list[str]]:
    """Median wall seconds of ``repeats`` fresh runs, every run's seconds, heavy modules the command imported."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", *argv], cwd=cwd, capture_output=True,
                                   text=True)
        seconds.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"lgrpo-bench {' '.join(argv)} failed:\n{completed.stdout}\n{completed.stderr}")
    trace = subprocess.run([sys.executable, "-X", "importtime", "-m", "lgrpo_bench.cli", *argv], cwd=cwd,
                           capture_output=True, text=True).stderr
    imported = sorted({m for m in HEAVY if f"| {m}\n" in trace or f"|   {m}\n" in trace or f" {m}\n" in trace})
    return statistics.median(seconds), seconds, imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lgrpo-cli-speed-") as tmp:
        work = Path(tmp)
        grid_file = quickstart_store(work)
        big = big_grid(work)
        run_file = ROOT / "experiments" / "tiny_lambda.yaml"
        checks = [
            ("--help", ["--help"], 0.5),
            ("run --help", ["run", "--help"], 0.5),
            ("plan --help", ["plan", "--help"], 0.5),
            ("report --help", ["report", "--help"], 0.5),
            ("eval --help", ["eval", "--help"], 0.5),
            ("sweep --help", ["sweep", "--help"], 0.5),
            ("config show tiny_lambda.yaml", ["config", "show", str(run_file)], 1.0),
            ("plan quickstart.yaml (15 done)", ["plan", str(grid_file)], 1.0),
            ("plan 10,000-point grid", ["plan", str(big)], 2.5),
            ("status", ["status"], 1.5),
            ("status quickstart.yaml", ["status", str(grid_file)], 1.5),
            ("report --grid quickstart (md, no plots)",
             ["report", "--grid", str(grid_file), "--format", "md", "--no-plots", "--out", str(work / "report")], 3.0),
        ]
        print(f"fresh processes, median of {options.repeats} (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        print(f"{'command':44s} {'median':>8s} {'target':>7s}  {'ok':3s} imports of torch/transformers/mlflow")
        for label, argv, target in checks:
            median, _, imported = timed(argv, work, options.repeats)
            ok = "yes" if median <= target else "NO"
            print(f"{label:44s} {median:7.2f}s {target:6.1f}s  {ok:3s} {', '.join(imported) or '-'}")


if __name__ == "__main__":
    main()
