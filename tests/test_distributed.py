"""Process invariance with real processes: 2 gloo processes (torch.distributed on CPU, through accelerate) compute the
trainer's sharded work on halves of a fixed generation batch — gathering lengths, rewards and accuracies, the group
filter's keep mask, the advantages, the per-row normalisers, the micro-batch losses scaled by the process count, the
DDP mean of the gradients and the mean of λ's gradient — and must give what 1 process gives on the whole batch, for
every aggregation (the local token mean excepted: it is per process by definition), surrogate, advantage and filter.
DAPO's re-sampling loop then runs for real in 2 processes: both take the same number of generation rounds and train
on exactly their target of groups, and a real generation in each process checks that each takes its own rows'
rewards out of the ones TRL gathers."""

from __future__ import annotations

import pytest
import torch

from distributed_harness import run_in_processes

G, N_GROUPS, PROMPT_LEN, MAX_LEN = 4, 8, 6, 10
ROWS = G * N_GROUPS

CASES = [
    ("dapo", {}),
    ("grpo", {"advantage": "batch_std"}),
    ("dr_grpo", {}),
    ("dapo", {"aggregation": "prompt_mean", "group_filter": "drop"}),
    ("lambda_grpo", {"lam_init": 0.4, "r": 0.3, "group_filter": "drop"}),
    ("cispo", {"cispo_epsilon_max": 1.2, "advantage": "batch_std", "group_filter": "drop"}),
    ("sapo", {"aggregation": "lambda", "lam_init": -0.3, "r": 0.3}),
    ("gspo", {"epsilon_low": 0.05, "epsilon_high": 0.05, "group_filter": "resample"}),
]


def global_batch() -> dict[str, torch.Tensor]:
    """A fixed generation batch: uneven lengths, an off-policy old policy, accuracies with two uniform groups and a
    shaped reward (accuracy minus a length penalty) that differs from the accuracy."""
    from lgrpo_bench.models.tiny import make_tiny_model
    from lgrpo_bench.models.tokenizer import make_tokenizer

    gen = torch.Generator().manual_seed(0)
    model = make_tiny_model("tiny-s", make_tokenizer(), seed=0)
    prompt_ids = torch.randint(3, 250, (ROWS, PROMPT_LEN), generator=gen)
    completion_ids = torch.randint(3, 250, (ROWS, MAX_LEN), generator=gen)
    lengths = torch.randint(1, MAX_LEN + 1, (ROWS,), generator=gen)
    completion_mask = (torch.arange(MAX_LEN)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits[:, PROMPT_LEN - 1 : -1]
        logps = torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    accuracy = torch.randint(0, 2, (ROWS,), generator=gen).float().view(N_GROUPS, G)
    uniform = accuracy.min(dim=1).values == accuracy.max(dim=1).values
    accuracy[uniform, 0] = 1 - accuracy[uniform, 0]  # every group mixed ...
    accuracy[0], accuracy[5] = 1.0, 0.0  # ... except group 0 (process 0), all correct, and group 5 (process 1), all wrong
    accuracy = accuracy.flatten()
    return {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
            "completion_mask": completion_mask, "old_per_token_logps": logps + 0.3 * torch.randn(logps.shape, generator=gen),
            "accuracy": accuracy, "rewards": accuracy - 0.02 * lengths.float()}


def sharded_step(rank: int, world_size: int, batch: dict, n_micro: int) -> list[dict]:
    """For every case: this process's share of the trainer's work on its half of ``batch`` (see module docstring)."""
    import tempfile

    import torch.distributed as dist
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    from lgrpo_bench.algorithms.presets import preset_algorithm, trl_equivalent
    from lgrpo_bench.models.tiny import make_tiny_model
    from lgrpo_bench.models.tokenizer import make_tokenizer
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer
    from test_trainer_loss import length_parity_reward, prompts_dataset, trl_args

    local_rows = ROWS // world_size
    rows = slice(rank * local_rows, (rank + 1) * local_rows)
    tokenizer = make_tokenizer()
    model = make_tiny_model("tiny-s", tokenizer, seed=0)
    results = []
    for name, overrides in CASES:
        algorithm = preset_algorithm(name, num_generations=G, max_completion_length=MAX_LEN, **overrides)
        options = {k: v for k, v in (trl_equivalent(algorithm) or {}).items() if k == "scale_rewards"}
        with tempfile.TemporaryDirectory() as out:
            args = trl_args(out, num_generations=G, per_device_train_batch_size=local_rows // n_micro,
                            gradient_accumulation_steps=n_micro, steps_per_generation=n_micro,
                            max_completion_length=MAX_LEN, **options)
            trainer = UnifiedLossGRPOTrainer(model=model, reward_funcs=[length_parity_reward], args=args,
                                             train_dataset=prompts_dataset(), processing_class=tokenizer, algorithm=algorithm)
        assert trainer.accelerator.num_processes == world_size and trainer.accelerator.process_index == rank
        local = {key: batch[key][rows] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask",
                                                     "old_per_token_logps")}
        local["advantages"] = torch.zeros(local_rows)
        output = trainer._finish_generation_batch(local, batch["rewards"][rows], batch["accuracy"][rows], G, "train",
                                                  rounds=1)
        model.zero_grad()
        trainer.lam.grad = None
        trainer.current_gradient_accumulation_steps = n_micro
        torch.manual_seed(rank)
        for micro in split_tensor_dict(shuffle_sequence_dict(output), n_micro):
            trainer._compute_loss(model, micro).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        if world_size > 1:  # what DDP does to the model's gradients
            dist.all_reduce(grads)
            grads /= world_size
        trainer._before_optimizer_step(None, None, None)  # averages λ's gradient across processes
        results.append({"grads": grads, "lambda_grad": None if trainer.lam.grad is None else trainer.lam.grad.item(),
                        "advantages": output["advantages"], "keep": output["lgrpo_keep"],
                        "normalisers": [output[k].item() for k in ("lgrpo_num_completions", "lgrpo_num_tokens", "lgrpo_num_groups")]})
    return results


pytestmark = pytest.mark.xdist_group("distributed")  # one xdist worker: the 2-process launch (~25 s) runs once


@pytest.fixture(scope="module")
def batch():
    torch.set_num_threads(1)
    return global_batch()


def two_process_worker(rank: int, world_size: int, batch: dict) -> dict:
    """The 2-process checks in one launch (each process start imports torch, transformers and TRL)."""
    return {"sharded": sharded_step(rank, world_size, batch, 2), "resample": resample_rounds(rank, world_size),
            "own_rewards": own_rewards(rank, world_size)}


@pytest.fixture(scope="module")
def two_processes(batch):
    return run_in_processes(two_process_worker, 2, batch)


@pytest.fixture(scope="module")
def one_process(batch):
    return sharded_step(0, 1, batch, 1)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CASES])
def test_two_processes_compute_what_one_does(one_process, two_processes, case):
    one = one_process[case]
    halves = [rank_results["sharded"][case] for rank_results in two_processes]
    name, overrides = CASES[case]
    assert torch.allclose(torch.cat([h["advantages"] for h in halves]), one["advantages"], atol=1e-6)
    assert torch.equal(torch.cat([h["keep"] for h in halves]), one["keep"])
    for half in halves:
        assert half["normalisers"] == pytest.approx(one["normalisers"], abs=1e-6)
    assert torch.allclose(halves[0]["grads"], one["grads"], atol=1e-6, rtol=0), (halves[0]["grads"] - one["grads"]).abs().max()
    assert torch.equal(halves[0]["grads"], halves[1]["grads"])
    assert one["grads"].abs().max() > 1e-3
    if one["lambda_grad"] is not None:
        assert halves[0]["lambda_grad"] == pytest.approx(one["lambda_grad"], abs=1e-6) and abs(one["lambda_grad"]) > 1e-5
    if overrides.get("group_filter") in ("drop", "resample"):  # decided on accuracy: both uniform groups are out
        assert one["keep"].view(-1, G)[[0, 5]].sum() == 0 and one["normalisers"][2] == N_GROUPS - 2


def resample_rounds(rank: int, world_size: int) -> dict:
    """A real re-sampling generation step in each process (different prompts per process)."""
    import tempfile

    from lgrpo_bench.algorithms.presets import preset_algorithm
    from lgrpo_bench.models.tiny import make_tiny_model
    from lgrpo_bench.models.tokenizer import make_tokenizer
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer
    from test_trainer_loss import length_parity_reward, prompts_dataset, trl_args

    torch.manual_seed(rank)
    tokenizer = make_tokenizer()
    model = make_tiny_model("tiny-s", tokenizer, seed=0)
    algorithm = preset_algorithm("dapo_full", num_generations=G, max_completion_length=MAX_LEN, max_generation_batches=6)
    with tempfile.TemporaryDirectory() as out:
        args = trl_args(out, num_generations=G, per_device_train_batch_size=4 * G, max_completion_length=MAX_LEN,
                        mask_truncated_completions=True)
        trainer = UnifiedLossGRPOTrainer(model=model, reward_funcs=[length_parity_reward], args=args,
                                         train_dataset=prompts_dataset(64), processing_class=tokenizer, algorithm=algorithm)
    trainer.model.train()
    dataset = prompts_dataset(64)
    rounds, filtered, kept = [], [], []
    for step in range(3):
        trainer.state.global_step = step
        inputs = [dataset[8 * step + 4 * rank + i] for i in range(4) for _ in range(G)]
        output = trainer._generate_and_score_completions(inputs)
        assert output["completion_ids"].shape[0] == 4 * G and output["advantages"].shape == (4 * G,)
        rounds.append(trainer._metrics["train"]["train/generation_batches"][-1])
        filtered.append(trainer._metrics["train"]["train/group_filter_cap_reached"][-1])
        kept.append((output["lgrpo_keep"].sum().item(), output["lgrpo_num_completions"].item()))
    return {"rounds": rounds, "cap": filtered, "kept": kept}


def test_resampling_takes_the_same_rounds_on_every_process_and_fills_each_batch(two_processes):
    ranks = [rank_results["resample"] for rank_results in two_processes]
    assert ranks[0]["rounds"] == ranks[1]["rounds"] and ranks[0]["cap"] == ranks[1]["cap"]
    for step in range(len(ranks[0]["rounds"])):
        local_kept = [rank["kept"][step][0] for rank in ranks]
        assert ranks[0]["kept"][step][1] == ranks[1]["kept"][step][1] == sum(local_kept)  # N spans both processes
        if ranks[0]["cap"][step] == 0:
            assert local_kept == [4 * G, 4 * G]  # every process trains on exactly its 4 mixed groups
    assert max(ranks[0]["rounds"]) > 1  # some step needed another round


def prompt_number_reward(prompts, **kwargs):
    """A reward that names its prompt: <|user|>{n}+... scores n / 100."""
    return [int(p.split("<|user|>")[1].split("+")[0]) / 100 for p in prompts]


def own_rewards(rank: int, world_size: int) -> dict:
    """A real generation in each process (different prompts per process): the rewards and accuracies the trainer
    takes for this process's rows out of TRL's gathered rewards, and what they should be."""
    import tempfile

    from lgrpo_bench.algorithms.presets import preset_algorithm
    from lgrpo_bench.models.tiny import make_tiny_model
    from lgrpo_bench.models.tokenizer import make_tokenizer
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer
    from test_trainer_loss import prompts_dataset, trl_args

    torch.manual_seed(rank)
    tokenizer = make_tokenizer()
    algorithm = preset_algorithm("dapo", num_generations=G, max_completion_length=MAX_LEN)
    with tempfile.TemporaryDirectory() as out:
        args = trl_args(out, num_generations=G, per_device_train_batch_size=2 * G, max_completion_length=MAX_LEN)
        trainer = UnifiedLossGRPOTrainer(model=make_tiny_model("tiny-s", tokenizer, seed=0),
                                         reward_funcs=[prompt_number_reward], args=args, train_dataset=prompts_dataset(),
                                         processing_class=tokenizer, algorithm=algorithm)
    trainer.model.train()
    dataset = prompts_dataset()
    inputs = [dataset[2 * rank + i] for i in range(2) for _ in range(G)]
    trainer._generate_and_score_completions(inputs)
    total, accuracy = trainer._local_rewards(len(inputs))
    return {"total": total, "accuracy": accuracy,
            "expected": torch.tensor(prompt_number_reward([row["prompt"] for row in inputs]))}


def test_each_process_takes_its_own_rewards_out_of_the_gathered_ones(two_processes):
    """TRL gathers every process's rewards; the group filter and the advantages must see this process's rows."""
    for rank_results in two_processes:
        own = rank_results["own_rewards"]
        assert torch.allclose(own["total"], own["expected"]) and torch.allclose(own["accuracy"], own["expected"])
    assert not torch.equal(two_processes[0]["own_rewards"]["expected"], two_processes[1]["own_rewards"]["expected"])


def fsdp2_prepare(rank: int, world_size: int, lam_in_policy_optimizer: bool) -> dict:
    """accelerate's FSDP2 preparation of the trainer's model and policy optimizer in this process, then one step.

    accelerate turns a CPU launch into plain multi-CPU DDP and ignores an FSDP plugin there, so the state is set to
    FSDP (version 2) by hand; what runs is accelerate's own ``_prepare_fsdp2`` and torch's ``fully_shard`` on gloo."""
    import tempfile

    import torch
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    from lgrpo_bench.algorithms.presets import preset_algorithm
    from lgrpo_bench.models.tiny import make_tiny_model
    from lgrpo_bench.models.tokenizer import make_tokenizer
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer
    from test_trainer_loss import length_parity_reward, prompts_dataset, trl_args

    tokenizer = make_tokenizer()
    algorithm = preset_algorithm("lambda_grpo", lambda_optimizer="adam", lambda_lr=0.5, lam_init=0.2, r=0.3,
                                 num_generations=G, max_completion_length=MAX_LEN)
    trainer = UnifiedLossGRPOTrainer(
        model=make_tiny_model("tiny-s", tokenizer, seed=0), reward_funcs=[length_parity_reward],
        args=trl_args(tempfile.mkdtemp(), num_generations=G, per_device_train_batch_size=ROWS // world_size,
                      max_completion_length=MAX_LEN),
        train_dataset=prompts_dataset(), processing_class=tokenizer, algorithm=algorithm)
    state = trainer.accelerator.state
    state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
        transformer_cls_names_to_wrap=[type(trainer.model.model.layers[0]).__name__])
    state.distributed_type = DistributedType.FSDP
    optimizer = trainer.create_optimizer()
    if lam_in_policy_optimizer:  # where the old trainer put λ under lambda_optimizer: adam
        optimizer.add_param_group({"params": [trainer.lam], "lr": 0.5, "weight_decay": 0.0})
    model, prepared = trainer.accelerator.prepare(trainer.model, optimizer)
    ids = torch.randint(3, 250, (2, 8), generator=torch.Generator().manual_seed(rank))
    loss = model(input_ids=ids).logits.float().mean() * (1 + (rank + 1) * trainer.lam)
    loss.backward()
    prepared.step()
    return {"model": type(model).__name__,
            "policy_params": sorted({type(p).__name__ for g in prepared.param_groups for p in g["params"]}),
            "lam": trainer.lam.item(), "lambda_grad": trainer._metrics["train"]["lambda_grad"][-1]}


@pytest.mark.e2e  # accelerate's FSDP2 on 2 processes
def test_fsdp2_prepares_the_trainer_optimizer_and_steps_lambda_beside_it():
    """FSDP2 (experiments/accelerate_fsdp.yaml) swaps every policy-optimizer parameter for its sharded model parameter:
    with λ in its own optimizer the preparation succeeds, the policy optimizer holds DTensor shards only, and one step
    moves λ by exactly Adam's first step (lambda_lr) on both processes, from the mean of their λ gradients; with λ in
    the policy optimizer (the old trainer), accelerate raises KeyError."""
    results = run_in_processes(fsdp2_prepare, 2, False, timeout_s=300)
    for result in results:
        assert result["model"].startswith("FSDP") and result["policy_params"] == ["DTensor"]
        assert abs(result["lam"] - 0.2) == pytest.approx(0.5, rel=1e-5)
    assert results[0]["lam"] == results[1]["lam"] and results[0]["lambda_grad"] == results[1]["lambda_grad"]
    with pytest.raises(RuntimeError, match="couldn't be switched to its sharded version"):
        run_in_processes(fsdp2_prepare, 2, True, timeout_s=300)
