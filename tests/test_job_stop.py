"""How :func:`lgrpo_bench.dispatch.job.execute_job` reports a run whose stop request met its end.

A real worker process (a fresh interpreter, the path every executor takes when no warm server is used) is stopped
through the job's ``cancel`` event; the stand-in is only what the process does on SIGINT: exit 0 (it had finished:
the run is done) or exit 130 (it was interrupted: the run is stopped and stays resumable).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from lgrpo_bench.dispatch import job as job_module
from lgrpo_bench.dispatch.job import RunJob, execute_job

READY = "worker ready"


def _worker(exit_code_on_sigint: int) -> list[str]:
    """A worker that prints READY once its SIGINT handler is in place, then exits with ``exit_code_on_sigint`` on
    SIGINT (it never ends on its own: only the stop ends it)."""
    code = ("import signal, sys, threading\n"
            f"signal.signal(signal.SIGINT, lambda *_: sys.exit({exit_code_on_sigint}))\n"
            f"print({READY!r}, flush=True)\n"
            "threading.Event().wait()\n")
    return [sys.executable, "-c", code]


def _cancel_when_ready(log_path: Path, cancel: threading.Event, finished: threading.Event) -> None:
    """Set ``cancel`` once the worker has printed READY into the run's log (no race with its handler)."""
    while not finished.wait(0.05):
        if log_path.is_file() and READY in log_path.read_text(encoding="utf-8", errors="replace"):
            cancel.set()
            return


@pytest.mark.parametrize("exit_code, done", [(0, True), (130, False)], ids=["finished-before-the-stop", "stopped"])
def test_a_run_that_exits_0_after_a_stop_request_is_done_not_cancelled(tmp_path, monkeypatch, exit_code, done):
    job = RunJob("abc123", str(tmp_path / "runs" / "abc123"), f"sqlite:///{tmp_path / 'mlflow.db'}", "e", warm=False)
    monkeypatch.setattr(job_module, "job_steps", lambda job, **_: [("run", _worker(exit_code))])
    cancel, finished = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_cancel_when_ready, args=(job.layout.run_log, cancel, finished), daemon=True)
    watcher.start()
    try:
        result = execute_job(job, cancel=cancel)
    finally:
        finished.set()
        watcher.join(timeout=5)
    assert cancel.is_set(), "the stop request was never sent"
    if done:
        assert result.ok and not result.cancelled and result.error == "", result
    else:
        assert not result.ok and result.cancelled and result.error == "cancelled" and result.returncode == 130, result
    assert not job.layout.worker_file.exists()  # the liveness record is removed either way
