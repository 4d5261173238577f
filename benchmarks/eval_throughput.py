"""Evaluation throughput of the HF backend on CPU: problems/s with automatic batching vs batch size 1.

Runs ``lgrpo_bench.evaluation.evaluate`` (lm-eval's HFLM, the arith benchmark, greedy, 40 new tokens) on a
tiny preset, nothing logged, and prints problems per second for each batch size and their ratio. The first
call (model build or cache hit, imports) is not timed; each setting is timed ``--repeats`` times and the
best run is reported (the machine is shared).

    python benchmarks/eval_throughput.py [--preset tiny-s] [--problems 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-s")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from lgrpo_bench.config.schema import EvalConfig
    from lgrpo_bench.evaluation import evaluate
    from lgrpo_bench.evaluation.backends import _cpu_batch_size
    from lgrpo_bench.models.loading import resolve_model

    path = resolve_model(args.preset).name_or_path
    evaluate(path, ["arith"], EvalConfig(backend="hf", limit=8), log=False)  # warm-up: imports, caches

    rates: dict[str, float] = {}
    accuracies: dict[str, float] = {}
    for label, batch_size in (("auto", "auto"), ("1", 1)):
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = evaluate(path, ["arith"], EvalConfig(backend="hf", batch_size=batch_size, limit=args.problems), log=False)
            best = min(best, time.perf_counter() - started)
        rates[label] = args.problems / best
        accuracies[label] = result.benchmarks["arith"].metrics["acc"]
        print(f"batch_size={label:4s}: {rates[label]:7.1f} problems/s (best of {args.repeats}, {args.problems} problems, "
              f"acc {accuracies[label]:.3f})")
    print(f"auto = batch size {_cpu_batch_size(0)} on CPU for a model under 20M parameters ({args.preset})")
    print(f"ratio auto / 1: {rates['auto'] / rates['1']:.1f}x")
    assert accuracies["auto"] == accuracies["1"], "batching changed greedy results"


if __name__ == "__main__":
    main()
