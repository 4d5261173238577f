"""The run record: the state machine's allowed moves, the folder layout, checkpoint completeness."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil

import pytest

from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.record import (
    CHECKPOINT_MANIFEST,
    LAMBDA_STATE_FILE,
    DiskFullError,
    IllegalTransition,
    RunLayout,
    check_transition,
    checkpoint_problem,
    disk_full_as_error,
    disk_full_error,
    write_checkpoint_manifest,
)
from lgrpo_bench.tracking.schema import (
    STATE_DONE,
    STATE_FAILED,
    STATE_PRUNED,
    STATE_RUNNING,
    STATE_STOPPED,
    STATE_TRAINED,
    STATES,
)

ALLOWED = {
    (None, STATE_RUNNING),
    (STATE_RUNNING, STATE_RUNNING), (STATE_RUNNING, STATE_TRAINED), (STATE_RUNNING, STATE_DONE),
    (STATE_RUNNING, STATE_FAILED), (STATE_RUNNING, STATE_PRUNED), (STATE_RUNNING, STATE_STOPPED),
    (STATE_FAILED, STATE_RUNNING), (STATE_FAILED, STATE_FAILED),
    (STATE_STOPPED, STATE_RUNNING), (STATE_STOPPED, STATE_STOPPED),
    (STATE_TRAINED, STATE_DONE), (STATE_TRAINED, STATE_RUNNING),  # trained again: its final model was lost
    (STATE_DONE, STATE_DONE), (STATE_PRUNED, STATE_PRUNED),
}


@pytest.mark.parametrize("current", [None, *STATES])
@pytest.mark.parametrize("new", STATES)
def test_every_state_move_is_allowed_exactly_when_the_lifecycle_says_so(current, new):
    if (current, new) in ALLOWED:
        check_transition(current, new)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, new)


def test_unknown_states_are_refused():
    with pytest.raises(IllegalTransition, match="'partial' is not a run state"):
        check_transition(STATE_RUNNING, "partial")


class _Client:
    """Records set_tag calls (the run record's only write for a state)."""

    def __init__(self, tags=None):
        self.tags = dict(tags or {})
        self.created = []

    def set_tag(self, run_id, key, value):
        self.tags[key] = value

    def get_run(self, run_id):
        class Run:
            pass

        run = Run()
        run.data = Run()
        run.data.tags = self.tags
        return run


def test_mark_failed_keeps_a_trained_run_trained_so_only_its_evaluation_is_redone():
    client = _Client({"lgrpo.state": STATE_TRAINED})
    record.mark_failed(client, "r", "eval killed by SIGKILL", step="eval")
    assert client.tags == {"lgrpo.state": STATE_TRAINED, "lgrpo.error": "eval killed by SIGKILL",
                           "lgrpo.failed_step": "eval"}
    client = _Client({"lgrpo.state": STATE_RUNNING})
    record.mark_failed(client, "r", "x" * 6000, step="train")
    assert client.tags["lgrpo.state"] == STATE_FAILED and len(client.tags["lgrpo.error"]) == 5000


def test_parent_runs_move_among_their_three_states_only():
    client = _Client()
    for state in (STATE_RUNNING, STATE_DONE, STATE_RUNNING, STATE_FAILED):
        record.set_parent_state(client, "g", state)
        assert client.tags["lgrpo.state"] == state
    with pytest.raises(IllegalTransition):
        record.set_parent_state(client, "g", STATE_TRAINED)


def _checkpoint(layout: RunLayout, step: int, *, manifest: bool = True) -> None:
    folder = layout.checkpoint_dir(step)
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    (folder / "trainer_state.json").write_text("{}")
    if manifest:
        write_checkpoint_manifest(folder)


def test_the_newest_complete_checkpoint_is_resumed_and_incomplete_ones_are_named(tmp_path):
    layout = RunLayout(tmp_path / "abc")
    assert layout.latest_checkpoint() is None and not layout.has_outputs()
    _checkpoint(layout, 4)
    _checkpoint(layout, 6)
    assert layout.latest_checkpoint() == layout.checkpoint_dir(6)
    weights = layout.checkpoint_dir(6) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated, as a kill mid-write leaves it
    assert "model.safetensors has 20 bytes" in checkpoint_problem(layout.checkpoint_dir(6))
    assert layout.latest_checkpoint() == layout.checkpoint_dir(4)
    _checkpoint(layout, 8, manifest=False)  # the write never finished
    assert f"checkpoint-8 has no {CHECKPOINT_MANIFEST}" in checkpoint_problem(layout.checkpoint_dir(8))
    assert layout.latest_checkpoint() == layout.checkpoint_dir(4)
    (layout.checkpoint_dir(4) / "trainer_state.json").unlink()
    assert layout.latest_checkpoint() is None and layout.has_outputs()


def test_a_safetensors_file_whose_header_does_not_fit_is_incomplete_even_with_the_listed_size(tmp_path):
    """The header check holds whatever the manifest records: a weights file already wrong when the manifest was
    written (its hash then matches), or one too large to be hashed."""
    layout = RunLayout(tmp_path / "abc")
    _checkpoint(layout, 2)
    weights = layout.checkpoint_dir(2) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = (10**6).to_bytes(8, "little")
    weights.write_bytes(bytes(data))
    write_checkpoint_manifest(layout.checkpoint_dir(2))
    assert "model.safetensors" in json.loads((layout.checkpoint_dir(2) / CHECKPOINT_MANIFEST).read_text())["sha256"]
    assert "does not fit the file" in checkpoint_problem(layout.checkpoint_dir(2))


#: The small state files of a real checkpoint (names as TRL and our trainer write them), with stand-in contents.
STATE_FILES = {
    LAMBDA_STATE_FILE: b'{"lambda": 0.125, "learnable": true, "rate_limited": [false], "optimizer": null}',
    "trainer_state.json": b'{"global_step": 4, "max_steps": 8}',
    "rng_state.pth": bytes(range(256)) * 8,
    "scheduler.pt": b"PK\x03\x04scheduler" + b"\x01" * 64,
    "training_args.bin": b"PK\x03\x04args" + b"\x02" * 64,
    "config.json": b'{"model_type": "qwen2", "hidden_size": 64}',
    "tokenizer.json": b'{"model": {"vocab": {"a": 0}}}',
    "tokenizer_config.json": b'{"eos_token": "<|end|>"}',
    "generation_config.json": b'{"eos_token_id": 2}',
}


def _full_checkpoint(layout: RunLayout, step: int) -> None:
    folder = layout.checkpoint_dir(step)
    _checkpoint(layout, step, manifest=False)
    for name, content in STATE_FILES.items():
        (folder / name).write_bytes(content)
    (folder / "optimizer.pt").write_bytes(b"\0" * 4096)
    write_checkpoint_manifest(folder)


def _corrupt_same_size(path) -> None:
    """One byte changed in place, as a bad disk block or a stray writer leaves it: the size stays."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", sorted(STATE_FILES))
def test_a_same_size_corruption_of_any_state_file_is_found_named_and_passed_over(tmp_path, name):
    layout = RunLayout(tmp_path / "abc")
    _full_checkpoint(layout, 2)
    _full_checkpoint(layout, 4)
    manifest = json.loads((layout.checkpoint_dir(4) / CHECKPOINT_MANIFEST).read_text())
    assert set(STATE_FILES) | {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(manifest["sha256"])
    assert checkpoint_problem(layout.checkpoint_dir(4)) is None
    size = (layout.checkpoint_dir(4) / name).stat().st_size
    _corrupt_same_size(layout.checkpoint_dir(4) / name)
    assert (layout.checkpoint_dir(4) / name).stat().st_size == size
    problem = checkpoint_problem(layout.checkpoint_dir(4))
    assert problem.startswith(f"checkpoint-4/{name}: content differs from its manifest (sha256 "), problem
    assert layout.latest_checkpoint() == layout.checkpoint_dir(2)  # plan no longer promises the corrupt one
    assert layout.checkpoint_dir(4).is_dir()  # ... and changes nothing
    checkpoint, problems = layout.resume_point()
    assert checkpoint == layout.checkpoint_dir(2) and problems == [problem]
    assert not layout.checkpoint_dir(4).exists()
    [aside] = layout.root.glob("checkpoint-4.incomplete-*")
    assert (aside / name).read_bytes() != STATE_FILES[name]  # kept for inspection, never resumed from


def test_large_files_are_listed_by_size_and_state_files_are_hashed_whatever_their_size(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "HASHED_MAX_BYTES", 1024)
    layout = RunLayout(tmp_path / "abc")
    folder = layout.checkpoint_dir(3)
    folder.mkdir(parents=True)
    (folder / "optimizer.pt").write_bytes(b"\0" * 4096)
    (folder / LAMBDA_STATE_FILE).write_text(json.dumps({"lambda": 0.5, "rate_limited": [True] * 1000}))
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": i} for i in range(200)]}))
    (folder / "config.json").write_text("{}")
    write_checkpoint_manifest(folder)
    manifest = json.loads((folder / CHECKPOINT_MANIFEST).read_text())
    assert manifest["files"]["optimizer.pt"] == 4096 and "optimizer.pt" not in manifest["sha256"]
    assert {LAMBDA_STATE_FILE, "trainer_state.json", "config.json"} == set(manifest["sha256"])
    assert (folder / LAMBDA_STATE_FILE).stat().st_size > 1024
    _corrupt_same_size(folder / "optimizer.pt")  # size only: a large file is not read by the check
    assert checkpoint_problem(folder) is None
    _corrupt_same_size(folder / LAMBDA_STATE_FILE)
    assert f"checkpoint-3/{LAMBDA_STATE_FILE}: content differs" in checkpoint_problem(folder)


def test_a_manifest_without_hashes_is_checked_on_sizes_as_before(tmp_path):
    """Manifests written before hashes were recorded (``files`` only) keep today's rule: sizes and headers."""
    layout = RunLayout(tmp_path / "abc")
    _full_checkpoint(layout, 2)
    folder = layout.checkpoint_dir(2)
    manifest = json.loads((folder / CHECKPOINT_MANIFEST).read_text())
    (folder / CHECKPOINT_MANIFEST).write_text(json.dumps({"files": manifest["files"], "written": manifest["written"]}))
    _corrupt_same_size(folder / LAMBDA_STATE_FILE)
    assert checkpoint_problem(folder) is None
    (folder / LAMBDA_STATE_FILE).write_text("{}")
    assert f"checkpoint-2/{LAMBDA_STATE_FILE} has 2 bytes" in checkpoint_problem(folder)


@pytest.mark.parametrize("content, words", [
    ('{"files": ["model.safetensors"]}', "not a manifest of file sizes and hashes"),
    ('{"files": {"model.safetensors": "88"}}', "not a manifest of file sizes and hashes"),
    ('{"files": {"model.safetensors": 88}, "sha256": ["x"]}', "not a manifest of file sizes and hashes"),
    ('{"files": {"model.safetensors": 88}, "sha256": {"other.json": "00"}}', "not a manifest of file sizes and hashes"),
    ('{"files": {"../../secret": 3}}', "outside the checkpoint"),
    ("[1, 2]", "not a manifest of file sizes and hashes"),
    ('{"files": {', "is unreadable (Expecting"),
])
def test_a_malformed_manifest_is_named_not_a_crash(tmp_path, content, words):
    layout = RunLayout(tmp_path / "abc")
    _checkpoint(layout, 2)
    (layout.checkpoint_dir(2) / CHECKPOINT_MANIFEST).write_text(content)
    problem = checkpoint_problem(layout.checkpoint_dir(2))
    assert problem.startswith(f"checkpoint-2/{CHECKPOINT_MANIFEST} is unreadable") and words in problem, problem
    assert layout.latest_checkpoint() is None


def test_checkpoints_set_aside_in_the_same_second_keep_distinct_names(tmp_path, monkeypatch):
    monkeypatch.setattr(record.time, "strftime", lambda fmt: "20250101-000000")
    layout = RunLayout(tmp_path / "abc")
    for _ in range(2):
        _checkpoint(layout, 4, manifest=False)
        assert layout.resume_point()[0] is None
    assert sorted(p.name for p in layout.root.iterdir()) == ["checkpoint-4.incomplete-20250101-000000",
                                                             "checkpoint-4.incomplete-20250101-000000-2"]


# -- a full disk while saving --------------------------------------------------------------------------------
def _usage(free: int):
    return lambda path: shutil._ntuple_diskusage(10**9, 10**9 - free, free)


def test_an_enospc_error_becomes_disk_full_naming_the_path_the_free_space_and_the_mount(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", _usage(12_288))
    target = tmp_path / "run" / "checkpoint-3"  # not created yet: the free space of its nearest existing ancestor
    full = disk_full_error(OSError(errno.ENOSPC, "No space left on device"), target)
    assert isinstance(full, DiskFullError) and isinstance(full, OSError) and full.errno == errno.ENOSPC
    mount = next(p for p in [tmp_path, *tmp_path.parents] if os.path.ismount(p))
    assert str(full) == f"disk full: could not write {target} (12,288 bytes free on {mount})"
    named = disk_full_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json")), target)
    assert str(named).startswith(f"disk full: could not write {tmp_path / 'x.json'} (")  # the file, when known
    chained = RuntimeError("saving failed")
    chained.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(disk_full_error(chained, target), DiskFullError)
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")  # safetensors
    assert isinstance(disk_full_error(rust, target), DiskFullError)
    quota = disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded"), target)
    assert str(quota).startswith("disk quota exceeded: could not write") and quota.errno == errno.EDQUOT
    assert pickle.loads(pickle.dumps(full)).args == full.args  # crosses process boundaries (workers, Ray)


def test_torchs_hidden_write_failure_is_disk_full_only_when_the_disk_is_full(tmp_path, monkeypatch):
    """torch.save says ``unexpected pos`` without an errno: the free space after it tells a full disk."""
    hidden = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 373888 vs 373780")
    monkeypatch.setattr(shutil, "disk_usage", _usage(4096))
    assert str(disk_full_error(hidden, tmp_path)).startswith(f"disk full: could not write {tmp_path} (4,096 bytes free")
    writer = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert isinstance(disk_full_error(writer, tmp_path), DiskFullError)
    monkeypatch.setattr(shutil, "disk_usage", _usage(50 * 2**30))
    assert disk_full_error(hidden, tmp_path) is None  # another write failure: its own words stay
    assert disk_full_error(ValueError("bad value"), tmp_path) is None
    assert disk_full_error(OSError(errno.EACCES, "Permission denied"), tmp_path) is None


def test_disk_full_as_error_translates_a_full_disk_and_passes_anything_else(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", _usage(0))
    original = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DiskFullError, match=r"^disk full: could not write .*checkpoint-2 \(0 bytes free on ") as caught:
        with disk_full_as_error(tmp_path / "checkpoint-2"):
            raise original
    assert caught.value.__cause__ is original
    inner = DiskFullError("disk full: could not write /a (0 bytes free on /)")
    with pytest.raises(DiskFullError) as caught, disk_full_as_error(tmp_path / "final"):  # nested saves: kept
        raise inner
    assert caught.value is inner
    with pytest.raises(ValueError, match="unrelated"), disk_full_as_error(tmp_path):
        raise ValueError("unrelated")
    with pytest.raises(KeyboardInterrupt), disk_full_as_error(tmp_path):
        raise KeyboardInterrupt
    with disk_full_as_error(tmp_path):
        pass


def test_a_manifest_write_cut_short_by_a_full_disk_leaves_no_manifest(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path / "abc")
    _checkpoint(layout, 2, manifest=False)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record.os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_checkpoint_manifest(layout.checkpoint_dir(2))
    assert sorted(p.name for p in layout.checkpoint_dir(2).iterdir()) == ["model.safetensors", "trainer_state.json"]
    assert layout.latest_checkpoint() is None


def test_the_config_is_written_once_and_atomically(tmp_path):
    layout = RunLayout.of(tmp_path / "runs", "abc", "exp")
    layout.write_config("a: 1\n")
    first = layout.config_file.stat().st_mtime_ns
    layout.write_config("a: 1\n")
    assert layout.config_file.stat().st_mtime_ns == first
    layout.write_config("a: 2\n")
    assert layout.config_file.read_text() == "a: 2\n"
    assert sorted(p.name for p in layout.root.iterdir()) == ["config.yaml"]
    assert layout.run_id == "abc" and layout.root == (tmp_path / "runs" / "exp" / "abc").resolve()


@pytest.mark.parametrize(("experiment", "folder"), [
    ("quickstart", "quickstart"), ("lgrpo-bench", "lgrpo-bench"), ("my exp/2", "my_exp_2-"), ("..", "experiment-"),
    ("Qwen2.5 × λ", "Qwen2.5-"), (".hidden", "hidden-")])
def test_each_experiment_has_its_own_folder_of_runs(tmp_path, experiment, folder):
    """Runs of one config in two experiments never share a folder; any experiment name is one safe folder name."""
    from lgrpo_bench.tracking.record import experiment_folder

    name = experiment_folder(experiment)
    assert name.startswith(folder) and "/" not in name and name not in (".", "..") and not name.startswith(".")
    if name != experiment:  # a slug: distinct names that slug alike stay apart (8 hex of the name's SHA-256)
        assert len(name) == len(folder) + 8 and name != experiment_folder(experiment + " ")
    layout = RunLayout.of(tmp_path / "runs", "abc", experiment)
    assert layout.root == (tmp_path / "runs" / name / "abc").resolve() and layout.experiment_dir == layout.root.parent
    assert RunLayout.of(tmp_path / "runs", "abc", experiment + "-b").root != layout.root


def test_the_resume_point_skips_and_sets_aside_incomplete_checkpoints(tmp_path):
    layout = RunLayout(tmp_path / "abc")
    assert layout.resume_point() == (None, [])
    _checkpoint(layout, 2)
    _checkpoint(layout, 4, manifest=False)
    checkpoint, problems = layout.resume_point()
    assert checkpoint == layout.checkpoint_dir(2) and problems == [f"checkpoint-4 has no {CHECKPOINT_MANIFEST} (the write did not finish)"]
    assert not layout.checkpoint_dir(4).exists() and len(list(layout.root.glob("checkpoint-4.incomplete-*"))) == 1
    (layout.checkpoint_dir(2) / "model.safetensors").write_bytes(b"")
    checkpoint, problems = layout.resume_point()
    assert checkpoint is None and len(problems) == 1 and "model.safetensors has 0 bytes" in problems[0]
    assert [step for step, _ in layout.checkpoints()] == []
