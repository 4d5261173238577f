"""Every random source takes the run's seed (issue 27 §1): vLLM engine and request seeds through the real TRL path up
to the vLLM boundary (a stand-in engine and server client that record what they were given and sample from it, since
neither CUDA nor vLLM exists here), and real CPU rollouts: two seeds differ, the same seed repeats bit for bit."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig
from trl.generation import vllm_generation

from lgrpo_bench.algorithms.presets import preset_algorithm, trl_scale_rewards
from lgrpo_bench.models.tiny import make_tiny_model
from lgrpo_bench.training.seeding import (
    derived_seed,
    engine_seed,
    per_row_sampling_params,
    request_seed,
    seeded_vllm_engine,
)
from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GROUP, N_PROMPTS, MAX_LEN, STEPS = 4, 2, 8, 2


# -- the pure functions ------------------------------------------------------------------------------------------
def test_derived_seed_is_numpy_seed_sequence_of_the_parts():
    by_hand = int(np.random.SeedSequence([1, 7, 0, 3, 0, 0]).generate_state(1, dtype=np.uint32)[0]) >> 1
    assert request_seed(7, 0, 3) == derived_seed(1, 7, 0, 3, 0, 0) == by_hand
    assert engine_seed(7, 2) == derived_seed(0, 7, 2)
    assert 0 <= by_hand < 2**31
    # every part matters, and swapping parts does not collide (a sum of the parts would)
    seeds = {request_seed(s, r, t, k, m) for s in (0, 1) for r in (0, 1) for t in (0, 1) for k in (0, 1)
             for m in ("train", "eval")}
    assert len(seeds) == 32
    with pytest.raises(ValueError, match="non-negative"):
        derived_seed(-1)


def test_per_row_sampling_params_gives_each_row_its_own_seed():
    params = SimpleNamespace(temperature=1.0, seed=None)
    rows = per_row_sampling_params(params, 3, 100)
    assert [p.seed for p in rows] == [100, 101, 102] and params.seed is None  # copies, the original untouched
    assert all(p.temperature == 1.0 for p in rows)


# -- the stand-ins at the vLLM boundary ----------------------------------------------------------------------
@dataclass
class Logprob:
    logprob: float
    rank: int = 1


def _sample(generator: torch.Generator, n_tokens: int, vocab: int) -> list[int]:
    return torch.randint(3, vocab, (n_tokens,), generator=generator).tolist()


class StandInSamplingParams(SimpleNamespace):
    """vllm.SamplingParams: holds its keyword arguments (``seed`` None unless given)."""

    def __init__(self, **kwargs):
        super().__init__(**{"seed": None, **kwargs})


@dataclass
class StandInLLM:
    """vllm.LLM as TRL's colocate mode calls it: records its engine seed and each call's per-row seeds; samples as
    vLLM does, from a generator of the row's ``SamplingParams.seed`` or else the engine's (seeded at construction)."""

    model: str
    seed: int = 0
    kwargs: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)
    instances = []  # every engine built, in order

    def __init__(self, model, seed=0, **kwargs):
        self.model, self.seed, self.kwargs, self.calls = model, seed, kwargs, []
        self.engine_generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # vLLM's worker seeds the process's RNGs with the engine seed
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(seed=seed), model_executor=SimpleNamespace(
            driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=SimpleNamespace(
                load_weights=lambda weights: None)))))
        StandInLLM.instances.append(self)

    def reset_prefix_cache(self):
        pass

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        self.calls.append([p.seed for p in params])
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            completions = []
            for child in range(getattr(p, "n", 1)):  # vLLM seeds child i of a seeded request with seed + i
                generator = torch.Generator().manual_seed(p.seed + child) if p.seed is not None else self.engine_generator
                tokens = _sample(generator, p.max_tokens, 256)
                completions.append(SimpleNamespace(token_ids=tokens,
                                                   logprobs=[{t: Logprob(-math.log(253))} for t in tokens]))
            outputs.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=completions))
        return outputs


class StandInClient:
    """trl VLLMClient (server mode): records each request's ``generation_kwargs``; samples the n completions of a
    prompt as vLLM's parallel sampling does (child i from ``seed + i``; an unseeded request from the server's RNG)."""

    instances = []

    def __init__(self, base_url=None, group_port=None, connection_timeout=None):
        self.requests = []
        self.server_generator = torch.Generator().manual_seed(0)  # the server's own --seed
        StandInClient.instances.append(self)

    def init_communicator(self, device=None):
        pass

    def get_server_info(self):
        return {"model_config": {"logprobs_mode": "processed_logprobs"}}

    def update_named_params(self, metadata, params):
        for _ in params:
            pass

    def reset_prefix_cache(self):
        pass

    def generate(self, prompts, features=None, n=1, max_tokens=16, generation_kwargs=None, **kwargs):
        seed = (generation_kwargs or {}).get("seed")
        self.requests.append(seed)
        completions = []
        for _ in prompts:
            for child in range(n):
                generator = self.server_generator if seed is None else torch.Generator().manual_seed(seed + child)
                completions.append(_sample(generator, max_tokens, 256))
        logprobs = [[[-math.log(253)] for _ in c] for c in completions]
        return {"prompt_ids": list(prompts), "completion_ids": completions, "logprobs": logprobs,
                "logprob_token_ids": [[[t] for t in c] for c in completions]}


DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def isolate_distributed_env(monkeypatch) -> None:
    """Unset the variables TRL's colocate init writes into ``os.environ``, so that the test's end restores each one,
    unset ones included: ``delenv`` of an unset variable records nothing, and a leaked ``WORLD_SIZE`` made every later
    run of that pytest worker start torch.distributed."""
    for name in DISTRIBUTED_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_what_trl_writes_into_the_environment_is_gone_after_the_test():
    before = {name: os.environ.get(name) for name in DISTRIBUTED_ENV}
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_distributed_env(monkeypatch)
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="localhost", MASTER_PORT="29500")
    assert {name: os.environ.get(name) for name in DISTRIBUTED_ENV} == before


@pytest.fixture
def vllm_boundary(monkeypatch):
    """The stand-ins where TRL 1.16 constructs vllm's LLM / SamplingParams and its server client."""
    StandInLLM.instances.clear()
    StandInClient.instances.clear()
    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(vllm_generation, "LLM", StandInLLM, raising=False)
    monkeypatch.setattr(vllm_generation, "SamplingParams", StandInSamplingParams, raising=False)
    monkeypatch.setattr(vllm_generation, "VLLMClient", StandInClient)
    isolate_distributed_env(monkeypatch)
    monkeypatch.setenv("RANK", "0")
    return SimpleNamespace(engines=StandInLLM.instances, clients=StandInClient.instances)


class Completions:
    """A reward that keeps every completion it scores (the rollouts, as the trainer saw them)."""

    def __init__(self):
        self.seen: list[str] = []
        self.__name__ = "recorder"

    def __call__(self, completions, **kwargs):
        self.seen.extend(completions)
        return [float(len(c) % 2 == 0) for c in completions]


def build_trainer(tokenizer, tmp_path, seed: int, *, one_prompt: bool = False,
                  **options) -> tuple[UnifiedLossGRPOTrainer, Completions]:
    """A trainer of a freshly built tiny model (its weights do not depend on ``seed``); ``one_prompt``: every prompt
    the same, so rollouts can differ only through generation."""
    algorithm = preset_algorithm("grpo", num_generations=GROUP, max_completion_length=MAX_LEN)
    args = GRPOConfig(
        output_dir=str(tmp_path / f"seed{seed}"), per_device_train_batch_size=GROUP * N_PROMPTS,
        num_generations=GROUP, max_completion_length=MAX_LEN, learning_rate=1e-3, max_steps=STEPS, logging_steps=1,
        report_to="none", use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no",
        disable_tqdm=True, seed=seed, data_seed=seed, beta=0.0, temperature=1.0, top_k=0,
        loss_type="grpo", scale_rewards=trl_scale_rewards(algorithm.advantage), **options)
    recorder = Completions()
    prompts = ["<|user|>12+34<|assistant|>" if one_prompt else f"<|user|>{10 + i}+{20 + i}<|assistant|>"
               for i in range(16)]
    trainer = UnifiedLossGRPOTrainer(model=make_tiny_model("tiny-s", tokenizer, seed=0), reward_funcs=[recorder],
                                     args=args, train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                                     processing_class=tokenizer, algorithm=algorithm)
    return trainer, recorder


def run_steps(tokenizer, tmp_path, seed: int, **options) -> tuple[UnifiedLossGRPOTrainer, list[str]]:
    """STEPS real GRPO steps (:func:`build_trainer`); the completions the reward saw."""
    trainer, recorder = build_trainer(tokenizer, tmp_path, seed, **options)
    trainer.train()
    return trainer, recorder.seen


# -- vLLM colocate: engine and per-row request seeds -------------------------------------------------------------
def test_colocated_vllm_takes_the_training_seed(vllm_boundary, tokenizer, tmp_path):
    runs = {}
    for label, seed in (("a", 1), ("b", 1), ("c", 2)):
        trainer, rollouts = run_steps(tokenizer, tmp_path / label, seed, one_prompt=True, use_vllm=True,
                                      vllm_mode="colocate")
        runs[label] = (vllm_boundary.engines[-1], rollouts, trainer)
    (engine_a, rollouts_a, trainer_a), (engine_b, rollouts_b, _), (engine_c, rollouts_c, _) = runs.values()
    # the engine: TRL would pass process_index // tp = 0 for every training seed
    assert engine_a.seed == engine_b.seed == engine_seed(1, 0) != engine_c.seed == engine_seed(2, 0)
    # one generation per step, each row its own seed (G copies of a prompt must not share one)
    assert len(engine_a.calls) == STEPS
    for rows in engine_a.calls:
        assert rows == list(range(rows[0], rows[0] + GROUP * N_PROMPTS))
    assert [rows[0] for rows in engine_a.calls] == [request_seed(1, 0, step) for step in range(STEPS)]
    assert engine_a.calls == engine_b.calls and engine_a.calls != engine_c.calls
    # and so the rollouts: the same seed repeats them, another seed does not
    assert rollouts_a == rollouts_b and rollouts_a != rollouts_c
    assert trainer_a.vllm_generation.llm.engine is engine_a


def test_process_rngs_follow_the_training_seed_after_the_engine_is_built(vllm_boundary, tokenizer, tmp_path):
    """vLLM's worker seeds the process's RNGs with the engine seed; dropout and HF sampling must not inherit it."""
    build_trainer(tokenizer, tmp_path, 11, use_vllm=True, vllm_mode="colocate")
    after_build = torch.rand(4)
    torch.manual_seed(11)  # TRL's set_seed(args.seed, device_specific=True) on process 0
    assert torch.equal(after_build, torch.rand(4))


def test_processes_get_different_vllm_seeds(vllm_boundary, tokenizer, tmp_path, monkeypatch):
    # the engine: what TRL passes as seed is the data-parallel rank (process_index // tp)
    with seeded_vllm_engine(5):
        ranks = [vllm_generation.LLM(model="m", seed=rank) for rank in (0, 1)]
    assert vllm_generation.LLM is StandInLLM  # only while the trainer is built
    assert [engine.seed for engine in ranks] == [engine_seed(5, 0), engine_seed(5, 1)] and ranks[0].seed != ranks[1].seed
    # the requests: the trainer's seed for the next generation on rank 0 and on rank 1
    trainer, _ = run_steps(tokenizer, tmp_path, 5, use_vllm=True, vllm_mode="colocate")
    trainer._seed_next_generation("train")
    on_rank0 = trainer._generation_seed
    monkeypatch.setattr(type(trainer.accelerator), "process_index", property(lambda self: 1))
    trainer._seed_next_generation("train")
    assert on_rank0 == request_seed(5, 0, STEPS) != trainer._generation_seed == request_seed(5, 1, STEPS)


def test_vllm_server_requests_take_the_training_seed(vllm_boundary, tokenizer, tmp_path):
    requests, rollouts = [], []
    for seed in (1, 1, 2):
        _, seen = run_steps(tokenizer, tmp_path / f"{len(requests)}", seed, one_prompt=True, use_vllm=True,
                            vllm_mode="server")
        requests.append(vllm_boundary.clients[-1].requests)
        rollouts.append(seen)
    assert requests[0] == [request_seed(1, 0, step) for step in range(STEPS)]
    assert requests[0] == requests[1] and requests[0] != requests[2]
    assert rollouts[0] == rollouts[1] and rollouts[0] != rollouts[2]


# -- CPU rollouts through HF generation --------------------------------------------------------------------------
def test_cpu_rollouts_repeat_with_the_seed_and_differ_across_seeds(tokenizer, tmp_path):
    # one prompt throughout: the prompt sampler's seed cannot make them differ, only generation's
    _, first = run_steps(tokenizer, tmp_path / "a", 3, one_prompt=True)
    _, again = run_steps(tokenizer, tmp_path / "b", 3, one_prompt=True)
    _, other = run_steps(tokenizer, tmp_path / "c", 4, one_prompt=True)
    assert len(first) == STEPS * GROUP * N_PROMPTS
    assert first == again  # bit-identical rollouts
    assert first != other


def test_prompt_order_follows_the_training_seed(tokenizer, tmp_path):
    """TRL's RepeatSampler takes ``args.seed`` (it ignores ``data_seed``); grpo_config sets both from train.seed."""
    from lgrpo_bench.algorithms.presets import algorithm_of
    from lgrpo_bench.config import RunConfig
    from lgrpo_bench.training.arguments import grpo_config

    dataset = Dataset.from_list([{"prompt": f"<|user|>{10 + i}+{20 + i}<|assistant|>"} for i in range(16)])
    orders = []
    for label, seed in (("a", 3), ("b", 3), ("c", 4)):
        config = RunConfig.model_validate({"model": {"name": "tiny-s"}, "task": {"name": "arith"}, "train": {
            "seed": seed, "num_generations": GROUP, "prompts_per_step": N_PROMPTS, "max_completion_length": MAX_LEN}})
        algorithm = algorithm_of(config)
        args = grpo_config(config, tmp_path / label, algorithm=algorithm, cuda=False)
        assert args.seed == args.data_seed == seed
        trainer = UnifiedLossGRPOTrainer(model=make_tiny_model("tiny-s", tokenizer, seed=0), reward_funcs=[Completions()],
                                         args=args, train_dataset=dataset, processing_class=tokenizer, algorithm=algorithm)
        orders.append(list(trainer._get_train_sampler()))
    assert orders[0] == orders[1] and orders[0] != orders[2]

