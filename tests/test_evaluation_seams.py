"""The one private seam on lm-eval (:func:`lgrpo_bench.evaluation.backends._without_environment_report`).

``lm_eval.evaluator.simple_evaluate`` ends by collecting an environment report (``torch.utils.collect_env``: a
``pip list`` subprocess and compiler probes, 1.6 s of CPU per evaluation on the 2-core dev machine) that nothing here
reads. The evaluation swaps lm-eval's module global ``add_env_info`` for the call. These tests fail when lm-eval
renames or stops calling it (then the seam must follow), and when an evaluation collects the report again.
"""

from __future__ import annotations

import inspect

import pytest

from lgrpo_bench.config.schema import EvalConfig
from lgrpo_bench.evaluation import evaluate


def test_lm_eval_still_reports_the_environment_through_the_global_the_seam_replaces():
    from lm_eval import evaluator
    from lm_eval.loggers.utils import add_env_info

    assert evaluator.add_env_info is add_env_info
    assert "add_env_info(results)" in inspect.getsource(evaluator.simple_evaluate)


def test_an_evaluation_collects_no_environment_report_and_restores_lm_eval(data_dir, monkeypatch):
    import torch.utils.collect_env
    from lm_eval import evaluator

    original = evaluator.add_env_info
    collected = []
    monkeypatch.setattr(torch.utils.collect_env, "get_pretty_env_info", lambda: collected.append(1) or "")
    result = evaluate("oracle:gold", ["arith"], EvalConfig(data_dir=str(data_dir), limit=2), log=False)
    assert result.benchmarks["arith"].metrics["acc"] == 1.0  # the evaluation itself ran
    assert collected == [], "lm-eval's environment report was collected during an evaluation"
    assert evaluator.add_env_info is original  # restored for whoever calls lm-eval next


def test_the_seam_restores_lm_eval_when_the_evaluation_raises():
    from lm_eval import evaluator

    from lgrpo_bench.evaluation.backends import _without_environment_report

    original = evaluator.add_env_info
    with pytest.raises(RuntimeError), _without_environment_report():
        assert evaluator.add_env_info is not original
        raise RuntimeError("the evaluation failed")
    assert evaluator.add_env_info is original



def test_two_overlapping_seams_leave_lm_eval_as_it_was():
    """Two evaluations in two threads whose calls overlap, the first ending first (entered A, B; left A, B): were
    both to swap, B would restore A's stand-in and lm-eval would stay without its environment report for good."""
    from lm_eval import evaluator

    from lgrpo_bench.evaluation.backends import _without_environment_report

    original = evaluator.add_env_info
    first, second = _without_environment_report(), _without_environment_report()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert evaluator.add_env_info is original
