"""Does RL improve held-out arith accuracy over the warm start, for every algorithm? (issue #3 acceptance)

Trains tiny-s (cached warm start) with each algorithm and seed through ``lgrpo_bench.training.train``
(the same code path as ``lgrpo-bench train``) into a throw-away MLflow store, and prints a Markdown table:
greedy held-out accuracy at step 0 (the warm start) and at the end, its mean over training (sample
efficiency: the area under the held-out curve), the final mean completion length, and λ at the end.

    python benchmarks/rl_improvement.py [--seeds 0 1 2] [--steps 40] [--algorithms grpo dapo ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from lgrpo_bench.algorithms import ALGORITHMS  # noqa: E402
from lgrpo_bench.config import build_run_config  # noqa: E402
from lgrpo_bench.tracking import open_client  # noqa: E402
from lgrpo_bench.training.run import train  # noqa: E402


def history(client, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="tiny-s")
    parser.add_argument("--heldout-size", type=int, default=500)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client = None
        for algorithm in options.algorithms:
            per_seed = []
            for seed in options.seeds:
                config = build_run_config({
                    "model": {"name": options.model},
                    "algorithm": {"name": algorithm, "r": 0.3, "lambda_lr": 0.05},
                    "train": {"seed": seed, "max_steps": options.steps, "heldout_every": 10,
                              "heldout_size": options.heldout_size, "save_every": 0, "samples_every": 0},
                    "tracking": {"uri": uri, "experiment": "rl-improvement", "runs_dir": str(Path(tmp) / "runs")},
                })
                started = time.perf_counter()
                result = train(config)
                client = client or open_client(uri)
                heldout = history(client, result.mlflow_run_id, "train/heldout_acc")
                lengths = history(client, result.mlflow_run_id, "train/completion_length_mean")
                lam = history(client, result.mlflow_run_id, "train/lambda")
                per_seed.append((heldout[0], heldout[-1], statistics.mean(heldout), lengths[-1],
                                 lam[-1] if lam else None, time.perf_counter() - started))
                print(f"{algorithm} seed {seed}: held-out {heldout[0]:.3f} → {heldout[-1]:.3f}, "
                      f"mean {statistics.mean(heldout):.3f}, length {lengths[-1]:.1f}, {per_seed[-1][-1]:.1f} s", flush=True)
            rows.append((algorithm, per_seed))
    print(f"\n{options.model}, {options.steps} steps, seeds {options.seeds}, greedy accuracy on {options.heldout_size} "
          "held-out problems (mean ± std over seeds)\n")
    print("| algorithm | held-out acc, step 0 | final | mean over training | final length | final λ | s/run |")
    print("|---|---|---|---|---|---|---|")

    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"

    for algorithm, per_seed in rows:
        columns = list(zip(*per_seed))
        print(f"| {algorithm} | {cell(columns[0])} | {cell(columns[1])} | {cell(columns[2])} | {cell(columns[3])} | "
              f"{cell(columns[4])} | {statistics.mean(columns[5]):.0f} |")


if __name__ == "__main__":
    main()
