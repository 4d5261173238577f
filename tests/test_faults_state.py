"""Faults that must leave a true and resumable state (issue 18): a SIGTERM'd orchestrator, a truncated checkpoint.

Real processes and the real MLflow SQLite store, as in tests/test_faults.py (whose helpers these reuse).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_faults import (
    EXPERIMENT,
    assert_completes,
    checkpointed_not_final,
    cli,
    loss_steps,
    run_ids,
    start_run,
    stop_outside_the_store,
    states,
    train_runs,
    wait_until,
    write_grid,
)


def sigint_pending(pid: int) -> bool:
    """Whether SIGINT is pending for process ``pid`` (sent to it or its group, not yet handled: it is stopped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # gone
        return False
    masks = [int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signal.SIGINT - 1)) for mask in masks)


@pytest.mark.slow
def test_sigterm_of_the_orchestrator_says_stopped_in_the_store_the_plan_and_the_closing_lines(warm_tiny, tmp_path):
    grid = write_grid(tmp_path, str(warm_tiny.path), steps=30)
    rids = run_ids(grid)
    orchestrator = start_run(grid, tmp_path, sigint_ignored=True)  # as `lgrpo-bench run grid.yaml &` in a script
    # Pause each run as soon as it has its first checkpoint, so that neither can finish before the stop reaches it (a
    # fast run could, and would then rightly be done); resume them once their SIGINT is pending: it lands before
    # their next step.
    children = []
    for rid in rids:
        run_dir = tmp_path / "runs" / EXPERIMENT / rid
        wait_until(lambda run_dir=run_dir: checkpointed_not_final(run_dir), orchestrator, f"run {rid} to checkpoint")
        children.append(json.loads((run_dir / "worker.json").read_text())["child_pid"])
        stop_outside_the_store(children[-1], tmp_path / "mlflow.db")  # paused mid-write, it would lock the grid out
    orchestrator.send_signal(signal.SIGTERM)
    deadline = time.time() + 60
    while not all(sigint_pending(child) for child in children) and time.time() < deadline:
        time.sleep(0.05)
    assert all(sigint_pending(child) for child in children), "no SIGINT pending for the paused runs (not sent, or ignored by them)"
    for child in children:
        os.kill(child, signal.SIGCONT)
    output = orchestrator.communicate(timeout=180)[0]

    assert orchestrator.returncode == 1, output
    assert "done 0, failed 0, stopped 2" in output, output
    assert "states now: new 0  queued 0  running 0  trained 0  stopped 2  failed 0  pruned 0  done 0" in output, output
    runs = train_runs(tmp_path)
    assert {rid: run.data.tags["lgrpo.state"] for rid, run in runs.items()} == dict.fromkeys(rids, "stopped")
    assert {run.info.status for run in runs.values()} == {"KILLED"}
    assert states(grid) == dict.fromkeys(rids, "stopped")
    plan = cli("plan", str(grid), cwd=tmp_path)
    assert plan.stdout.count("stopped") >= 2 and "interrupted (Ctrl-C or SIGTERM)" in plan.stdout, plan.stdout

    final = assert_completes(grid, tmp_path, ran=2, skipped=0)
    for rid in rids:
        assert final[rid].info.run_id == runs[rid].info.run_id
        assert loss_steps(tmp_path, final[rid]) == list(range(1, 31))


@pytest.mark.slow
def test_a_truncated_checkpoint_is_passed_over_for_the_newest_complete_one(warm_tiny, tmp_path):
    grid = write_grid(tmp_path, str(warm_tiny.path), seeds=(0,), slots=1, steps=12)
    (rid,) = run_ids(grid)
    run_dir = tmp_path / "runs" / EXPERIMENT / rid
    orchestrator = start_run(grid, tmp_path)
    wait_until(lambda: (run_dir / "checkpoint-3" / "lgrpo-manifest.json").exists() and not (run_dir / "final").exists(),
               orchestrator, "three checkpoints")
    child = json.loads((run_dir / "worker.json").read_text())["child_pid"]
    subprocess.run(["kill", "-9", str(child)], check=True)
    orchestrator.communicate(timeout=180)

    newest = max((int(p.name.split("-")[1]), p) for p in run_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    weights = newest[1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    fallback = f"checkpoint-{newest[0] - 1}"
    plan = cli("plan", str(grid), cwd=tmp_path)
    assert f"resumes from {fallback}" in plan.stdout and f"resumes from {newest[1].name}" not in plan.stdout, plan.stdout

    final = assert_completes(grid, tmp_path, ran=1, skipped=0)[rid]
    log = (run_dir / "run.log").read_text()
    assert f"not resuming from a checkpoint that failed verification: {newest[1].name}/model.safetensors has" in log, log[-3000:]
    assert f"resuming from {fallback}" in log
    assert final.data.tags["lgrpo.resumed_from"] == fallback
    assert loss_steps(tmp_path, final) == list(range(1, 13))
    assert list(run_dir.glob(f"{newest[1].name}.incomplete-*")), "the incomplete checkpoint was moved aside"


@pytest.mark.slow
def test_missing_pieces_are_said_in_one_line_each(warm_tiny, tmp_path):
    """A done grid whose final models were deleted, then whose store was deleted: plan says so; run starts over."""
    import shutil

    grid = write_grid(tmp_path, str(warm_tiny.path), seeds=(0,), slots=1, steps=2)
    (rid,) = run_ids(grid)
    assert_completes(grid, tmp_path, ran=1, skipped=0)
    shutil.rmtree(tmp_path / "runs" / EXPERIMENT / rid / "final")
    plan = cli("plan", str(grid), cwd=tmp_path)
    assert plan.returncode == 0 and "its final model is gone" in plan.stdout, plan.stdout
    assert "warning: 1 done run(s) lost their final model folder" in " ".join(plan.stdout.split()), plan.stdout

    (tmp_path / "mlflow.db").unlink()
    plan = cli("plan", str(grid), cwd=tmp_path)
    flat = " ".join(plan.stdout.split())
    assert "warning: 1 run(s) have checkpoints in their folders but no MLflow record" in flat, plan.stdout
    again = cli("run", str(grid), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (tmp_path / "runs" / EXPERIMENT / rid / "run.log").read_text()
    assert f"run {rid}: its folder held the results of MLflow run " in log and "which the store no longer holds" in log, log[-3000:]
    (orphaned,) = (tmp_path / "runs" / EXPERIMENT).glob(f"{rid}.orphaned-*")
    assert list(orphaned.glob("checkpoint-*")) and (orphaned / "owner.json").is_file()  # its results, kept aside
