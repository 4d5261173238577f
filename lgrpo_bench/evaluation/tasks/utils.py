"""Functions the task pack's YAML files reference (``!function utils.<name>``); the logic is in
:mod:`lgrpo_bench.evaluation.pack` (lm-eval imports this file by path, so it holds no state of its own)."""

from lgrpo_bench.evaluation import pack


def load_docs(**kwargs):
    return pack.load_docs(**kwargs)


def score_math_responses(resps, docs):
    return pack.score_responses(resps, docs, scorer="math")


def score_arith_responses(resps, docs):
    return pack.score_responses(resps, docs, scorer="arith")


def process_results(doc, results):
    return pack.doc_metrics(doc, results)
