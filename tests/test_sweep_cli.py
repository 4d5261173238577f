"""The ``sweep`` commands (issue 26, item 6): each subcommand has its own ``--help``, ``--n-trials`` shortens a sweep
without editing its file, and ``sweep show`` says when its fANOVA importances rest on too few trials."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from lgrpo_bench.cli import app
from lgrpo_bench.cli.sweep import IMPORTANCE_TRIALS
from lgrpo_bench.sweeps.study import ATTR_OBJECTIVE

RUNNER = CliRunner()


@pytest.mark.parametrize(("command", "says", "option"), [
    ("show", "Show a study: trial counts, the best trials and parameter importances", "--top"),
    ("export", "Write a grid that re-runs the study's best config with new seeds", "--seeds"),
    ("dashboard", "Open optuna-dashboard on the study's storage", "--port"),
    ("run", "Run a sweep: trials until the study has n_trials finished ones", "--n-trials"),
])
def test_each_sweep_subcommand_has_its_own_help(command, says, option):
    result = RUNNER.invoke(app, ["sweep", command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert says in text and option in text, text
    others = {"show": "--n-trials", "export": "--top", "dashboard": "--seeds", "run": "--top"}
    assert others[command] not in text  # not the generic help of every action


def _study(storage: str, n_complete: int) -> None:
    """A real Optuna study with ``n_complete`` complete trials whose value follows ``x`` (``y`` is noise)."""
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr(ATTR_OBJECTIVE, {"metric": "train/reward_mean"})
    for _ in range(n_complete):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        study.tell(trial, x + 0.01 * y, state=TrialState.COMPLETE)


@pytest.mark.parametrize(("n_complete", "caveat"), [(3, True), (IMPORTANCE_TRIALS, False)])
def test_sweep_show_puts_a_caveat_on_importances_from_few_trials(tmp_path, n_complete, caveat):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study(storage, n_complete)
    result = RUNNER.invoke(app, ["sweep", "show", "s", "--storage", storage])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "parameter importances (fANOVA)" in text
    assert (f"caveat: these importances come from {n_complete} complete trials" in text) is caveat, text


@pytest.mark.slow
def test_n_trials_shortens_a_sweep_without_editing_its_file(warm_tiny, tmp_path):
    from test_sweeps import write_sweep

    path = write_sweep(tmp_path, warm_tiny.path, parallel=1)  # n_trials: 4 in the file
    before = path.read_text()
    result = RUNNER.invoke(app, ["sweep", str(path), "--n-trials", "1"])
    assert result.exit_code == 0, result.output
    assert "sweep test-study: 1 trials" in result.output and "1/1 trials finished" in result.output, result.output
    study = optuna.load_study(study_name="test-study", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert path.read_text() == before
