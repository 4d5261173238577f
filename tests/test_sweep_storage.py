"""Sweeps that are never silently wrong (issue #22): concurrent sweep processes on one study never draw the same
trials, a resumed study neither replays its first draws nor loses determinism, and Optuna storage trouble (a corrupt,
empty, foreign, read-only, locked or unreadable store) is one ``error:`` line and exit 1 from every ``sweep`` command,
never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from test_sweeps import write_sweep

from lgrpo_bench.runs.resolve import load_sweep

PY = sys.executable
GRID_SPACE = {"algorithm.lam_init": {"float": [-1.0, 1.0], "step": 0.25}, "algorithm.r": {"categorical": [0.1, 0.2, 0.3]}}


def sweep_for(tmp_path: Path, kind: str, name: str = "sweep.yaml", **fields) -> Path:
    sampler = {"kind": kind, "seed": 7}
    if kind == "tpe":
        sampler["n_startup_trials"] = 2  # the model-based draws start within the tests' few trials
    if kind == "grid":
        fields.setdefault("space", GRID_SPACE)
    return write_sweep(tmp_path, name=name, sampler=sampler, **fields)


def objective(params: dict) -> float:
    """A deterministic value per point (what a trial would have told)."""
    return -sum((float(value) - 0.3) ** 2 for value in params.values())


def ask_and_tell(study: optuna.Study, loaded, n: int) -> list[tuple]:
    from lgrpo_bench.sweeps.study import distribution

    spaces = {key: distribution(entry) for key, entry in loaded.sweep.space.items()}
    drawn = []
    for _ in range(n):
        trial = study.ask(spaces)
        drawn.append(tuple(sorted(trial.params.items())))
        study.tell(trial, objective(trial.params))
    return drawn


# --------------------------------------------------------------------------------------------------------
# 1. Sampling: draws are seeded by the trial number the storage assigns
# --------------------------------------------------------------------------------------------------------
ASKER = """
import json, sys, warnings
warnings.simplefilter("ignore")
from lgrpo_bench.runs.resolve import load_sweep
from lgrpo_bench.sweeps.study import distribution, open_study

loaded = load_sweep(sys.argv[1])
study = open_study(loaded)  # what the sweep runner does: storage, sampler, pruner
spaces = {key: distribution(entry) for key, entry in loaded.sweep.space.items()}
print("ready", flush=True)
sys.stdin.readline()  # the start signal: both processes ask at once
for _ in range(int(sys.argv[2])):
    trial = study.ask(spaces)
    study.tell(trial, -sum((float(v) - 0.3) ** 2 for v in trial.params.values()))
    print(json.dumps({"number": trial.number, "params": trial.params}), flush=True)
"""


@pytest.mark.e2e  # the command line / real processes
@pytest.mark.parametrize("kind", ["tpe", "random", "grid"])
def test_two_sweep_processes_started_together_on_one_study_never_draw_the_same_trial(tmp_path, kind):
    """Two real processes open the study through the sweep's own set-up (``open_study``), wait for one start
    signal, then ask at the same time. Seeded by ``seed + trials stored``, both saw 0 trials and drew the same
    points; seeded by trial number, their draws are independent: over continuous ranges no two trials coincide,
    and the grid's trials take distinct points (fewer trials than points)."""
    n = 5
    path = sweep_for(tmp_path, kind)
    processes = [subprocess.Popen([PY, "-c", ASKER, str(path), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(2)]
    try:
        for process in processes:  # the barrier: both have opened the study
            assert process.stdout.readline().strip() == "ready", process.communicate(timeout=60)
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        assert len(out.splitlines()) == n, out
    study = optuna.load_study(study_name="test-study", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    points = [tuple(sorted(trial.params.items())) for trial in study.trials]
    assert len(points) == 2 * n
    assert len(set(points)) == 2 * n, f"identical trials drawn by concurrent processes: {points}"


@pytest.mark.parametrize("kind", ["tpe", "random", "grid"])
def test_two_study_handles_opened_before_either_asks_draw_independently(tmp_path, kind):
    """The same race in one process, deterministically: two handles (as two sweep processes) open the study, then
    ask in turns. The seeding takes effect before any draw (``before_trial``), for every sampler kind."""
    from lgrpo_bench.sweeps import open_study

    loaded = load_sweep(sweep_for(tmp_path, kind))
    first, second = open_study(loaded), open_study(loaded)
    drawn = []
    for _ in range(4):
        drawn += ask_and_tell(first, loaded, 1) + ask_and_tell(second, loaded, 1)
    assert len(set(drawn)) == len(drawn) == 8, drawn


@pytest.mark.parametrize("kind", ["tpe", "random", "grid"])
def test_a_resumed_study_continues_deterministically_without_redrawing_its_first_points(tmp_path, kind):
    """Session 1 asks 3 trials, the process ends; session 2 re-opens the study and asks 3 more. Replayed from
    scratch with the same seed (another storage), the same 6 points come in the same order; session 2 never
    repeats session 1's points (the grid, 27 points, is walked without a repeat: its seed, which shuffles the
    grid's order, is not moved on resume)."""
    from lgrpo_bench.sweeps import open_study

    def two_sessions(storage_name: str) -> list[tuple]:
        loaded = load_sweep(sweep_for(tmp_path, kind, name=f"{storage_name}.yaml",
                                      storage=f"sqlite:///{tmp_path / storage_name}.db"))
        first = ask_and_tell(open_study(loaded), loaded, 3)
        return first + ask_and_tell(open_study(loaded), loaded, 3)

    drawn = two_sessions("a")
    assert len(set(drawn)) == 6, drawn
    assert two_sessions("b") == drawn


def test_a_grid_sweep_tells_its_trials_past_the_end_of_the_grid(tmp_path):
    """Optuna's grid sampler calls ``Study.stop`` when its last points are told, which raises outside
    ``Study.optimize``; the sweep asks and tells (and stops at ``n_trials`` itself), so every tell must work: all
    3 points are visited, then a 4th trial repeats one (the same run, trained once)."""
    from lgrpo_bench.sweeps import open_study

    loaded = load_sweep(sweep_for(tmp_path, "grid", space={"algorithm.r": {"categorical": [0.1, 0.2, 0.3]}}))
    study = open_study(loaded)
    drawn = ask_and_tell(study, loaded, 4)
    assert {point[0][1] for point in drawn[:3]} == {0.1, 0.2, 0.3} and drawn[3] in drawn[:3]
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 4


def test_trial_seed_is_a_stable_hash_of_seed_and_number():
    from lgrpo_bench.sweeps.study import trial_seed

    assert trial_seed(0, 1) == trial_seed(0, 1) and 0 <= trial_seed(0, 1) < 2**32
    assert len({trial_seed(seed, number) for seed in range(5) for number in range(5)}) == 25  # seed+number would collide


# --------------------------------------------------------------------------------------------------------
# 2. Storage trouble: one line, exit 1, no traceback — through the real command line
# --------------------------------------------------------------------------------------------------------
def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "lgrpo_bench.cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "LGRPO_STUDY_WAIT_S": "1", **(env or {})})


def assert_one_error_line(result: subprocess.CompletedProcess, file: Path, *phrases: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(file) in errors[0], result.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


def make_study(path: Path, name: str = "s") -> None:
    optuna.create_study(study_name=name, storage=f"sqlite:///{path}")


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def foreign(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE runs (run_uuid TEXT)")
    connection.commit()
    connection.close()


def truncated(path: Path) -> None:
    path.write_bytes(b"")
    old = time.time() - 3600
    os.utime(path, (old, old))


SHOW_CASES = [
    ("garbage", garbage, ["is not a SQLite database", "move it aside"]),
    ("zero-bytes", truncated, ["is empty (0 bytes)", "truncated", "delete it (rm "]),
    ("foreign-sqlite", foreign, ["without Optuna's tables"]),
]


@pytest.mark.e2e  # the command line / real processes
@pytest.mark.parametrize(("case", "make", "phrases"), SHOW_CASES, ids=[c[0] for c in SHOW_CASES])
def test_sweep_show_on_a_broken_sqlite_storage_is_one_error_line(tmp_path, case, make, phrases):
    db = tmp_path / "optuna.db"
    make(db)
    before = db.read_bytes()
    result = cli("sweep", "show", "s", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_error_line(result, db, *phrases)
    assert db.read_bytes() == before  # nothing written: the 0-byte file is not turned into an empty store


@pytest.mark.e2e  # the command line / real processes
def test_sweep_export_and_dashboard_on_a_corrupt_storage_are_one_error_line(tmp_path):
    db = tmp_path / "optuna.db"
    garbage(db)
    export = cli("sweep", "export", "s", "--storage", f"sqlite:///{db}", "--seeds", "10", "-o", str(tmp_path / "g.yaml"),
                 cwd=tmp_path)
    assert_one_error_line(export, db, "is not a SQLite database")
    assert not (tmp_path / "g.yaml").exists()
    dashboard = cli("sweep", "dashboard", "s", "--storage", f"sqlite:///{db}", "--port", "1", cwd=tmp_path, timeout=60)
    assert_one_error_line(dashboard, db, "is not a SQLite database")
    assert "optuna-dashboard for" not in dashboard.stdout


@pytest.mark.e2e  # the command line / real processes
def test_sweep_on_a_corrupt_or_empty_storage_stops_before_any_trial(tmp_path):
    db = tmp_path / "optuna.db"
    path = write_sweep(tmp_path)  # storage: sqlite:///<tmp>/optuna.db
    for make, phrase in ((garbage, "is not a SQLite database"), (truncated, "is empty (0 bytes)")):
        make(db)
        assert_one_error_line(cli("sweep", str(path), cwd=tmp_path), db, phrase)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.e2e  # the command line / real processes
@pytest.mark.parametrize("command", ["show", "sweep"])
def test_a_locked_storage_is_waited_for_visibly_then_one_error_line(tmp_path, command):
    db = tmp_path / "optuna.db"
    make_study(db, "test-study")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-write (a lock SQLite holds per process)
    try:
        args = ["show", "test-study", "--storage", f"sqlite:///{db}"] if command == "show" else [str(write_sweep(tmp_path))]
        started = time.monotonic()
        result = cli("sweep", *args, cwd=tmp_path)
        seconds = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert f"waiting for the Optuna storage {db}: another process holds a write lock (waiting up to 1 s; " \
           "$LGRPO_STUDY_WAIT_S sets how long)" in result.stderr.splitlines()
    assert_one_error_line(result, db, "stayed locked by another process for 1 s", "fuser")
    assert seconds < 30, seconds  # the bound is the environment variable's, not SQLite's 60 s busy timeout
    assert cli("sweep", "show", "test-study", "--storage", f"sqlite:///{db}", cwd=tmp_path).returncode == 0  # released


@pytest.mark.e2e  # the command line / real processes
@pytest.mark.parametrize("case", ["folder", "random-bytes", "foreign-json-lines"])
def test_an_unreadable_journal_is_one_error_line(tmp_path, case):
    journal = tmp_path / "study.journal"
    phrases = ["is not a readable Optuna journal", "move it aside"]
    if case == "folder":
        journal.mkdir()
        phrases = ["is a folder, not a file"]
    elif case == "random-bytes":
        journal.write_bytes(b"\xff\xfe" + os.urandom(512) + b"\n")
    else:
        journal.write_text('{"op_code": 0}\n{"event": "not optuna"}\n')
    assert_one_error_line(cli("sweep", "show", "s", "--storage", f"journal:{journal}", cwd=tmp_path), journal, *phrases)
    path = write_sweep(tmp_path, storage=f"journal:{journal}")
    assert_one_error_line(cli("sweep", str(path), cwd=tmp_path), journal, *phrases)


def _immutable(target: Path):
    """Make ``target`` refuse writes for real: chmod for a normal user; as root (who ignores modes) ``chattr +i``."""
    if os.geteuid() != 0:
        mode = target.stat().st_mode
        target.chmod(mode & ~0o222)
        return lambda: target.chmod(mode)
    attr = subprocess.run(["chattr", "+i", str(target)], capture_output=True, text=True)
    if attr.returncode != 0 or os.access(target, os.W_OK):
        subprocess.run(["chattr", "-i", str(target)], capture_output=True)
        pytest.skip(f"running as root, where chmod does not stop writes, and chattr +i does not work here ({attr.stderr.strip()})")
    return lambda: subprocess.run(["chattr", "-i", str(target)], check=True)


@pytest.mark.e2e  # the command line / real processes
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_storage_refuses_a_sweep_in_one_line_and_still_shows(tmp_path, what):
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "optuna.db"
    make_study(db, "test-study")
    path = write_sweep(tmp_path, storage=f"sqlite:///{db}")
    undo = _immutable(db if what == "file" else folder)
    try:
        run = cli("sweep", str(path), cwd=tmp_path)
        show = cli("sweep", "show", "test-study", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    finally:
        undo()
    line = assert_one_error_line(run, db, "read-only")
    assert (str(folder) in line) and ("folder" in line) == (what == "folder"), line
    assert show.returncode == 0 and "study test-study: no trials" in show.stdout, show.stderr  # readers read it


def test_an_empty_file_another_process_is_creating_is_waited_for_not_refused(tmp_path):
    """SQLite creates the file (0 bytes) before it writes the tables; lgrpo-bench creates stores under a per-file
    lock, so a second process that finds the 0-byte file then waits for the lock and opens the finished store."""
    from lgrpo_bench.tracking.studies import _init_lock, open_storage

    db = tmp_path / "optuna.db"
    held, opened = threading.Event(), {}

    def creator() -> None:
        with _init_lock(db):
            db.write_bytes(b"")  # what SQLite leaves on disk first
            held.set()
            time.sleep(0.5)  # the other process meanwhile checks the file (and must wait for this lock)
            optuna.storages.RDBStorage(f"sqlite:///{db}")

    def opener() -> None:
        held.wait()
        try:
            opened["storage"] = open_storage(f"sqlite:///{db}", writable=True)
        except Exception as error:  # noqa: BLE001 - reported below
            opened["error"] = error

    threads = [threading.Thread(target=creator), threading.Thread(target=opener)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert "error" not in opened, opened.get("error")
    assert opened["storage"].get_all_studies() == []


def test_open_storage_problem_names_the_server_without_its_password(tmp_path):
    from lgrpo_bench.tracking.studies import StudyStorageProblem, open_storage

    with pytest.raises(StudyStorageProblem) as raised:
        open_storage("postgresql+psycopg2://user:s3cret@127.0.0.1:1/optuna")
    assert "s3cret" not in str(raised.value) and "127.0.0.1:1" in str(raised.value)
