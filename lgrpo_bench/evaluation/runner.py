r"""``evaluate(...)``: a model on benchmarks through lm-eval, results logged to MLflow, idempotent.

Contract:

* every benchmark runs as an lm-eval task of the pack (:data:`~lgrpo_bench.evaluation.benchmarks.TASK_DIR`)
  through ``lm_eval.simple_evaluate`` with a real lm-eval model: ``HFLM`` (``hf``), lm-eval's ``VLLM``
  (``vllm``) or an oracle (:mod:`lgrpo_bench.evaluation.oracle`);
* a benchmark's protocol (:class:`BenchmarkSettings`) = the task file's defaults, overridden per benchmark by
  ``EvalConfig.overrides``; the prompt template is the run's training template for math benchmarks
  (``qwen_math`` when there is no run or it trained on arith) and ``arith`` for arith;
* results per benchmark: metrics ``acc``, ``acc_stderr``, ``pass@<k'>`` (avg@k protocols, k' in
  :func:`~lgrpo_bench.evaluation.metrics.reported_ks`), ``mean_length`` (completion tokens by the model's
  tokenizer; characters for oracles), ``n``; the identity tags of
  :data:`~lgrpo_bench.tracking.schema.EVAL_IDENTITY_FIELDS`; one record per (problem, sample)
  (:data:`~lgrpo_bench.tracking.schema.EVAL_RECORD_FIELDS`);
* MLflow: metrics ``eval/<benchmark>/<metric>``, tags ``lgrpo.eval.<benchmark>.<field>`` and the artifact
  ``eval/<benchmark>/problems.jsonl``, into the given run (a training run) or into an eval run
  (``lgrpo.kind = eval``) found again by its ``lgrpo.model`` tag. Identity tags are written last, so a
  benchmark counts as logged only when everything of it is;
* evaluating a trained run (its final model, into its MLflow run, then ``done``) is the run lifecycle's
  (:func:`lgrpo_bench.runs.lifecycle.evaluate_step`);
* a benchmark already logged in the target run with the same identity is skipped (its logged metrics are
  returned, nothing is logged twice); with a different identity :class:`EvalIdentityConflict` is raised
  unless ``force=True``, which evaluates again and replaces the metrics, tags and records.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lgrpo_bench.evaluation.backends import build_model, resolve_backend, run_lm_eval
from lgrpo_bench.evaluation.benchmarks import get_benchmark, load_problems
from lgrpo_bench.evaluation.protocol import identity_of, records_and_metrics, resolve_settings

if TYPE_CHECKING:
    from lgrpo_bench.config.schema import EvalConfig

__all__ = [
    "BenchmarkResult",
    "EvalIdentityConflict",
    "EvaluationResult",
    "RunNotTrained",
    "evaluate",
    "logged_benchmarks",
]

LOG = logging.getLogger("lgrpo_bench.eval")
_PASS_AT_K_STORED = re.compile(r"^pass_(\d+)$")
"""MLflow rejects ``@`` in names: ``pass@8`` is stored as ``eval/<benchmark>/pass_8`` and read back as ``pass@8``."""


class EvalIdentityConflict(RuntimeError):
    """The target run holds this benchmark evaluated with different settings or data."""


class RunNotTrained(RuntimeError):
    """The training run to evaluate does not exist or has not finished training."""


@dataclass
class BenchmarkResult:
    """One benchmark's outcome: ``metrics`` by name, ``identity`` by field, per-sample ``records``."""

    benchmark: str
    metrics: dict[str, float]
    identity: dict[str, str]
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False
    seconds: float | None = None
    """Wall time of the lm-eval call that generated and scored it (benchmarks evaluated together share it)."""


@dataclass
class EvaluationResult:
    """All benchmarks of one ``evaluate`` call and where they were logged."""

    model: str
    backend: str
    mlflow_run_id: str | None
    benchmarks: dict[str, BenchmarkResult]
    seconds: float = 0.0

    def metrics(self) -> dict[str, dict[str, float]]:
        """``{benchmark: {metric: value}}`` (the ``--json`` output)."""
        return {name: dict(result.metrics) for name, result in self.benchmarks.items()}


def _logged_identity(run, benchmark: str) -> dict[str, str] | None:
    from lgrpo_bench.tracking.schema import EVAL_IDENTITY_FIELDS, eval_tag

    tags = run.data.tags
    if eval_tag(benchmark, "hash") not in tags:
        return None
    return {name: tags.get(eval_tag(benchmark, name), "") for name in EVAL_IDENTITY_FIELDS}


def _logged_metrics(run, benchmark: str) -> dict[str, float]:
    from lgrpo_bench.tracking.schema import EVAL_SECONDS, eval_metric, parse_eval_metric

    prefix = eval_metric(benchmark, "x")[:-1]
    return {_PASS_AT_K_STORED.sub(r"pass@\1", parse_eval_metric(name)[1]): value
            for name, value in run.data.metrics.items() if name.startswith(prefix) and parse_eval_metric(name)[1] != EVAL_SECONDS}


# ---------------------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------------------
def _log_benchmark(client, mlflow_run_id: str, result: BenchmarkResult) -> None:
    from mlflow.entities import Metric, RunTag

    from lgrpo_bench.tracking.schema import EVAL_RECORDS_FILENAME, EVAL_SECONDS, eval_metric, eval_records_artifact_dir, eval_tag

    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in result.records)
    client.log_text(mlflow_run_id, lines, f"{eval_records_artifact_dir(result.benchmark)}/{EVAL_RECORDS_FILENAME}")
    now = int(time.time() * 1000)
    metrics = [Metric(eval_metric(result.benchmark, name), float(value), now, 0) for name, value in result.metrics.items()]
    if result.seconds is not None:
        metrics.append(Metric(eval_metric(result.benchmark, EVAL_SECONDS), float(result.seconds), now, 0))
    client.log_batch(mlflow_run_id, metrics=metrics)
    tags = [RunTag(eval_tag(result.benchmark, name), value) for name, value in result.identity.items()]
    client.log_batch(mlflow_run_id, tags=tags)  # last: the benchmark counts as logged once these exist


def _eval_run(client, experiment_id: str, model_key: str) -> str:
    from lgrpo_bench import tracking as t
    from lgrpo_bench.tracking import record
    from lgrpo_bench.tracking.reader import open_reader

    with open_reader(client=client) as reader:
        existing = reader.runs([experiment_id], tag_equals={t.TAG_MODEL: model_key, t.TAG_KIND: t.KIND_EVAL}, metrics=False)
    if existing:
        return existing[0].info.run_id
    return record.create_run(client, experiment_id, run_name=f"eval-{Path(model_key).name}", tags={
        t.TAG_KIND: t.KIND_EVAL, t.TAG_MODEL: model_key, t.TAG_VERSIONS: t.versions_tag_value()})


def _log_provenance(client, mlflow_run_id: str, tags: dict[str, str], backend: str) -> None:
    """Where this evaluation computed: the provenance tags on an eval run; ``lgrpo.eval_hardware`` on a train run
    (whose own provenance tags say where it was trained)."""
    from mlflow.entities import RunTag

    from lgrpo_bench import tracking as t
    from lgrpo_bench.tracking.provenance import provenance_tags

    found = provenance_tags(use_cuda=None if backend != "oracle" else False)
    if tags.get(t.TAG_KIND) == t.KIND_EVAL:
        client.log_batch(mlflow_run_id, tags=[RunTag(k, v) for k, v in found.items()])
    else:
        client.set_tag(mlflow_run_id, t.TAG_EVAL_HARDWARE, found[t.TAG_HARDWARE])


def _model_key(spec: str) -> str:
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.is_dir() else spec


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------
def evaluate(
    model: str,
    benchmarks: Sequence[str],
    eval_config: EvalConfig | None = None,
    *,
    run_template: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "lgrpo-bench",
    mlflow_run_id: str | None = None,
    log: bool = True,
    force: bool = False,
    dtype: str = "auto",
    cache_dir: str | None = None,
    emit: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` on ``benchmarks`` (see the module docstring).

    ``model``: a tiny preset, a Qwen preset, a local folder, a hub id, or ``oracle:gold`` / ``oracle:wrong``.
    ``eval_config`` supplies data folder, backend, batch size, seed, limit and per-benchmark overrides (its
    own ``benchmarks`` list is ignored here). ``run_template``: the training template of the run the model
    comes from. ``mlflow_run_id``: log into this run (a training run); otherwise into the eval run of this
    model in ``experiment`` (created when missing). ``log=False`` logs nothing and skips nothing.
    Raises ``KeyError`` (unknown benchmark), :class:`~lgrpo_bench.evaluation.benchmarks.BenchmarkDataError`
    (missing data), :class:`BackendUnavailable`, :class:`EvalIdentityConflict`, before any generation.
    """
    from lgrpo_bench.config.schema import EvalConfig

    started = time.perf_counter()
    emit = emit or (lambda line: None)
    eval_config = eval_config or EvalConfig()
    names = list(dict.fromkeys(benchmarks))
    if not names:
        raise ValueError("no benchmarks to evaluate")
    plan = {name: resolve_settings(name, eval_config, run_template) for name in names}
    problems = {name: load_problems(name, eval_config.data_dir) for name in names}
    if eval_config.limit is not None:
        problems = {name: items[: eval_config.limit] for name, items in problems.items()}
    identities = {name: identity_of(plan[name], problems[name]) for name in names}

    from lgrpo_bench.evaluation.oracle import ORACLES

    backend = "oracle" if model in ORACLES else resolve_backend(eval_config.backend)
    client = None
    results: dict[str, BenchmarkResult] = {}
    if log:
        from lgrpo_bench import tracking as t

        client = t.open_client(tracking_uri)
        if mlflow_run_id is None:
            experiment_id = t.get_or_create_experiment(client, experiment)
            mlflow_run_id = _eval_run(client, experiment_id, _model_key(model))
        run = client.get_run(mlflow_run_id)
        for name in names:
            logged = _logged_identity(run, name)
            if logged is None or force:
                continue
            if logged == identities[name]:
                results[name] = BenchmarkResult(name, _logged_metrics(run, name), logged, skipped=True)
                emit(f"{name}: already logged in MLflow run {mlflow_run_id} with the same identity, skipped")
                continue
            changed = ", ".join(f"{key} {logged[key]!r} -> {value!r}" for key, value in identities[name].items()
                                if logged.get(key) != value)
            raise EvalIdentityConflict(
                f"MLflow run {mlflow_run_id} already holds {name} evaluated differently ({changed}); "
                "pass --force to evaluate again and replace it, or log into another run")

    todo = {name: plan[name] for name in names if name not in results}
    if todo:
        model_path = model
        if backend != "oracle":
            from lgrpo_bench.models.loading import resolve_model

            model_path = resolve_model(model, cache_dir=cache_dir).name_or_path
        emit(f"evaluating {model} ({backend}) on {', '.join(f'{n} [{s.protocol}]' for n, s in todo.items())}")
        built = build_model(model_path, backend, eval_config, dtype)
        max_length = getattr(built.lm, "max_length", None)
        for name, settings in todo.items():
            if isinstance(max_length, int) and settings.max_tokens >= max_length:
                raise ValueError(f"{name}: max_tokens={settings.max_tokens} does not fit the model's context of "
                                 f"{max_length} tokens; set eval.overrides.{name}.max_tokens lower, e.g. "
                                 f"--set eval.overrides.{name}.max_tokens={max(max_length // 2, 1)} on the eval "
                                 "command line (or in the run config)")
        data_dir = str(eval_config.data_dir) if eval_config.data_dir else None
        tokenizer = model_path if backend != "oracle" else None
        generation_started = time.perf_counter()
        output = run_lm_eval(built, todo, data_dir=data_dir, tokenizer=tokenizer, limit=eval_config.limit,
                              seed=eval_config.seed)
        generation_s = time.perf_counter() - generation_started
        for name, settings in todo.items():
            task_name = get_benchmark(name).task_name
            records, metrics = records_and_metrics(output["samples"][task_name], settings, built.count_tokens)
            harness_acc = output["results"][task_name]["acc,score"]
            if not math.isclose(harness_acc, metrics["acc"], rel_tol=1e-9, abs_tol=1e-12):
                raise RuntimeError(f"{name}: lm-eval's acc {harness_acc} differs from the records' {metrics['acc']}")
            result = BenchmarkResult(name, metrics, identities[name], records, seconds=generation_s)
            if client is not None:
                _log_benchmark(client, mlflow_run_id, result)
            results[name] = result
            emit(f"{name}: acc {metrics['acc']:.4f} ± {metrics['acc_stderr']:.4f} over {int(metrics['n'])} problems")
    if client is not None:
        from lgrpo_bench import tracking as t
        from lgrpo_bench.tracking import record

        tags = client.get_run(mlflow_run_id).data.tags
        if todo:
            _log_provenance(client, mlflow_run_id, tags, backend)
        if tags.get(t.TAG_KIND) == t.KIND_EVAL:
            record.set_state(client, mlflow_run_id, t.STATE_DONE, current=tags.get(t.TAG_STATE))
    ordered = {name: results[name] for name in names}
    return EvaluationResult(model, backend, mlflow_run_id, ordered, time.perf_counter() - started)


def logged_benchmarks(run) -> set[str]:
    """Benchmarks whose evaluation is completely logged in ``run`` (their identity tags exist)."""
    from lgrpo_bench.tracking.schema import EVAL_TAG_PREFIX

    return {key[len(EVAL_TAG_PREFIX):].rsplit(".", 1)[0] for key in run.data.tags
            if key.startswith(EVAL_TAG_PREFIX) and key.endswith(".hash")}
