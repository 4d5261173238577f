"""What a run costs beyond its compute (issue 23): each target's measured value and its target, from one invocation.

1. **One run over its real work** (the quickstart's config; 2 algorithms × 2 seeds, its executor: 2 slots, warm
   workers): per run, the job's wall seconds (fork or process start, claim, MLflow run, warm start load, training,
   held-out checks, checkpoints, evaluation, done) over its real work: the trainer's step time summed over the steps
   (``train/step_s``: generation, loss, backward, optimizer) plus the evaluation's generation and scoring
   (``eval/<b>/seconds``). Target ≤ 1.5. The first runs of a grid also wait for the warm server's imports: shown apart.
2. **A grid of 6 one-step runs** on 2 slots (warm start cached, ``eval.limit`` 16) through ``lgrpo-bench run`` in a
   fresh process, over one fresh ``python -c "import torch, transformers, trl, lm_eval, mlflow"``. Target ≤ 3.
   Also with ``executor.warm_workers: false`` (every run a fresh interpreter), to show what the warm server saves.
3. **`lgrpo-bench report --grid`** of the store of (1) with its default plots, fresh process. Target ≤ 5 s.

Needs the tiny-s warm start of seed 0 (shipped, or cached: it is resolved once before timing). Prints one line per
measurement with the machine's load average, so a reader can judge the conditions.

    python benchmarks/run_cost.py [--work-dir DIR] [--only 1|2|3 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "experiments" / "quickstart.yaml"


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def quickstart_grid(work: Path, name: str, *, algorithms, seeds, overrides: dict | None = None,
                    executor: dict | None = None) -> Path:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["name"] = name
    data["axes"] = {"algorithm.name": list(algorithms), "train.seed": list(seeds)}
    data["base"]["tracking"] = {"experiment": name, "uri": f"sqlite:///{work / 'mlflow.db'}", "runs_dir": str(work / "runs")}
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        data["base"].setdefault(section, {})[key] = value
    data["executor"] = {**data["executor"], **(executor or {})}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def real_work(uri: str, experiment: str) -> dict[str, tuple[float, float]]:
    """Run id → (Σ train/step_s, eval seconds) from the store."""
    from lgrpo_bench.tracking import open_client

    client = open_client(uri)
    found = client.get_experiment_by_name(experiment)
    work = {}
    for run in client.search_runs([found.experiment_id], "tags.`lgrpo.kind` = 'train'"):
        steps = sum(m.value for m in client.get_metric_history(run.info.run_id, "train/step_s"))
        evaluation = sum(value for key, value in run.data.metrics.items() if key.startswith("eval/") and key.endswith("/seconds"))
        work[run.data.tags["lgrpo.run_id"]] = (steps, evaluation)
    return work


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def one_run_over_its_work(work: Path) -> Path:
    from rich.console import Console

    from lgrpo_bench.dispatch.orchestrator import run_grid
    from lgrpo_bench.runs.resolve import load_grid

    grid = quickstart_grid(work, "cost-quickstart", algorithms=["grpo", "lambda_grpo"], seeds=[0, 1])
    expanded = load_grid(grid)
    summary = run_grid(expanded, console=Console(file=open(os.devnull, "w")))
    assert not summary.failed, summary.failed
    compute = real_work(f"sqlite:///{work / 'mlflow.db'}", "cost-quickstart")
    ratios = []
    for point in expanded.points:
        steps, evaluation = compute[point.run_id]
        wall = summary.run_seconds[point.run_id]
        ratios.append(wall / (steps + evaluation))
        print(f"  run {point.run_id} ({point.label()}): {wall:.1f} s wall, real work {steps:.1f} s steps + "
              f"{evaluation:.1f} s evaluation → {wall / (steps + evaluation):.2f}")
    later = ratios[2:]  # the first two runs (one per slot) also waited for the warm server's imports
    print(f"1. one quickstart run / its real work: median {statistics.median(later):.2f} [{min(later):.2f}–{max(later):.2f}] "
          f"once the warm server is up (first runs of the grid {ratios[0]:.2f}, {ratios[1]:.2f}); target ≤ 1.5; "
          f"load {load()}")
    return grid


def small_grid_over_imports(work: Path) -> None:
    imports = timed([sys.executable, "-c", "import torch, transformers, trl, lm_eval, mlflow"], work)
    results = {}
    for warm in (True, False):
        folder = work / f"small-{'warm' if warm else 'fresh'}"
        folder.mkdir()
        grid = quickstart_grid(folder, "cost-small", algorithms=["grpo", "dapo", "lambda_grpo"], seeds=[0, 1],
                               overrides={"train.max_steps": 1, "train.heldout_every": 0, "train.save_every": 0,
                                          "eval.limit": 16},
                               executor={"slots": 2, "warm_workers": warm})
        results[warm] = timed([sys.executable, "-m", "lgrpo_bench.cli", "run", str(grid)], folder)
    print(f"2. 6 one-step runs on 2 slots: {results[True]:.1f} s (warm workers) / {results[False]:.1f} s (a fresh "
          f"interpreter per run) over `import torch, transformers, trl, lm_eval, mlflow` {imports:.1f} s: "
          f"{results[True] / imports:.2f} (fresh: {results[False] / imports:.2f}); target ≤ 3; load {load()}")


def report_of(grid: Path, work: Path) -> None:
    seconds = timed([sys.executable, "-m", "lgrpo_bench.cli", "report", "--grid", str(grid), "--out", str(work / "report")],
                    work)
    print(f"3. lgrpo-bench report --grid (default plots, {len(list((work / 'report' / 'plots').glob('*.png')))} figures), "
          f"fresh process: {seconds:.1f} s; target ≤ 5 s; load {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--only", type=int, choices=(1, 2, 3), action="append",
                        help="run only these measurements (repeatable; 3 needs 1's grid); default: all three")
    args = parser.parse_args()
    only = set(args.only or (1, 2, 3))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lgrpo_bench.models.loading import resolve_model

    resolve_model("tiny-s", seed=0)  # the warm start: cached (or built) before anything is timed
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        grid = one_run_over_its_work(work) if only & {1, 3} else None
        if 2 in only:
            small_grid_over_imports(work)
        if 3 in only:
            report_of(grid, work)


if __name__ == "__main__":
    main()
