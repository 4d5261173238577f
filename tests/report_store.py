"""Fill a real MLflow store with runs exactly as the schema (lgrpo_bench.tracking.schema) describes them.

Values are chosen by the tests so every number of a report can be computed by hand. Used by the report
tests, the notebook test and the report benchmarks (``report_speed.py``, ``cli_speed.py``, ``report_screenshot.py``:
:func:`quickstart_specs`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lgrpo_bench.tracking import schema as t


@dataclass
class RunSpec:
    """One train run to log. ``records``: ``{benchmark: [correct per problem]}`` (one sample each), or
    ``{benchmark: [[correct per sample] per problem]}`` (k samples each: set the identity's protocol and k)."""

    algorithm: str
    seed: int
    model_size: str = "tiny"
    model: str = "tiny-s"
    acc: dict[str, float] = field(default_factory=dict)
    records: dict[str, list[bool]] = field(default_factory=dict)
    identity: dict[str, dict[str, str]] = field(default_factory=dict)
    """Overrides of the eval identity tags per benchmark (e.g. ``{"b1": {"hash": "other"}}``)."""
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Step metrics, e.g. ``{"train/heldout_acc": [(0, 0.1), (10, 0.3)]}``."""
    state: str = t.STATE_DONE
    grid: str | None = None
    params: dict[str, str] = field(default_factory=lambda: {
        "train.prompts_per_step": "2", "train.num_generations": "4", "train.max_completion_length": "64", "algorithm.r": str(1 / 9),
    })
    eval_in_child: bool = False
    """Log the evaluation into a separate ``lgrpo.kind = eval`` run whose parent is the train run."""
    name: str | None = None
    """The lgrpo run id (tag ``lgrpo.run_id``); default ``<algorithm>-<model size>-s<seed>``."""
    tags: dict[str, str] = field(default_factory=dict)
    """More tags of the train run (provenance ``lgrpo.hardware``, ``lgrpo.warm_start.in_band``, ...)."""
    eval_values: dict[str, dict[str, float]] = field(default_factory=dict)
    """Eval metrics per benchmark that replace or join the defaults (``{"arith": {"mean_length": 6.9, "pass_1": 0.5}}``)."""

    @property
    def run_id(self) -> str:
        return self.name or f"{self.algorithm}-{self.model_size}-s{self.seed}"


def identity_tags(benchmark: str, n: int, overrides: dict[str, str] | None = None) -> dict[str, str]:
    values = {"name": benchmark, "version": "1", "n": str(n), "hash": f"hash-{benchmark}", "protocol": "greedy",
              "k": "1", "temperature": "0.0", "top_p": "1.0", "max_tokens": "64", "template": "boxed"}
    values.update(overrides or {})
    return {t.eval_tag(benchmark, name): value for name, value in values.items()}


def grid_specs(grid_file: Path, acc, *, model_size: str = "0.2M", curves=None) -> list[RunSpec]:
    """One :class:`RunSpec` per point of a real grid file, logged as training logs it: params = the flattened
    identity payload of the point's resolved config plus ``run_id``, tag ``lgrpo.run_id`` = the point's run id.

    ``acc(config)`` → ``{benchmark: accuracy}``; ``curves(config)`` → step metrics (optional).
    """
    from lgrpo_bench.algorithms.presets import algorithm_of
    from lgrpo_bench.config.loading import identity_payload
    from lgrpo_bench.reports.grids import load_grid_file

    expanded = load_grid_file(grid_file)
    specs = []
    for point in expanded.points:
        config = point.config
        params = t.flatten_params(identity_payload(config, algorithm_of(config).identity())) | {"run_id": point.run_id}
        specs.append(RunSpec(config.algorithm.name, config.train.seed, model_size, model=config.model.name, acc=acc(config),
                             curves=curves(config) if curves else {}, grid=expanded.grid.name, params=params, name=point.run_id))
    return specs


QUICKSTART_ACC = {"grpo": 0.605, "dapo": 0.867, "dr_grpo": 0.870, "lambda_grpo": 0.895, "dapo_full": 0.867}
"""Plausible final greedy accuracies per algorithm on tiny-s, as an early README reported them (its section "The
algorithms separate on tiny-s" is gone; the current quickstart's table: docs/measurements.md, "The quickstart")."""


def quickstart_specs(grid_file: Path, problems: int = 500, *, hardware: bool = True) -> list[RunSpec]:
    """The runs of a quickstart-like grid file (its points, run ids and params, :func:`grid_specs`) with plausible
    values: per-problem records of ``arith`` (``problems`` each) around :data:`QUICKSTART_ACC`, a held-out accuracy
    curve every 10 steps from the warm start's 0.43, per-step reward, completion length, entropy and (λ-GRPO) λ
    curves (λ rising at its rate limit, tagged so, as λ-GRPO's does in the quickstart: 0 → 1.84 linearly), and, with
    ``hardware``, the provenance tags of this machine's kind. Deterministic."""
    import numpy as np

    def acc(config) -> dict[str, float]:
        return {}

    specs = grid_specs(grid_file, acc)
    for index, spec in enumerate(specs):
        rng = np.random.default_rng(1000 + index)
        final = min(0.99, QUICKSTART_ACC.get(spec.algorithm, 0.7) + 0.02 * (spec.seed - 1) + float(rng.normal(0, 0.01)))
        spec.records = {"arith": [bool(x) for x in rng.random(problems) < final]}
        steps = np.arange(1, 41)
        progress = 1 - np.exp(-steps / 15)
        spec.curves = {
            t.TRAIN_REWARD_MEAN: [(int(s), float(0.4 + (final - 0.4) * p + rng.normal(0, 0.03))) for s, p in zip(steps, progress)],
            t.TRAIN_COMPLETION_LENGTH_MEAN: [(int(s), float(12 + 10 * p * final + rng.normal(0, 0.5))) for s, p in zip(steps, progress)],
            t.TRAIN_ENTROPY: [(int(s), float(0.9 - 0.4 * p + rng.normal(0, 0.02))) for s, p in zip(steps, progress)],
            t.TRAIN_HELDOUT_ACC: [(s, float(0.43 + (final - 0.43) * (1 - np.exp(-s / 15)) / (1 - np.exp(-40 / 15))))
                                  for s in (0, 10, 20, 30, 40)],
        }
        if spec.algorithm == "lambda_grpo":
            spec.curves[t.TRAIN_LAMBDA] = [(int(s), float(0.046 * s)) for s in steps]
            spec.tags[t.TAG_LAMBDA_RATE_LIMITED_FRAC] = "0.95"
        if hardware:
            spec.tags |= {t.TAG_HARDWARE: "cpu:AMD EPYC 7B13:AVX2", t.TAG_HOST_CPU: "AMD EPYC 7B13", t.TAG_HOST_CPU_CAPABILITY: "AVX2",
                         t.TAG_HOST_TORCH_THREADS: "1"}
    return specs


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _batch(client, run_id: str, metrics=(), params=None, tags=None) -> None:
    """``log_batch`` calls within MLflow's limits (1000 metrics, 100 params, 100 tags, 1000 entities per call)."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    metric_objs = [Metric(key, float(value), now, int(step)) for key, value, step in metrics]
    param_objs = [Param(k, v) for k, v in (params or {}).items()]
    tag_objs = [RunTag(k, v) for k, v in (tags or {}).items()]
    while metric_objs or param_objs or tag_objs:
        batch_tags, tag_objs = tag_objs[:100], tag_objs[100:]
        batch_params, param_objs = param_objs[:100], param_objs[100:]
        room = 1000 - len(batch_tags) - len(batch_params)
        batch_metrics, metric_objs = metric_objs[:room], metric_objs[room:]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)


def log_grid_parent(client, experiment_id: str, grid: str) -> str:
    run = client.create_run(experiment_id, tags={t.TAG_KIND: t.KIND_GRID, t.TAG_GRID: grid, t.TAG_STATE: t.STATE_DONE}, run_name=grid)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _eval_batch(spec: RunSpec) -> tuple[list, dict[str, str]]:
    """Metrics ``eval/<benchmark>/{acc,n,acc_stderr,mean_length}`` and identity tags of ``spec``."""
    metrics, tags = [], {}
    for benchmark in sorted(set(spec.acc) | set(spec.records)):
        records = spec.records.get(benchmark)
        acc = spec.acc[benchmark] if benchmark in spec.acc else sum(
            sum(c) / len(c) if isinstance(c, list) else c for c in records) / len(records)
        n = len(records) if records is not None else 100
        values = {"acc": acc, "n": n, "acc_stderr": 0.01, "mean_length": 20.0} | spec.eval_values.get(benchmark, {})
        metrics += [(t.eval_metric(benchmark, name), value, 0) for name, value in values.items()]
        tags.update(identity_tags(benchmark, n, spec.identity.get(benchmark)))
    return metrics, tags


def _log_records(client, run_id: str, spec: RunSpec) -> None:
    """One ``eval/<benchmark>/problems.jsonl`` artifact per benchmark with records (fields of EVAL_RECORD_FIELDS)."""
    for benchmark, correct in spec.records.items():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / t.EVAL_RECORDS_FILENAME
            lines = [json.dumps({"problem_id": f"p{i}", "sample": j, "completion": f"\\boxed{{{int(c)}}}", "extracted": str(int(c)),
                                 "gold": "1", "correct": bool(c), "length": 10})
                     for i, samples in enumerate(correct) for j, c in enumerate(samples if isinstance(samples, list) else [samples])]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            client.log_artifact(run_id, str(path), t.eval_records_artifact_dir(benchmark))


def log_run(client, experiment_id: str, spec: RunSpec, parent_run_id: str | None = None) -> str:
    """Create the train run of ``spec`` (and its eval child when asked); return the train run's MLflow id."""
    tags = {t.TAG_ALGORITHM: spec.algorithm, t.TAG_MODEL: spec.model, t.TAG_MODEL_SIZE: spec.model_size,
            t.TAG_SEED: str(spec.seed), t.TAG_TASK: "arith", t.TAG_RUN_ID: spec.run_id, t.TAG_KIND: t.KIND_TRAIN,
            t.TAG_STATE: spec.state, t.TAG_GIT_COMMIT: t.GIT_COMMIT_UNKNOWN}
    tags.update(spec.tags)
    if spec.grid:
        tags[t.TAG_GRID] = spec.grid
    if parent_run_id:
        tags[t.TAG_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, run_name=spec.run_id)
    run_id = run.info.run_id
    metrics = [(key, value, step) for key, points in spec.curves.items() for step, value in points]
    eval_metrics, eval_tags = _eval_batch(spec)
    if spec.eval_in_child and eval_metrics:
        child = client.create_run(experiment_id, run_name=f"eval-{spec.run_id}", tags={
            t.TAG_KIND: t.KIND_EVAL, t.TAG_PARENT_RUN_ID: run_id, t.TAG_STATE: t.STATE_DONE, t.TAG_RUN_ID: spec.run_id})
        _batch(client, child.info.run_id, eval_metrics, tags=eval_tags)
        _log_records(client, child.info.run_id, spec)
        client.set_terminated(child.info.run_id)
    else:
        metrics += eval_metrics
        tags.update(eval_tags)
        _log_records(client, run_id, spec)
    _batch(client, run_id, metrics, params=spec.params, tags=tags)
    client.set_terminated(run_id)
    return run_id


_TEMPLATE: list[Path] = []


def empty_store(folder: Path) -> str:
    """``folder/mlflow.db``, a copy of an empty, migrated store (creating MLflow's tables takes ~10 s, copying ms)."""
    from lgrpo_bench.tracking import open_client

    if not _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="lgrpo-template-store-")) / "mlflow.db"
        open_client(f"sqlite:///{template}")
        _TEMPLATE.append(template)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE[0], folder / "mlflow.db")
    return store_uri(folder)


def build_store(folder: Path, specs: list[RunSpec], experiment: str = "paper", grid: str | None = None):
    """A store at ``folder/mlflow.db`` with ``specs`` logged in ``experiment`` (artifacts under ``folder/artifacts``,
    and a grid parent run when ``grid`` is given). Returns (uri, client, {spec.run_id: MLflow run id}, grid parent
    run id or None)."""
    from lgrpo_bench.tracking import get_or_create_experiment, open_client

    uri = empty_store(folder)
    client = open_client(uri)
    experiment_id = get_or_create_experiment(client, experiment, artifact_location=(folder / "artifacts").as_uri())
    parent = log_grid_parent(client, experiment_id, grid) if grid else None
    ids = {}
    for spec in specs:
        if grid and spec.grid is None:
            spec.grid = grid
        ids[spec.run_id] = log_run(client, experiment_id, spec, parent)
    return uri, client, ids, parent
