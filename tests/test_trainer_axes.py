"""The axes inside TRL's GRPOTrainer: parity of loss and gradient with TRL 1.16's built-in ``_compute_loss`` for every
combination TRL has (G ∈ {2, 4, 8}, micro-batch splits 1/2/4, uneven lengths), micro-batch invariance for every axis
value, advantages equal to TRL's ``scale_rewards`` on a real generation, the group filter deciding on accuracy, λ's
gradient under every surrogate, and λ's optimizers (tiny Qwen2 built locally, CPU, one thread)."""

from __future__ import annotations

import pytest
import torch
from trl import GRPOTrainer
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from lgrpo_bench.algorithms.presets import AXES, preset_algorithm, trl_equivalent, trl_scale_rewards
from lgrpo_bench.models.tiny import make_tiny_model
from lgrpo_bench.models.tokenizer import make_tokenizer
from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer, row_group_statistics
from test_trainer_loss import length_parity_reward, prompts_dataset, trl_args

ROWS, PROMPT_LEN, MAX_LEN = 16, 6, 12
#: Parity tolerance: loss and every gradient entry (float32 model; the sums run in different orders).
TOLERANCE = 1e-6
#: Largest |difference| seen per combination, for the report (printed with -s).
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are chains of tiny ops: two threads on a shared 2-core machine spin against each other (~50×)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    if MEASURED:
        print("\nmax |ours − TRL| (loss and gradients):", {k: f"{v:.1e}" for k, v in sorted(MEASURED.items())})


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_tiny_model("tiny-s", tokenizer, seed=0)


def fixed_batch(model, group_size: int, seed: int = 0) -> dict:
    """A generation batch of ROWS completions with uneven lengths and an off-policy old policy (clips bind)."""
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(3, 250, (ROWS, PROMPT_LEN), generator=gen)
    completion_ids = torch.randint(3, 250, (ROWS, MAX_LEN), generator=gen)
    lengths = torch.randint(1, MAX_LEN + 1, (ROWS,), generator=gen)
    completion_mask = (torch.arange(MAX_LEN)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits[:, PROMPT_LEN - 1 : -1]
        logps = torch.log_softmax(logits.float(), -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    batch = {
        "prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
        "completion_mask": completion_mask, "advantages": torch.randn(ROWS, generator=gen),
        "num_items_in_batch": completion_mask.sum(),
        "old_per_token_logps": logps + 0.3 * torch.randn(logps.shape, generator=gen),
    }
    batch.update(row_group_statistics(lengths.float(), group_size))
    return batch


def build(trainer_cls, model, tokenizer, tmp_path, algorithm, group_size, **trl_options):
    args = trl_args(tmp_path, num_generations=group_size, per_device_train_batch_size=ROWS, max_completion_length=MAX_LEN,
                    **trl_options)
    extra = {} if trainer_cls is GRPOTrainer else {"algorithm": algorithm}
    return trainer_cls(model=model, reward_funcs=[length_parity_reward], args=args, train_dataset=prompts_dataset(),
                       processing_class=tokenizer, **extra)


def accumulate(trainer, model, batch, n_micro: int) -> tuple[float, torch.Tensor, float | None]:
    """Shuffle and split the batch as TRL does, accumulate: (Σ micro losses, flat gradient, λ gradient)."""
    model.zero_grad()
    if hasattr(trainer, "lam"):
        trainer.lam.grad = None
    trainer.args.gradient_accumulation_steps = n_micro
    trainer.args.steps_per_generation = n_micro
    trainer.current_gradient_accumulation_steps = n_micro
    torch.manual_seed(100 + n_micro)
    total = 0.0
    for micro in split_tensor_dict(shuffle_sequence_dict(batch), n_micro):
        loss = trainer._compute_loss(model, micro)
        loss.backward()
        total += loss.item()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    lam = getattr(trainer, "lam", None)
    return total, grad, (lam.grad.item() if lam is not None and lam.grad is not None else None)


# name, overrides that make every branch bind on the synthetic batch
PARITY = {
    "grpo": {"epsilon_high": 0.28},
    "dapo": {"epsilon_high": 0.28},
    "dr_grpo": {"epsilon_high": 0.28},
    "bnpo": {"epsilon_high": 0.28},
    "cispo": {"cispo_epsilon_max": 1.2},
    "sapo": {},
    "gspo": {"epsilon_low": 0.05, "epsilon_high": 0.05},
    "gspo_token_mean": {"epsilon_low": 0.05, "epsilon_high": 0.05, "aggregation": "token_mean"},
}


@pytest.mark.parametrize("group_size", [2, 4, 8])
@pytest.mark.parametrize("combination", list(PARITY))
def test_loss_and_gradient_equal_trl_builtin(model, tokenizer, tmp_path, combination, group_size):
    name = combination.split("_token_mean")[0]
    algorithm = preset_algorithm(name, num_generations=group_size, max_completion_length=MAX_LEN, **PARITY[combination])
    options = trl_equivalent(algorithm)
    assert options is not None
    ours = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path / "ours", algorithm, group_size, **options)
    reference = build(GRPOTrainer, model, tokenizer, tmp_path / "trl", algorithm, group_size, **options)
    batch = fixed_batch(model, group_size, seed=group_size)
    worst = 0.0
    for n_micro in (1, 2, 4):
        loss_ours, grad_ours, _ = accumulate(ours, model, batch, n_micro)
        loss_trl, grad_trl, _ = accumulate(reference, model, batch, n_micro)
        worst = max(worst, abs(loss_ours - loss_trl), (grad_ours - grad_trl).abs().max().item())
        assert abs(loss_ours - loss_trl) <= TOLERANCE, (n_micro, loss_ours, loss_trl)
        assert torch.allclose(grad_ours, grad_trl, atol=TOLERANCE, rtol=0), (n_micro, (grad_ours - grad_trl).abs().max())
        assert grad_trl.abs().max() > 1e-3  # not vacuous
    MEASURED[combination] = max(MEASURED.get(combination, 0.0), worst)
    metrics = ours._metrics["train"]
    if name in ("grpo", "dapo", "dr_grpo", "bnpo", "gspo"):
        assert 0 < max(metrics["clip_ratio/region_mean"]) < 1  # the clip bound some tokens (sequences), not all
    if name == "cispo":
        assert 0 < max(metrics["cispo_clip_ratio"]) < 1


# every axis value: the accumulated gradient does not depend on the micro-batch split (local_token_mean excepted);
# every registered aggregation and surrogate is in by itself (a new one included)
INVARIANCE = [
    *[("dapo", {"aggregation": a}) for a in AXES["aggregation"] if a not in ("local_token_mean", "lambda")],
    *[("lambda_grpo", {"surrogate": s, "lam_init": 0.4, "r": 0.3}) for s in AXES["surrogate"]],
    ("cispo", {"cispo_epsilon_max": 1.2}),
    ("sapo", {}),
    ("gspo", {"epsilon_low": 0.05, "epsilon_high": 0.05}),
    ("dapo", {"group_filter": "drop"}),
    ("dapo", {"group_filter": "resample"}),
    ("gspo", {"aggregation": "prompt_mean", "group_filter": "drop"}),
]


@pytest.mark.parametrize("name, overrides", INVARIANCE, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in INVARIANCE])
def test_gradient_invariant_to_micro_batch_split(model, tokenizer, tmp_path, name, overrides):
    group_size = 4
    algorithm = preset_algorithm(name, num_generations=group_size, max_completion_length=MAX_LEN, **overrides)
    trainer = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, group_size)
    batch = fixed_batch(model, group_size, seed=7)
    if algorithm.group_filter != "none":  # group 0 has uniform accuracy: out of the loss and its normalisers
        keep = torch.tensor([0.0] * group_size + [1.0] * (ROWS - group_size))
        batch.update(row_group_statistics(batch["lgrpo_lengths"], group_size, all_keep=keep))
    loss_1, grad_1, lam_1 = accumulate(trainer, model, batch, 1)
    for n_micro in (2, 4):
        loss_n, grad_n, lam_n = accumulate(trainer, model, batch, n_micro)
        assert loss_n == pytest.approx(loss_1, abs=1e-6)
        assert torch.allclose(grad_n, grad_1, atol=1e-6, rtol=0), (grad_n - grad_1).abs().max()
        if algorithm.uses_lambda:
            assert lam_n == pytest.approx(lam_1, abs=1e-6) and abs(lam_1) > 1e-5
    if algorithm.group_filter != "none":  # the dropped group has no weight: its completions do not move the policy
        dropped = {key: value[:group_size] if torch.is_tensor(value) and value.dim() > 0 else value
                   for key, value in batch.items()}
        _, grad_dropped, _ = accumulate(trainer, model, dropped, 1)
        assert grad_dropped.abs().max() == 0


@pytest.mark.parametrize("aggregation", ["lambda", "prompt_mean", "seq_mean_token_mean", "constant"])
def test_trainer_row_weights_equal_the_whole_batch_weights(model, tokenizer, tmp_path, aggregation):
    """The rows the trainer weights (their group's lengths, index in the group, N, Σ|o|, P) give w_i of the whole batch."""
    from lgrpo_bench.algorithms import completion_weights

    algorithm = preset_algorithm("dapo", aggregation=aggregation, lam_init=0.8, r=0.3, num_generations=4,
                                 max_completion_length=MAX_LEN)
    trainer = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4)
    batch = fixed_batch(model, 4, seed=5)
    torch.manual_seed(0)
    shuffled = shuffle_sequence_dict(batch)  # rows out of their groups, as TRL hands them to the loss
    weights, _ = trainer.completion_weights_for(shuffled)
    expected = completion_weights(aggregation, batch["lgrpo_lengths"], group_size=4, lam=0.8, r=0.3,
                                  max_completion_length=MAX_LEN)
    order = [int(torch.nonzero(torch.all(batch["completion_ids"] == row, dim=1))[0]) for row in shuffled["completion_ids"]]
    assert torch.allclose(weights.detach(), expected[order], atol=1e-7)


@pytest.mark.parametrize("surrogate", list(AXES["surrogate"]))  # every registered surrogate
def test_dloss_dlambda_matches_finite_difference_in_the_trainer(model, tokenizer, tmp_path, surrogate):
    algorithm = preset_algorithm("lambda_grpo", surrogate=surrogate, lam_init=0.5, r=0.3, num_generations=4,
                                 max_completion_length=MAX_LEN)
    trainer = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4)
    trainer.current_gradient_accumulation_steps = 1
    batch = fixed_batch(model, 4, seed=11)
    trainer.lam.grad = None
    trainer._compute_loss(model, batch).backward()
    analytic = trainer.lam.grad.item()
    step = 1e-2
    with torch.no_grad():
        trainer.lam.fill_(0.5 + step)
        up = trainer._compute_loss(model, batch).item()
        trainer.lam.fill_(0.5 - step)
        down = trainer._compute_loss(model, batch).item()
    assert analytic == pytest.approx((up - down) / (2 * step), rel=2e-3, abs=1e-6)
    assert abs(analytic) > 1e-4


# --- generation: advantages and the accuracy filter on real completions -------------------------------------------------
def generation_inputs(n_prompts: int, group_size: int) -> list[dict]:
    rows = prompts_dataset(n_prompts)
    return [rows[i] for i in range(n_prompts) for _ in range(group_size)]


@pytest.mark.parametrize("advantage", ["group_std", "group_mean", "batch_std"])
def test_advantages_equal_trl_scale_rewards_on_a_real_generation(model, tokenizer, tmp_path, advantage):
    algorithm = preset_algorithm("dapo", advantage=advantage, num_generations=4, max_completion_length=MAX_LEN)
    trainer = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4,
                    scale_rewards=trl_scale_rewards(advantage))
    torch.manual_seed(0)
    trl_output = GRPOTrainer._generate_and_score_completions(trainer, generation_inputs(4, 4))  # TRL's own advantages
    rewards, accuracy = trainer._local_rewards(ROWS)
    ours = trainer.advantage_estimator.compute(rewards, 4, torch.ones(ROWS))
    assert torch.allclose(ours, trl_output["advantages"], atol=1e-6), (ours, trl_output["advantages"])
    assert ours.abs().max() > 0.1 and torch.equal(rewards, accuracy)  # one reward function: the total is the accuracy
    # the trainer uses its advantage axis whatever GRPOConfig.scale_rewards says (TRL's default "group" here)
    default_args = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path / "default", algorithm, 4)
    torch.manual_seed(0)
    output = default_args._generate_and_score_completions(generation_inputs(4, 4))
    rewards, _ = default_args._local_rewards(ROWS)
    assert torch.allclose(output["advantages"], default_args.advantage_estimator.compute(rewards, 4, torch.ones(ROWS)), atol=1e-6)


def correct_for_even_prompts(prompts, completions, **kwargs):
    """Accuracy: every completion of an even-numbered prompt is correct; odd prompts: length parity (mixed)."""
    return [1.0 if int(p.split("<|user|>")[1].split("+")[0]) % 2 == 0 else float(len(c) % 2 == 0)
            for p, c in zip(prompts, completions)]


def length_penalty(completions, **kwargs):
    return [-0.01 * len(c) for c in completions]


@pytest.mark.parametrize("group_filter", ["drop", "resample"])
def test_group_filter_decides_on_accuracy_not_on_the_shaped_reward(model, tokenizer, tmp_path, group_filter):
    """A group all correct but with different length penalties (so different total rewards) is filtered out."""
    algorithm = preset_algorithm("dapo", group_filter=group_filter, max_generation_batches=1, num_generations=4,
                                 max_completion_length=MAX_LEN)
    args = trl_args(tmp_path, num_generations=4, per_device_train_batch_size=ROWS, max_completion_length=MAX_LEN)
    trainer = UnifiedLossGRPOTrainer(model=model, reward_funcs=[correct_for_even_prompts, length_penalty], args=args,
                                     train_dataset=prompts_dataset(), processing_class=tokenizer, algorithm=algorithm)
    trainer.model.train()
    torch.manual_seed(1)
    output = trainer._generate_and_score_completions(generation_inputs(4, 4))  # prompts 10, 11, 12, 13
    keep = output["lgrpo_keep"].view(4, 4)
    rewards, accuracy = trainer._local_rewards(ROWS)
    even = [0, 2]
    assert torch.all(accuracy.view(4, 4)[even] == 1) and torch.all(rewards.view(4, 4)[even].std(dim=1) > 0)
    mixed = [g for g in (1, 3) if accuracy.view(4, 4)[g].unique().numel() > 1]
    assert mixed
    assert output["lgrpo_num_completions"].item() == 4 * len(mixed)  # the all-correct groups are out of N, Σ|o| and P
    kept_lengths = output["completion_mask"].sum(dim=1)[output["lgrpo_keep"] > 0]
    assert output["lgrpo_num_tokens"].item() == kept_lengths.sum().item() and output["lgrpo_num_groups"].item() == len(mixed)
    assert trainer._metrics["train"]["train/groups_filtered_frac"][-1] == pytest.approx(1 - len(mixed) / 4)
    if group_filter == "drop":  # the batch keeps its order
        assert keep[even].sum() == 0 and all(bool(keep[g].all()) for g in mixed)
    else:  # one round allowed: the mixed groups first, padded with uniform ones out of the loss, cap reached
        assert keep[: len(mixed)].all() and keep[len(mixed) :].sum() == 0
        assert trainer._metrics["train"]["train/group_filter_cap_reached"][-1] == 1.0


def test_dapo_full_masks_truncated_completions(model, tokenizer, tmp_path):
    """DAPO §3.4: completions cut at L_max leave the loss (the untrained model never emits EOS in 12 tokens)."""
    algorithm = preset_algorithm("dapo_full", num_generations=4, max_completion_length=MAX_LEN, max_generation_batches=1)
    trainer = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4)  # GRPOConfig's default: False
    trainer.model.train()
    torch.manual_seed(2)
    output = trainer._generate_and_score_completions(generation_inputs(4, 4))
    truncated = (output["completion_ids"] != tokenizer.eos_token_id).all(dim=1) & (output["completion_ids"].size(1) == MAX_LEN)
    assert truncated.any() and output["completion_mask"][truncated].sum() == 0
    assert output["lgrpo_lengths"][truncated].sum() == 0


def test_resampling_fills_every_step_with_its_mixed_groups_in_real_training(warm_tiny, tmp_path):
    """dapo_full on tiny-s, accuracy = length parity (mixed groups likely, not certain): some step needs another
    generation round, and every step that did not reach the cap trains on exactly prompts_per_step mixed groups."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts, steps = 4, 4
    algorithm = preset_algorithm("dapo_full", num_generations=4, max_completion_length=40)
    args = trl_args(tmp_path, max_steps=steps, max_completion_length=40, num_generations=4,
                    per_device_train_batch_size=prompts * 4)
    trainer = UnifiedLossGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(warm_tiny.path),
                                     reward_funcs=[length_parity_reward], args=args, train_dataset=prompts_dataset(),
                                     processing_class=AutoTokenizer.from_pretrained(warm_tiny.path), algorithm=algorithm)
    in_loss = []
    original = trainer._finish_generation_batch

    def record(output, *args, **kwargs):
        finished = original(output, *args, **kwargs)
        in_loss.append(int(finished["lgrpo_num_groups"].item()))
        return finished

    trainer._finish_generation_batch = record
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "train/generation_batches" in entry]
    assert len(logs) == len(in_loss) == steps
    assert max(entry["train/generation_batches"] for entry in logs) > 1
    for entry, groups in zip(logs, in_loss):
        assert groups == prompts if entry["train/group_filter_cap_reached"] == 0 else groups < prompts
        generated = entry["train/generation_batches"] * prompts
        assert entry["train/groups_filtered_frac"] == pytest.approx(1 - groups / generated)


# --- λ's optimizers ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lambda_optimizer_step_in_a_real_trainer_step(warm_tiny, tmp_path, optimizer):
    """SGD moves λ by lr × schedule × gradient; Adam's first step is exactly lr (its rate limit) against the
    gradient's sign, its second the AdamW update computed by hand from both gradients (so a gradient accumulated
    across steps, ascent or a clipped gradient all show). TRL's default linear schedule halves the learning rate at
    the second of two steps. The policy's gradient clipping is set to bind (max_grad_norm below |dL/dλ|): λ is not
    clipped."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lr, max_grad_norm = 0.5, 1e-5
    algorithm = preset_algorithm("lambda_grpo", lambda_optimizer=optimizer, lambda_lr=lr, lam_init=0.2, r=0.3,
                                 num_generations=4, max_completion_length=40)
    args = trl_args(tmp_path, max_steps=2, max_completion_length=40, num_generations=4, per_device_train_batch_size=16,
                    max_grad_norm=max_grad_norm)
    trainer = UnifiedLossGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(warm_tiny.path),
                                     reward_funcs=[length_parity_reward], args=args, train_dataset=prompts_dataset(),
                                     processing_class=AutoTokenizer.from_pretrained(warm_tiny.path), algorithm=algorithm)
    backward_grads: list[float] = []  # dL/dλ as autograd computes it, before any optimizer hook sees it
    trainer.lam.register_hook(lambda grad: backward_grads.append(grad.item()))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "lambda" in entry]
    assert len(logs) == 2 and logs[1]["learning_rate"] < logs[0]["learning_rate"]
    for entry, true_grad in zip(logs, backward_grads):
        grad, step = entry["lambda_grad"], entry["dlambda"]
        assert grad == pytest.approx(true_grad, rel=1e-6) and abs(grad) > 10 * max_grad_norm  # the real, unclipped gradient
        assert entry["grad_norm"] > max_grad_norm  # the policy's clipping bound this step
        factor = entry["learning_rate"] / args.learning_rate  # the policy's schedule, which λ follows
        if optimizer == "sgd":
            assert step == pytest.approx(-lr * factor * grad, rel=1e-4, abs=1e-7)  # plain gradient descent, no clipping
            assert entry["train/lambda_rate_limited"] == 0.0
    if optimizer == "adam":
        first, second = logs
        assert abs(first["dlambda"]) == pytest.approx(lr, rel=1e-4) and first["dlambda"] * backward_grads[0] < 0
        assert first["train/lambda_rate_limited"] == 1.0
        g1, g2 = backward_grads[:2]
        beta1, beta2, eps = args.adam_beta1, args.adam_beta2, args.adam_epsilon
        m_hat = (beta1 * (1 - beta1) * g1 + (1 - beta1) * g2) / (1 - beta1**2)
        v_hat = (beta2 * (1 - beta2) * g1**2 + (1 - beta2) * g2**2) / (1 - beta2**2)
        factor = second["learning_rate"] / args.learning_rate
        assert second["dlambda"] == pytest.approx(-lr * factor * m_hat / (v_hat**0.5 + eps), rel=1e-4)
    assert trainer.lambda_rate_limited_fraction == pytest.approx(
        sum(e["train/lambda_rate_limited"] for e in logs) / 2)
    assert not any(p is trainer.lam for group in trainer.optimizer.param_groups for p in group["params"])  # its own
    assert trainer.lam.grad is None  # cleared after every step: the next step does not accumulate this one's gradient


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_policy_optimizer_holds_exactly_the_model_parameters_so_fsdp2_can_shard_it(model, tokenizer, tmp_path, optimizer):
    """FSDP2 (accelerate ``fsdp_version: 2``) swaps every policy-optimizer parameter for the sharded model parameter of
    the same storage (``fsdp2_switch_optimizer_parameters``, keyed by ``data_ptr``) and raises KeyError on any other:
    λ lives in its own optimizer (Adam with the policy's betas/eps and no weight decay, or SGD), so that mapping, run
    here exactly as accelerate runs it, succeeds for both λ optimizers."""
    from accelerate.utils import fsdp2_switch_optimizer_parameters

    algorithm = preset_algorithm("lambda_grpo", lambda_optimizer=optimizer, lambda_lr=0.5, lam_init=0.2, r=0.3,
                                 num_generations=4, max_completion_length=MAX_LEN)
    trainer = build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4, adam_beta1=0.8, adam_epsilon=1e-6)
    trainer.create_optimizer_and_scheduler(num_training_steps=2)
    in_policy = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(in_policy) == len(trainable) and {id(p) for p in in_policy} == {id(p) for p in trainable}
    assert [p for group in trainer.lambda_optimizer.param_groups for p in group["params"]] == [trainer.lam]
    group = trainer.lambda_optimizer.param_groups[0]
    if optimizer == "adam":
        assert isinstance(trainer.lambda_optimizer, torch.optim.Adam)
        assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.8, 0.999), 1e-6, 0.0)
    else:
        assert type(trainer.lambda_optimizer) is torch.optim.SGD and group["momentum"] == 0
    mapping = {p.data_ptr(): p for p in model.parameters()}  # accelerate: old data_ptr -> (here: the same) new param
    for group in trainer.optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            group["params"][i] = torch.empty(1)
            group["params"][i].data_ptr = p.data_ptr()
    fsdp2_switch_optimizer_parameters(trainer.optimizer, mapping)


def test_trainer_refuses_trl_loss_options_that_contradict_its_algorithm(model, tokenizer, tmp_path):
    algorithm = preset_algorithm("grpo", num_generations=4, max_completion_length=MAX_LEN)
    for options, named in (({"loss_type": "sapo"}, "loss_type='sapo'"), ({"scale_rewards": "batch"}, "scale_rewards='batch'"),
                           ({"epsilon_high": 0.28}, "epsilon_high=0.28"),
                           ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation")):
        with pytest.raises(ValueError, match=named):
            build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4, **options)
    # the algorithm's own TRL values and TRL's defaults are accepted
    build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4, loss_type="grpo", scale_rewards="group")
    gspo = preset_algorithm("gspo", num_generations=4, max_completion_length=MAX_LEN)
    build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, gspo, 4, **trl_equivalent(gspo))


@pytest.mark.parametrize("options, named", [
    ({"entropy_coef": 0.01}, "entropy bonus"),
    ({"top_entropy_quantile": 0.5}, "top_entropy_quantile"),
    ({"off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold"),
    ({"mask_truncated_completions": True}, "mask_truncated_completions=True"),
    ({"loss_type": "dapo", "importance_sampling_level": "sequence"}, "importance_sampling_level"),
    ({"images": True}, "image inputs"),
])
def test_trainer_refuses_trl_options_it_does_not_implement(model, tokenizer, tmp_path, options, named):
    """Each would change TRL's loss or inputs in a way the unified loss ignores: refused at construction."""
    from datasets import Dataset

    algorithm = preset_algorithm("dapo", num_generations=4, max_completion_length=MAX_LEN)
    if options.pop("images", False):
        dataset = Dataset.from_list([{"prompt": "<|user|>1+2<|assistant|>", "image": None}] * 4)
        args = trl_args(tmp_path, num_generations=4, per_device_train_batch_size=ROWS, max_completion_length=MAX_LEN)
        with pytest.raises(ValueError, match=named):
            UnifiedLossGRPOTrainer(model=model, reward_funcs=[length_parity_reward], args=args, train_dataset=dataset,
                                   processing_class=tokenizer, algorithm=algorithm)
        return
    with pytest.raises(ValueError, match=named):
        build(UnifiedLossGRPOTrainer, model, tokenizer, tmp_path, algorithm, 4, **options)
