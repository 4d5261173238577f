"""Does the quickstart's comparison hold across warm starts? (issue 12 §4)

Runs the comparison of ``experiments/quickstart.yaml`` (its base config, its algorithms × RL seeds, tiny-s)
once per warm-start seed, through the real CLI: one derived grid with the extra axis
``model.warm_start_seed``, ``lgrpo-bench run`` with 2 runs at a time, into its own MLflow store and runs
folder under ``--work-dir``. Then it reads the store and prints (Markdown):

- the warm starts: held-out greedy accuracy of each and whether it lies in the band;
- per algorithm: final accuracy (``eval/arith/acc``, greedy on the 500 held-out problems) and sample
  efficiency (``train/heldout_acc`` averaged over training by the trapezoid rule, step 0 included, as the
  report's "Sample eff." column), each as mean ± std over all runs, and the std over warm starts of the
  per-warm-start means (how much the choice of warm start moves the number);
- paired differences against ``grpo`` and against ``dapo``: for every warm start w and RL seed s,
  d = metric(algorithm, w, s) − metric(baseline, w, s) (same warm start, same prompt order); mean ± std over
  the pairs, the per-warm-start means, t = mean / (std / √W) over the W per-warm-start means, and in how
  many warm starts the per-warm-start mean has the sign of the overall mean.

Resumable: a run that is done in the store is not run again (the grid machinery's skip); an interrupted
run resumes from its checkpoint. Runs are identified by their config, not by the code: after changing an
algorithm or the warm-start recipe use a fresh ``--work-dir`` (or ``--report-only`` to re-read a store).

Usage::

    nice -n 5 python benchmarks/quickstart_robustness.py --work-dir /tmp/qr          # 5 warm starts x 5 algorithms x 3 seeds
    python benchmarks/quickstart_robustness.py --work-dir /tmp/qr --steps 20 --warm-start-seeds 0 1 2 3 4 5
    python benchmarks/quickstart_robustness.py --work-dir /tmp/qr --report-only --json /tmp/qr.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = REPO_ROOT / "experiments" / "quickstart.yaml"
GRID_NAME = "quickstart-robustness"
WARM_START_AXIS = "model.warm_start_seed"
METRICS = {"final": "final accuracy (eval/arith/acc)", "efficiency": "sample efficiency (mean train/heldout_acc)"}
BASELINES = ("grpo", "dapo")
ALGORITHM_ORDER = ("grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full")
"""Row order of the tables (others follow alphabetically)."""


def derived_grid(quickstart: dict, work_dir: Path, options: argparse.Namespace) -> dict:
    """The quickstart grid with a warm-start axis, its own store and runs folder, ``slots`` runs at a time."""
    base = json.loads(json.dumps(quickstart.get("base", {})))
    base.setdefault("tracking", {}).update({
        "uri": f"sqlite:///{work_dir / 'mlflow.db'}", "runs_dir": str(work_dir / "runs"), "experiment": GRID_NAME})
    if options.steps is not None:
        base.setdefault("train", {})["max_steps"] = options.steps
    if options.warm_start_steps is not None:
        base.setdefault("model", {})["warm_start_steps"] = options.warm_start_steps
    axes = {WARM_START_AXIS: list(options.warm_start_seeds), **quickstart.get("axes", {})}
    if options.seeds is not None:
        axes["train.seed"] = list(options.seeds)
    if options.algorithms is not None:
        axes["algorithm.name"] = list(options.algorithms)
    warm_start_seeds, slots = options.warm_start_seeds, options.slots
    return {"name": GRID_NAME, "description": f"{quickstart.get('name')} for warm-start seeds {warm_start_seeds}",
            "base": base, "axes": axes, "executor": {"kind": "local", "slots": slots}}


def run_grid(grid_path: Path) -> int:
    """``lgrpo-bench run GRID`` in a child process (its progress goes to our stdout); its exit status."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.call([sys.executable, "-m", "lgrpo_bench.cli", "run", str(grid_path)], env=env)


# ----------------------------------------------------------------------------------------------- reading


def read_store(work_dir: Path) -> tuple[list[dict], list[dict]]:
    """(runs, warm starts) of the store: per done train run its algorithm, seeds and the two metrics."""
    from lgrpo_bench.reports.loader import load_histories, load_runs
    from lgrpo_bench.reports.stats import learning_curve_mean
    from lgrpo_bench.tracking import open_client
    from lgrpo_bench.tracking import schema as t

    client = open_client(f"sqlite:///{work_dir / 'mlflow.db'}")
    data = load_runs(client, [GRID_NAME], grid=GRID_NAME)
    experiment = client.get_experiment_by_name(GRID_NAME)
    params = {run.info.run_id: run.data.params for run in client.search_runs(
        [experiment.experiment_id], f"tags.`{t.TAG_KIND}` = '{t.KIND_TRAIN}'", max_results=5000)}
    curves = load_histories(client, [r.mlflow_run_id for r in data.runs], ["train/heldout_acc"]).get("train/heldout_acc", {})
    from lgrpo_bench.runs.resolve import load_grid

    # the derived grid's current points only: runs of an earlier version of the grid (other seeds or algorithms,
    # kept in the store to be reused) would unbalance the pairs
    current = {point.run_id for point in load_grid(work_dir / "grid.yaml").points}
    runs = []
    for record in data.runs:
        if record.run_id not in current:
            continue
        final = record.eval_metrics.get("arith", {}).get("acc")
        steps, values = curves.get(record.mlflow_run_id, ([], []))
        runs.append({"algorithm": record.algorithm, "seed": int(record.seed),
                     "warm_start_seed": int(params[record.mlflow_run_id][WARM_START_AXIS]),
                     "final": final, "efficiency": learning_curve_mean(steps, values)})
    warm = {}  # two runs starting at once may both log the same warm start: one row per seed
    for run in client.search_runs([experiment.experiment_id], f"tags.`{t.TAG_KIND}` = '{t.KIND_WARM_START}'"):
        metrics = run.data.metrics
        warm.setdefault(int(metrics["warm_start/seed"]), {
            "warm_start_seed": int(metrics["warm_start/seed"]), "greedy_acc": metrics["warm_start/greedy_acc"],
            "mixed": metrics.get("warm_start/mixed_group_fraction"), "sft_steps": int(metrics.get("warm_start/sft_steps", 0)),
            "in_band": run.data.tags.get(t.TAG_WARM_START_IN_BAND, "?")})
    order = {name: i for i, name in enumerate(ALGORITHM_ORDER)}
    runs.sort(key=lambda r: (order.get(r["algorithm"], len(order)), r["algorithm"], r["warm_start_seed"], r["seed"]))
    return runs, [warm[seed] for seed in sorted(warm)]


# --------------------------------------------------------------------------------------------- statistics


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def per_algorithm(runs: list[dict], metric: str) -> dict[str, dict]:
    """Per algorithm: mean and std over runs, and std over warm starts of the per-warm-start means."""
    out = {}
    for algorithm in dict.fromkeys(r["algorithm"] for r in runs):
        mine = [r for r in runs if r["algorithm"] == algorithm and r[metric] is not None]
        by_warm = defaultdict(list)
        for r in mine:
            by_warm[r["warm_start_seed"]].append(r[metric])
        warm_means = [statistics.mean(v) for v in by_warm.values()]
        mean, std = _mean_std([r[metric] for r in mine])
        out[algorithm] = {"n": len(mine), "mean": mean, "std": std,
                          "std_over_warm_starts": _mean_std(warm_means)[1], "warm_starts": len(warm_means)}
    return out


def paired(runs: list[dict], metric: str, baseline: str) -> dict[str, dict]:
    """Per algorithm ≠ baseline: d over (warm start, seed) pairs; see the module docstring."""
    cell = {(r["algorithm"], r["warm_start_seed"], r["seed"]): r[metric] for r in runs if r[metric] is not None}
    out = {}
    for algorithm in dict.fromkeys(r["algorithm"] for r in runs):
        if algorithm == baseline:
            continue
        by_warm = defaultdict(list)
        for (name, warm, seed), value in cell.items():
            if name == algorithm and (baseline, warm, seed) in cell:
                by_warm[warm].append(value - cell[(baseline, warm, seed)])
        diffs = [d for values in by_warm.values() for d in values]
        if not diffs:
            continue
        mean, std = _mean_std(diffs)
        warm_means = {warm: statistics.mean(values) for warm, values in sorted(by_warm.items())}
        w_mean, w_std = _mean_std(list(warm_means.values()))
        t_value = w_mean / (w_std / math.sqrt(len(warm_means))) if len(warm_means) > 1 and w_std > 0 else float("nan")
        sign = (mean > 0) - (mean < 0)
        holds = sum(1 for d in warm_means.values() if sign and (d > 0) - (d < 0) == sign)
        out[algorithm] = {"n": len(diffs), "mean": mean, "std": std, "per_warm_start": warm_means, "t": t_value,
                          "sign_holds": holds, "warm_starts": len(warm_means)}
    return out


# ------------------------------------------------------------------------------------------------- printing


def _pts(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def render(runs: list[dict], warm: list[dict]) -> str:
    lines = ["### Warm starts (tiny-s)", "", "| warm-start seed | held-out greedy | mixed groups | SFT steps | in band |",
             "|---|---|---|---|---|"]
    for w in warm:
        mixed = "-" if w["mixed"] is None else f"{w['mixed']:.2f}"
        lines.append(f"| {w['warm_start_seed']} | {w['greedy_acc']:.3f} | {mixed} | {w['sft_steps']} | {w['in_band']} |")
    n_warm = len({r["warm_start_seed"] for r in runs})
    n_seed = len({r["seed"] for r in runs})
    for metric, title in METRICS.items():
        stats = per_algorithm(runs, metric)
        lines += ["", f"### {title}, points: mean ± std over {n_warm} warm starts × {n_seed} RL seeds", "",
                  "| algorithm | n | mean ± std (all runs) | std over warm starts |", "|---|---|---|---|"]
        for algorithm, s in stats.items():
            lines.append(f"| {algorithm} | {s['n']} | {_pts(s['mean'])} ± {_pts(s['std'])} | {_pts(s['std_over_warm_starts'])} |")
        for baseline in BASELINES:
            diffs = paired(runs, metric, baseline)
            if not diffs:
                continue
            lines += ["", f"Paired Δ vs {baseline} ({title}, points; per warm start: mean over RL seeds):", "",
                      "| algorithm | n pairs | Δ mean ± std | per warm start | t over warm starts | sign holds |",
                      "|---|---|---|---|---|---|"]
            for algorithm, d in diffs.items():
                per_warm = " ".join(f"{'+' if v >= 0 else ''}{_pts(v)}" for v in d["per_warm_start"].values())
                t_text = "nan" if math.isnan(d["t"]) else f"{d['t']:+.1f}"
                lines.append(f"| {algorithm} | {d['n']} | {'+' if d['mean'] >= 0 else ''}{_pts(d['mean'])} ± "
                             f"{_pts(d['std'])} | {per_warm} | {t_text} | {d['sign_holds']} of {d['warm_starts']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="store, runs and grid file (reused to resume)")
    parser.add_argument("--warm-start-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="RL seeds (default: the quickstart's)")
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the quickstart's)")
    parser.add_argument("--algorithms", nargs="+", default=None, help="default: the quickstart's")
    parser.add_argument("--warm-start-steps", type=int, default=None,
                        help="warm-start SFT step budget (default: the preset's; smaller only for a smoke test)")
    parser.add_argument("--slots", type=int, default=2, help="runs at a time")
    parser.add_argument("--quickstart", type=Path, default=QUICKSTART)
    parser.add_argument("--report-only", action="store_true", help="read the store, run nothing")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-run values here")
    args = parser.parse_args(argv)

    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    if not args.report_only:
        grid = derived_grid(yaml.safe_load(args.quickstart.read_text()), work_dir, args)
        grid_path = work_dir / "grid.yaml"
        grid_path.write_text(yaml.safe_dump(grid, sort_keys=False))
        status = run_grid(grid_path)
    runs, warm = read_store(work_dir)
    print(render(runs, warm))
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "warm_starts": warm}, indent=2))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
