"""The design-space grid's table: one row per (surrogate, aggregation, group filter), mean ± std over seeds.

Reads the train runs of a grid from an MLflow store (after ``lgrpo-bench run experiments/design_space.yaml``) and
groups them by the axis tags (``lgrpo.algorithm.surrogate|aggregation|group_filter``), so configurations are never
pooled as seeds. Columns: greedy ``eval/arith/acc`` in points, sample efficiency (mean held-out accuracy over
training, points), final λ (``lambda`` aggregation), mean share of tokens whose ratio was clipped (clip and gspo:
sequences), mean generation rounds per generation step (``resample``), seconds of training per run.

    python benchmarks/design_space_table.py [--tracking-uri sqlite:///mlflow.db] [--grid design_space]
"""

from __future__ import annotations

import argparse
import statistics

from lgrpo_bench.tracking import open_client
from lgrpo_bench.tracking.schema import TAG_AGGREGATION, TAG_GROUP_FILTER, TAG_SURROGATE

SURROGATES = ("clip", "cispo", "sapo", "gspo")
AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "constant", "local_token_mean", "prompt_mean", "lambda")


def history(client, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--grid", default="design_space")
    parser.add_argument("--experiment", default="design_space")
    options = parser.parse_args()
    client = open_client(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.`lgrpo.kind` = 'train' and tags.`lgrpo.grid` = '{options.grid}'", max_results=10000)
    rows: dict[tuple[str, str, str], list] = {}
    for run in runs:
        tags = run.data.tags
        rows.setdefault((tags[TAG_SURROGATE], tags[TAG_AGGREGATION], tags[TAG_GROUP_FILTER]), []).append(run)
    print("| surrogate | aggregation | filter | n | arith acc | sample eff. | final λ | clipped | gen. rounds | s/run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(rows, key=lambda k: (SURROGATES.index(k[0]), AGGREGATIONS.index(k[1]), k[2])):
        group = rows[key]
        acc = [r.data.metrics.get("eval/arith/acc") for r in group]
        efficiency = [statistics.mean(h) if (h := history(client, r.info.run_id, "train/heldout_acc")) else None for r in group]
        lam = [r.data.metrics.get("train/lambda") for r in group]
        clip_name = "train/cispo_clip_fraction" if key[0] == "cispo" else "train/clip_fraction"
        clipped = [statistics.mean(h) if (h := history(client, r.info.run_id, clip_name)) else None for r in group]
        rounds = [statistics.mean(h) if (h := history(client, r.info.run_id, "train/generation_batches")) else None for r in group]
        seconds = [r.data.metrics.get("train/runtime_s") for r in group]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {len(group)} | {spread(acc, 100)} | {spread(efficiency, 100)} | "
              f"{spread(lam, digits=2) if key[1] == 'lambda' else '–'} | "
              f"{spread(clipped, 100, 2) + ' %' if key[0] != 'sapo' else '–'} | "
              f"{spread(rounds, digits=2) if key[2] == 'resample' else '1'} | {spread(seconds, digits=0)} |")


if __name__ == "__main__":
    main()
