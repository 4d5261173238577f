"""The run record: the state machine's allowed moves, the folder layout, checkpoint completeness."""

from __future__ import annotations

import json

import pytest

from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.record import (
    CHECKPOINT_MANIFEST,
    IllegalTransition,
    RunLayout,
    check_transition,
    checkpoint_problem,
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
    (STATE_TRAINED, STATE_DONE),
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
    layout = RunLayout(tmp_path / "abc")
    _checkpoint(layout, 2)
    weights = layout.checkpoint_dir(2) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = (10**6).to_bytes(8, "little")
    weights.write_bytes(bytes(data))
    assert "does not fit the file" in checkpoint_problem(layout.checkpoint_dir(2))


def test_the_config_is_written_once_and_atomically(tmp_path):
    layout = RunLayout.of(tmp_path / "runs", "abc")
    layout.write_config("a: 1\n")
    first = layout.config_file.stat().st_mtime_ns
    layout.write_config("a: 1\n")
    assert layout.config_file.stat().st_mtime_ns == first
    layout.write_config("a: 2\n")
    assert layout.config_file.read_text() == "a: 2\n"
    assert sorted(p.name for p in layout.root.iterdir()) == ["config.yaml"]
    assert layout.run_id == "abc" and layout.root == (tmp_path / "runs" / "abc").resolve()


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
