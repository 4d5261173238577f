"""The unified loss inside TRL's GRPOTrainer: parity with TRL's own loss types, micro-batch invariance,
dλ/dλ by finite differences, and real training steps (tiny Qwen2 built locally, CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from lgrpo_bench.algorithms import get_algorithm
from lgrpo_bench.algorithms.group_filter import mixed_accuracy_groups
from lgrpo_bench.algorithms.presets import preset_algorithm, trl_scale_rewards
from lgrpo_bench.models.tiny import make_tiny_model
from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer, row_group_statistics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GROUP, N_GROUPS, PROMPT_LEN, MAX_LEN = 4, 4, 6, 12


def length_parity_reward(completions, **kwargs):
    """A reward with variance whatever the model: 1 for completions of an even number of characters."""
    return [float(len(c) % 2 == 0) for c in completions]


def prompts_dataset(n=32):
    return Dataset.from_list([{"prompt": f"<|user|>{10 + i}+{20 + i}<|assistant|>"} for i in range(n)])


def trl_args(tmp_path, loss_type="dapo", **overrides):
    values = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=GROUP * N_GROUPS, num_generations=GROUP,
        max_completion_length=MAX_LEN, learning_rate=1e-3, max_steps=2, logging_steps=1, report_to="none",
        use_cpu=True, bf16=False, activation_checkpointing=False, loss_type=loss_type, save_strategy="no",
        disable_tqdm=True, seed=0, beta=0.0, temperature=1.0, top_k=0,
    )
    values.update(overrides)
    return GRPOConfig(**values)


def make_trainer(model, tokenizer, tmp_path, algorithm, trainer_cls=UnifiedLossGRPOTrainer, **kwargs):
    args = kwargs.pop("args", None) or trl_args(tmp_path, scale_rewards=trl_scale_rewards(get_algorithm(algorithm).advantage))
    resolved = preset_algorithm(algorithm, num_generations=GROUP, max_completion_length=MAX_LEN, **kwargs)
    extra = {} if trainer_cls is GRPOTrainer else dict(algorithm=resolved)
    trainer = trainer_cls(model=model, reward_funcs=[length_parity_reward], args=args, train_dataset=prompts_dataset(),
                          processing_class=tokenizer, **extra)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@pytest.fixture()
def model(tokenizer):
    return make_tiny_model("tiny-s", tokenizer, seed=0)


def synthetic_batch(model, seed=0, n_groups=N_GROUPS, beta_ref=False):
    """A generation batch with uneven lengths and an off-policy old policy, so clipping is exercised."""
    gen = torch.Generator().manual_seed(seed)
    rows = n_groups * GROUP
    prompt_ids = torch.randint(3, 250, (rows, PROMPT_LEN), generator=gen)
    completion_ids = torch.randint(3, 250, (rows, MAX_LEN), generator=gen)
    lengths = torch.randint(1, MAX_LEN + 1, (rows,), generator=gen)
    completion_mask = (torch.arange(MAX_LEN)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits[:, PROMPT_LEN - 1 : -1]
        logps = torch.log_softmax(logits.float(), -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    batch = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.randn(rows, generator=gen),
        "num_items_in_batch": completion_mask.sum(),
        "old_per_token_logps": logps + 0.3 * torch.randn(logps.shape, generator=gen),
    }
    if beta_ref:
        batch["ref_per_token_logps"] = logps + 0.1 * torch.randn(logps.shape, generator=gen)
    batch.update(row_group_statistics(lengths.float(), GROUP))
    return batch


@pytest.mark.parametrize("algorithm", ["grpo", "dapo", "dr_grpo"])
def test_loss_equals_trl_builtin_loss_type(model, tokenizer, tmp_path, algorithm):
    batch = synthetic_batch(model)
    ours = make_trainer(model, tokenizer, tmp_path / "ours", algorithm)
    reference = make_trainer(model, tokenizer, tmp_path / "trl", algorithm, trainer_cls=GRPOTrainer,
                             args=trl_args(tmp_path / "trl", loss_type=algorithm))
    assert (ours.epsilon_low, ours.epsilon_high) == (reference.epsilon_low, reference.epsilon_high)  # same clip range
    loss_ours = ours._compute_loss(model, batch)
    loss_trl = reference._compute_loss(model, batch)
    assert loss_ours.item() == pytest.approx(loss_trl.item(), rel=1e-6, abs=1e-7)
    assert abs(loss_trl.item()) > 1e-4


def test_lambda_zero_equals_dapo_loss(model, tokenizer, tmp_path):
    batch = synthetic_batch(model, seed=3)
    dapo = make_trainer(model, tokenizer, tmp_path / "a", "dapo")._compute_loss(model, batch)
    lam = make_trainer(model, tokenizer, tmp_path / "b", "lambda_grpo", lam_init=0.0, r=0.3)._compute_loss(model, batch)
    assert lam.item() == pytest.approx(dapo.item(), abs=1e-6)


def test_kl_term_is_weighted_like_the_policy_term(model, tokenizer, tmp_path):
    """With β > 0 the loss is Σ_i w_i Σ_t (policy + β·KL): for grpo, KL per token of short completions weighs more."""
    batch = synthetic_batch(model, beta_ref=True)
    batch["advantages"] = torch.zeros_like(batch["advantages"])  # isolate the KL term
    model.save_pretrained(tmp_path / "policy")  # TRL loads the reference model from the policy's path
    tokenizer.save_pretrained(tmp_path / "policy")
    model.config._name_or_path = str(tmp_path / "policy")
    trainer = make_trainer(model, tokenizer, tmp_path, "grpo", args=trl_args(tmp_path, beta=0.5, loss_type="grpo"))
    loss = trainer._compute_loss(model, batch).item()
    with torch.no_grad():
        logits = model(input_ids=torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)).logits[:, PROMPT_LEN - 1 : -1]
        logps = torch.log_softmax(logits, -1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)
        diff = batch["ref_per_token_logps"] - logps
        ratio = torch.exp(logps - batch["old_per_token_logps"])  # TRL's use_bias_correction_kl (on here)
        kl = (torch.exp(diff) - diff - 1) * ratio * batch["completion_mask"]
        lengths = batch["completion_mask"].sum(1).float()
        expected = (0.5 * kl.sum(1) / (lengths * len(lengths))).sum().item()
    assert loss == pytest.approx(expected, rel=1e-5)


def accumulated_gradients(trainer, model, batch, n_micro):
    """Shuffle and split the batch like TRL, accumulate gradients over the micro-batches."""
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    model.zero_grad()
    trainer.lam.grad = None
    trainer.args.gradient_accumulation_steps = n_micro
    trainer.args.steps_per_generation = n_micro
    trainer.current_gradient_accumulation_steps = n_micro
    torch.manual_seed(n_micro)
    for micro in split_tensor_dict(shuffle_sequence_dict(batch), n_micro):
        trainer._compute_loss(model, micro).backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return grads, trainer.lam.grad.detach().clone() if trainer.lam.grad is not None else None


@pytest.mark.parametrize("algorithm", ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"])
def test_gradient_invariant_to_micro_batch_split(model, tokenizer, tmp_path, algorithm):
    batch = synthetic_batch(model, seed=7)
    if algorithm == "dapo_full":  # a group with uniform accuracy is dropped from loss and normaliser
        accuracy = torch.tensor([1.0] * GROUP + [1.0, 0.0] * ((N_GROUPS - 1) * GROUP // 2))
        keep = mixed_accuracy_groups(accuracy.view(-1, GROUP)).repeat_interleave(GROUP)
        batch.update(row_group_statistics(batch["lgrpo_lengths"], GROUP, all_keep=keep))
        assert batch["lgrpo_keep"][:GROUP].sum() == 0
    trainer = make_trainer(model, tokenizer, tmp_path, algorithm, lam_init=0.4, r=0.3)
    reference_grads, reference_lam = accumulated_gradients(trainer, model, batch, 1)
    for n_micro in (2, 4):
        grads, lam_grad = accumulated_gradients(trainer, model, batch, n_micro)
        for ref, got in zip(reference_grads, grads):
            assert torch.allclose(ref, got, atol=1e-5, rtol=1e-4)
        if algorithm == "lambda_grpo":
            assert lam_grad.item() == pytest.approx(reference_lam.item(), abs=1e-5)
    if algorithm == "lambda_grpo":
        assert abs(reference_lam.item()) > 1e-5


def test_dloss_dlambda_matches_finite_difference(model, tokenizer, tmp_path):
    batch = synthetic_batch(model, seed=11)
    trainer = make_trainer(model, tokenizer, tmp_path, "lambda_grpo", lam_init=0.5, r=0.3)
    trainer.lam.grad = None
    trainer._compute_loss(model, batch).backward()
    analytic = trainer.lam.grad.item()
    step = 1e-2
    with torch.no_grad():
        trainer.lam.fill_(0.5 + step)
        up = trainer._compute_loss(model, batch).item()
        trainer.lam.fill_(0.5 - step)
        down = trainer._compute_loss(model, batch).item()
    numeric = (up - down) / (2 * step)
    assert analytic == pytest.approx(numeric, rel=2e-3, abs=1e-6)
    assert abs(analytic) > 1e-4


@pytest.mark.parametrize("algorithm", ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"])
def test_real_training_steps(warm_tiny, tmp_path, algorithm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(warm_tiny.path)
    tokenizer = AutoTokenizer.from_pretrained(warm_tiny.path)
    trainer = make_trainer(model, tokenizer, tmp_path, algorithm, lam_init=0.0, lambda_lr=0.1, r=0.3,
                           args=trl_args(tmp_path, max_steps=3, max_completion_length=40,
                                         scale_rewards=trl_scale_rewards(get_algorithm(algorithm).advantage)))
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    lambdas = [entry["lambda"] for entry in trainer.state.log_history if "lambda" in entry]
    if algorithm == "lambda_grpo":
        assert len(lambdas) == 3 and lambdas[-1] != 0.0
    else:
        assert lambdas == []


def test_frozen_lambda_stays_fixed(warm_tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(warm_tiny.path)
    tokenizer = AutoTokenizer.from_pretrained(warm_tiny.path)
    trainer = make_trainer(model, tokenizer, tmp_path, "lambda_grpo", lam_init=0.7, lambda_learnable=False, r=0.3,
                           args=trl_args(tmp_path, max_steps=2, max_completion_length=40))
    trainer.train()
    assert trainer.lam.item() == torch.tensor(0.7).item()  # bit-for-bit unchanged
    assert all(g["params"][0] is not trainer.lam for g in trainer.optimizer.param_groups)
    assert [e["lambda"] for e in trainer.state.log_history if "lambda" in e] == pytest.approx([0.7, 0.7])


def test_lambda_is_checkpointed_and_restored(warm_tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(warm_tiny.path)
    args = trl_args(tmp_path, max_steps=2, max_completion_length=40, save_strategy="steps", save_steps=2)
    first = make_trainer(AutoModelForCausalLM.from_pretrained(warm_tiny.path), tokenizer, tmp_path, "lambda_grpo",
                         lam_init=0.0, lambda_lr=0.1, r=0.3, args=args)
    first.train()
    learned = first.lam.item()
    assert learned != 0.0 and (tmp_path / "checkpoint-2" / "lambda_state.json").exists()
    resumed = make_trainer(AutoModelForCausalLM.from_pretrained(warm_tiny.path), tokenizer, tmp_path, "lambda_grpo",
                           lam_init=0.0, lambda_lr=0.1, r=0.3, args=copy.deepcopy(args))
    resumed.create_optimizer_and_scheduler(num_training_steps=2)
    resumed._load_optimizer_and_scheduler(str(tmp_path / "checkpoint-2"))
    assert resumed.lam.item() == learned
    assert resumed.lambda_optimizer.state[resumed.lam]["step"].item() == 2


def test_a_resumed_run_continues_lambda_as_the_uninterrupted_run(warm_tiny, tmp_path):
    """4 steps in one go vs 2 steps, a checkpoint, and 2 more after resuming from it: λ (Adam, whose moments are in
    ``lambda_state.json``, not in the policy's ``optimizer.pt``) takes the same steps 3 and 4 (to 1e-7). A resume with
    fresh moments would take a first Adam step (|Δλ| = lr_t) instead."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(warm_tiny.path)

    def run(folder, **train_kwargs):
        args = trl_args(folder, max_steps=4, max_completion_length=40, save_strategy="steps", save_steps=2)
        trainer = make_trainer(AutoModelForCausalLM.from_pretrained(warm_tiny.path), tokenizer, folder, "lambda_grpo",
                               lam_init=0.0, lambda_lr=0.1, r=0.3, args=args)
        trainer.train(**train_kwargs)
        return {entry["step"]: entry["lambda"] for entry in trainer.state.log_history if "lambda" in entry}

    whole = run(tmp_path / "whole")
    saved = json.loads((tmp_path / "whole" / "checkpoint-2" / "lambda_state.json").read_text())["optimizer"]
    assert saved["step"] == 2.0 and saved["exp_avg"] != 0.0 and saved["exp_avg_sq"] > 0.0
    resumed = run(tmp_path / "resumed", resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-2"))
    assert sorted(resumed) == [1, 2, 3, 4]  # steps 1-2 from the checkpoint's trainer state, 3-4 trained again
    assert [resumed[3], resumed[4]] == pytest.approx([whole[3], whole[4]], abs=1e-7, rel=0)
    assert abs(whole[4] - whole[3]) > 1e-4


def test_a_checkpoint_without_lambda_state_is_never_resumed(warm_tiny, tmp_path):
    """λ's value is in the checkpoint's manifest, so a write cut short before it (or a file lost after) leaves the
    checkpoint incomplete, which resume passes over; a complete checkpoint without it (not written by our trainer) is
    refused rather than resumed with the initial λ and restored Adam moments."""
    import json
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lgrpo_bench.tracking.record import CHECKPOINT_MANIFEST, LAMBDA_STATE_FILE, RunLayout, write_checkpoint_manifest

    tokenizer = AutoTokenizer.from_pretrained(warm_tiny.path)
    args = trl_args(tmp_path, max_steps=1, max_completion_length=40, save_strategy="steps", save_steps=1)
    make_trainer(AutoModelForCausalLM.from_pretrained(warm_tiny.path), tokenizer, tmp_path, "lambda_grpo",
                 lam_init=0.0, lambda_lr=0.1, r=0.3, args=args).train()
    checkpoint = tmp_path / "checkpoint-1"
    assert LAMBDA_STATE_FILE in json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text())["files"]
    assert RunLayout(tmp_path).latest_checkpoint() == checkpoint
    lost = tmp_path / "lost" / "checkpoint-1"
    shutil.copytree(checkpoint, lost)
    (lost / LAMBDA_STATE_FILE).unlink()
    assert RunLayout(lost.parent).latest_checkpoint() is None  # the manifest lists it: incomplete
    write_checkpoint_manifest(lost)  # complete without λ's state
    resumed = make_trainer(AutoModelForCausalLM.from_pretrained(warm_tiny.path), tokenizer, tmp_path / "resumed",
                           "lambda_grpo", lam_init=0.0, lambda_lr=0.1, r=0.3, args=copy.deepcopy(args))
    resumed.create_optimizer_and_scheduler(num_training_steps=1)
    with pytest.raises(ValueError, match=f"has no {LAMBDA_STATE_FILE}"):
        resumed._load_optimizer_and_scheduler(str(lost))


def test_unsupported_trl_options_are_refused(model, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="importance_sampling_level"):
        make_trainer(model, tokenizer, tmp_path, "grpo", args=trl_args(tmp_path, importance_sampling_level="sequence", loss_type="grpo"))
