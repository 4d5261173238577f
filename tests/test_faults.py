"""Fault injection on real grids (issue #8): real processes, the real MLflow SQLite store, tiny runs.

Each test injects one fault into ``lgrpo-bench run`` and checks the state it leaves, then that the next
``lgrpo-bench run`` finishes exactly the expected runs with one MLflow train run per run id — or that the
fault gives a clear error before anything starts. The planted-token test checks that access tokens in the
environment and in the grid's ``executor.env`` reach no MLflow param, tag, metric name or artifact.
(tests/test_dispatch.py already covers a raising run among others, re-running a finished grid, and
SIGKILL of the orchestrator while it retrains one run.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lgrpo_bench.runs.resolve import load_grid

PY = sys.executable
EXPERIMENT = "faults"
STEPS = 4
RACE_STEPS = 12
"""Runs that get a fault mid-training: a tiny step takes 0.1-0.5 s here, so 12 steps leave a window to hit."""


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------
def write_grid(tmp_path: Path, model: str, *, seeds=(0, 1), slots: int = 2, uri: str | None = None,
               evaluation: dict | None = None, executor: dict | None = None, name: str = "faults",
               steps: int = STEPS) -> Path:
    """A grid of tiny arith runs (``steps`` steps of 4 prompts × 4 completions, a checkpoint every step)."""
    base = {
        "model": {"name": model},
        "task": {"name": "arith", "num_train_problems": 64, "num_heldout_problems": 16},
        "algorithm": {"name": "grpo"},
        "train": {"max_steps": steps, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0},
        "tracking": {"uri": uri or f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": EXPERIMENT,
                     "runs_dir": str(tmp_path / "runs")},
    }
    if evaluation is not None:
        base["eval"] = evaluation
    data = {"name": name, "base": base, "axes": {"train.seed": list(seeds)},
            "executor": {"kind": "local", "slots": slots, **(executor or {})}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250", **(extra or {})}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "lgrpo_bench.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(env), cwd=cwd)


def start_run(grid: Path, cwd: Path, *, sigint_ignored: bool = False, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``lgrpo-bench run GRID``; ``sigint_ignored``: as a background job of a script (``cmd &``) starts, with SIGINT
    ignored, which every process it starts inherits."""
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([PY, "-m", "lgrpo_bench.cli", "run", str(grid)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(env), cwd=cwd, preexec_fn=preexec)


def client_of(tmp_path: Path):
    from lgrpo_bench.tracking import open_client

    return open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")


def train_runs(tmp_path: Path) -> dict[str, object]:
    """Train runs by run id, asserting there is one MLflow run per run id."""
    client = client_of(tmp_path)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    by_id: dict[str, object] = {}
    for run in client.search_runs([experiment], "tags.`lgrpo.kind` = 'train'"):
        rid = run.data.tags["lgrpo.run_id"]
        assert rid not in by_id, f"two MLflow runs for run {rid}"
        by_id[rid] = run
    return by_id


def loss_steps(tmp_path: Path, run) -> list[int]:
    return sorted(m.step for m in client_of(tmp_path).get_metric_history(run.info.run_id, "train/loss"))


def states(grid: Path) -> dict[str, str]:
    from lgrpo_bench.dispatch import plan_grid

    return {rid: status.state for rid, status in plan_grid(load_grid(grid)).items()}


def run_ids(grid: Path) -> list[str]:
    return [point.run_id for point in load_grid(grid).points]


def wait_until(condition, process: subprocess.Popen, what: str, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the grid ended before {what}:\n{process.stdout.read()}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.03)


def holds_file_lock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a POSIX lock on ``path`` (``/proc/locks``): SQLite's locks on the store."""
    try:
        inode = os.stat(path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter's line
            continue
        try:
            holder, device_inode = int(fields[4]), fields[5]
        except (IndexError, ValueError):
            continue
        if holder == pid and int(device_inode.rsplit(":", 1)[1]) == inode:
            return True
    return False


def stop_outside_the_store(pid: int, store: Path, timeout_s: float = 60) -> None:
    """SIGSTOP ``pid`` at a moment it holds no lock on the MLflow store: stopped in the middle of a write, it would
    lock every other writer out (a stopped process is the test's doing, not the run's). Stop, look, and if it holds
    a lock let it go on for 20 ms and try again."""
    deadline = time.monotonic() + timeout_s
    while True:
        os.kill(pid, signal.SIGSTOP)
        if not holds_file_lock(pid, store):
            return
        os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} kept a lock on {store} for {timeout_s:.0f} s")
        time.sleep(0.02)


def checkpointed_not_final(run_dir: Path) -> bool:
    """Training is between checkpoints: at least one saved, the final model not yet written."""
    return (run_dir / "checkpoint-1" / "lgrpo-manifest.json").exists() and not (run_dir / "final").exists()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains ``text`` (a run's processes carry its folder in
    ``$LGRPO_RUN_DIR``, also when forked from a warm server, whose command line is the server's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + b" " + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text in seen.replace(b"\0", b" ").decode(errors="replace") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def session_of(pid: int) -> int:
    """The session id of ``pid`` (/proc/<pid>/stat field 6)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def metric_points(tmp_path: Path, run) -> set[tuple]:
    """Every logged point of a run: (metric, step, timestamp, value)."""
    client = client_of(tmp_path)
    keys = client.get_run(run.info.run_id).data.metrics
    return {(key, m.step, m.timestamp, m.value) for key in keys for m in client.get_metric_history(run.info.run_id, key)}


def resumed_from(run_dir: Path) -> list[str]:
    """Checkpoints training resumed from, in order, as its log says."""
    return [line.rsplit(" ", 1)[1] for line in (run_dir / "run.log").read_text().splitlines()
            if ": resuming from checkpoint-" in line]


def assert_completes(grid: Path, tmp_path: Path, *, ran: int, skipped: int) -> dict[str, object]:
    """The next ``run`` launches ``ran`` runs, skips ``skipped`` done ones, and leaves every run done, each in
    exactly one MLflow run."""
    result = cli("run", str(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ran {ran} " in result.stdout and f"done {ran}, failed 0" in result.stdout, result.stdout
    assert f"skipped {skipped} already done" in result.stdout, result.stdout
    runs = train_runs(tmp_path)
    assert set(runs) == set(run_ids(grid))
    assert {rid: run.data.tags["lgrpo.state"] for rid, run in runs.items()} == dict.fromkeys(runs, "done")
    assert set(states(grid).values()) == {"done"}
    return runs


# ---------------------------------------------------------------------------------------------------------
# 1. SIGKILL of one run's training process
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_of_a_training_process_fails_that_run_only_and_the_next_run_resumes_it(warm_tiny, tmp_path):
    grid = write_grid(tmp_path, str(warm_tiny.path), steps=RACE_STEPS)
    target, other = run_ids(grid)
    run_dir = tmp_path / "runs" / EXPERIMENT / target
    orchestrator = start_run(grid, tmp_path)
    wait_until(lambda: checkpointed_not_final(run_dir), orchestrator, f"run {target} saved a checkpoint")
    child = json.loads((run_dir / "worker.json").read_text())["child_pid"]
    assert alive(child) and session_of(child) == child  # the run's worker, in its own session
    os.kill(child, signal.SIGKILL)
    output, _ = orchestrator.communicate(timeout=240)

    # the grid goes on: the other run finishes, the killed one is failed with the signal and the log tail
    assert orchestrator.returncode == 1, output
    assert "done 1, failed 1" in output and f"failed {target}: train killed by SIGKILL" in output, output
    runs = train_runs(tmp_path)
    assert runs[other].data.tags["lgrpo.state"] == "done"
    tags = runs[target].data.tags
    assert tags["lgrpo.state"] == "failed" and tags["lgrpo.failed_step"] == "train"
    assert "killed by SIGKILL" in tags["lgrpo.error"]
    assert runs[target].info.status == "FAILED"
    client = client_of(tmp_path)
    tail = client.download_artifacts(runs[target].info.run_id, "run_log_tail.txt", str(tmp_path / "tail"))
    assert f"run {target}: MLflow run {runs[target].info.run_id}" in Path(tail).read_text()
    assert states(grid) == {target: "failed", other: "done"}
    logged_before = loss_steps(tmp_path, runs[target])
    assert logged_before and logged_before == sorted(set(logged_before)) and max(logged_before) < RACE_STEPS

    # the next run resumes it from its checkpoint into the same MLflow run, logging each step once
    final = assert_completes(grid, tmp_path, ran=1, skipped=1)
    assert final[target].info.run_id == runs[target].info.run_id
    assert final[other].info.end_time == runs[other].info.end_time  # the finished run was not touched
    assert loss_steps(tmp_path, final[target]) == list(range(1, RACE_STEPS + 1))
    assert len(resumed_from(run_dir)) == 1
    print(f"fault 1: train killed after logging steps {logged_before}; resumed from {resumed_from(run_dir)}")


# ---------------------------------------------------------------------------------------------------------
# 2. SIGKILL of the orchestrator while two runs train
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_of_the_orchestrator_takes_both_runs_down_and_the_next_run_resumes_both(warm_tiny, tmp_path):
    steps = 30  # both runs must be between checkpoints at once, though they start up to seconds apart
    grid = write_grid(tmp_path, str(warm_tiny.path), steps=steps)
    rids = run_ids(grid)
    run_dirs = [tmp_path / "runs" / EXPERIMENT / rid for rid in rids]
    orchestrator = start_run(grid, tmp_path)
    wait_until(lambda: all(checkpointed_not_final(d) for d in run_dirs), orchestrator, "both runs saved a checkpoint")
    children = [json.loads((d / "worker.json").read_text())["child_pid"] for d in run_dirs]
    assert all(alive(pid) for pid in children)
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()

    deadline = time.time() + 30
    while any(alive(pid) for pid in children) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children), "a training process outlived its orchestrator"
    dead_ms = time.time() * 1000
    assert not [pid for d in run_dirs for pid in processes_mentioning(str(d))], "an orphan still works on a run"
    runs = train_runs(tmp_path)
    assert set(runs) == set(rids)
    points = {rid: metric_points(tmp_path, runs[rid]) for rid in rids}
    time.sleep(2.0)
    assert {rid: metric_points(tmp_path, runs[rid]) for rid in rids} == points, "metrics landed after the kill"
    assert max(timestamp for found in points.values() for _, _, timestamp, _ in found) <= dead_ms
    assert states(grid) == dict.fromkeys(rids, "stopped")

    final = assert_completes(grid, tmp_path, ran=2, skipped=0)
    assert {rid: run.info.run_id for rid, run in final.items()} == {rid: run.info.run_id for rid, run in runs.items()}
    for rid, run_dir in zip(rids, run_dirs):
        assert loss_steps(tmp_path, final[rid]) == list(range(1, steps + 1))
        assert len(resumed_from(run_dir)) == 1
    print(f"fault 2: {sum(len(p) for p in points.values())} metric points before the kill, none after; "
          f"resumed from {[resumed_from(d) for d in run_dirs]}")


# ---------------------------------------------------------------------------------------------------------
# 3. A run whose evaluation raises
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_failed_evaluation_is_redone_without_retraining(warm_tiny, tmp_path):
    # tiny-s has a 256-token context: generating 300 tokens makes evaluate() raise (ValueError) after
    # training succeeded; eval settings are not part of the run id, so fixing them keeps the run.
    evaluation = {"benchmarks": ["arith"], "limit": 8, "overrides": {"arith": {"max_tokens": 300}}}
    grid = write_grid(tmp_path, str(warm_tiny.path), seeds=(0,), slots=1, evaluation=evaluation)
    (rid,) = run_ids(grid)
    run_dir = tmp_path / "runs" / EXPERIMENT / rid

    first = cli("run", str(grid), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"failed {rid}: eval exit code 1" in first.stdout and "does not fit the model's context" in first.stdout
    (run,) = train_runs(tmp_path).values()
    tags = run.data.tags
    assert tags["lgrpo.failed_step"] == "eval" and tags["lgrpo.state"] == "trained"
    assert "max_tokens=300 does not fit the model's context of 256 tokens" in tags["lgrpo.error"]
    assert not any(key.startswith("lgrpo.eval.") for key in tags)
    assert states(grid) == {rid: "failed"}
    trained = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()
               and path.parent.name.startswith(("checkpoint-", "final"))}
    steps = loss_steps(tmp_path, run)
    assert steps == list(range(1, STEPS + 1))

    evaluation["overrides"] = {}
    grid = write_grid(tmp_path, str(warm_tiny.path), seeds=(0,), slots=1, evaluation=evaluation)
    assert run_ids(grid) == [rid]
    (final,) = assert_completes(grid, tmp_path, ran=1, skipped=0).values()
    assert final.info.run_id == run.info.run_id
    assert final.data.tags["lgrpo.eval.arith.n"] == "8" and "eval/arith/acc" in final.data.metrics
    log = (run_dir / "run.log").read_text()
    first_attempt, second_attempt = log.split("\n==> ")[1:]
    assert " trained in " in first_attempt and "already trained" in second_attempt  # the second only evaluated
    assert " trained in " not in second_attempt and "arith: acc" in second_attempt
    assert loss_steps(tmp_path, final) == steps
    assert {path: path.stat().st_mtime_ns for path in trained} == trained  # checkpoints and model untouched


# ---------------------------------------------------------------------------------------------------------
# 4. A run folder that stops accepting writes (a full disk)
# ---------------------------------------------------------------------------------------------------------
def _make_read_only(folder: Path, probe: Path) -> tuple[str, Callable[[], object]]:
    """Make ``folder`` refuse new files, for real: chmod for a normal user; as root (who ignores modes) the
    immutable attribute. Returns (mechanism, undo); skips when neither works here."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        return "chmod 555", lambda: folder.chmod(mode)
    probe.mkdir()
    try:
        attr = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    except OSError as error:
        pytest.skip(f"running as root, where chmod does not stop writes, and chattr is missing ({error})")
    try:
        (probe / "x").touch()
        blocked = False
    except OSError:
        blocked = True
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    if attr.returncode != 0 or not blocked:
        pytest.skip(f"running as root, where chmod does not stop writes, and chattr +i does not work here "
                    f"({attr.stderr.strip() or 'writes still succeed'})")
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    return "chattr +i", lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.slow
def test_a_run_folder_that_turns_read_only_fails_that_run_and_it_completes_once_writable(warm_tiny, tmp_path):
    grid = write_grid(tmp_path, str(warm_tiny.path), steps=RACE_STEPS)
    target, other = run_ids(grid)
    run_dir = tmp_path / "runs" / EXPERIMENT / target
    orchestrator = start_run(grid, tmp_path)
    undo = None
    try:
        wait_until(lambda: checkpointed_not_final(run_dir), orchestrator, f"run {target} saved a checkpoint")
        mechanism, undo = _make_read_only(run_dir, tmp_path / "probe")
        output, _ = orchestrator.communicate(timeout=240)
    finally:
        if undo is not None:
            undo()
        if orchestrator.poll() is None:
            orchestrator.kill()

    assert orchestrator.returncode == 1, output
    assert "done 1, failed 1" in output and "states now: new 0  queued 0  running 0  trained 0  stopped 0  failed 1  pruned 0  done 1" in output, output
    errno = "Permission denied" if mechanism == "chmod 555" else "Operation not permitted"
    assert f"failed {target}: train exit code 1: PermissionError: [Errno {1 if errno.startswith('Op') else 13}] " \
           f"{errno}: '{run_dir}/checkpoint-" in output, (mechanism, output)
    runs = train_runs(tmp_path)
    assert runs[other].data.tags["lgrpo.state"] == "done"
    tags = runs[target].data.tags
    assert tags["lgrpo.state"] == "failed" and tags["lgrpo.failed_step"] == "train"
    assert tags["lgrpo.error"].startswith("PermissionError") and str(run_dir) in tags["lgrpo.error"]
    artifacts = {a.path for a in client_of(tmp_path).list_artifacts(runs[target].info.run_id)}
    assert {"error.txt", "train_log_tail.txt", "run_log_tail.txt"} <= artifacts
    assert states(grid) == {target: "failed", other: "done"}
    parent = client_of(tmp_path).search_runs([runs[target].info.experiment_id], "tags.`lgrpo.kind` = 'grid'")
    assert [run.data.tags["lgrpo.state"] for run in parent] == ["failed"]

    final = assert_completes(grid, tmp_path, ran=1, skipped=1)
    assert final[target].info.run_id == runs[target].info.run_id
    assert loss_steps(tmp_path, final[target]) == list(range(1, RACE_STEPS + 1))
    assert len(resumed_from(run_dir)) == 1
    print(f"fault 4 ({mechanism}): {tags['lgrpo.error']}; resumed from {resumed_from(run_dir)}")


# ---------------------------------------------------------------------------------------------------------
# 5. An MLflow server that does not answer
# ---------------------------------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the socket is: nothing listens there


@pytest.mark.slow
def test_an_unreachable_tracking_server_stops_the_grid_before_anything_starts(tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    grid = write_grid(tmp_path, "tiny-s", uri=uri)
    started = time.perf_counter()
    result = cli("run", str(grid), cwd=tmp_path, timeout=120)
    seconds = time.perf_counter() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: MLflow tracking server {uri} is unreachable" in result.stderr
    assert "Start the server" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faults.yaml"]  # no runs folder, store, or log
    assert seconds < 60, seconds  # the check gives up after 5 s: this only guards against hanging
    print(f"fault 5: exit 2 after {seconds:.1f} s (process start included)")


# ---------------------------------------------------------------------------------------------------------
# 6. Planted tokens never reach MLflow
# ---------------------------------------------------------------------------------------------------------
SECRETS = {"HF_TOKEN": "hf_plantedSECRET123", "WANDB_API_KEY": "wandbPlantedKEY456",
           "LGRPO_SERVICE_TOKEN": "svcPlantedTOKEN789"}
GRID_SECRET = ("HUGGING_FACE_HUB_TOKEN", "hf_gridPlantedSECRET000")


def _walk_files(folder: Path):
    return [path for path in folder.rglob("*") if path.is_file()] if folder.is_dir() else []


@pytest.mark.slow
def test_planted_tokens_reach_no_param_tag_metric_or_artifact(warm_tiny, tmp_path):
    from urllib.parse import urlparse

    seen_env = tmp_path / "seen-env.json"
    wrapper = tmp_path / "python-wrapper"  # records the environment each run's process really got
    wrapper.write_text(f"#!/bin/sh\n{PY} -c 'import json, os; json.dump(dict(os.environ), open(\"{seen_env}\", \"w\"))'\n"
                       f'exec {PY} "$@"\n')
    wrapper.chmod(0o755)
    grid = write_grid(tmp_path, str(warm_tiny.path), seeds=(0,), slots=1,
                      executor={"python": str(wrapper), "env": dict([GRID_SECRET])})
    result = cli("run", str(grid), cwd=tmp_path, env=SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr
    got = json.loads(seen_env.read_text())
    assert {key: got.get(key) for key in [*SECRETS, GRID_SECRET[0]]} == {**SECRETS, GRID_SECRET[0]: GRID_SECRET[1]}

    secrets = [*SECRETS.values(), GRID_SECRET[1]]
    client = client_of(tmp_path)
    leaks = []
    artifact_roots = set()
    for experiment in client.search_experiments():
        artifact_roots.add(Path(urlparse(experiment.artifact_location).path))
        for run in client.search_runs([experiment.experiment_id]):
            fields = {**{f"param {k}": v for k, v in run.data.params.items()},
                      **{f"tag {k}": v for k, v in run.data.tags.items()},
                      **{f"metric {k}": k for k in run.data.metrics}}
            leaks += [f"{run.data.tags.get('lgrpo.kind')} run {where}" for where, value in fields.items()
                      if any(secret in f"{where} {value}" for secret in secrets)]
    assert any(_walk_files(root) for root in artifact_roots), artifact_roots  # the walk below sees the artifacts
    files = [path for root in artifact_roots for path in _walk_files(root)]
    files += [*tmp_path.glob("mlflow.db*"), *_walk_files(tmp_path / "runs")]
    names = {path.name for path in files}
    assert {"grid.yaml", "config.yaml", "train.log"} <= names, names
    leaks += [str(path) for path in files if any(secret.encode() in path.read_bytes() for secret in secrets)]
    assert not leaks, leaks


def test_secret_executor_env_values_are_redacted_in_the_logged_grid_file():
    from lgrpo_bench.dispatch.orchestrator import REDACTED, redact_executor_env

    text = "name: g  # comment\nexecutor:\n  kind: local\n  env: {HF_TOKEN: 'hf_x1', db_password: pw9, HF_HOME: /h}\n"
    env = {"HF_TOKEN": "hf_x1", "db_password": "pw9", "HF_HOME": "/h"}
    redacted = yaml.safe_load(redact_executor_env(text, env))
    assert redacted == {"name": "g", "executor": {"kind": "local", "env": {
        "HF_TOKEN": REDACTED, "db_password": REDACTED, "HF_HOME": "/h"}}}
    assert redact_executor_env(text, {"HF_HOME": "/h"}) == text  # nothing secret: the file as written
