"""How long `lgrpo-bench report` takes on a large store (target: 1,000 runs × 9 benchmarks in under 5 s).

Builds a real MLflow SQLite store (log_batch: tags, params, eval metrics and 20-step training curves per
run), then times, in this order:

1. ``generate_report`` for the 1,000 runs: tables only (md, latex, csv), and everything (+ html + plots);
2. the CLI ``lgrpo-bench report`` in a fresh process (interpreter start-up and imports included);
3. a paper-sized grid (4 algorithms × 3 seeds × 3 sizes × 9 benchmarks) with the statistics: t intervals
   over seeds and the power rows (minimum detectable effect, seeds needed).

    .venv/bin/python benchmarks/report_speed.py [--runs 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the store builder shared with the tests

from report_store import RunSpec, build_store  # noqa: E402

from lgrpo_bench.reports import generate_report  # noqa: E402
from lgrpo_bench.tracking import open_client  # noqa: E402
from lgrpo_bench.tracking import schema as t  # noqa: E402

BENCHMARKS = ("math500", "aime24", "aime25", "amc23", "minerva_math", "olympiadbench", "gsm8k", "gaokao2023en", "college_math")
ALGORITHMS = ("grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full")


def large_specs(n_runs: int, rng: np.random.Generator) -> list[RunSpec]:
    specs = []
    sizes = ("0.5B", "1.5B", "3B", "7B")
    for index in range(n_runs):
        algorithm = ALGORITHMS[index % len(ALGORITHMS)]
        size = sizes[(index // len(ALGORITHMS)) % len(sizes)]
        seed = index // (len(ALGORITHMS) * len(sizes))
        steps = range(0, 200, 10)
        curves = {
            t.TRAIN_REWARD_MEAN: [(s, float(rng.uniform(0, 1))) for s in steps],
            t.TRAIN_COMPLETION_LENGTH_MEAN: [(s, float(rng.uniform(100, 500))) for s in steps],
            t.TRAIN_ENTROPY: [(s, float(rng.uniform(0.2, 1))) for s in steps],
            t.TRAIN_HELDOUT_ACC: [(s, float(rng.uniform(0, 1))) for s in steps[::4]],
        }
        if algorithm == "lambda_grpo":
            curves[t.TRAIN_LAMBDA] = [(s, s / 400) for s in steps]
        specs.append(RunSpec(algorithm, seed, size, acc={b: float(rng.uniform(0.1, 0.8)) for b in BENCHMARKS}, curves=curves))
    return specs


def paper_specs(rng: np.random.Generator) -> list[RunSpec]:
    specs = []
    for size in ("1.5B", "3B", "7B"):
        for algorithm in ("grpo", "dapo", "dr_grpo", "lambda_grpo"):
            for seed in range(3):
                specs.append(RunSpec(algorithm, seed, size, acc={b: float(rng.uniform(0.3, 0.5)) for b in BENCHMARKS}))
    return specs


def timed(label: str, function) -> float:
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    print(f"{label:62s} {seconds:7.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--keep", type=Path, default=None, help="Folder for the stores, reused when they exist (default: a temporary one)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lgrpo-report-speed-"))
    rng = np.random.default_rng(0)

    start = time.perf_counter()
    if (root / "large" / "mlflow.db").is_file():  # --keep DIR of an earlier run: reuse its stores
        uri = f"sqlite:///{root / 'large' / 'mlflow.db'}"
    else:
        uri, _, _, _ = build_store(root / "large", large_specs(args.runs, rng), experiment="large")
    print(f"store of {args.runs} runs × {len(BENCHMARKS)} benchmarks ready in {time.perf_counter() - start:.1f} s ({uri})")

    out = root / "out"
    clients = []
    opened = timed("import mlflow and open the store (once per process)", lambda: clients.append(open_client(uri)))
    client = clients[0]
    tables = timed(f"report, {args.runs} runs: md+latex+csv, no plots", lambda: generate_report(
        client, experiments=["large"], formats=["md", "latex", "csv"], out_dir=out / "tables", plots=False))
    everything = timed(f"report, {args.runs} runs: md+latex+csv+html + plots", lambda: generate_report(
        client, experiments=["large"], formats=["md", "latex", "csv", "html"], out_dir=out / "all"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = timed(f"lgrpo-bench report (fresh process), {args.runs} runs, md, no plots", lambda: subprocess.run(
        [sys.executable, "-m", "lgrpo_bench.cli", "report", "--experiment", "large", "--tracking-uri", uri,
         "--format", "md", "--no-plots", "--out", str(out / "cli")], check=True, env=env, stdout=subprocess.DEVNULL))

    start = time.perf_counter()
    if (root / "paper" / "mlflow.db").is_file():
        paper_uri = f"sqlite:///{root / 'paper' / 'mlflow.db'}"
    else:
        paper_uri, _, _, _ = build_store(root / "paper", paper_specs(rng), experiment="paper")
    print(f"paper grid (36 runs × 9 benchmarks) ready in {time.perf_counter() - start:.1f} s")
    stats = timed("report, paper grid with statistics (t intervals, power rows)", lambda: generate_report(
        paper_uri, experiments=["paper"], formats=["md", "csv"], out_dir=out / "paper", plots=False))
    print(f"\ntarget < 5 s for {args.runs} runs: tables {tables:.2f} s ({'met' if tables < 5 else 'MISSED'}) after "
          f"{opened:.2f} s of MLflow import + store opening; with plots {everything:.2f} s; whole CLI process {cli:.2f} s "
          f"({'met' if cli < 5 else 'MISSED'}); paper grid with statistics {stats:.2f} s")


if __name__ == "__main__":
    main()
