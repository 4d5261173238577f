"""A grid on a real Ray cluster (issue 17): ``ray start --head`` (1 CPU) plus a second ``ray start --address``
node (2 CPUs) on this host (:class:`clusters.RayCluster`), joined by the grid with ``executor.address: auto``
(``$RAY_ADDRESS``), the real MLflow SQLite store, tiny runs.

Three runs with ``max_concurrent: 2`` on a cluster with room for three: never more than two run at once (the
runs' liveness records polled every 0.1 s), and two do. The head has one CPU, so at least one of the first two
runs executes on the worker node; once it has saved a checkpoint the worker node's raylet is SIGKILLed, which
takes down every Ray worker of that node and the run's training. That run ends ``failed`` with Ray's reason,
the grid goes on (the third run starts on the head and finishes), and the next ``lgrpo-bench run`` resumes
exactly the killed runs from their checkpoints into their MLflow runs (every step logged once).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from clusters import RayCluster, log, pid_alive
from test_faults import EXPERIMENT, checkpointed_not_final, loss_steps, resumed_from, run_ids, states, train_runs, write_grid

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.xdist_group("ray")]  # one Ray at a time

STEPS = 5


@pytest.fixture(scope="session")
def ray_cluster():
    """A head with 1 CPU and a worker node with 2 CPUs, for the session."""
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists() and shutil.which("ray") is None:
        reason = "the ray command is not installed (pip install 'lgrpo-bench[ray]')"
        if os.environ.get("LGRPO_REQUIRE_CLUSTERS"):
            pytest.fail(f"LGRPO_REQUIRE_CLUSTERS is set but {reason}")
        pytest.skip(reason)
    cluster = RayCluster(head_cpus=1, worker_cpus=(2,))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class LivenessWatch:
    """Polls the runs folder in a thread: the run ids with a liveness record (``worker.json``) at each poll, and
    the Ray worker (pid, parent pid) each run was seen in."""

    def __init__(self, runs_dir: Path, period_s: float = 0.1):
        self.runs_dir = runs_dir
        self.period_s = period_s
        self.snapshots: list[set[str]] = []
        self.workers: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            working = set()
            for record in self.runs_dir.glob("*/worker.json"):
                working.add(record.parent.name)
                try:
                    pid = json.loads(record.read_text())["pid"]
                    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, KeyError, IndexError):
                    continue
                if self.workers.get(record.parent.name, (None,))[0] != pid:  # the parent when first seen
                    self.workers[record.parent.name] = (pid, parent)
            self.snapshots.append(working)
            self._stop.wait(self.period_s)

    def __enter__(self) -> LivenessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def start_grid(grid: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lgrpo_bench.cli", "run", str(grid)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "250"})


def test_ray_cluster_grid_with_address_auto_survives_a_dead_worker_node(ray_cluster, warm_tiny, tmp_path, monkeypatch):
    started = time.monotonic()
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.setenv(key, ray_cluster.env[key])
    grid = write_grid(tmp_path, str(warm_tiny.path), seeds=(0, 1, 2), name="ray", steps=STEPS)
    data = yaml.safe_load(grid.read_text())
    data["executor"] = {"kind": "ray", "address": "auto", "num_cpus_per_run": 1, "max_concurrent": 2}
    grid.write_text(yaml.safe_dump(data, sort_keys=False))
    rids = run_ids(grid)
    head_raylet, worker_raylet = ray_cluster.raylets()
    log(f"grid 'ray' of 3 runs, max_concurrent 2, on {ray_cluster.address} (head raylet {head_raylet}, "
        f"worker node raylet {worker_raylet})")

    with LivenessWatch(tmp_path / "runs" / EXPERIMENT) as watch:
        orchestrator = start_grid(grid, tmp_path, ray_cluster.env)
        try:
            deadline = time.monotonic() + 300
            while True:  # the runs on the worker node, once every one of them has a checkpoint
                on_worker = {rid for rid, (_pid, parent) in watch.workers.items() if parent == worker_raylet
                             and (tmp_path / "runs" / EXPERIMENT / rid / "worker.json").exists()}
                if on_worker and all(checkpointed_not_final(tmp_path / "runs" / EXPERIMENT / rid) for rid in on_worker):
                    break
                if orchestrator.poll() is not None or time.monotonic() > deadline:
                    orchestrator.kill()
                    raise AssertionError(f"no run reached a checkpoint on the worker node; seen {watch.workers}:\n"
                                         f"{orchestrator.communicate()[0]}")
                time.sleep(0.05)
            victims = sorted(on_worker)
            for rid in victims:  # paused: the raylet's death, not the run's own speed, decides how it ends
                child = json.loads((tmp_path / "runs" / EXPERIMENT / rid / "worker.json").read_text())["child_pid"]
                os.kill(child, signal.SIGSTOP)
            os.kill(worker_raylet, signal.SIGKILL)
            log(f"SIGKILL to the worker node's raylet (pid {worker_raylet}) while it runs {victims}")
            output, _ = orchestrator.communicate(timeout=400)
        finally:
            if orchestrator.poll() is None:
                orchestrator.kill()
    print(output)
    log(f"first lgrpo-bench run ended (exit {orchestrator.returncode}) after {time.monotonic() - started:.0f} s; "
        f"runs seen on (pid, parent): {watch.workers}")

    # max_concurrent: never more than 2 runs at once, and 2 did run at once
    assert max(len(s) for s in watch.snapshots) == 2, f"max_concurrent 2, seen {max(watch.snapshots, key=len)}"
    assert not pid_alive(worker_raylet)

    # the killed runs failed with Ray's reason; the grid went on and finished the others
    others = [rid for rid in rids if rid not in victims]
    assert orchestrator.returncode == 1, output
    assert f"done {len(others)}, failed {len(victims)}" in output, output
    for rid in victims:
        assert f"failed {rid}: train Ray task failed:" in output, output
    runs = train_runs(tmp_path)
    assert {rid: run.data.tags["lgrpo.state"] for rid, run in runs.items()} == {
        rid: "failed" if rid in victims else "done" for rid in rids}
    for rid in victims:
        assert runs[rid].data.tags["lgrpo.error"].startswith("train Ray task failed:")
        assert runs[rid].info.status == "FAILED"
    assert {rid: s for rid, s in states(grid).items() if s != "done"} == dict.fromkeys(victims, "failed")
    logged_before = {rid: loss_steps(tmp_path, runs[rid]) for rid in victims}
    assert all(steps and max(steps) < STEPS for steps in logged_before.values()), logged_before

    # the next run resumes exactly the killed runs (on the head now), into their MLflow runs
    again = start_grid(grid, tmp_path, ray_cluster.env)
    again_out = again.communicate(timeout=400)[0]
    print(again_out)
    assert again.returncode == 0, again_out
    assert f"ran {len(victims)} " in again_out and f"skipped {len(others)} already done" in again_out, again_out
    final = train_runs(tmp_path)
    assert {rid: run.info.run_id for rid, run in final.items()} == {rid: run.info.run_id for rid, run in runs.items()}
    for rid in others:
        assert final[rid].info.end_time == runs[rid].info.end_time
    for rid in victims:
        assert loss_steps(tmp_path, final[rid]) == list(range(1, STEPS + 1))
        assert len(resumed_from(tmp_path / "runs" / EXPERIMENT / rid)) == 1
    assert set(states(grid).values()) == {"done"}
    # the cluster was begun by `ray start` in this test's environment, without what the orchestrator sets (MLflow's
    # telemetry switch): each Ray worker's warm server imports in its first job's environment, so every attempt forks
    for rid in rids:
        headers = [line for line in (tmp_path / "runs" / EXPERIMENT / rid / "run.log").read_text().splitlines()
                   if line.startswith("==> ")]
        assert headers and all(line.endswith("[forked from the warm server]") for line in headers), headers
    log(f"Ray test: resumed {victims} from {[resumed_from(tmp_path / 'runs' / EXPERIMENT / rid) for rid in victims]}; "
        f"whole test {time.monotonic() - started:.0f} s")
