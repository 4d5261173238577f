"""Store trouble is one clear line and exit 1, never a traceback (issue 22): locked, missing, read-only, journaled,
corrupt, ``file:`` and deleted-mid-grid MLflow stores, through the real command line.

Every command that reads or writes the store is tried on each kind of trouble; each must print ``error: <what>, <which
file>, <what to do>`` on stderr (one line), exit 1, and write nothing. A locked store is waited for, saying so, for
``$LGRPO_STORE_WAIT_S`` seconds; a hot journal is rolled back when the folder may be written.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_faults import start_run, wait_until

pytestmark = pytest.mark.e2e  # the command line on broken stores


PY = sys.executable


def grid_file(tmp_path: Path, model: str = "tiny-s", *, steps: int = 2, seeds=(0,), uri: str | None = None) -> Path:
    base = {
        "model": {"name": model},
        "task": {"name": "arith", "num_train_problems": 64, "num_heldout_problems": 16},
        "algorithm": {"name": "grpo"},
        "train": {"max_steps": steps, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                  "heldout_every": 0, "save_every": 1, "samples_every": 0},
        "tracking": {"experiment": "trouble", "runs_dir": str(tmp_path / "runs"), **({"uri": uri} if uri else {})},
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "base": base, "axes": {"train.seed": list(seeds)},
                                    "executor": {"kind": "local", "slots": 2}}, sort_keys=False))
    return path


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "lgrpo_bench.cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250", **(env or {})})


def assert_one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def make_store(tmp_path: Path) -> Path:
    """A real MLflow store with one experiment (MLflow wrote it)."""
    from lgrpo_bench.tracking import get_or_create_experiment, open_client

    db = tmp_path / "mlflow.db"
    client = open_client(f"sqlite:///{db}")
    get_or_create_experiment(client, "trouble")
    return db


READERS = [("plan", "g.yaml"), ("status", "g.yaml"), ("status",), ("report", "--grid", "g.yaml", "--no-plots")]
"""Commands that only read the store (the grid file's store is ./mlflow.db)."""


def _run_all(tmp_path: Path, commands, env: dict | None = None):
    return {" ".join(command): cli(*command, cwd=tmp_path, env=env) for command in commands}


def test_a_corrupt_store_is_one_line_in_every_command(tmp_path):
    grid_file(tmp_path)
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(4096))
    before = db.read_bytes()
    for _command, result in _run_all(tmp_path, [*READERS, ("run", "g.yaml")]).items():
        assert_one_error_line(result, str(db), "not a readable SQLite database", "move it aside")
    assert db.read_bytes() == before and not (tmp_path / "runs").exists()


def test_a_foreign_sqlite_file_is_not_taken_for_a_store(tmp_path):
    grid_file(tmp_path)
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    for _command, result in _run_all(tmp_path, READERS).items():
        assert_one_error_line(result, str(db), "without MLflow's tables")


def test_a_file_store_uri_is_one_line_in_every_command(tmp_path):
    grid_file(tmp_path)
    env = {"MLFLOW_TRACKING_URI": f"file:{tmp_path / 'mlruns'}"}
    commands = [*READERS, ("run", "g.yaml"), ("eval", "--model", "oracle:gold", "--benchmarks", "arith", "--limit", "2")]
    for _command, result in _run_all(tmp_path, commands, env).items():
        assert_one_error_line(result, "file store", "sqlite:///")
    assert not (tmp_path / "mlruns").exists()


def test_a_missing_store_is_nothing_run_yet_for_plan_and_one_line_for_report(tmp_path):
    grid_file(tmp_path)
    plan = cli("plan", "g.yaml", cwd=tmp_path)
    assert plan.returncode == 0 and "new 1" in " ".join(plan.stdout.split())
    report = cli("report", "--no-plots", cwd=tmp_path)
    assert_one_error_line(report, "no MLflow store at", str(tmp_path / "mlflow.db"), "--tracking-uri")
    assert not (tmp_path / "mlflow.db").exists()


def test_a_locked_store_is_waited_for_visibly_then_one_line(tmp_path):
    grid_file(tmp_path)
    db = make_store(tmp_path)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a writer in the middle of a long transaction
    try:
        results = _run_all(tmp_path, READERS, env={"LGRPO_STORE_WAIT_S": "1"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for command, result in results.items():
        assert f"waiting for the MLflow store {db}: another process holds a write lock (waiting up to 1 s; " \
               "$LGRPO_STORE_WAIT_S sets how long)" in result.stderr, (command, result.stderr)
        assert_one_error_line(result, str(db), "stayed locked by another process for 1 s", "fuser")
    plan = cli("plan", "g.yaml", cwd=tmp_path)  # once the writer is done, everything reads again
    assert plan.returncode == 0 and "waiting" not in plan.stderr


def _leave_hot_journal(db: Path) -> None:
    """A writer killed in the middle of a transaction (rollback journal mode, MLflow's default) whose changed pages
    already reached the database file (a one-page cache spills them): a hot journal that must be rolled back."""
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE scratch (value INTEGER)")
        connection.executemany("INSERT INTO scratch VALUES (?)", [(i,) for i in range(5000)])
    code = (f"import sqlite3, time; c = sqlite3.connect({str(db)!r}, isolation_level=None); c.execute('PRAGMA cache_size=1'); "
            "c.execute('BEGIN IMMEDIATE'); c.execute('UPDATE scratch SET value = -1 - value'); "
            "c.execute(\"UPDATE experiments SET name = name || '-half-written'\"); print('ready', flush=True); time.sleep(600)")
    writer = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert db.with_name(db.name + "-journal").stat().st_size > 0


def test_a_hot_journal_is_rolled_back_by_a_reader_that_may_write(tmp_path):
    grid_file(tmp_path)
    db = make_store(tmp_path)
    _leave_hot_journal(db)
    status = cli("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    plan = cli("plan", "g.yaml", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:  # rolled back: the half-written rows are gone
        assert [row[0] for row in connection.execute("SELECT name FROM experiments")] == ["Default", "trouble"]
        assert connection.execute("SELECT MIN(value), MAX(value) FROM scratch").fetchone() == (0, 4999)


def _immutable(*paths: Path):
    """Make ``paths`` refuse writes for real (root ignores modes: chattr +i); returns the undo. Skips without chattr."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: [path.chmod(mode) for path, mode in modes.items()]
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root, where chmod does not stop writes, and chattr +i fails here: {done.stderr.strip()}")
    return lambda: subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_a_hot_journal_in_a_read_only_folder_is_one_line_saying_who_can_fix_it(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    grid_file(tmp_path, uri=f"sqlite:///{folder / 'mlflow.db'}")
    db = make_store(folder)
    _leave_hot_journal(db)
    undo = _immutable(db, db.with_name(db.name + "-journal"), folder)
    try:
        for command in (("plan", "g.yaml"), ("status", "--tracking-uri", f"sqlite:///{db}")):
            result = cli(*command, cwd=tmp_path)
            assert_one_error_line(result, str(db), "hot journal", "write access")
    finally:
        undo()


def test_a_read_only_store_is_read_by_plan_and_report_and_refused_by_run(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    db = make_store(folder)
    grid_file(tmp_path, uri=f"sqlite:///{db}")
    undo = _immutable(db, folder)
    try:
        plan = cli("plan", "g.yaml", cwd=tmp_path)
        assert plan.returncode == 0, plan.stderr
        report = cli("report", "--grid", "g.yaml", "--no-plots", cwd=tmp_path)  # reads it: nothing to report yet
        assert report.returncode == 2 and "no finished train run" in report.stderr, report.stderr
        run = cli("run", "g.yaml", cwd=tmp_path)
        assert_one_error_line(run, str(db), "read-only", "write access")
    finally:
        undo()
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_a_runs_folder_that_cannot_be_created_is_refused_naming_the_key(tmp_path):
    folder = tmp_path / "store"  # a writable store; the folder that would hold runs/ is not
    folder.mkdir()
    grid_file(tmp_path, uri=f"sqlite:///{folder / 'mlflow.db'}")
    undo = _immutable(tmp_path)
    try:
        run = cli("run", "g.yaml", cwd=tmp_path)
    finally:
        undo()
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "tracking.runs_dir" in run.stderr and str(tmp_path / "runs") in run.stderr


@pytest.mark.slow
def test_a_store_deleted_while_the_grid_runs_ends_the_grid_with_one_line(warm_tiny, tmp_path):
    grid = grid_file(tmp_path, str(warm_tiny.path), steps=12, seeds=(0, 1))
    make_store(tmp_path)
    orchestrator = start_run(grid, tmp_path)
    wait_until(lambda: any((tmp_path / "runs" / "trouble").glob("*/checkpoint-1/lgrpo-manifest.json")), orchestrator,
               "a checkpoint")
    (tmp_path / "mlflow.db").unlink()
    output, _ = orchestrator.communicate(timeout=600)
    assert orchestrator.returncode == 1, output
    assert "Traceback" not in output, output[-5000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors and "mlflow.db" in errors[-1] and ("deleted" in errors[-1] or "gone" in errors[-1]), output[-3000:]


def test_store_trouble_in_a_library_call_names_the_store():
    """The translation every command's last line rests on (lgrpo_bench.tracking.reader.store_problem)."""
    from lgrpo_bench.tracking.reader import StoreProblem, store_problem

    problem = store_problem(sqlite3.DatabaseError("file is not a database"), "sqlite:////data/mlflow.db")
    assert isinstance(problem, StoreProblem) and "/data/mlflow.db is not a readable SQLite database" in str(problem)
    assert store_problem(ValueError("not about the store"), "sqlite:////data/mlflow.db") is None
    locked = store_problem(sqlite3.OperationalError("database is locked"), "sqlite:////data/mlflow.db")
    assert "locked by another process" in str(locked) and "fuser /data/mlflow.db" in str(locked)
