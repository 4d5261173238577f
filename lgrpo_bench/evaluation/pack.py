r"""What the lm-eval task pack runs: docs with rendered prompts, scoring of every sample, per-doc metrics.

* :func:`load_docs` is the tasks' ``custom_dataset``: lm-eval calls it with the task's ``dataset_kwargs``
  (``benchmark``) and the metadata given to ``TaskManager(metadata=...)`` (or ``lm_eval --metadata``):
  ``data_dir`` (else ``$LGRPO_DATA_DIR``, else the hub), ``templates`` (``{benchmark: template name}``),
  ``template`` (for benchmarks not in ``templates``) and ``tokenizer`` (a tokenizer folder or hub id whose
  chat template is applied when the template asks for one). Default template: ``arith`` for arith,
  ``qwen_math`` otherwise. Each doc is ``{"id", "problem", "answer", "prompt"}`` and ``prompt`` is the
  exact text the model continues: :func:`lgrpo_bench.tasks.templates.render_prompt`, and for chat
  templates the tokenizer's ``apply_chat_template(..., add_generation_prompt=True)``, as TRL renders
  training prompts. lm-eval adds nothing around it (no few-shot, no description, ``doc_to_text: prompt``).
* :func:`score_responses` is the tasks' filter: every sample of every doc is scored against the doc's gold
  answer with the training reward's scorer (:func:`lgrpo_bench.tasks.scoring.score_math`, or
  :func:`lgrpo_bench.tasks.arith.score_arith` for arith), math samples in a few threads (each with its own
  scorer worker process). A sample becomes ``{"completion", "extracted", "correct", "timed_out"}``.
* :func:`doc_metrics` is ``process_results``: ``acc`` of a doc = the fraction of its samples that are
  correct; lm-eval averages it over docs (``acc``) with the standard error over docs (``acc_stderr``).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["DEFAULT_MATH_TEMPLATE", "SCORE_TIMEOUT_S", "default_template", "doc_metrics", "load_docs",
           "render_eval_prompt", "score_responses"]

SCORE_TIMEOUT_S = 5.0
"""Time bound of one math verification (the training reward's default, ``task.reward_timeout_s``)."""
DEFAULT_MATH_TEMPLATE = "qwen_math"
_SCORING_THREADS = max(1, min(4, os.cpu_count() or 1))


def default_template(benchmark: str) -> str:
    """``arith`` for the arith benchmark, ``qwen_math`` for the math benchmarks."""
    from lgrpo_bench.evaluation.benchmarks import get_benchmark

    return "arith" if get_benchmark(benchmark).scorer == "arith" else DEFAULT_MATH_TEMPLATE


@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path)


def render_eval_prompt(template: str, problem: str, tokenizer: Any = None) -> str:
    """The prompt text for ``problem``: the template's plain string, or its chat messages rendered with the
    tokenizer's chat template (generation prompt added) when the template uses one and the tokenizer has one."""
    from lgrpo_bench.tasks.templates import render_prompt

    rendered = render_prompt(template, problem, tokenizer)
    if isinstance(rendered, str):
        return rendered
    return tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)


def load_docs(benchmark: str, data_dir: str | None = None, templates: dict[str, str] | None = None,
              template: str | None = None, tokenizer: str | None = None, **_: Any):
    """``DatasetDict({"test": docs})`` for ``benchmark``, in problem order (see the module docstring)."""
    import datasets

    from lgrpo_bench.evaluation.benchmarks import load_problems

    problems = load_problems(benchmark, data_dir)
    name = (templates or {}).get(benchmark) or template or default_template(benchmark)
    loaded_tokenizer = _tokenizer(tokenizer) if tokenizer else None
    rows = [{"id": p.id, "problem": p.problem, "answer": p.answer,
             "prompt": render_eval_prompt(name, p.problem, loaded_tokenizer)} for p in problems]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _score_math(completion: str, gold: str) -> dict[str, Any]:
    from lgrpo_bench.tasks.scoring import score_math

    result = score_math(completion, gold, timeout_s=SCORE_TIMEOUT_S)
    return {"completion": completion, "extracted": result.extracted, "correct": bool(result.correct),
            "timed_out": bool(result.timed_out)}


def _score_arith(completion: str, gold: str) -> dict[str, Any]:
    from lgrpo_bench.tasks.arith import parse_arith_answer, score_arith

    return {"completion": completion, "extracted": parse_arith_answer(completion),
            "correct": score_arith(completion, gold) == 1.0, "timed_out": False}


def score_responses(resps, docs, scorer: str) -> list[list[dict[str, Any]]]:
    """Every sample of every doc scored against ``doc["answer"]``; same nesting as ``resps`` (lm-eval filter)."""
    resps = [list(samples) for samples in resps]
    pairs = [(completion, doc["answer"]) for samples, doc in zip(resps, docs) for completion in samples]
    if scorer == "arith":
        flat = [_score_arith(completion, gold) for completion, gold in pairs]
    elif scorer == "math":
        with ThreadPoolExecutor(max_workers=_SCORING_THREADS) as pool:
            flat = list(pool.map(lambda pair: _score_math(*pair), pairs))
    else:
        raise ValueError(f"unknown scorer {scorer!r}")
    nested, start = [], 0
    for samples in resps:
        nested.append(flat[start : start + len(samples)])
        start += len(samples)
    return nested


def doc_metrics(doc: dict, results: list) -> dict[str, float]:
    """``{"acc": fraction of the doc's samples that are correct}`` (lm-eval ``process_results``)."""
    (scored,) = results
    return {"acc": sum(sample["correct"] for sample in scored) / len(scored)}
