"""Grids on a real SLURM cluster (issue 17): slurmctld + slurmd + munged started for the session
(:class:`clusters.SlurmCluster`), jobs submitted through ``executor.kind: slurm`` and submitit's real
SlurmExecutor (``sbatch`` job arrays, ``srun``), the real MLflow SQLite store, tiny runs.

SLURM cannot limit a job to less than a minute, so the main test runs two grids at once to stay short:

* grid ``array``: three runs as one job array with ``array_parallelism: 2``. Runs 0 and 1 are paused (SIGSTOP
  of their training process) after their first checkpoint, so the third waits in the queue
  (``JobArrayTaskLimit``) for as long as the checks take: ``plan`` and ``status`` show it ``queued`` with its
  SLURM job id. Then run 0 gets ``scancel`` and run 1 continues: the grid goes on, runs 1 and 2 finish, run 0
  is ``failed``, "cancelled by SLURM". Never more than 2 of its jobs run at once (squeue polled every 0.3 s,
  and the job-completion log's start and end times), and 2 do.
* grid ``limit``: one run with ``time: 00:01:00`` whose training is paused after its first checkpoint, so it
  is still running when the limit strikes, whatever the speed of the machine (kept stopped: SLURM sends SIGCONT
  with submitit's early warning signal, and SIGCONT and SIGTERM at the limit, SIGKILL after KillWait): ``failed``, "timed out". It starts first, alone, so that its first checkpoint comes
  well within the minute on a loaded machine; the array starts once it is paused.

The next ``lgrpo-bench run`` of each grid (the limit raised in its file: not part of a run's identity)
resubmits exactly the failed run, which resumes from its checkpoint into its MLflow run (every step logged
once); the results table shows the array's three runs.
"""

from __future__ import annotations

import json
import os
import signal
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from clusters import ensure_slurm_installed, log, slurm_cluster
from test_faults import (
    EXPERIMENT,
    checkpointed_not_final,
    loss_steps,
    resumed_from,
    run_ids,
    states,
    stop_outside_the_store,
    train_runs,
    write_grid,
)

from lgrpo_bench.runs.resolve import load_grid
from lgrpo_bench.dispatch import plan_grid

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.xdist_group("slurm")]  # one cluster per session

STEPS = 5
"""Steps of each run: a checkpoint every step, so 4 steps between the first checkpoint and the end to act in."""


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A single-node SLURM cluster for the session (4 CPUs declared on this 2-core machine, KillWait 30 s)."""
    reason = ensure_slurm_installed()
    if reason:
        if os.environ.get("LGRPO_REQUIRE_CLUSTERS"):
            pytest.fail(f"LGRPO_REQUIRE_CLUSTERS is set but SLURM cannot be used: {reason}")
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm"), cpus=4, kill_wait_s=30) as cluster:
        yield cluster


@pytest.fixture
def on_slurm(slurm, monkeypatch):
    """The cluster's ``SLURM_CONF`` for this test and every process it starts."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm


def slurm_grid(tmp_path: Path, model: str, *, seeds, executor: dict, name: str = "slurm") -> Path:
    """test_faults' tiny grid with a SLURM executor (1 CPU per run, submitit's folder in ``tmp_path``)."""
    path = write_grid(tmp_path, model, seeds=seeds, name=name, steps=STEPS)
    data = yaml.safe_load(path.read_text())
    data["executor"] = {"kind": "slurm", "cpus_per_task": 1, "folder": str(tmp_path / "submitit"), **executor}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class ConcurrencyWatch:
    """Polls ``squeue`` in a thread: the ids of the jobs running at each poll."""

    def __init__(self, cluster, period_s: float = 0.3):
        self.cluster = cluster
        self.period_s = period_s
        self.snapshots: list[set[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.snapshots.append(self.cluster.running_jobs())
            self._stop.wait(self.period_s)

    def __enter__(self) -> ConcurrencyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class KeepStopped:
    """Re-sends SIGSTOP to a process every 0.2 s while held: SLURM sends a job SIGCONT with submitit's warning
    signal (``--signal USR2@90``: at once for a job shorter than 90 s), which would let a paused run finish
    before its time limit strikes. The limit's own SIGCONT + SIGTERM then leave it stopped, and SLURM kills it
    after KillWait."""

    def __init__(self, pid: int, store: Path):
        self.pid = pid
        self.store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        while not self._stop.wait(0.2):
            try:
                stop_outside_the_store(self.pid, self.store)
            except ProcessLookupError:
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def most_at_once(records: list[dict[str, str]]) -> int:
    """Largest number of jobs whose [StartTime, EndTime) intervals overlap (job-completion log, 1 s resolution)."""
    spans = [(datetime.fromisoformat(r["StartTime"]), datetime.fromisoformat(r["EndTime"])) for r in records
             if r.get("StartTime", "Unknown") != "Unknown"]
    return max((sum(1 for s, e in spans if s <= start < e) for start, _ in spans), default=0)


def training_pid(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / "worker.json").read_text()).get("child_pid")
    except (OSError, ValueError):
        return None


def start_grid(grid: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lgrpo_bench.cli", "run", str(grid)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "250"})


def store_of(run_dir: Path) -> Path:
    """The SQLite store of the tests' grids: ``<tmp_path>/mlflow.db`` (``<tmp_path>/runs/<experiment>/<run id>``)."""
    return run_dir.parent.parent.parent / "mlflow.db"


def pause_after_first_checkpoint(run_dirs: list[Path], processes: list[subprocess.Popen], timeout_s: float = 300) -> None:
    """SIGSTOP each run's training process once its first checkpoint is saved (and before its final model)."""
    waiting = list(run_dirs)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for run_dir in list(waiting):
            pid = training_pid(run_dir)
            if pid and checkpointed_not_final(run_dir):
                stop_outside_the_store(pid, store_of(run_dir))
                waiting.remove(run_dir)
                log(f"SIGSTOP to the training process of {run_dir.name} (pid {pid}) after its first checkpoint")
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"a grid ended before its runs could be paused:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"runs {[d.name for d in waiting]} saved no checkpoint in {timeout_s:.0f} s")
        time.sleep(0.05)


def test_slurm_job_array_queues_cancels_times_out_and_resumes(on_slurm, warm_tiny, tmp_path):
    slurm = on_slurm
    started = time.monotonic()
    model = str(warm_tiny.path)
    array = slurm_grid(tmp_path, model, seeds=(0, 1, 2), executor={"array_parallelism": 2, "time": "00:10:00"}, name="array")
    limit = slurm_grid(tmp_path, model, seeds=(3,), executor={"time": "00:01:00"}, name="limit")
    cancelled, finishing, queued = run_ids(array)
    (timed_out,) = run_ids(limit)
    run_dirs = {rid: tmp_path / "runs" / EXPERIMENT / rid for rid in (cancelled, finishing, queued, timed_out)}
    log(f"grid 'array' (array_parallelism 2): {cancelled} gets scancel, {finishing} finishes, {queued} waits; "
        f"grid 'limit': {timed_out} outlives its 1-minute limit")

    with ConcurrencyWatch(slurm) as watch:
        # the limit's run starts alone: it must reach its first checkpoint well within its minute
        orchestrators = [start_grid(limit, tmp_path)]
        held = None
        try:
            pause_after_first_checkpoint([run_dirs[timed_out]], orchestrators)
            held = KeepStopped(training_pid(run_dirs[timed_out]), store_of(run_dirs[timed_out]))
            orchestrators.insert(0, start_grid(array, tmp_path))
            pause_after_first_checkpoint([run_dirs[cancelled], run_dirs[finishing]], orchestrators[:1])
            array_id = json.loads((run_dirs[cancelled] / "submitted.json").read_text())["job_id"].split("_")[0]
            log(f"squeue while runs 0 and 1 of array {array_id} are paused: {slurm.squeue()}")

            # the third run of the array waits for a slot: queued, with its SLURM job id, in plan and status
            shown = [subprocess.Popen([sys.executable, "-m", "lgrpo_bench.cli", *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                      env={**os.environ, "COLUMNS": "250"})
                     for args in (["plan", str(array), "--json"], ["status", str(array)])]
            plan_out, status_out = (process.communicate(timeout=300)[0] for process in shown)
            assert [process.returncode for process in shown] == [0, 0], plan_out + status_out
            rows = {row["run_id"]: row for row in json.loads(plan_out)["runs"]}
            assert rows[queued]["state"] == "queued", rows[queued]
            assert rows[queued]["detail"] == f"SLURM job {array_id}_2 pending, JobArrayTaskLimit"
            assert {rows[r]["state"] for r in (cancelled, finishing)} == {"running"}
            assert f"SLURM job {array_id}_2 pending" in status_out and "queued 1" in status_out, status_out
            log(f"plan shows {queued}: queued, {rows[queued]['detail']!r}")

            slurm.scancel(f"{array_id}_0")
            os.kill(training_pid(run_dirs[finishing]), signal.SIGCONT)
            outputs = [process.communicate(timeout=400)[0] for process in orchestrators]
        finally:
            if held is not None:
                held.release()
            for process in orchestrators:
                if process.poll() is None:
                    process.kill()
    array_out, limit_out = outputs
    print(array_out, limit_out, sep="\n")
    records = slurm.jobcomp_records()
    log(f"first runs ended after {time.monotonic() - started:.0f} s (exits {[p.returncode for p in orchestrators]}); "
        f"job-completion log: {[(r['JobId'], r.get('ArrayJobId'), r.get('ArrayTaskId'), r['JobState'], r['StartTime'], r['EndTime']) for r in records]}")

    # array parallelism: never more than 2 of the array's jobs running, and 2 did run at once
    in_array = [{job for job in snapshot if job.startswith(f"{array_id}_")} for snapshot in watch.snapshots]
    assert max(len(jobs) for jobs in in_array) == 2, f"array_parallelism 2, squeue saw {max(in_array, key=len)}"
    assert most_at_once([r for r in records if r.get("ArrayJobId") == array_id]) <= 2
    assert {f"{array_id}_{i}" for i in range(3)} <= set().union(*in_array)

    # the array went on after the scancel; the limit's run timed out; each failure with SLURM's reason
    assert orchestrators[0].returncode == 1 and "done 2, failed 1" in array_out, array_out
    assert f"failed {cancelled}: train cancelled by SLURM (job {array_id}_0 CANCELLED" in array_out, array_out
    assert orchestrators[1].returncode == 1 and "done 0, failed 1" in limit_out, limit_out
    limit_id = re.search(rf"failed {timed_out}: train timed out: SLURM stopped job (\d+) at its time limit \(00:01:00\)",
                         limit_out)
    assert limit_id, limit_out
    assert "DUE TO TIME LIMIT" in (tmp_path / "submitit" / f"{limit_id[1]}_0_log.err").read_text()
    runs = train_runs(tmp_path)
    tags = {rid: run.data.tags for rid, run in runs.items()}
    assert {rid: t["lgrpo.state"] for rid, t in tags.items()} == {
        cancelled: "failed", finishing: "done", queued: "done", timed_out: "failed"}
    assert tags[cancelled]["lgrpo.error"].startswith(f"train cancelled by SLURM (job {array_id}_0 CANCELLED")
    assert tags[timed_out]["lgrpo.error"].startswith(f"train timed out: SLURM stopped job {limit_id[1]}")
    plan_states = {**plan_grid(load_grid(array)), **plan_grid(load_grid(limit))}
    for rid, why in ((cancelled, "train cancelled by SLURM"), (timed_out, "train timed out")):
        assert plan_states[rid].state == "failed" and plan_states[rid].detail.startswith(why), plan_states[rid]
        assert "resumes from checkpoint-" in plan_states[rid].detail
    assert not list((tmp_path / "runs").glob("*/*/submitted.json")), "submission records outlived their jobs"
    logged_before = {rid: loss_steps(tmp_path, runs[rid]) for rid in (cancelled, timed_out)}
    assert all(steps and max(steps) < STEPS for steps in logged_before.values()), logged_before

    # the next runs resubmit exactly the failed runs; each resumes into its MLflow run, every step logged once
    data = yaml.safe_load(limit.read_text())
    data["executor"]["time"] = "00:10:00"
    limit.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_ids(limit) == [timed_out]
    again = [start_grid(grid, tmp_path) for grid in (array, limit)]
    array_again, limit_again = (process.communicate(timeout=400)[0] for process in again)
    print(array_again, limit_again, sep="\n")
    assert [process.returncode for process in again] == [0, 0], array_again + limit_again
    assert "ran 1 " in array_again and "done 1, failed 0" in array_again and "skipped 2 already done" in array_again
    assert "ran 1 " in limit_again and "done 1, failed 0" in limit_again
    final = train_runs(tmp_path)
    assert {rid: run.info.run_id for rid, run in final.items()} == {rid: run.info.run_id for rid, run in runs.items()}
    for rid in (finishing, queued):  # the finished runs were not touched
        assert final[rid].info.end_time == runs[rid].info.end_time
    for rid in (cancelled, timed_out):
        assert final[rid].data.tags["lgrpo.state"] == "done"
        assert loss_steps(tmp_path, final[rid]) == list(range(1, STEPS + 1))
        assert len(resumed_from(run_dirs[rid])) == 1
    assert set(states(array).values()) == set(states(limit).values()) == {"done"}
    assert re.search(r"│ grpo +│ 3 │", array_again), array_again  # the results table: one row, n = 3 runs
    log(f"SLURM test: resumed {cancelled} from {resumed_from(run_dirs[cancelled])} and {timed_out} from "
        f"{resumed_from(run_dirs[timed_out])}; whole test {time.monotonic() - started:.0f} s")


def test_plan_shows_queued_only_while_slurm_lists_the_job_as_pending(on_slurm, tmp_path):
    """The submission record alone never makes a run queued: SLURM must list its job as pending. A queued run
    is left to the job that holds it: ``run`` does not submit it again."""
    from lgrpo_bench.dispatch import run_grid
    from lgrpo_bench.tracking.record import RunLayout

    grid = slurm_grid(tmp_path, "tiny-s", seeds=(0,), executor={})
    (rid,) = run_ids(grid)
    run_dir = tmp_path / "runs" / EXPERIMENT / rid
    run_dir.mkdir(parents=True)
    held = subprocess.run(["sbatch", "--hold", "--parsable", "--wrap", "sleep 1"], capture_output=True, text=True,
                          check=True).stdout.strip()
    RunLayout(run_dir).write_submitted("slurm", held)
    status = plan_grid(load_grid(grid))[rid]
    assert (status.state, status.detail) == ("queued", f"SLURM job {held} pending, JobHeldUser")
    summary = run_grid(load_grid(grid), dry_run=True)
    assert summary.running_elsewhere == [rid] and summary.planned == []
    on_slurm.scancel(held)
    assert plan_grid(load_grid(grid))[rid].state == "new"  # cancelled: the store decides again
    RunLayout(run_dir).write_submitted("slurm", "999999")  # a job SLURM does not know
    assert plan_grid(load_grid(grid))[rid].state == "new"


def test_jobs_cancelled_in_the_queue_end_failed_cancelled_by_slurm(on_slurm, tmp_path):
    """The executor on its own: a job array whose jobs may not start for an hour (``--begin``) is queued with
    submission records; after ``scancel`` the jobs leave no result file, and the executor reports them from
    ``squeue`` as failed, "cancelled by SLURM", and removes the records."""
    from lgrpo_bench.config.grid import SlurmExecutorConfig
    from lgrpo_bench.dispatch import RunJob
    from lgrpo_bench.dispatch.executors import SubmititExecutor
    from lgrpo_bench.dispatch.state import slurm_job_states
    from lgrpo_bench.tracking.record import RunLayout

    config = SlurmExecutorConfig(cpus_per_task=1, time=5, folder=str(tmp_path / "submitit"),
                                 additional={"begin": "now+1hour"})
    executor = SubmititExecutor(config, "held")
    executor.start()
    jobs = [RunJob(f"run{i}", str(tmp_path / f"run{i}"), "sqlite:///unused", "e") for i in range(2)]
    for job in jobs:
        Path(job.run_dir).mkdir()
    executor.submit(jobs)
    job_ids = [RunLayout(Path(job.run_dir)).read_submitted()["job_id"] for job in jobs]
    array_id = job_ids[0].split("_")[0]
    assert job_ids == [f"{array_id}_0", f"{array_id}_1"]
    assert {jid: state for jid, (state, _reason) in slurm_job_states(job_ids).items()} == dict.fromkeys(job_ids, "PENDING")
    assert executor.wait(timeout_s=1.0) == []  # queued: nothing has ended
    on_slurm.scancel(array_id)
    results = []
    deadline = time.monotonic() + 90
    while len(results) < 2 and time.monotonic() < deadline:
        results += executor.wait(timeout_s=2.0)
    assert sorted(r.run_id for r in results) == ["run0", "run1"]
    for result in results:
        assert not result.ok and not result.cancelled and not result.recorded
        assert result.error.startswith(f"cancelled by SLURM (job {array_id}_{result.run_id[-1]} CANCELLED"), result.error
    assert all(RunLayout(Path(job.run_dir)).read_submitted() is None for job in jobs)
