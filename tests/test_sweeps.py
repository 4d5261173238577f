"""Optuna sweeps: validation of sweep files, real studies (SQLite / journal storage), real training trials,
pruning, crash recovery and export (issue #7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from lgrpo_bench.cli import app
from lgrpo_bench.config.loading import ConfigError
from lgrpo_bench.config.sweep import network_filesystem, resolve_storage
from lgrpo_bench.runs.resolve import load_sweep
from lgrpo_bench.tracking import open_client

RUNNER = CliRunner()


def base_run(tmp_path: Path, model_path: Path | str = "tiny-s") -> dict:
    return {
        "model": {"name": str(model_path)},
        "task": {"name": "arith", "num_train_problems": 200, "num_heldout_problems": 40},
        "algorithm": {"name": "lambda_grpo", "r": 0.3},
        "train": {"max_steps": 3, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 36,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0, "seed": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "sweep-test",
                     "runs_dir": str(tmp_path / "runs")},
    }


def write_sweep(tmp_path: Path, model_path: Path | str = "tiny-s", name: str = "sweep.yaml", **fields) -> Path:
    sweep = {
        "name": "test-study",
        "base": base_run(tmp_path, model_path),
        "space": {"algorithm.lam_init": {"float": [-1.0, 1.0]}, "train.learning_rate": {"float": [1e-5, 1e-3], "log": True}},
        "objective": {"metric": "train/reward_mean", "direction": "maximize", "last_k": 2},
        "n_trials": 4,
        "parallel": 2,
        "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
        "executor": {"kind": "local", "slots": 2},
        "heartbeat_interval": 1,
        "grace_period": 3,
    }
    for key, value in fields.items():
        if value is None:
            sweep.pop(key, None)
        else:
            sweep[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def test_sqlite_on_a_flagged_network_filesystem_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("LGRPO_NETWORK_FS_PATHS", str(shared))
    path = write_sweep(tmp_path, storage=f"sqlite:///{shared / 'optuna.db'}")
    result = RUNNER.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2
    assert f"{path}: storage: SQLite file {shared / 'optuna.db'} is on a network filesystem (flagged)" in result.output
    assert "journal:PATH" in result.output
    # the journal file on the same folder is accepted
    assert resolve_storage(f"journal:{shared / 'study.journal'}") == f"journal:{shared / 'study.journal'}"


def test_network_filesystem_detection_reads_the_longest_mount(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("rootfs / ext4 rw 0 0\nserver:/export /mnt/shared nfs4 rw 0 0\n"
                      "tmpfs /mnt/shared/local tmpfs rw 0 0\n")
    assert network_filesystem("/mnt/shared/project/optuna.db", str(mounts)) == "nfs4"
    assert network_filesystem("/mnt/shared/local/optuna.db", str(mounts)) is None
    assert network_filesystem("/home/user/optuna.db", str(mounts)) is None
    assert network_filesystem("/mnt/sharedother/x", str(mounts)) is None


def test_valid_sweep_resolves_storage_and_space(tmp_path):
    loaded = load_sweep(write_sweep(tmp_path))
    assert loaded.storage == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert list(loaded.sweep.space) == ["algorithm.lam_init", "train.learning_rate"]
    grid_sweep = load_sweep(write_sweep(tmp_path, name="g.yaml", sampler={"kind": "grid"},
                                        space={"train.max_steps": {"int": [2, 6], "step": 2},
                                               "algorithm.r": {"categorical": [0.1, 0.2]}}))
    assert grid_sweep.sweep.space["train.max_steps"].grid_values() == [2, 4, 6]


def test_study_refuses_a_changed_sweep_under_the_same_name(tmp_path):
    from lgrpo_bench.sweeps import open_study

    open_study(load_sweep(write_sweep(tmp_path)))
    changed = load_sweep(write_sweep(tmp_path, name="changed.yaml", space={"algorithm.lam_init": {"float": [0.0, 2.0]}}))
    with pytest.raises(ConfigError, match="was created by a different sweep"):
        open_study(changed)


# --------------------------------------------------------------------------------------------------------
# Real sweeps: trials are real training runs in subprocesses
# --------------------------------------------------------------------------------------------------------
def mlflow_trial_runs(tmp_path: Path, study: str):
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep-test")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`lgrpo.study` = '{study}'")
    return client, runs


@pytest.mark.slow
def test_four_trials_two_in_parallel_complete_with_linked_mlflow_runs(warm_tiny, tmp_path, monkeypatch):
    from lgrpo_bench.runs import warm

    # as when this test process's own warm server began in another test's environment: the shared one, which can
    # serve the trials, is asked first
    monkeypatch.setattr(warm, "_server_environ", {**os.environ, "HF_HOME": str(tmp_path / "elsewhere")})
    path = write_sweep(tmp_path, warm_tiny.path)
    result = RUNNER.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="test-study", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4 and len(study.trials) == 4
    client, runs = mlflow_trial_runs(tmp_path, "test-study")
    kinds = sorted(run.data.tags["lgrpo.kind"] for run in runs)
    assert kinds == ["study"] + ["train"] * 4
    parent = next(run for run in runs if run.data.tags["lgrpo.kind"] == "study")
    trials = [run for run in runs if run.data.tags["lgrpo.kind"] == "train"]
    assert sorted(int(run.data.tags["lgrpo.trial"]) for run in trials) == [0, 1, 2, 3]
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in trials)
    assert parent.data.tags["lgrpo.state"] == "done"
    assert attempt_headers(tmp_path, 4) and all(line.endswith(", shared]") for line in attempt_headers(tmp_path, 4))
    # each trial's value is the mean of the last 2 logged train/reward_mean values of its run
    by_number = {int(run.data.tags["lgrpo.trial"]): run for run in trials}
    for trial in complete:
        history = sorted(client.get_metric_history(by_number[trial.number].info.run_id, "train/reward_mean"),
                         key=lambda m: m.step)
        assert trial.value == pytest.approx((history[-1].value + history[-2].value) / 2)
        assert float(by_number[trial.number].data.params["algorithm.lam_init"]) == pytest.approx(trial.params["algorithm.lam_init"])
    # running the finished sweep again starts nothing
    again = RUNNER.invoke(app, ["sweep", str(path)])
    assert again.exit_code == 0 and "started run" not in again.output
    assert len(optuna.load_study(study_name="test-study", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 4

    # show and export
    shown = RUNNER.invoke(app, ["sweep", "show", str(path)])
    assert shown.exit_code == 0 and "4 complete" in shown.output and "best 4 trials" in shown.output
    out = tmp_path / "best.yaml"
    refused = RUNNER.invoke(app, ["sweep", "export", str(path), "--seeds", "0,1", "-o", str(out)])
    assert refused.exit_code == 2 and "[0] were used while tuning" in refused.output and not out.exists()
    exported = RUNNER.invoke(app, ["sweep", "export", str(path), "--seeds", "10,11,12", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    from lgrpo_bench.runs.resolve import load_grid

    grid = load_grid(out)
    assert [p.config.train.seed for p in grid.points] == [10, 11, 12]
    best = study.best_trial
    assert all(p.config.algorithm.lam_init == pytest.approx(best.params["algorithm.lam_init"]) for p in grid.points)
    planned = RUNNER.invoke(app, ["plan", str(out)])
    assert planned.exit_code == 0, planned.output


@pytest.mark.slow
def test_pruner_stops_a_trial_that_looks_bad(warm_tiny, tmp_path, monkeypatch):
    from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS
    from lgrpo_bench.sweeps import open_study, run_sweep

    for key in LIBRARY_ENV_DEFAULTS:  # a sweep run from Python, where no command set them
        monkeypatch.delenv(key, raising=False)

    path = write_sweep(
        tmp_path, warm_tiny.path, n_trials=2, parallel=1,
        space={"train.max_completion_length": {"categorical": [36, 1]}},
        pruner={"kind": "median", "metric": "train/completion_length_mean", "every": 1, "n_startup_trials": 1},
        base={**base_run(tmp_path, warm_tiny.path), "train": {**base_run(tmp_path)["train"], "max_steps": 6}},
    )
    loaded = load_sweep(path)
    study = open_study(loaded)
    study.enqueue_trial({"train.max_completion_length": 36})
    study.enqueue_trial({"train.max_completion_length": 1})  # completions of one token: length 1 < the median
    summary = run_sweep(loaded)
    assert summary.finished_total == 2 and summary.pruned == [1] and summary.complete == [0]
    trials = optuna.load_study(study_name="test-study", storage=loaded.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert max(trials[1].intermediate_values) == 1  # pruned at the first report
    client, runs = mlflow_trial_runs(tmp_path, "test-study")
    pruned_run = next(r for r in runs if r.data.tags.get("lgrpo.trial") == "1")
    assert pruned_run.data.tags["lgrpo.state"] == "pruned"
    steps = sorted(m.step for m in client.get_metric_history(pruned_run.info.run_id, "train/loss"))
    assert steps == [1], steps  # stopped promptly: no step after the one that was pruned
    # every run's environment has the defaults a command sets, as the tests' shared warm server's has: forked there
    assert all(line.endswith(", shared]") for line in attempt_headers(tmp_path, 2))


def attempt_headers(folder: Path, count: int) -> list[str]:
    """The header line of every attempt in the run logs under ``folder`` (how its process started), ``count`` of them."""
    headers = [line for log in folder.glob("**/run.log") for line in log.read_text().splitlines() if line.startswith("==> ")]
    assert len(headers) == count, headers
    return headers


@pytest.mark.slow
def test_killed_sweep_resumes_to_exactly_n_trials(warm_tiny, tmp_path):
    path = write_sweep(tmp_path, warm_tiny.path, n_trials=3, parallel=1,
                       base={**base_run(tmp_path, warm_tiny.path), "train": {**base_run(tmp_path)["train"], "max_steps": 8}})
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "lgrpo_bench.cli", "sweep", str(path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    killed_while_running = False
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        # the store exists, complete, once a trial's run has a checkpoint; before that, opening it here could race
        # the sweep's own creation of its tables ("table trial_values already exists")
        if not list((tmp_path / "runs").glob("*/*/checkpoint-*/lgrpo-manifest.json")):
            continue
        try:
            trials = optuna.load_study(study_name="test-study", storage=storage).trials
        except KeyError:
            continue
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if done and running and list((tmp_path / "runs").glob("*/*/checkpoint-*/lgrpo-manifest.json")):
            os.killpg(process.pid, signal.SIGKILL)  # the orchestrator and everything it started
            killed_while_running = True
            break
    process.wait(timeout=30)
    assert killed_while_running, process.stdout.read()[-3000:]

    # the next sweep, as a user starts it: a fresh process (never hangs the test session: 600 s at most)
    try:
        result = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "sweep", str(path)], env=env,
                                capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as stuck:  # say where it was, not only that it was
        pytest.fail(f"the resumed sweep did not end in 600 s:\n{(stuck.stdout or '')[-3000:]}\n{(stuck.stderr or '')[-3000:]}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "lost their sweep process" in output or "were running in a sweep process that is gone" in output, output[-3000:]
    trials = optuna.load_study(study_name="test-study", storage=storage).trials
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1, states
    retried = next(t for t in trials if "failed_trial" in t.system_attrs)
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert retried.system_attrs["failed_trial"] == failed.number and retried.params == failed.params
    # no MLflow run twice: one train run per distinct parameter set, the retried one resumed into its old run
    _, runs = mlflow_trial_runs(tmp_path, "test-study")
    train_runs = [r for r in runs if r.data.tags["lgrpo.kind"] == "train"]
    assert len(train_runs) == 3 and len({r.data.tags["lgrpo.run_id"] for r in train_runs}) == 3
    assert all(r.data.tags["lgrpo.state"] == "done" for r in train_runs)


def test_journal_storage_runs_stale_trial_recovery(tmp_path):
    """A journal study has no Optuna heartbeat; stale running trials are failed and re-queued by the sweep's own rule."""
    from lgrpo_bench.sweeps import fail_stale_trials
    from lgrpo_bench.sweeps.runner import JOURNAL_HEARTBEAT_ATTR
    from lgrpo_bench.tracking.studies import open_storage

    storage = open_storage(f"journal:{tmp_path / 'study.journal'}")
    study = optuna.create_study(study_name="j", storage=storage)
    fresh = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    stale = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.set_trial_system_attr(fresh._trial_id, JOURNAL_HEARTBEAT_ATTR, time.time())
    storage.set_trial_system_attr(stale._trial_id, JOURNAL_HEARTBEAT_ATTR, time.time() - 100)
    assert fail_stale_trials(study, grace_period_s=10, max_retries=1) == [stale.number]
    states = {t.number: t.state for t in study.trials}
    assert states[fresh.number] == TrialState.RUNNING and states[stale.number] == TrialState.FAIL
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].params == stale.params


def test_a_reopened_study_does_not_redraw_its_first_points(tmp_path):
    """The sampler's random state dies with the process; re-opening must not replay the first session's draws."""
    from lgrpo_bench.sweeps import open_study
    from lgrpo_bench.sweeps.study import distribution

    loaded = load_sweep(write_sweep(tmp_path))
    spaces = {key: distribution(entry) for key, entry in loaded.sweep.space.items()}
    first = open_study(loaded)
    drawn = []
    for value in (0.1, 0.2):
        trial = first.ask(spaces)
        drawn.append(trial.params)
        first.tell(trial, value)
    again = open_study(loaded).ask(spaces)
    assert again.params not in drawn
    fresh_copy = load_sweep(write_sweep(tmp_path, name="other.yaml", storage=f"sqlite:///{tmp_path / 'other.db'}"))
    assert open_study(fresh_copy).ask(spaces).params == drawn[0]  # same seed, empty study: same first point


@pytest.mark.parametrize("name", ["lambda_lr.yaml", "lambda_lr_qwen.yaml"])
def test_shipped_sweep_files_validate(name):
    loaded = load_sweep(Path(__file__).resolve().parent.parent / "sweeps" / name)
    assert loaded.sweep.space and loaded.sweep.objective.metric.startswith("eval/")


def test_study_does_not_store_secret_executor_env(tmp_path):
    from lgrpo_bench.sweeps import open_study
    from lgrpo_bench.sweeps.study import ATTR_EXECUTOR

    executor = {"kind": "local", "slots": 1, "env": {"HF_TOKEN": "hf_plantedSECRET123", "OMP_NUM_THREADS": "1"}}
    study = open_study(load_sweep(write_sweep(tmp_path, executor=executor)))
    stored = study.user_attrs[ATTR_EXECUTOR]["env"]
    assert stored == {"HF_TOKEN": "<redacted>", "OMP_NUM_THREADS": "1"}
    assert "hf_plantedSECRET123" not in (tmp_path / "optuna.db").read_bytes().decode("latin-1")
