"""``eval --model run:<id>`` (issue 26, item 4): the run is found in whichever experiment holds it, and every
evaluation setting can be given on the command line (``--set eval.*``), also the one an error message asks for."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lgrpo_bench.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart_run(warm_tiny, tmp_path_factory):
    """A finished one-step training run in experiment ``quickstart`` (not the default experiment), no evaluation."""
    from lgrpo_bench.runs.lifecycle import execute_run
    from lgrpo_bench.runs.resolve import build_run, prepare_run

    root = tmp_path_factory.mktemp("eval-run-id")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = build_run({
        "model": {"name": str(warm_tiny.path)},
        "task": {"name": "arith", "num_train_problems": 40, "num_heldout_problems": 8},
        "train": {"max_steps": 1, "num_generations": 2, "prompts_per_step": 2, "max_completion_length": 16,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0, "seed": 0},
        "tracking": {"uri": uri, "experiment": "quickstart", "runs_dir": str(root / "runs")},
    })
    prepared = prepare_run(config)
    outcome = execute_run(prepared.config, prepared.run_id)
    assert outcome.state == "done"
    return uri, prepared.run_id, outcome.mlflow_run_id


def _eval(uri: str, rid: str, *extra: str):
    result = CliRunner().invoke(app, ["eval", "--model", f"run:{rid}", "--benchmarks", "arith", "--tracking-uri", uri,
                                      *extra])
    return result, (result.stderr if hasattr(result, "stderr") else "") + result.output


def test_a_run_id_is_found_in_the_experiment_that_holds_it(quickstart_run):
    uri, rid, _ = quickstart_run
    result, output = _eval(uri, rid, "--experiment", "lgrpo-bench", "--limit", "2")
    assert result.exit_code == 2 and "experiments holding it: quickstart (pass --experiment)" in output, output
    # without --experiment: found in quickstart; the too-long setting shows that the run's evaluation was reached
    result, output = _eval(uri, rid, "--limit", "2", "--set", "eval.overrides.arith.max_tokens=100000")
    assert result.exit_code == 2, output
    assert "arith: max_tokens=100000 does not fit the model's context" in output, output
    assert "--set eval.overrides.arith.max_tokens=" in output, output  # the fix is a command line away


def test_every_eval_setting_can_be_set_on_the_command_line(quickstart_run):
    from lgrpo_bench.tracking import open_client
    from lgrpo_bench.tracking.schema import eval_tag

    uri, rid, mlflow_run_id = quickstart_run
    result, output = _eval(uri, rid, "--limit", "3", "--set", "eval.overrides.arith.max_tokens=12", "--json")
    assert result.exit_code == 0, output
    tags = open_client(uri).get_run(mlflow_run_id).data.tags
    assert tags[eval_tag("arith", "max_tokens")] == "12" and tags[eval_tag("arith", "n")] == "3"
    result, output = _eval(uri, rid, "--set", "eval.overides.arith.max_tokens=12")
    assert result.exit_code == 2 and "--set eval.overides.arith.max_tokens: unknown key (did you mean overrides?)" in output
    result, output = _eval(uri, rid, "--set", "train.seed=3")
    assert result.exit_code == 2 and "only evaluation settings (eval.*)" in output
