"""How much of a training step goes to MLflow logging: per-metric calls vs. BatchedMetricLogger.

Simulates ``--steps`` training steps that each log ``--metrics`` metrics (schema names) to a real MLflow
store (a fresh SQLite file in a temp folder unless ``--uri`` is given), with no training work in between, and
times only the logging. Modes, each on its own run, interleaved over ``--repeats`` repetitions:

  per_metric   ``client.log_metric`` for every metric (one store transaction per metric)
  per_step     one ``client.log_batch`` per step (what transformers 5.24's stock MLflowCallback does)
  batched_sync BatchedMetricLogger(background=False)
  batched_bg   BatchedMetricLogger(background=True), the default used by MlflowStepCallback

Reported per step (medians over repetitions):

  blocking  wall seconds the training loop spent inside logging calls during the steps
  total     blocking + the final flush/close (everything durable in the store), divided by steps
  cpu       process CPU seconds, all threads, over steps + final flush: what logging costs a CPU-bound run
            whose cores are all busy (a background writer only hides its cost when a core is idle, e.g.
            while the GPU works)

Run: ``python benchmarks/logging_overhead.py`` (about two minutes on 2 cores, nearly all of it in per_metric).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from lgrpo_bench.tracking import TRAIN_METRICS, BatchedMetricLogger, get_or_create_experiment, open_client
from lgrpo_bench.training.trl_metrics import TRL_TO_SCHEMA

MODES = ("per_metric", "per_step", "batched_sync", "batched_bg")


def metric_names(count: int) -> list[str]:
    """``count`` distinct schema metric names (core train metrics first, then TRL-mapped ones, then fillers)."""
    names = list(dict.fromkeys([*TRAIN_METRICS, *TRL_TO_SCHEMA.values()]))
    names += [f"train/extra_{index}" for index in range(max(0, count - len(names)))]
    return names[:count]


def run_mode(client, experiment_id: str, mode: str, steps: int, names: list[str]) -> dict[str, float]:
    """Log ``steps`` x ``len(names)`` metrics in ``mode``; return seconds per step (blocking, total, cpu)."""
    from mlflow.entities import Metric

    run_id = client.create_run(experiment_id, run_name=mode).info.run_id
    logger = None
    if mode.startswith("batched"):
        logger = BatchedMetricLogger(client, run_id, background=(mode == "batched_bg"))
    blocking = 0.0
    cpu_start = time.process_time()
    for step in range(steps):
        values = {name: step + index / 100 for index, name in enumerate(names)}
        started = time.perf_counter()
        if mode == "per_metric":
            for name, value in values.items():
                client.log_metric(run_id, name, value, step=step)
        elif mode == "per_step":
            now_ms = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(name, value, now_ms, step) for name, value in values.items()])
        else:
            logger.log(values, step=step)
        blocking += time.perf_counter() - started
    started = time.perf_counter()
    if logger is not None:
        logger.close()
    final = time.perf_counter() - started
    cpu = time.process_time() - cpu_start
    client.set_terminated(run_id)
    stored = len(client.get_metric_history(run_id, names[-1]))
    if stored != steps:
        raise RuntimeError(f"{mode}: {stored} points of {names[-1]!r} stored, expected {steps}")
    return {"blocking": blocking / steps, "total": (blocking + final) / steps, "cpu": cpu / steps}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--metrics", type=int, default=37)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=0.16, help="training step time to compare against")
    parser.add_argument("--uri", default=None, help="tracking URI (default: a fresh SQLite file in a temp folder)")
    options = parser.parse_args(argv)

    folder = None
    uri = options.uri
    if uri is None:
        folder = Path(tempfile.mkdtemp(prefix="lgrpo-logging-bench-"))
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    try:
        client = open_client(uri)
        experiment_id = get_or_create_experiment(client, "logging-overhead-benchmark")
        names = metric_names(options.metrics)
        run_mode(client, experiment_id, "per_step", 2, names)  # warm-up: imports, connection pool, caches
        samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for repeat in range(options.repeats):
            order = MODES[repeat % len(MODES) :] + MODES[: repeat % len(MODES)]  # rotate to spread drift
            for mode in order:
                samples[mode].append(run_mode(client, experiment_id, mode, options.steps, names))
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    medians = {mode: {key: statistics.median(sample[key] for sample in samples[mode]) for key in ("blocking", "total", "cpu")} for mode in MODES}
    print(f"store: {uri if options.uri else 'fresh SQLite file'}; {options.steps} steps x {options.metrics} metrics; medians of {options.repeats} repeats")
    print(f"{'mode':<13} {'blocking s/step':>16} {'total s/step':>13} {'cpu s/step':>11} {'blocking % of ' + format(options.step_s, 'g') + ' s step':>26}")
    for mode in MODES:
        row = medians[mode]
        print(f"{mode:<13} {row['blocking']:>16.5f} {row['total']:>13.5f} {row['cpu']:>11.5f} {100 * row['blocking'] / options.step_s:>25.2f}%")
    per_metric, batched = medians["per_metric"], medians["batched_bg"]
    print()
    print(f"(a) per-metric log_metric: {per_metric['total']:.5f} s/step ({100 * per_metric['total'] / options.step_s:.1f} % of a {options.step_s:g} s step)")
    print(
        f"(b) BatchedMetricLogger (background): {batched['blocking']:.5f} s/step blocking "
        f"({100 * batched['blocking'] / options.step_s:.2f} % of a {options.step_s:g} s step), "
        f"{batched['total']:.5f} s/step with the final flush, {batched['cpu']:.5f} s/step CPU "
        f"({100 * batched['cpu'] / options.step_s:.1f} % of a step if the cores are saturated)"
    )
    print(f"ratio (a)/(b): {per_metric['total'] / batched['blocking']:.0f}x on blocking time, {per_metric['total'] / batched['total']:.1f}x on total time")
    sync = medians["batched_sync"]
    print(f"BatchedMetricLogger (sync): {sync['total']:.5f} s/step ({100 * sync['total'] / options.step_s:.2f} % of a step); ratio (a)/(sync) {per_metric['total'] / sync['total']:.1f}x")
    return medians


if __name__ == "__main__":
    main()
