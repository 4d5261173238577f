"""How long ``lgrpo-bench plan`` takes on a 10,000-point grid (target: under 2 s).

The grid: 5 algorithms × 4 learning rates × 500 seeds on tiny-s = 10,000 points, each validated as a full
RunConfig and hashed into its run id. The store holds ``--finished`` train runs of that grid (tags only, as
training writes them), so the state lookup has real rows to read (one search per experiment). Timed:

* expand — ``load_grid``: parse, validate every point, compute run ids (after imports);
* state — ``plan_grid``: one paged ``search_runs`` over the experiment, liveness records, classification;
* CLI — ``lgrpo-bench plan grid.yaml --json`` end to end in a fresh process (imports included).

    python benchmarks/plan_speed.py [--points-per-seed-axis 500] [--finished 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ALGORITHMS = ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"]
LEARNING_RATES = [5e-5, 1e-4, 2e-4, 3e-4]


def write_grid(work: Path, seeds: int) -> Path:
    grid = {
        "name": "plan-speed",
        "base": {"model": {"name": "tiny-s"}, "task": {"name": "arith"},
                 "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "plan-speed",
                              "runs_dir": str(work / "runs")}},
        "axes": {"algorithm.name": ALGORITHMS, "train.learning_rate": LEARNING_RATES, "train.seed": list(range(seeds))},
    }
    path = work / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def fill_store(grid_path: Path, finished: int) -> None:
    """``finished`` train runs tagged as training tags them (state done), in one experiment."""
    from lgrpo_bench import tracking as t
    from lgrpo_bench.runs.resolve import load_grid

    expanded = load_grid(grid_path)
    client = t.open_client(expanded.points[0].config.tracking.uri)
    experiment_id = t.get_or_create_experiment(client, "plan-speed")
    for point in expanded.points[:finished]:
        client.create_run(experiment_id, tags={
            t.TAG_KIND: t.KIND_TRAIN, t.TAG_RUN_ID: point.run_id, t.TAG_STATE: t.STATE_DONE,
            t.TAG_GRID: "plan-speed", t.TAG_ALGORITHM: point.config.algorithm.name})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points-per-seed-axis", type=int, default=500, help="seeds (points = 20 × seeds)")
    parser.add_argument("--finished", type=int, default=1000, help="finished runs put in the store first")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch  # noqa: F401  (imports are not what is timed in-process)

    from lgrpo_bench.runs.resolve import load_grid
    from lgrpo_bench.dispatch import plan_grid
    from lgrpo_bench.dispatch.state import count_states

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grid_path = write_grid(work, args.points_per_seed_axis)
        started = time.perf_counter()
        fill_store(grid_path, args.finished)
        print(f"store filled with {args.finished} finished runs in {time.perf_counter() - started:.1f} s")
        expand_s, state_s, cli_s = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            expanded = load_grid(grid_path)
            expand_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            statuses = plan_grid(expanded)
            state_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "plan", str(grid_path), "--json"],
                                  capture_output=True, text=True, check=True)
            cli_s.append(time.perf_counter() - started)
        assert len(expanded.points) == 20 * args.points_per_seed_axis and '"state": "done"' in done.stdout
        counts = count_states(statuses.values())
        print(f"{len(expanded.points):,} points, states: {counts}")
        print(f"expand (validate + run ids): median {statistics.median(expand_s):.2f} s   {[round(s, 2) for s in expand_s]}")
        print(f"state lookup (one search):   median {statistics.median(state_s):.2f} s   {[round(s, 2) for s in state_s]}")
        total = statistics.median(expand_s) + statistics.median(state_s)
        print(f"plan in-process:             {total:.2f} s   (target < 2 s: {'met' if total < 2 else 'missed'})")
        print(f"plan CLI, fresh process:     median {statistics.median(cli_s):.2f} s   {[round(s, 2) for s in cli_s]} "
              "(imports torch, transformers and mlflow)")


if __name__ == "__main__":
    main()
