"""Grid dispatch: states, GPU packing, commands, sbatch parameters (fast); then real grids of tiny runs with the
real MLflow store on the local, Ray and submitit executors (slow): finish, skip, retry, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lgrpo_bench.runs.resolve import load_grid
from lgrpo_bench.config.grid import SlurmExecutorConfig
from lgrpo_bench.dispatch import GpuPool, RunJob, make_executor, run_argv, slurm_parameters, submitit_parameters
from lgrpo_bench.dispatch.job import describe_exit, job_steps
from lgrpo_bench.dispatch.progress import LogProgress, read_log_progress
from lgrpo_bench.dispatch.state import (
    DONE,
    FAILED,
    NEW,
    PRUNED,
    RUNNING,
    STALE_AFTER_S,
    STOPPED,
    TRAINED,
    classify,
    process_start_ticks,
    worker_alive,
)

PY = sys.executable


# ---------------------------------------------------------------------------------------------------------
# GPU packing (fake device ids: there is no GPU here)
# ---------------------------------------------------------------------------------------------------------
def test_gpu_pool_never_shares_unless_allowed():
    pool = GpuPool([0, 1, 2, 3])
    assert [pool.acquire(1) for _ in range(4)] == [["0"], ["1"], ["2"], ["3"]]
    assert pool.acquire(1) is None
    pool.release(["2"])
    assert pool.acquire(1) == ["2"] and pool.acquire(1) is None


def test_gpu_pool_multi_gpu_runs_take_whole_free_gpus():
    pool = GpuPool(["GPU-a", "GPU-b", "GPU-c", "GPU-d"])
    assert pool.acquire(2) == ["GPU-a", "GPU-b"] and pool.acquire(2) == ["GPU-c", "GPU-d"] and pool.acquire(2) is None
    pool.release(["GPU-a", "GPU-b"])
    assert pool.acquire(3) is None and pool.acquire(2) == ["GPU-a", "GPU-b"]
    assert pool.fits(4) and not pool.fits(5)


def test_gpu_pool_sharing_spreads_first_then_shares_up_to_the_limit():
    pool = GpuPool([0, 1], runs_per_gpu=2)
    assert [pool.acquire(1) for _ in range(4)] == [["0"], ["1"], ["0"], ["1"]]
    assert pool.acquire(1) is None and pool.load == {"0": 2, "1": 2}
    pool.release(["1"])
    assert pool.acquire(1) == ["1"]
    with pytest.raises(ValueError, match="released more often"):
        GpuPool([0]).release(["0"])


def write_fake_python(folder: Path) -> Path:
    """An interpreter stand-in: records which GPUs its run saw and when, then exits 0."""
    script = folder / "fake-python"
    script.write_text("#!/bin/sh\n"  # argv: -m lgrpo_bench.runs <run_dir>
                      'run=$(basename "$3")\n'
                      'echo "$(date +%s.%N) start $CUDA_VISIBLE_DEVICES" >> "$RECORD_DIR/$run"\n'
                      "sleep 0.4\n"
                      'echo "$(date +%s.%N) end" >> "$RECORD_DIR/$run"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_local_executor_hands_out_gpus_through_cuda_visible_devices(tmp_path, monkeypatch):
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    python = write_fake_python(tmp_path)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "gpus", "executor": {"kind": "local", "slots": 8, "gpus_per_run": 2,
                                                                 "python": str(python)}}))
    expanded = load_grid(grid)
    executor = make_executor(expanded.grid.executor, "gpus", gpu_ids=["0", "1", "2", "3", "4"])
    jobs = [RunJob(f"run{i}", str(tmp_path / f"run{i}"), "sqlite:///unused", "e", python=str(python)) for i in range(5)]
    executor.submit(jobs)
    results = []
    while len(results) < 5:
        results += executor.wait(5.0)
    assert all(r.ok for r in results), results
    spans = []
    for job in jobs:
        start, end = (records / job.run_id).read_text().splitlines()
        devices = start.split()[2].split(",")
        spans.append((float(start.split()[0]), float(end.split()[0]), devices))
        assert len(devices) == 2 and set(devices) <= {"0", "1", "2", "3"}  # 5 GPUs hold two pairs; "4" stays idle
    for i, (start_a, end_a, gpus_a) in enumerate(spans):
        for start_b, end_b, gpus_b in spans[i + 1:]:
            if start_a < end_b and start_b < end_a:  # ran at the same time: no GPU in common
                assert not set(gpus_a) & set(gpus_b)
    assert max(sum(1 for s, e, _ in spans if s <= t < e) for t, _, _ in spans) == 2


def test_cpu_runs_see_no_gpu(tmp_path, monkeypatch):
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    python = write_fake_python(tmp_path)
    executor = make_executor(load_grid(_grid_file(tmp_path, {"name": "cpu"})).grid.executor, "cpu")
    executor.submit([RunJob("r", str(tmp_path / "r"), "sqlite:///unused", "e", python=str(python))])
    (result,) = executor.wait(10.0)
    assert result.ok and (records / "r").read_text().split("\n")[0].split()[2:] == []


def _grid_file(folder: Path, data: dict) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------
def test_single_and_multi_gpu_worker_commands():
    assert run_argv("runs/abc", python="py") == ["py", "-m", "lgrpo_bench.runs", "runs/abc"]
    assert run_argv("runs/abc", python="py", gpus=1) == ["py", "-m", "lgrpo_bench.runs", "runs/abc"]
    assert run_argv("runs/abc", python="py", gpus=4, accelerate_config="zero2.yaml", main_process_port=29731) == [
        "py", "-m", "accelerate.commands.launch", "--num_processes", "4", "--num_machines", "1",
        "--config_file", "zero2.yaml", "--main_process_port", "29731", "-m", "lgrpo_bench.runs", "runs/abc"]


def test_a_job_is_one_worker_process_that_owns_the_whole_lifecycle():
    job = RunJob("abc", "runs/abc", "sqlite:///x", "e", python="py")
    assert job_steps(job) == [("run", ["py", "-m", "lgrpo_bench.runs", "runs/abc"])]
    job.gpus = 8
    (name, argv), = job_steps(job, port=1234)
    assert argv[:7] == ["py", "-m", "accelerate.commands.launch", "--num_processes", "8", "--num_machines", "1"]
    assert argv[7:9] == ["--main_process_port", "1234"] and argv[-3:] == ["-m", "lgrpo_bench.runs", "runs/abc"]


def test_sbatch_script_of_a_paper_grid():
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    config = SlurmExecutorConfig(partition="gpu", time="1-00:00:00", gpus_per_node=8, cpus_per_task=32, mem="256G",
                                 setup=["module load cuda/12.4", "source .venv/bin/activate"], array_parallelism=4,
                                 account="rl", additional={"mail-type": "END"})
    params = slurm_parameters(config, "paper")
    assert params == {"job_name": "lgrpo-paper", "time": 1440, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 32,
                      "gpus_per_node": 8, "partition": "gpu", "mem": "256G", "account": "rl",
                      "setup": ["module load cuda/12.4", "source .venv/bin/activate"], "array_parallelism": 4,
                      "additional_parameters": {"mail-type": "END"}}
    assert set(params) <= SlurmExecutor._valid_parameters()
    assert submitit_parameters(config, "paper") == {f"slurm_{key}": value for key, value in params.items()}
    script = _make_sbatch_string(command="python -u -m submitit.core._submit /f", folder="/f", map_count=45, **params)
    for line in ("#SBATCH --array=0-44%4", "#SBATCH --partition=gpu", "#SBATCH --time=1440", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=32", "#SBATCH --mem=256G", "#SBATCH --account=rl", "#SBATCH --mail-type=END",
                 "#SBATCH --job-name=lgrpo-paper", "#SBATCH --ntasks-per-node=1"):
        assert line in script.splitlines(), line
    assert script.index("module load cuda/12.4") < script.index("source .venv/bin/activate") < script.index("srun")


def test_submission_up_to_sbatch_is_the_real_submitit_path(tmp_path, monkeypatch):
    """Fake sbatch/srun/scancel on PATH: submitit writes and submits the real job-array script and pickles."""
    from lgrpo_bench.dispatch import SubmititExecutor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"sbatch": 'cp "$1" "$SUBMITTED"\necho "Submitted batch job 4242"\n', "srun": "exit 0\n",
                       "scancel": 'echo "$@" >> "$CANCELLED"\n', "sacct": "exit 0\n"}.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SUBMITTED", str(tmp_path / "submitted.sh"))
    monkeypatch.setenv("CANCELLED", str(tmp_path / "cancelled.txt"))
    config = SlurmExecutorConfig(partition="a100", time="02:00:00", gpus_per_node=1, folder=str(tmp_path / "submitit"),
                                 setup=["source .venv/bin/activate"])
    executor = SubmititExecutor(config, "paper")
    executor.start()
    jobs = [RunJob(f"run{i}", f"/runs/run{i}", "sqlite:///x", "e") for i in range(3)]
    executor.submit(jobs)
    script = (tmp_path / "submitted.sh").read_text().splitlines()
    assert {"#SBATCH --array=0-2%3", "#SBATCH --partition=a100", "#SBATCH --time=120", "#SBATCH --gpus-per-node=1",
            "#SBATCH --job-name=lgrpo-paper", "source .venv/bin/activate"} <= set(script)
    pickles = sorted((tmp_path / "submitit").glob("4242_*_submitted.pkl"))
    assert len(pickles) == 3
    executor.cancel()
    assert {r.run_id for r in executor.wait(0)} == {"run0", "run1", "run2"}


# ---------------------------------------------------------------------------------------------------------
# States and liveness
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tags, status, alive, parent_failure, expected", [
    (None, None, False, None, (NEW, "", True)),
    (None, None, True, None, (RUNNING, "starting", True)),
    (None, None, False, "train exit code 2", (FAILED, "train exit code 2", True)),
    ({"lgrpo.state": "done"}, "FINISHED", False, None, (DONE, "", False)),
    ({"lgrpo.state": "trained"}, "FINISHED", False, None, (TRAINED, "evaluation pending", False)),
    ({"lgrpo.state": "trained"}, "FINISHED", True, None, (RUNNING, "evaluating", False)),
    ({"lgrpo.state": "trained", "lgrpo.failed_step": "eval", "lgrpo.error": "boom"}, "FINISHED", False, None,
     (FAILED, "evaluation failed: boom", False)),
    ({"lgrpo.state": "running"}, "RUNNING", True, None, (RUNNING, "", True)),
    ({"lgrpo.state": "running"}, "RUNNING", False, None,
     (STOPPED, "its process is gone (killed, or its machine went away)", True)),
    ({"lgrpo.state": "failed", "lgrpo.error": "OSError: x"}, "FAILED", False, None, (FAILED, "OSError: x", True)),
    ({"lgrpo.state": "stopped"}, "KILLED", False, None, (STOPPED, "interrupted (Ctrl-C or SIGTERM)", True)),
    ({"lgrpo.state": "stopped"}, "KILLED", True, None, (RUNNING, "retrying", True)),
    ({"lgrpo.state": "pruned"}, "FINISHED", False, None, (PRUNED, "stopped by its sweep's pruner", False)),
    ({"lgrpo.state": "failed"}, "FAILED", True, None, (RUNNING, "retrying", True)),
])
def test_classify(tags, status, alive, parent_failure, expected):
    assert classify(tags, status, alive, parent_failure) == expected


def test_worker_liveness_by_pid_here_and_by_heartbeat_elsewhere():
    me = socket.gethostname()
    pid = os.getpid()
    assert worker_alive({"host": me, "pid": pid, "pid_start": process_start_ticks(pid)})
    assert not worker_alive({"host": me, "pid": pid, "pid_start": process_start_ticks(pid) + 1})  # pid reused
    finished = subprocess.Popen(["true"])
    finished.wait()
    assert not worker_alive({"host": me, "pid": finished.pid, "pid_start": None})
    now = 1_000_000.0
    assert worker_alive({"host": "node7", "pid": 1, "heartbeat": now - 5}, now=now)
    assert not worker_alive({"host": "node7", "pid": 1, "heartbeat": now - STALE_AFTER_S - 1}, now=now)
    assert not worker_alive(None)


def test_describe_exit():
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "killed by SIGKILL (out of memory, or killed)"
    assert describe_exit(137) == "killed by SIGKILL (out of memory, or killed)"
    assert describe_exit(-15) == "killed by SIGTERM"


def test_progress_is_read_from_the_last_progress_line(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("step 3/30  reward 0.359  len 10.9  λ +0.150  0.83 s/step\nnoise\n"
                   "step 6/30  reward 0.344  len 12.2  0.65 s/step\nWriting model shards\n")
    assert read_log_progress(log) == LogProgress(6, 30, 0.344)
    assert read_log_progress(tmp_path / "missing.log") is None


# ---------------------------------------------------------------------------------------------------------
# Real grids: tiny runs, real processes, real MLflow store
# ---------------------------------------------------------------------------------------------------------
def grid_config(tmp_path: Path, model: str, *, executor: dict, axes: dict, name: str = "g") -> Path:
    data = {
        "name": name,
        "base": {
            "model": {"name": model},
            "task": {"name": "arith", "num_train_problems": 100, "num_heldout_problems": 16},
            "algorithm": {"name": "grpo", "r": 0.3},
            "train": {"max_steps": 3, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                      "heldout_every": 3, "heldout_size": 8, "save_every": 1, "samples_every": 0},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "grid-test",
                         "runs_dir": str(tmp_path / "runs")},
        },
        "axes": axes,
        "executor": executor,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "lgrpo_bench.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=cwd)


def train_runs(tmp_path: Path) -> dict[str, object]:
    from lgrpo_bench.tracking import open_client

    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid-test").experiment_id
    runs = client.search_runs([experiment], "tags.`lgrpo.kind` = 'train'")
    by_id: dict[str, object] = {}
    for run in runs:
        assert run.data.tags["lgrpo.run_id"] not in by_id, "one MLflow run per run id"
        by_id[run.data.tags["lgrpo.run_id"]] = run
    return by_id


def grid_parent(tmp_path: Path, name: str = "g"):
    from lgrpo_bench.tracking import open_client

    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid-test").experiment_id
    (parent,) = client.search_runs([experiment], f"tags.`lgrpo.kind` = 'grid' AND tags.`lgrpo.grid` = '{name}'")
    return client, parent


def states(grid: Path) -> dict[str, str]:
    from lgrpo_bench.dispatch import plan_grid

    expanded = load_grid(grid)
    return {rid: status.state for rid, status in plan_grid(expanded).items()}


@pytest.mark.slow
def test_local_grid_finishes_skips_retries_and_resumes(warm_tiny, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # loads as no model at all: training raises
    grid = grid_config(tmp_path, str(warm_tiny.path), executor={"kind": "local", "slots": 2},
                       axes={"model.name": [str(warm_tiny.path), str(broken)], "algorithm.name": ["grpo", "lambda_grpo"]})
    points = load_grid(grid).points
    good = [p.run_id for p in points if p.values["model.name"] == str(warm_tiny.path)]
    bad = [p.run_id for p in points if p.values["model.name"] == str(broken)]

    # 1. a run that raises does not stop the others; it is reported, recorded in MLflow, exit code 1
    first = cli("run", str(grid), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "done 2, failed 2" in first.stdout
    for rid in bad:
        assert f"failed {rid}: train exit code 1" in first.stdout
    runs = train_runs(tmp_path)
    client, parent = grid_parent(tmp_path)
    assert set(runs) == set(good) | set(bad) and parent.data.tags["lgrpo.state"] == "failed"
    for rid in good:
        assert runs[rid].data.tags["lgrpo.state"] == "done"
    for rid in bad:
        tags = runs[rid].data.tags
        assert tags["lgrpo.state"] == "failed" and tags["lgrpo.error"] and tags["lgrpo.failed_step"] == "train"
        artifacts = {a.path for a in client.list_artifacts(runs[rid].info.run_id)}
        assert {"error.txt", "run_log_tail.txt"} <= artifacts
    assert {run.data.tags["mlflow.parentRunId"] for run in runs.values()} == {parent.info.run_id}
    assert states(grid) == {**dict.fromkeys(good, DONE), **dict.fromkeys(bad, FAILED)}

    # 2. fixed: re-running launches exactly the failed runs, into their own MLflow runs
    shutil.copytree(warm_tiny.path, broken, dirs_exist_ok=True)
    second = cli("run", str(grid), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "ran 2 " in second.stdout and "skipped 2 already done" in second.stdout
    after = train_runs(tmp_path)
    assert {rid: r.info.run_id for rid, r in after.items()} == {rid: r.info.run_id for rid, r in runs.items()}
    assert {r.data.tags["lgrpo.state"] for r in after.values()} == {"done"}
    assert grid_parent(tmp_path)[1].data.tags["lgrpo.state"] == "done"

    # 3. nothing left: re-running launches nothing
    third = cli("run", str(grid), cwd=tmp_path)
    assert third.returncode == 0 and "ran 0 " in third.stdout and "skipped 4 already done" in third.stdout
    assert "mean ± std over seeds" in third.stdout, third.stdout
    assert {rid: r.info.end_time for rid, r in train_runs(tmp_path).items()} == {rid: r.info.end_time for rid, r in after.items()}

    # 4. one finished run's state deleted, and the orchestrator SIGKILLed while it retrains that run
    target = good[0]
    client.delete_run(after[target].info.run_id)
    run_dir = tmp_path / "runs" / "grid-test" / target
    orchestrator = subprocess.Popen([PY, "-m", "lgrpo_bench.cli", "run", str(grid)], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                    cwd=tmp_path)
    checkpoint = run_dir / "checkpoint-1" / "lgrpo-manifest.json"  # complete once it exists
    old_results = sorted(path.name for path in run_dir.iterdir() if path.name.startswith(("checkpoint-", "final")))
    assert old_results, "the finished run left no checkpoint or final model to move aside"

    def moved_aside_then_checkpointed() -> bool:
        # The run makes the orphaned folder, moves the old results into it one by one, then trains: the old
        # checkpoint-1 stays in run_dir until it is moved, so wait for every old result to arrive there first.
        aside = list((tmp_path / "runs" / "grid-test").glob(f"{target}.orphaned-*"))
        return bool(aside) and all((aside[0] / name).exists() for name in old_results) and checkpoint.exists()

    deadline = time.time() + 300
    while not moved_aside_then_checkpointed() and orchestrator.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert orchestrator.poll() is None, "the grid ended before it could be killed:\n" + orchestrator.stdout.read()
    worker = json.loads((run_dir / "worker.json").read_text())
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    deadline = time.time() + 30
    while _alive(worker["child_pid"]) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(worker["child_pid"]), "the training process outlived its orchestrator"
    assert list((tmp_path / "runs" / "grid-test").glob(f"{target}.orphaned-*")), "the deleted run's results were moved aside"
    assert states(grid) == {**dict.fromkeys(set(good) | set(bad) - {target}, DONE), target: STOPPED}

    # 5. the next run resumes exactly that run, from its checkpoint, into one MLflow run
    fifth = cli("run", str(grid), cwd=tmp_path)
    assert fifth.returncode == 0, fifth.stdout + fifth.stderr
    assert "ran 1 " in fifth.stdout
    final = train_runs(tmp_path)
    assert set(final) == set(good) | set(bad) and final[target].info.run_id != after[target].info.run_id
    assert {r.data.tags["lgrpo.state"] for r in final.values()} == {"done"}
    losses = sorted(m.step for m in client.get_metric_history(final[target].info.run_id, "train/loss"))
    assert losses == [1, 2, 3]
    assert "resuming from checkpoint-" in (run_dir / "run.log").read_text()
    assert final[target].data.tags["mlflow.parentRunId"] == parent.info.run_id


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # never beside the Ray cluster of tests/test_ray_cluster.py: ray.init() could join it
def test_ray_executor_without_a_cluster_runs_a_two_run_grid(warm_tiny, tmp_path):
    """``executor: {kind: ray}`` with no address starts Ray in-process. (SLURM through submitit's real
    SlurmExecutor and a Ray cluster joined by address: tests/test_slurm_cluster.py, tests/test_ray_cluster.py.)"""
    executor = {"kind": "ray", "address": None, "num_cpus_per_run": 1, "local_num_cpus": 2}
    grid = grid_config(tmp_path, str(warm_tiny.path), executor=executor, axes={"train.seed": [0, 1]})
    result = cli("run", str(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done 2, failed 0" in result.stdout
    runs = train_runs(tmp_path)
    assert len(runs) == 2 and {r.data.tags["lgrpo.state"] for r in runs.values()} == {"done"}
    parent = grid_parent(tmp_path)[1]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    for rid in runs:
        assert "run " + rid in (tmp_path / "runs" / "grid-test" / rid / "run.log").read_text()


def test_live_view_renders_running_runs_with_step_reward_and_eta(tmp_path):
    from rich.console import Console

    from lgrpo_bench.dispatch.job import JobResult
    from lgrpo_bench.dispatch.progress import GridProgress

    expanded = load_grid(_grid_file(tmp_path, {"name": "live", "axes": {"train.seed": [0, 1, 2]}}))
    jobs = [RunJob(p.run_id, str(tmp_path / p.run_id), "sqlite:///x", "e") for p in expanded.points]
    (tmp_path / jobs[1].run_id).mkdir()
    (tmp_path / jobs[1].run_id / "run.log").write_text("step 10/40  reward 0.625  len 12.0  0.20 s/step\n")
    console = Console(force_terminal=True, record=True, width=160)
    with GridProgress(console, expanded, jobs, skipped=4, elsewhere=1, executor="local") as view:
        view.update({jobs[0].run_id, jobs[1].run_id})
        view.finished(JobResult(jobs[0].run_id, True))
        view.update({jobs[1].run_id})
        eta = view.eta_s()
    text = console.export_text()
    assert "grid live on local: done 1, running 1, failed 0, waiting 1 (+4 done before, 1 running elsewhere)" in text
    assert jobs[1].run_id in text and "10/40" in text and "0.625" in text and "train.seed=1" in text
    assert eta is not None and eta > 0  # 1.25 of 3 runs' work done


def test_make_job_writes_the_config_and_layers_the_environment(tmp_path, monkeypatch):
    """Grid runs and sweep trials get their jobs from one place: config written, GPUs from the executor section,
    the orchestrator's LGRPO_/HF_/... variables, then executor.env, then the caller's extra variables."""
    from lgrpo_bench.config import build_run_config, dump_yaml
    from lgrpo_bench.config.grid import SlurmExecutorConfig
    from lgrpo_bench.dispatch.orchestrator import make_job
    from lgrpo_bench.runs.resolve import prepare_run

    monkeypatch.setenv("LGRPO_DATA_DIR", "/data/math")
    monkeypatch.setenv("UNRELATED_VAR", "x")
    config = build_run_config({"tracking": {"runs_dir": str(tmp_path / "runs"), "uri": f"sqlite:///{tmp_path / 'm.db'}"},
                               "eval": {"benchmarks": ["arith"]}})
    prepared = prepare_run(config, rid="abc123", write=False)
    executor = SlurmExecutorConfig(gpus_per_node=4, env={"LGRPO_DATA_DIR": "/shared/math", "A": "1"})
    job = make_job(prepared, executor, label="trial 3", parent_run_id="p1", extra_env={"A": "2", "LGRPO_TRIAL": "{}"})
    assert job.gpus == 4 and job.parent_run_id == "p1"
    assert job.env["LGRPO_DATA_DIR"] == "/shared/math" and job.env["A"] == "2" and job.env["LGRPO_TRIAL"] == "{}"
    assert "UNRELATED_VAR" not in job.env
    assert job.layout.config_file.read_text() == dump_yaml(prepared.config)
    assert job.run_dir == str(tmp_path / "runs" / "lgrpo-bench" / "abc123")
    dry = make_job(prepare_run(config, rid="def456", write=False), executor, label="", parent_run_id=None, write=False)
    assert not Path(dry.run_dir).exists()
