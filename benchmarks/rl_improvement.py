"""Does RL improve held-out arith accuracy over the warm start, and do the algorithms separate? (issue #3)

Trains a tiny preset (cached warm start) with each algorithm and seed through ``lgrpo_bench.training.train``
(the same code path as ``lgrpo-bench train``) into a throw-away MLflow store, and prints Markdown tables:

- per algorithm, mean ± std over seeds: greedy held-out accuracy at step 0 (the warm start) and at the
  end, its mean over the held-out evaluations of the run (sample efficiency: the area under the held-out
  curve, step 0 included), the final greedy held-out completion length, the final mean length of the
  training samples, and λ at the end;
- per algorithm, the paired difference to a baseline algorithm (default ``dapo``), seed by seed
  (d_s = metric(algorithm, seed s) − metric(baseline, seed s)), as mean ± std over seeds and
  t = mean / (std / √n). |t| above ~4.3 (n = 3) or ~2.8 (n = 5) is a two-sided 95 % paired t-test.

All RL seeds start from the same warm start (``model.warm_start_seed``, default 0), and seed s gives every
algorithm the same prompt order (``train.seed`` also seeds the data order), which is what makes the
pairing meaningful.

Levers (each a run-config field; ``--set`` takes any other ``key=value`` of the run config):

    --lr 3e-5             train.learning_rate
    --r 0.3               algorithm.r (λ-GRPO; must stay < 1/sqrt(G-1), 0.378 for G = 8)
    --lambda-lr 0.05      algorithm.lambda_lr
    --lambda-optimizers adam sgd
                          one row per λ optimizer for λ-using algorithms (``lambda_grpo`` = adam,
                          ``lambda_grpo[sgd]``); SGD's learning rate is --sgd-lambda-lr (its step is lr × gradient,
                          so it needs a larger lr than Adam, whose step is ≈ lr whatever the gradient)
    --worked-fraction 0.2 warm-start a tiny-s variant whose SFT mix is 20 % worked (instead of the
                          preset's 30 %); built once through the public tiny-model API into its own cache
                          folder (``--variant-cache-dir``), then trained as a local model folder

Example:

    OMP_NUM_THREADS=1 python benchmarks/rl_improvement.py --seeds 0 1 2 --steps 40 --lr 3e-5 --r 0.3 \\
        --lambda-lr 0.05 --heldout-every 5 --json /tmp/rl.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from lgrpo_bench.algorithms.presets import PRESETS as ALGORITHMS  # noqa: E402
from lgrpo_bench.config import (  # noqa: E402
    ConfigError,
    TrainConfig,
    known_keys,
    parse_override,
    set_dotted,
)
from lgrpo_bench.models.tiny import TINY_PRESETS, build_tiny, default_cache_dir  # noqa: E402
from lgrpo_bench.tracking import open_client  # noqa: E402
from lgrpo_bench.runs.resolve import build_run as build_run_config  # noqa: E402
from lgrpo_bench.runs.resolve import prepare_run  # noqa: E402
from lgrpo_bench.training.run import train as train_run  # noqa: E402


def train(config):
    """Train one run as the lifecycle does (resolved config, run id computed once)."""
    prepared = prepare_run(config)
    return train_run(prepared.config, prepared.run_id)

METRICS = ("start", "final", "mean", "heldout_length", "sample_length", "lambda", "rate_limited")
"""Per-run numbers: held-out greedy accuracy at step 0 / at the end / averaged over the evaluations,
final held-out greedy completion length, final mean training-sample length, final λ (None if not learned), share of
steps in which λ moved at its optimizer's rate limit (tag lgrpo.lambda.rate_limited_frac)."""

LABELS = {
    "start": "held-out acc, step 0", "final": "final acc", "mean": "mean acc over training",
    "heldout_length": "final greedy length", "sample_length": "final sample length", "lambda": "final λ",
    "rate_limited": "λ steps at rate limit",
}
PAIRED = ("final", "mean", "heldout_length")


def history(client, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


def warm_start_variant(preset: str, worked_fraction: float, seed: int, cache_dir: Path) -> Path:
    """Build (or reuse) ``preset`` with another SFT worked/direct mix; returns the model folder.

    The variant keeps the preset's name, so its cache key differs from the preset's only by the recipe
    digest; a separate cache folder keeps it visibly apart from the shipped presets.
    """
    spec = dataclasses.replace(TINY_PRESETS[preset], worked_fraction=worked_fraction)
    started = time.perf_counter()
    build = build_tiny(spec, cache_dir=cache_dir, seed=seed)
    m = build.metrics
    print(f"warm start {preset} worked_fraction={worked_fraction} seed {seed}: {build.path} "
          f"({'cached' if build.cached else f'built in {time.perf_counter() - started:.0f} s'}); greedy "
          f"{m['greedy_acc']:.3f} (2-digit {m['greedy_acc_2digit']:.3f}, 3-digit {m['greedy_acc_3digit']:.3f}, "
          f"worked {m['worked_share_greedy']:.3f}); sampled {m['sampled_acc_t1']:.3f} (worked share "
          f"{m['worked_share_sampled']:.3f}, worked acc {m['sampled_acc_worked']}, direct acc "
          f"{m['sampled_acc_direct']}); mixed groups {m['mixed_group_fraction']:.3f}", flush=True)
    return build.path


def run_config_data(options, model_name: str, algorithm: str, seed: int, uri: str, runs_dir: Path,
                    lambda_optimizer: str = "adam") -> dict:
    algorithm_section = {"name": algorithm, "lambda_optimizer": lambda_optimizer}
    if options.r is not None:
        algorithm_section["r"] = options.r
    lambda_lr = options.sgd_lambda_lr if lambda_optimizer == "sgd" else options.lambda_lr
    if lambda_lr is not None:
        algorithm_section["lambda_lr"] = lambda_lr
    train_section = {"seed": seed, "max_steps": options.steps, "heldout_every": options.heldout_every,
                     "heldout_size": options.heldout_size, "save_every": 0, "samples_every": 0}
    if options.lr is not None:
        train_section["learning_rate"] = options.lr
    data = {
        "model": {"name": model_name},
        "algorithm": algorithm_section,
        "train": train_section,
        "tracking": {"uri": uri, "experiment": "rl-improvement", "runs_dir": str(runs_dir)},
    }
    for key, value in options.overrides:
        set_dotted(data, key, value)
    return data


def one_run(client_box: list, config, uri: str) -> dict:
    started = time.perf_counter()
    result = train(config)
    if not client_box:
        client_box.append(open_client(uri))
    client = client_box[0]
    heldout = history(client, result.mlflow_run_id, "train/heldout_acc")
    heldout_lengths = history(client, result.mlflow_run_id, "train/heldout_length")
    lengths = history(client, result.mlflow_run_id, "train/completion_length_mean")
    lam = history(client, result.mlflow_run_id, "train/lambda")
    rate_limited = client.get_run(result.mlflow_run_id).data.tags.get("lgrpo.lambda.rate_limited_frac")
    return {
        "start": heldout[0], "final": heldout[-1], "mean": statistics.mean(heldout),
        "heldout_length": heldout_lengths[-1] if heldout_lengths else None,
        "sample_length": lengths[-1] if lengths else None,
        "lambda": lam[-1] if lam else None,
        "rate_limited": float(rate_limited) if rate_limited is not None else None,
        "heldout_curve": heldout, "heldout_length_curve": heldout_lengths, "lambda_curve": lam,
        "seconds": time.perf_counter() - started,
    }


def mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def paired(values, baseline) -> str:
    """``mean ± std (t)`` of the per-seed differences ``values[s] − baseline[s]``."""
    diffs = [v - b for v, b in zip(values, baseline) if v is not None and b is not None]
    if len(diffs) < 2:
        return f"{diffs[0]:+.3f}" if diffs else "–"
    mean, std = statistics.mean(diffs), statistics.stdev(diffs)
    t = mean / (std / math.sqrt(len(diffs))) if std > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    return f"{mean:+.3f} ± {std:.3f} (t {t:+.1f})"


def print_tables(results: dict[str, list[dict]], options, title: str) -> None:
    print(f"\n{title}\n")
    print("| algorithm | " + " | ".join(LABELS[m] for m in METRICS) + " | s/run |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for algorithm, runs in results.items():
        cells = [mean_std([run[m] for run in runs]) for m in METRICS]
        print(f"| {algorithm} | " + " | ".join(cells) + f" | {statistics.mean(run['seconds'] for run in runs):.0f} |")
    baseline = results.get(options.baseline)
    if baseline is None:
        return
    print(f"\nPaired difference to {options.baseline}, seed by seed (mean ± std over seeds, t = mean/(std/√n))\n")
    print("| algorithm | " + " | ".join(LABELS[m] for m in PAIRED) + " |")
    print("|---|" + "---|" * len(PAIRED))
    for algorithm, runs in results.items():
        if algorithm == options.baseline:
            continue
        cells = [paired([run[m] for run in runs], [run[m] for run in baseline]) for m in PAIRED]
        print(f"| {algorithm} | " + " | ".join(cells) + " |")


def parse_overrides(texts: list[str]) -> list[tuple[str, object]]:
    pairs = []
    keys = known_keys()
    for text in texts:
        key, value = parse_override(text)
        if key not in keys:
            raise ConfigError(f"--set {key}: unknown key (see `lgrpo-bench config schema`)")
        pairs.append((key, value))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="tiny-s")
    parser.add_argument("--heldout-size", type=int, default=500)
    parser.add_argument("--heldout-every", type=int, default=10, help="held-out evaluation every K steps")
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"],
                        choices=list(ALGORITHMS), help="presets to train (lgrpo-bench algorithms lists them)")
    parser.add_argument("--baseline", default="dapo", help="algorithm the paired differences are taken against")
    parser.add_argument("--lr", type=float, default=None, help="train.learning_rate (default: the config's)")
    parser.add_argument("--r", type=float, default=0.3, help="algorithm.r of λ-GRPO")
    parser.add_argument("--lambda-lr", type=float, default=0.05, help="algorithm.lambda_lr of λ-GRPO (Adam)")
    parser.add_argument("--lambda-optimizers", nargs="+", default=["adam"], choices=["adam", "sgd"],
                        help="λ optimizers to run for λ-using algorithms (one row each)")
    parser.add_argument("--sgd-lambda-lr", type=float, default=1.0, help="algorithm.lambda_lr when λ's optimizer is sgd")
    parser.add_argument("--worked-fraction", type=float, default=None,
                        help="warm-start a variant of --model (a tiny preset) with this SFT worked share")
    parser.add_argument("--warm-start-seed", type=int, default=0, help="seed of the warm start (variant builds)")
    parser.add_argument("--variant-cache-dir", type=Path, default=None,
                        help="cache of variant warm starts (default: <tiny cache>/variants)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any other run-config key, e.g. --set train.temperature=0.8 (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's numbers to this file")
    options = parser.parse_args()
    try:
        options.overrides = parse_overrides(options.overrides)
    except ConfigError as error:
        parser.exit(2, f"{error}\n")

    model_name = options.model
    if options.worked_fraction is not None:
        if options.model not in TINY_PRESETS:
            parser.exit(2, f"--worked-fraction needs a tiny preset as --model, got {options.model!r}\n")
        cache = options.variant_cache_dir or default_cache_dir() / "variants"
        model_name = str(warm_start_variant(options.model, options.worked_fraction, options.warm_start_seed, cache))

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client_box: list = []
        rows = [(algorithm, optimizer) for algorithm in options.algorithms
                for optimizer in (options.lambda_optimizers if ALGORITHMS[algorithm].uses_lambda else ["adam"])]
        for algorithm, optimizer in rows:
            label = algorithm if optimizer == "adam" else f"{algorithm}[{optimizer}]"
            results[label] = []
            for seed in options.seeds:
                data = run_config_data(options, model_name, algorithm, seed, uri, Path(tmp) / "runs", optimizer)
                try:
                    config = build_run_config(data, "rl_improvement")
                except ConfigError as error:
                    parser.exit(2, f"{error}\n")
                run = one_run(client_box, config, uri)
                results[label].append(run)
                curve = " ".join(f"{a:.3f}" for a in run["heldout_curve"])
                lam = f", λ {run['lambda']:.2f} (rate-limited {run['rate_limited']:.2f})" if run["lambda"] is not None else ""
                print(f"{label} seed {seed}: held-out [{curve}], mean {run['mean']:.3f}, greedy length "
                      f"{run['heldout_length']:.1f}, sample length {run['sample_length']:.1f}{lam}, "
                      f"{run['seconds']:.1f} s", flush=True)

    described = f"{options.model}" + (f" (worked_fraction {options.worked_fraction})" if options.worked_fraction is not None else "")
    lr = options.lr if options.lr is not None else TrainConfig.model_fields["learning_rate"].default
    levers = f"lr {lr:g}, r {options.r}, λ lr {options.lambda_lr} (adam)" + (
        f" / {options.sgd_lambda_lr} (sgd)" if "sgd" in options.lambda_optimizers else "") + "".join(
        f", {k}={v}" for k, v in options.overrides)
    title = (f"{described}, {options.steps} steps, {levers}, seeds {options.seeds}; greedy accuracy on "
             f"{options.heldout_size} held-out problems every {options.heldout_every} steps (mean ± std over seeds)")
    print_tables(results, options, title)
    if options.json:
        options.json.write_text(json.dumps({"title": title, "argv": vars(options) | {"json": str(options.json),
                                            "variant_cache_dir": str(options.variant_cache_dir), "overrides": options.overrides},
                                            "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
