"""The protocol of a benchmark evaluation: its settings, its identity, and the metrics of its per-sample records.

Pure functions of the task pack's defaults and the run's ``eval`` section; no model, no MLflow.

* :func:`resolve_settings` — task-file defaults < ``EvalConfig.overrides[benchmark]``; the prompt template is the
  run's training template for math benchmarks (``qwen_math`` when there is no run or it trained on arith) and
  ``arith`` for arith;
* :func:`identity_of` — the values of the identity tags (:data:`~lgrpo_bench.tracking.schema.EVAL_IDENTITY_FIELDS`);
* :func:`records_and_metrics` — lm-eval's logged samples → one record per (problem, sample) and the metrics
  ``acc``, ``acc_stderr``, ``pass@k`` (avg@k), ``mean_length``, ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lgrpo_bench.evaluation.benchmarks import get_benchmark
from lgrpo_bench.evaluation.metrics import mean_stderr, pass_at_k_values, reported_ks

if TYPE_CHECKING:
    from lgrpo_bench.config.schema import EvalConfig

__all__ = ["BenchmarkSettings", "identity_of", "records_and_metrics", "resolve_settings"]


@dataclass(frozen=True)
class BenchmarkSettings:
    """The resolved protocol of one benchmark evaluation."""

    benchmark: str
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    template: str

    @property
    def protocol(self) -> str:
        return "greedy" if self.temperature == 0 else f"avg@{self.k}"

    def generation_kwargs(self) -> dict[str, Any]:
        """lm-eval ``generation_kwargs``: stop at end of sequence only; top-k off when sampling."""
        if self.temperature == 0:
            return {"do_sample": False, "temperature": 0.0, "max_gen_toks": self.max_tokens, "until": []}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0,
                "max_gen_toks": self.max_tokens, "until": []}


def resolve_settings(benchmark: str, eval_config: EvalConfig, run_template: str | None = None) -> BenchmarkSettings:
    """Task-file defaults < ``eval_config.overrides[benchmark]``; template as in the module docstring."""
    from lgrpo_bench.evaluation.pack import DEFAULT_MATH_TEMPLATE

    default = get_benchmark(benchmark)
    override = eval_config.overrides.get(benchmark)

    def pick(name: str, fallback):
        value = getattr(override, name) if override is not None else None
        return fallback if value is None else value

    if default.scorer == "arith":
        template = "arith"
    else:
        template = run_template if run_template and run_template != "arith" else DEFAULT_MATH_TEMPLATE
    template = pick("template", template)
    temperature = float(pick("temperature", default.temperature))
    k = int(pick("k", default.k))
    if temperature == 0 and k > 1:
        raise ValueError(f"{benchmark}: k={k} samples at temperature 0 repeat the greedy answer; set a temperature > 0")
    return BenchmarkSettings(benchmark, k, temperature, float(pick("top_p", default.top_p)),
                             int(pick("max_tokens", default.max_tokens)), template)


def _number(value: float) -> str:
    return f"{value:g}"


def identity_of(settings: BenchmarkSettings, problems: Sequence) -> dict[str, str]:
    """The identity tags' values (field → string) of evaluating ``problems`` with ``settings``."""
    from lgrpo_bench.tasks.math_data import problems_hash

    benchmark = get_benchmark(settings.benchmark)
    return {
        "name": benchmark.name, "version": benchmark.version, "n": str(len(problems)), "hash": problems_hash(problems),
        "protocol": settings.protocol, "k": str(settings.k), "temperature": _number(settings.temperature),
        "top_p": _number(settings.top_p), "max_tokens": str(settings.max_tokens), "template": settings.template,
    }



def records_and_metrics(samples: list[dict], settings: BenchmarkSettings, count_tokens) -> tuple[list[dict], dict[str, float]]:
    records: list[dict[str, Any]] = []
    per_problem: list[tuple[int, int]] = []
    for sample in sorted(samples, key=lambda s: int(s["doc_id"])):
        doc = sample["doc"]
        (scored,) = sample["filtered_resps"]
        for index, item in enumerate(scored):
            records.append({"problem_id": str(doc["id"]), "sample": index, "completion": item["completion"],
                            "extracted": item["extracted"], "gold": str(doc["answer"]), "correct": bool(item["correct"]),
                            "length": int(count_tokens(item["completion"]))})
        per_problem.append((len(scored), sum(bool(item["correct"]) for item in scored)))
    accuracies = [c / n for n, c in per_problem]
    metrics = {"acc": sum(accuracies) / len(accuracies), "acc_stderr": mean_stderr(accuracies)}
    if settings.protocol != "greedy":
        for k in reported_ks(settings.k):
            metrics[f"pass@{k}"] = pass_at_k_values(per_problem, k)
    metrics["mean_length"] = sum(r["length"] for r in records) / len(records)
    metrics["n"] = float(len(per_problem))
    return records, metrics
