"""A run's life has one owner (issue 22): real processes, the real MLflow SQLite store, real SIGKILL.

Every case here was seen wrong on the code before the run lifecycle owned a run's life:

* the same config in two experiments shares one run folder and one grid resumes from the other's checkpoint;
* two grid files sharing a point, started together, train it twice into two MLflow runs;
* a grid that grows reports only the points it ran itself;
* a run that learned nothing (no training example; non-finite rewards) ends ``done``;
* an evaluation survives its run's SIGKILL and the next ``run`` evaluates again beside it;
* a ``trained`` run whose final model was deleted can never finish.

Each test asserts what the lifecycle guarantees, whichever moment a kill lands: one MLflow train run per (run id,
experiment), every step logged once, no process left behind, the state the store says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lgrpo_bench.runs.resolve import load_grid
from test_faults import alive, cli, processes_mentioning, start_run, wait_until

PY = sys.executable
STEPS = 4


def write_grid(tmp_path: Path, model: str, *, name: str, experiment: str, seeds=(0,), steps: int = STEPS,
               evaluation: dict | None = None, slots: int = 2, algorithms=("grpo",), task: dict | None = None) -> Path:
    """A grid of tiny arith runs (``steps`` steps of 4 prompts × 4 completions, a checkpoint every step)."""
    base = {
        "model": {"name": model},
        "task": task or {"name": "arith", "num_train_problems": 64, "num_heldout_problems": 16},
        "algorithm": {"name": algorithms[0]},
        "train": {"max_steps": steps, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": experiment,
                     "runs_dir": str(tmp_path / "runs")},
    }
    if evaluation is not None:
        base["eval"] = evaluation
    axes = {"train.seed": list(seeds)}
    if len(algorithms) > 1:
        axes = {"algorithm.name": list(algorithms), **axes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": base, "axes": axes,
                                    "executor": {"kind": "local", "slots": slots}}, sort_keys=False))
    return path


def client_of(tmp_path: Path):
    from lgrpo_bench.tracking import open_client

    return open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")


def train_runs(tmp_path: Path, experiment: str) -> dict[str, object]:
    """Train runs of ``experiment`` by run id, asserting one MLflow run per run id."""
    client = client_of(tmp_path)
    found = client.get_experiment_by_name(experiment)
    by_id: dict[str, object] = {}
    for run in client.search_runs([found.experiment_id], "tags.`lgrpo.kind` = 'train'") if found else []:
        rid = run.data.tags["lgrpo.run_id"]
        assert rid not in by_id, f"two MLflow runs for run {rid} in experiment {experiment}"
        by_id[rid] = run
    return by_id


def steps_of(tmp_path: Path, run, name: str = "train/loss") -> list[int]:
    return sorted(m.step for m in client_of(tmp_path).get_metric_history(run.info.run_id, name))


def run_dir(tmp_path: Path, experiment: str, rid: str) -> Path:
    return tmp_path / "runs" / experiment / rid


def manifest(folder: Path, step: int) -> Path:
    return folder / f"checkpoint-{step}" / "lgrpo-manifest.json"


# ---------------------------------------------------------------------------------------------------------
# One run folder, one MLflow run
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_config_in_two_experiments_keeps_two_folders_and_two_histories(warm_tiny, tmp_path):
    """Grid A (experiment a) is killed after a checkpoint; grid B (experiment b, the same point) runs; A resumes. Each
    history is its own: A never resumes from B's checkpoint, B's final model is never replaced by A's."""
    steps = 8
    grid_a = write_grid(tmp_path, str(warm_tiny.path), name="ga", experiment="a", steps=steps)
    grid_b = write_grid(tmp_path, str(warm_tiny.path), name="gb", experiment="b", steps=steps)
    (rid,) = [p.run_id for p in load_grid(grid_a).points]
    assert [p.run_id for p in load_grid(grid_b).points] == [rid]  # the run id ignores tracking: one id, two homes
    folder_a, folder_b = run_dir(tmp_path, "a", rid), run_dir(tmp_path, "b", rid)

    orchestrator = start_run(grid_a, tmp_path)
    wait_until(lambda: manifest(folder_a, 3).exists(), orchestrator, "grid A's checkpoint 3")
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    wait_until_gone(str(folder_a))

    b = cli("run", str(grid_b), cwd=tmp_path)
    assert b.returncode == 0, b.stdout + b.stderr
    final_b = {path.name: path.stat().st_mtime_ns for path in (folder_b / "final").iterdir()}
    a = cli("run", str(grid_a), cwd=tmp_path)
    assert a.returncode == 0, a.stdout + a.stderr
    again_b = cli("run", str(grid_b), cwd=tmp_path)  # done: nothing to do, nothing replaced
    assert again_b.returncode == 0 and "ran 0 " in again_b.stdout

    (run_a,), (run_b,) = train_runs(tmp_path, "a").values(), train_runs(tmp_path, "b").values()
    assert run_a.info.run_id != run_b.info.run_id
    assert {run_a.data.tags["lgrpo.state"], run_b.data.tags["lgrpo.state"]} == {"done"}
    assert steps_of(tmp_path, run_a) == steps_of(tmp_path, run_b) == list(range(1, steps + 1))  # each step once
    assert json.loads((folder_a / "owner.json").read_text())["mlflow_run_id"] == run_a.info.run_id
    assert json.loads((folder_b / "owner.json").read_text())["mlflow_run_id"] == run_b.info.run_id
    resumed = [line for line in (folder_a / "run.log").read_text().splitlines() if "resuming from checkpoint-" in line]
    assert len(resumed) == 1 and int(resumed[0].rsplit("-", 1)[1]) <= steps  # A resumed from its own checkpoint
    assert "resuming from" not in (folder_b / "run.log").read_text()  # B started clean: A's checkpoints are not B's
    assert {path.name: path.stat().st_mtime_ns for path in (folder_b / "final").iterdir()} == final_b


def wait_until_gone(text: str, timeout_s: float = 30) -> None:
    """Every process whose command line mentions ``text`` is gone (they die with their parent: PR_SET_PDEATHSIG)."""
    deadline = time.time() + timeout_s
    while processes_mentioning(text) and time.time() < deadline:
        time.sleep(0.05)
    assert not processes_mentioning(text), f"processes outlived their parent: {processes_mentioning(text)}"


@pytest.mark.slow
def test_a_second_claimant_waits_for_the_run_and_finds_it_done(warm_tiny, tmp_path):
    """`lgrpo-bench train` A claims the run and is paused (SIGSTOP) right after; B, started on the same config, says
    "running elsewhere (pid A, host …)" and waits; A resumes and finishes; B then reports the run done without
    training it: one MLflow run, each step logged once."""
    grid = write_grid(tmp_path, str(warm_tiny.path), name="g", experiment="e", steps=2)
    (point,) = load_grid(grid).points
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(point.config.model_dump(mode="json"), sort_keys=False))
    command = [PY, "-m", "lgrpo_bench.cli", "train", str(config_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    a = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    seen_a = []
    for line in a.stdout:  # A holds the lock from before its MLflow run exists until the run's end
        seen_a.append(line)
        if f"run {point.run_id}: MLflow run " in line:
            break
    assert a.poll() is None, "".join(seen_a)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        b = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
        first = b.stdout.readline()
        assert f"run {point.run_id}: running elsewhere (pid {a.pid} on host " in first and "waiting for it" in first, first
    finally:
        os.kill(a.pid, signal.SIGCONT)
    rest_a, _ = a.communicate(timeout=600)
    rest_b, _ = b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, "".join(seen_a) + rest_a + first + rest_b
    assert " trained in " in rest_a and " trained in " not in rest_b
    assert f"run {point.run_id}: already done" in rest_b
    (run,) = train_runs(tmp_path, "e").values()
    assert run.data.tags["lgrpo.state"] == "done" and steps_of(tmp_path, run) == [1, 2]


@pytest.mark.slow
def test_two_grids_sharing_a_point_started_together_train_it_once(warm_tiny, tmp_path):
    """Grid files x and y share the point (grpo, seed 0) and each has one more; both orchestrators start at once.
    The shared run is trained once into one MLflow run, and both closing tables include it."""
    grid_x = write_grid(tmp_path, str(warm_tiny.path), name="x", experiment="shared", seeds=(0, 1))
    grid_y = write_grid(tmp_path, str(warm_tiny.path), name="y", experiment="shared", seeds=(0, 2))
    shared = {p.run_id for p in load_grid(grid_x).points} & {p.run_id for p in load_grid(grid_y).points}
    assert len(shared) == 1
    x, y = start_run(grid_x, tmp_path), start_run(grid_y, tmp_path)
    out_x, _ = x.communicate(timeout=900)
    out_y, _ = y.communicate(timeout=900)
    assert x.returncode == 0 and y.returncode == 0, out_x + out_y
    runs = train_runs(tmp_path, "shared")  # asserts one MLflow run per run id
    assert len(runs) == 3 and {run.data.tags["lgrpo.state"] for run in runs.values()} == {"done"}
    for run in runs.values():
        assert steps_of(tmp_path, run) == list(range(1, STEPS + 1))
    (rid,) = shared
    trained = [line for line in (run_dir(tmp_path, "shared", rid) / "run.log").read_text().splitlines() if " trained in " in line]
    assert len(trained) == 1, trained
    for output in (out_x, out_y):  # each grid's table has its two points, seeds 0 and 1 or 2, in one row
        assert "│ grpo │ 2 │" in " ".join(output.split()), output
    assert {run.data.tags.get("lgrpo.in_grid.x") for rid2, run in runs.items() if rid2 in shared} == {"true"}
    assert {run.data.tags.get("lgrpo.in_grid.y") for rid2, run in runs.items() if rid2 in shared} == {"true"}


@pytest.mark.slow
def test_a_grid_that_grows_shows_every_current_point_and_says_which_came_from_elsewhere(warm_tiny, tmp_path):
    """A copy of a finished grid under another name, with one more seed: it runs only the new point, and its closing
    table, `report --grid` and the MLflow UI view (membership tags) show all three, saying two came from grid g1."""
    first = write_grid(tmp_path, str(warm_tiny.path), name="g1", experiment="grow", seeds=(0, 1), steps=2)
    assert cli("run", str(first), cwd=tmp_path).returncode == 0
    more = write_grid(tmp_path, str(warm_tiny.path), name="g1-more", experiment="grow", seeds=(0, 1, 2), steps=2)
    result = cli("run", str(more), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    flat = " ".join(result.stdout.split())
    assert "ran 1 " in flat and "skipped 2 already done" in flat, flat
    assert "│ grpo │ 3 │" in flat, flat
    assert "2 of the 3 runs of this grid's points were made first elsewhere (2 by grid g1) and are reused here" in flat
    report = cli("report", "--grid", str(more), "--no-plots", "--out", str(tmp_path / "report"), cwd=tmp_path)
    flat = " ".join(report.stdout.split())
    assert report.returncode == 0 and "│ grpo │ 3 │" in flat and "2 by grid g1" in flat, flat
    runs = train_runs(tmp_path, "grow")
    assert {run.data.tags.get("lgrpo.in_grid.g1-more") for run in runs.values()} == {"true"}  # the view lists all 3
    assert sorted(run.data.tags.get("lgrpo.in_grid.g1") or "-" for run in runs.values()) == ["-", "true", "true"]


# ---------------------------------------------------------------------------------------------------------
# done means it learned
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_without_a_training_example_fails_with_the_reason(warm_tiny, tmp_path):
    """Bypassing `plan` (which refuses an empty task.data), the lifecycle still never calls a run that took no optimizer
    step trained: it ends failed, with the reason in its last line and in lgrpo.error, and is not evaluated."""
    from lgrpo_bench.config import build_run_config
    from lgrpo_bench.runs.lifecycle import RunDidNotLearn, execute_run
    from lgrpo_bench.runs.resolve import prepare_run

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    config = build_run_config({  # the schema alone: run_problems (which reads the data file) is not asked
        "model": {"name": str(warm_tiny.path)}, "task": {"name": "math", "data": str(empty), "template": "qwen_math"},
        "train": {"max_steps": 2, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0},
        "eval": {"benchmarks": ["arith"], "limit": 4},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "learn", "runs_dir": str(tmp_path / "runs")}})
    prepared = prepare_run(config)
    lines: list[str] = []
    with pytest.raises(RunDidNotLearn, match="did not learn: training took 0 optimizer steps"):
        execute_run(prepared.config, prepared.run_id, emit=lines.append)
    (run,) = train_runs(tmp_path, "learn").values()
    tags = run.data.tags
    assert tags["lgrpo.state"] == "failed" and tags["lgrpo.failed_step"] == "train"
    assert not any(key.startswith("lgrpo.eval.") for key in tags)
    assert "did not learn: training took 0 optimizer steps" in tags["lgrpo.error"]
    assert lines[-1].startswith(f"run {prepared.run_id}: failed: did not learn") and not any(" trained in " in line for line in lines)


@pytest.mark.slow
def test_non_finite_rewards_fail_the_run_and_are_counted_not_dropped(warm_tiny, tmp_path):
    """A format-reward weight of inf (refused at plan; set here past validation) makes every reward non-finite: the
    run ends failed ("did not learn"), and each step's non-finite values are counted in train/nonfinite_values."""
    from lgrpo_bench.config import build_run_config
    from lgrpo_bench.runs.lifecycle import RunDidNotLearn, execute_run
    from lgrpo_bench.runs.resolve import prepare_run

    config = build_run_config({
        "model": {"name": str(warm_tiny.path)}, "task": {"name": "arith", "num_train_problems": 64, "num_heldout_problems": 16},
        "algorithm": {"name": "grpo"},
        "train": {"max_steps": 2, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "nonfinite", "runs_dir": str(tmp_path / "runs")}})
    object.__setattr__(config.task, "format_reward_weight", float("inf"))  # what plan refuses, as a run might still get
    prepared = prepare_run(config, rid="nonfinite000")
    with pytest.raises(RunDidNotLearn, match="no optimizer step had a finite loss, reward and gradient norm"):
        execute_run(prepared.config, prepared.run_id)
    (run,) = train_runs(tmp_path, "nonfinite").values()
    assert run.data.tags["lgrpo.state"] == "failed" and "reward in 2 of 2 steps" in run.data.tags["lgrpo.error"]
    counted = client_of(tmp_path).get_metric_history(run.info.run_id, "train/nonfinite_values")
    assert sorted(m.step for m in counted) == [1, 2] and all(m.value >= 1 for m in counted)
    log = (prepared.layout.train_log).read_text()
    assert "train/reward_mean is " in log and "counted in train/nonfinite_values" in log


# ---------------------------------------------------------------------------------------------------------
# The process tree dies together; evaluation is logged once
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_while_a_run_evaluates_leaves_no_process_and_the_next_run_evaluates_once(warm_tiny, tmp_path):
    grid = write_grid(tmp_path, str(warm_tiny.path), name="ev", experiment="ev", steps=2,
                      evaluation={"benchmarks": ["arith"]})
    (rid,) = [p.run_id for p in load_grid(grid).points]
    folder = run_dir(tmp_path, "ev", rid)
    orchestrator = start_run(grid, tmp_path)
    wait_until(lambda: (folder / "run.log").exists() and "evaluating " in (folder / "run.log").read_text(), orchestrator,
               "the evaluation to start")
    worker = json.loads((folder / "worker.json").read_text())["child_pid"]
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    deadline = time.time() + 30
    while alive(worker) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(worker)
    wait_until_gone(str(folder))  # no evaluation (or any) process outlives the run

    result = cli("run", str(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = train_runs(tmp_path, "ev").values()
    assert run.data.tags["lgrpo.state"] == "done" and steps_of(tmp_path, run) == [1, 2]
    assert len(client_of(tmp_path).get_metric_history(run.info.run_id, "eval/arith/acc")) == 1


# ---------------------------------------------------------------------------------------------------------
# Stuck states: a trained run whose final model is gone
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_trained_run_whose_final_model_is_gone_is_rebuilt_or_trained_again_as_plan_says(warm_tiny, tmp_path):
    import shutil

    too_long = {"benchmarks": ["arith"], "limit": 4, "overrides": {"arith": {"max_tokens": 300}}}  # eval fails: trained
    grid = write_grid(tmp_path, str(warm_tiny.path), name="fin", experiment="fin", steps=2, evaluation=too_long)
    (rid,) = [p.run_id for p in load_grid(grid).points]
    folder = run_dir(tmp_path, "fin", rid)
    assert cli("run", str(grid), cwd=tmp_path).returncode == 1
    (run,) = train_runs(tmp_path, "fin").values()
    assert run.data.tags["lgrpo.state"] == "trained"
    weights = (folder / "checkpoint-2" / "model.safetensors").read_bytes()

    shutil.rmtree(folder / "final")
    grid = write_grid(tmp_path, str(warm_tiny.path), name="fin", experiment="fin", steps=2,
                      evaluation={"benchmarks": ["arith"], "limit": 4})
    plan = cli("plan", str(grid), cwd=tmp_path)
    assert "final model gone: run will rebuild it from checkpoint-2" in " ".join(plan.stdout.split()), plan.stdout
    result = cli("run", str(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = train_runs(tmp_path, "fin").values()
    assert run.data.tags["lgrpo.state"] == "done" and steps_of(tmp_path, run) == [1, 2]  # rebuilt, not trained again
    assert (folder / "final" / "model.safetensors").read_bytes() == weights
    assert " trained in " not in (folder / "run.log").read_text().rsplit("\n==> ", 1)[1]


@pytest.mark.slow
def test_a_trained_run_without_its_final_model_or_last_checkpoint_trains_again_from_the_newest(warm_tiny, tmp_path):
    import shutil

    too_long = {"benchmarks": ["arith"], "limit": 4, "overrides": {"arith": {"max_tokens": 300}}}
    grid = write_grid(tmp_path, str(warm_tiny.path), name="fin2", experiment="fin2", steps=2, evaluation=too_long)
    (rid,) = [p.run_id for p in load_grid(grid).points]
    folder = run_dir(tmp_path, "fin2", rid)
    assert cli("run", str(grid), cwd=tmp_path).returncode == 1
    shutil.rmtree(folder / "final")
    shutil.rmtree(folder / "checkpoint-2")
    grid = write_grid(tmp_path, str(warm_tiny.path), name="fin2", experiment="fin2", steps=2,
                      evaluation={"benchmarks": ["arith"], "limit": 4})
    plan = cli("plan", str(grid), cwd=tmp_path)
    assert "final model gone: run will train again from checkpoint-1" in " ".join(plan.stdout.split()), plan.stdout
    result = cli("run", str(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = train_runs(tmp_path, "fin2").values()
    assert run.data.tags["lgrpo.state"] == "done" and steps_of(tmp_path, run) == [1, 2]  # step 2 logged once
    assert "resuming from checkpoint-1" in (folder / "run.log").read_text()


def test_an_evaluation_process_killed_by_a_signal_is_said_so(tmp_path):
    """The vLLM evaluation runs in a fresh process (it must own the GPU's memory): when that process dies by SIGKILL,
    the run's error says "killed by SIGKILL", never an exit code such as 247; the process inherited the run's lock."""
    from lgrpo_bench.runs.lifecycle import EvaluationFailed, _evaluate_in_fresh_process
    from lgrpo_bench.runs.owner import claim_run, is_claimed
    from lgrpo_bench.tracking.record import RunLayout

    layout = RunLayout.of(tmp_path / "runs", "abc123", "e")
    report = tmp_path / "child.txt"
    fake_python = tmp_path / "python"  # stands for the interpreter: records what it was given, then dies by SIGKILL
    fake_python.write_text(f"#!/bin/sh\necho \"$@ fd=$LGRPO_RUN_LOCK_FD\" > {report}\nkill -9 $$\n")
    fake_python.chmod(0o755)
    with claim_run(layout) as claim, pytest.raises(EvaluationFailed) as raised:
        assert is_claimed(layout)
        _evaluate_in_fresh_process(layout, claim, python=str(fake_python))
    assert str(raised.value) == "run abc123: the evaluation process killed by SIGKILL (out of memory, or killed)"
    assert raised.value.returncode == 1
    assert report.read_text().split() == ["-m", "lgrpo_bench.runs", str(layout.root), "--step", "eval", f"fd={claim.fd}"]
    assert not is_claimed(layout)  # released with the claim
