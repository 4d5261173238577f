"""Checkpoints on disk are verified with the real trainer (tiny Qwen2 built locally, CPU): a same-size corruption of
the newest checkpoint's ``lambda_state.json`` is passed over for the checkpoint before it, an invalid λ state is
refused naming its file, and a full disk (a real tmpfs) says "disk full" and leaves nothing that could be resumed.

The pure checkpoint functions (manifests, hashes, the disk-full translation with simulated errors) are tested with
hand-made folders in ``test_run_record.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lgrpo_bench.tracking.record import (
    CHECKPOINT_MANIFEST,
    LAMBDA_STATE_FILE,
    DiskFullError,
    RunLayout,
    checkpoint_problem,
    disk_full_as_error,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_trainer_loss import make_trainer, trl_args  # noqa: E402  (one copy of the tiny-trainer set-up)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fresh_model(tokenizer):
    from lgrpo_bench.models.tiny import make_tiny_model

    return make_tiny_model("tiny-s", tokenizer, seed=0)


def lambda_trainer(tokenizer, folder: Path, **arg_overrides):
    args = trl_args(folder, **arg_overrides)
    return make_trainer(fresh_model(tokenizer), tokenizer, folder, "lambda_grpo", lam_init=0.0, lambda_lr=0.1, r=0.3,
                        args=args)


@pytest.fixture(scope="module")
def one_step_checkpoint(tokenizer, tmp_path_factory) -> Path:
    """checkpoint-1 of a one-step λ-GRPO run (λ Adam-learned), trained once for the module."""
    folder = tmp_path_factory.mktemp("one-step")
    lambda_trainer(tokenizer, folder, max_steps=1, save_strategy="steps", save_steps=1).train()
    return folder / "checkpoint-1"


# -- a corrupt λ state ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_same_size_corruption_of_the_newest_lambda_state_resumes_from_the_checkpoint_before(warm_tiny, tmp_path,
                                                                                               monkeypatch):
    """The run crashes right after writing checkpoint-3; a disk then zeroes checkpoint-3/lambda_state.json in place
    (same size: the manifest's sizes alone cannot see it). ``plan`` must promise checkpoint-2, and the next
    execution must say which file it passed over, resume from checkpoint-2 and end at step 4 with each step logged
    once (seen on main: a JSONDecodeError naming no file, at every attempt)."""
    from test_train_run import execute, metric_steps, short_run

    from lgrpo_bench.runs.lifecycle import execute_run
    from lgrpo_bench.runs.resolve import build_run as build_run_config
    from lgrpo_bench.runs.resolve import prepare_run
    from lgrpo_bench.tracking import open_client
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

    config = build_run_config(short_run(tmp_path, warm_tiny.path, train={
        "max_steps": 4, "save_every": 1, "heldout_every": 0, "samples_every": 0}))
    save = UnifiedLossGRPOTrainer._save_checkpoint

    def save_then_crash(self, model, trial):
        save(self, model, trial)
        if self.state.global_step == 3:
            raise RuntimeError("simulated crash after checkpoint-3")

    with monkeypatch.context() as patch:
        patch.setattr(UnifiedLossGRPOTrainer, "_save_checkpoint", save_then_crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            execute(config)
    [run_dir] = {path.parent for path in (tmp_path / "runs").rglob("checkpoint-3")}
    layout = RunLayout(run_dir)
    assert [step for step, _ in layout.checkpoints()] == [3, 2, 1] and layout.latest_checkpoint().name == "checkpoint-3"
    state_file = layout.checkpoint_dir(3) / LAMBDA_STATE_FILE
    state_file.write_bytes(b"\0" * state_file.stat().st_size)  # a zeroed block: same size, not JSON
    assert layout.latest_checkpoint() == layout.checkpoint_dir(2)  # what plan promises

    lines: list[str] = []
    prepared = prepare_run(config)
    outcome = execute_run(prepared.config, prepared.run_id, emit=lines.append)
    passed_over = [line for line in lines if f"checkpoint-3/{LAMBDA_STATE_FILE}: content differs from its manifest" in line]
    assert len(passed_over) == 1 and "not resuming" in passed_over[0], lines
    assert any(line.endswith("resuming from checkpoint-2") for line in lines), lines
    assert outcome.state == "done"
    assert [step for step, _ in layout.checkpoints()] == [4, 3, 2, 1]
    assert all(checkpoint_problem(folder) is None for _, folder in layout.checkpoints())
    [aside] = run_dir.glob("checkpoint-3.incomplete-*")
    assert (aside / LAMBDA_STATE_FILE).read_bytes().strip(b"\0") == b""  # kept for inspection, never resumed from
    assert json.loads((layout.checkpoint_dir(4) / "trainer_state.json").read_text())["global_step"] == 4
    redone = json.loads((layout.checkpoint_dir(3) / LAMBDA_STATE_FILE).read_text())
    assert len(redone["rate_limited"]) == 3  # steps 1-2 restored from checkpoint-2, step 3 trained again
    client = open_client(config.tracking.uri)
    assert metric_steps(client, outcome.mlflow_run_id, "train/loss") == [1, 2, 3, 4]
    assert metric_steps(client, outcome.mlflow_run_id, "train/lambda") == [1, 2, 3, 4]


@pytest.mark.parametrize("content", [
    b"\0" * 40,  # zeroed
    b'{"lambda": 0.1, "learnable": tr',  # cut short
    b"[0.1]",
    b'{"learnable": true}',
    b'{"lambda": NaN}',
    b'{"lambda": true}',
    b'{"lambda": 0.1, "rate_limited": "no"}',
    b'{"lambda": 0.1, "optimizer": {"step": "2"}}',
    b'{"lambda": 0.1, "optimizer": [1.0]}',
    b'{"lambda": 0.1\xff}',  # not UTF-8
], ids=["zeroed", "truncated", "list", "no-lambda", "nan", "bool", "flags", "optimizer-value", "optimizer-list",
        "not-utf8"])
def test_an_unreadable_or_invalid_lambda_state_is_refused_naming_the_file_and_the_checkpoint(tokenizer, tmp_path,
                                                                                              one_step_checkpoint, content):
    """Defence in depth behind the manifest's hash (a checkpoint handed to ``resume_from_checkpoint`` directly, or
    one whose manifest was rewritten): no JSONDecodeError naming no file, no λ quietly restored from nonsense."""
    checkpoint = tmp_path / "run" / "checkpoint-1"
    shutil.copytree(one_step_checkpoint, checkpoint)
    (checkpoint / LAMBDA_STATE_FILE).write_bytes(content)
    resumed = lambda_trainer(tokenizer, tmp_path / "resumed", max_steps=1)
    resumed.create_optimizer_and_scheduler(num_training_steps=1)
    with pytest.raises(ValueError) as caught:
        resumed._load_optimizer_and_scheduler(str(checkpoint))
    message = str(caught.value)
    assert message.startswith(f"checkpoint {checkpoint}: {checkpoint / LAMBDA_STATE_FILE} is unreadable or invalid ("), message
    assert float(resumed.lam.detach()) == 0.0


# -- a full disk ---------------------------------------------------------------------------------------------
@pytest.fixture()
def tiny_filesystem(tmp_path, request):
    """A tmpfs of ``request.param`` (default 2M) mounted at ``tmp_path/fs``; unmounted afterwards. Skipped where
    mounting is not permitted (not root, or a container without CAP_SYS_ADMIN)."""
    size = getattr(request, "param", "2M")
    mount = tmp_path / "fs"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"a real full disk needs a tiny tmpfs, and mount could not run here: {error}")
    if done.returncode != 0:
        pytest.skip(f"a real full disk needs a tiny tmpfs (mount -t tmpfs as root): mount refused: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def test_torch_save_onto_a_full_filesystem_becomes_disk_full(tiny_filesystem):
    """torch.save on a full disk raises ``RuntimeError: ... unexpected pos`` without an errno (seen on main)."""
    target = tiny_filesystem / "optimizer.pt"
    with pytest.raises(DiskFullError) as caught, disk_full_as_error(tiny_filesystem):
        torch.save({"state": torch.zeros(1_000_000)}, target)
    assert str(caught.value).startswith(f"disk full: could not write {tiny_filesystem} (")
    assert str(caught.value).endswith(f" bytes free on {tiny_filesystem})")
    assert "unexpected pos" in str(caught.value.__cause__) or "PytorchStreamWriter" in str(caught.value.__cause__)


@pytest.mark.parametrize("tiny_filesystem, library_words", [("512k", "No space left on device"), ("2M", "unexpected pos")],
                         indirect=["tiny_filesystem"], ids=["weights-safetensors", "optimizer-torch"])
def test_a_checkpoint_cut_short_by_a_full_disk_says_so_and_is_never_resumed(tokenizer, tiny_filesystem, library_words):
    """A tiny-s checkpoint is 2.5 MB: on 512 KiB the weights (safetensors) fail, on 2 MiB the optimizer state
    (torch.save). Either way: "disk full" with the checkpoint's path and the space left, no manifest (a stale one
    from an earlier write of the folder is removed first), and the folder is set aside at the next resume."""
    output = tiny_filesystem / "run"
    stale = output / "checkpoint-1"
    stale.mkdir(parents=True)
    (stale / CHECKPOINT_MANIFEST).write_text(json.dumps({"files": {}, "sha256": {}}))  # an earlier write's
    trainer = lambda_trainer(tokenizer, output, max_steps=1, save_strategy="steps", save_steps=1)
    with pytest.raises(DiskFullError) as caught:
        trainer.train()
    assert str(caught.value).startswith(f"disk full: could not write {stale} (")
    assert str(caught.value).endswith(f" bytes free on {tiny_filesystem})"), str(caught.value)
    assert library_words in str(caught.value.__cause__)  # what safetensors / torch said
    if library_words == "unexpected pos":  # torch leaves its partial file: the disk is full to its last blocks
        assert caught.value.free < 64 * 1024
    assert not (stale / CHECKPOINT_MANIFEST).exists() and not list(stale.glob(f".{CHECKPOINT_MANIFEST}*"))
    layout = RunLayout(output)
    assert "has no lgrpo-manifest.json" in checkpoint_problem(stale) and layout.latest_checkpoint() is None
    assert layout.resume_point() == (None, [f"checkpoint-1 has no {CHECKPOINT_MANIFEST} (the write did not finish)"])
    assert not stale.exists()
    final = tiny_filesystem / "final"  # the final model on the same full disk
    with pytest.raises(DiskFullError, match=rf"^disk full: could not write {final}"):
        trainer.save_model(str(final))


def test_a_write_error_that_is_not_a_full_disk_keeps_its_own_words(tokenizer, tmp_path, monkeypatch):
    """The translation looks at the disk: a failed write with room to spare is not called "disk full"."""
    trainer = lambda_trainer(tokenizer, tmp_path / "run", max_steps=1, save_strategy="steps", save_steps=1)

    def broken(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 373888 vs 373780")

    monkeypatch.setattr(trainer, "_save_rng_state", broken)
    with pytest.raises(RuntimeError, match="unexpected pos") as caught:
        trainer.train()
    assert not isinstance(caught.value, DiskFullError)
    assert RunLayout(tmp_path / "run").latest_checkpoint() is None


def test_a_real_checkpoint_hashes_its_state_files_and_lists_its_large_files_by_size(one_step_checkpoint):
    checkpoint = one_step_checkpoint
    manifest = json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text())
    assert {LAMBDA_STATE_FILE, "trainer_state.json", "rng_state.pth", "scheduler.pt", "training_args.bin",
            "config.json", "tokenizer_config.json"} <= set(manifest["sha256"])
    assert "optimizer.pt" in manifest["files"] and "optimizer.pt" not in manifest["sha256"]  # 1.6 MB: size only
    assert checkpoint_problem(checkpoint) is None
