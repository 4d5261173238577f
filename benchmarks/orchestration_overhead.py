"""What ``lgrpo-bench run`` adds per run over starting the same training runs by hand.

N trivial runs (tiny-s, 1 RL step, no held-out evaluation, no checkpoints) are run twice, one at a time,
each side with a fresh MLflow store:

* direct — ``python -m lgrpo_bench.cli train run_i.yaml`` for i = 1..N, one after the other;
* grid   — ``python -m lgrpo_bench.cli run grid.yaml --slots 1`` on the grid of the same N points
  (orchestrator start, validation, state lookup, parent run, job records, live view, final table).

Printed: both wall times, the ratio grid / direct and the overhead per run ((grid − direct) / N). The tiny-s
warm start must be cached (it is built by the first run otherwise, which would count against one side).

    python benchmarks/orchestration_overhead.py [--runs 4]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ALGORITHMS = ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"]


def base_config(work: Path) -> dict:
    return {
        "model": {"name": "tiny-s"},
        "task": {"name": "arith"},
        "train": {"max_steps": 1, "heldout_every": 0, "save_every": 0, "samples_every": 0},
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "overhead", "runs_dir": str(work / "runs")},
    }


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    from lgrpo_bench.models.tiny import build_tiny

    build_tiny("tiny-s")  # cached before timing
    seeds = list(range(args.runs))
    with tempfile.TemporaryDirectory() as tmp:
        direct_dir, grid_dir = Path(tmp) / "direct", Path(tmp) / "grid"
        direct_dir.mkdir()
        grid_dir.mkdir()
        direct_s = 0.0
        for seed in seeds:
            config = base_config(direct_dir)
            config["train"]["seed"] = seed
            path = direct_dir / f"run{seed}.yaml"
            path.write_text(yaml.safe_dump(config))
            direct_s += timed([sys.executable, "-m", "lgrpo_bench.cli", "train", str(path)], direct_dir)
        grid = {"name": "overhead", "base": base_config(grid_dir), "axes": {"train.seed": seeds},
                "executor": {"kind": "local", "slots": 1}}
        (grid_dir / "grid.yaml").write_text(yaml.safe_dump(grid))
        grid_s = timed([sys.executable, "-m", "lgrpo_bench.cli", "run", str(grid_dir / "grid.yaml"), "--slots", "1"], grid_dir)
    print(f"{args.runs} runs of 1 step, one at a time")
    print(f"direct `train` × {args.runs}: {direct_s:.1f} s ({direct_s / args.runs:.1f} s per run)")
    print(f"grid `run --slots 1`:  {grid_s:.1f} s")
    print(f"ratio grid / direct: {grid_s / direct_s:.3f}; overhead per run: {(grid_s - direct_s) / args.runs:+.2f} s")


if __name__ == "__main__":
    main()
