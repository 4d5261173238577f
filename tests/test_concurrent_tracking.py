"""Concurrent tracking (issue #8): 4 processes logging 2,000 metric points each, at once, to the embedded
SQLite store — the default the quickstart uses with 2 slots. No point lost, no "database is locked" crash."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from lgrpo_bench.tracking import get_or_create_experiment, open_client

PROCESSES = 4
METRICS_PER_STEP = 40  # about what one training step logs
STEPS = 50  # 40 × 50 = 2,000 points per process

_WORKER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from lgrpo_bench.tracking import BatchedMetricLogger, open_client
    uri, experiment_id, barrier, index, metrics, steps = sys.argv[1:7]
    client = open_client(uri)
    run_id = client.create_run(experiment_id, run_name=f"writer-{index}").info.run_id
    barrier = pathlib.Path(barrier)
    (barrier / f"ready-{index}").touch()
    deadline = time.time() + 120
    while len(list(barrier.glob("ready-*"))) < int(sys.argv[7]) and time.time() < deadline:
        time.sleep(0.005)
    # flush_every_s=0: a write at every step, the most contention the training callback can produce
    logger = BatchedMetricLogger(client, run_id, flush_every_s=0.0, max_buffer=10_000)
    started = time.perf_counter()
    for step in range(int(steps)):
        logger.log({f"train/m{k:02d}": step * 1000 + k for k in range(int(metrics))}, step=step)
    logger.close()
    print(json.dumps({"run_id": run_id, "logged": logger.logged, "written": logger.written,
                      "calls": logger.log_batch_calls, "lock_retries": logger.lock_retries,
                      "seconds": time.perf_counter() - started}))
    """
)


@pytest.mark.slow
def test_four_processes_log_2000_points_each_without_loss(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = open_client(uri)
    experiment_id = get_or_create_experiment(client, "concurrent")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen([sys.executable, "-c", _WORKER, uri, experiment_id, str(barrier), str(index),
                          str(METRICS_PER_STEP), str(STEPS), str(PROCESSES)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(PROCESSES)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    reports = []
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
        assert "database is locked" not in err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert len({report["run_id"] for report in reports}) == PROCESSES
    for report in reports:
        assert report["logged"] == report["written"] == METRICS_PER_STEP * STEPS
        run = client.get_run(report["run_id"])
        assert len(run.data.metrics) == METRICS_PER_STEP
        for k in (0, 17, METRICS_PER_STEP - 1):
            history = client.get_metric_history(report["run_id"], f"train/m{k:02d}")
            assert sorted((m.step, m.value) for m in history) == [(step, step * 1000 + k) for step in range(STEPS)]
    total = sum(len(client.get_metric_history(r["run_id"], f"train/m{k:02d}"))
                for r in reports for k in range(METRICS_PER_STEP))
    assert total == PROCESSES * METRICS_PER_STEP * STEPS
    print(f"{total} points from {PROCESSES} processes, 0 lost; lock retries {[r['lock_retries'] for r in reports]}, "
          f"seconds {[round(r['seconds'], 2) for r in reports]}")
