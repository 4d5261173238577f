"""Issue 25 (item 5): the newer code's rules, each checked against a hand-made case a plausible one-line bug would
change (every test here has its mutant in tests/mutants_design_space.py).

- DAPO's re-sampling (``group_filter: resample``): which groups fill a batch when too few are mixed; how rounds and
  mixed groups are counted across rounds; which prompts extra rounds draw. The trainer's own methods run on a
  stand-in ``self`` (one process, a scripted generation in place of TRL's), so the counting is the trainer's;
- unscored completions (NaN rewards: TRL turns a reward function's None into NaN) in the group filters, in the total
  reward and in every advantage;
- the local token mean when rows are dropped;
- report keys: the baseline row when the baseline itself varies an algorithm option; only ``train.seed`` (and
  ``eval.seed``) is a replicate axis: other keys ending in "seed" are configuration, in reports and in grids;
- provenance on a GPU machine when the computation runs on CPU;
- the warm-start band check's message for a NaN accuracy.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import yaml

from lgrpo_bench.algorithms.advantage import ADVANTAGES
from lgrpo_bench.algorithms.aggregation import AGGREGATIONS
from lgrpo_bench.algorithms.group_filter import GROUP_FILTERS
from lgrpo_bench.algorithms.group_filter.resample import round_prompt_indices, select_groups
from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

NAN = float("nan")


# --- re-sampling: pure rules ----------------------------------------------------------------------------------------
def test_too_few_mixed_groups_are_padded_with_the_first_uniform_groups_in_generation_order():
    # round 0: uniform, mixed, uniform; round 1: uniform, uniform; target 4 → the 1 mixed group, then 3 uniform ones
    rounds = [torch.tensor([False, True, False]), torch.tensor([False, False])]
    assert select_groups(rounds, 4) == [(0, 1, True), (0, 0, False), (0, 2, False), (1, 0, False)]
    assert select_groups(rounds, 2) == [(0, 1, True), (0, 0, False)]
    # no mixed group at all: the first target uniform groups, none entering the loss
    assert select_groups([torch.tensor([False, False]), torch.tensor([False, False])], 3) == [
        (0, 0, False), (0, 1, False), (1, 0, False)]


def test_extra_round_prompts_depend_on_the_step_and_are_drawn_without_replacement():
    def draw(step, round_index=1, size=1000, per_process=8, process_index=0):
        return round_prompt_indices(size, seed=3, step=step, round_index=round_index, num_processes=2,
                                    process_index=process_index, per_process=per_process)

    assert draw(5) == draw(5) and draw(5) != draw(6)  # (seed, step, round): another step draws other prompts
    # a dataset exactly as large as the draw: every row once, split between the processes
    both = draw(5, size=16, process_index=0) + draw(5, size=16, process_index=1)
    assert sorted(both) == list(range(16))
    # a dataset smaller than the draw: with replacement (no error), every index valid
    small = draw(5, size=3) + draw(5, size=3, process_index=1)
    assert len(small) == 16 and set(small) <= {0, 1, 2}


# --- re-sampling inside the trainer (its methods on a stand-in self) ---------------------------------------------
G = 2


def _stand_in(accuracies: list[list[float]], *, max_rounds: int, dataset_size: int = 50, step: int = 7):
    """A trainer whose parent generation returns scripted rounds: ``accuracies[k]`` are round k's row accuracies."""
    trainer = object.__new__(UnifiedLossGRPOTrainer)
    trainer.accelerator = SimpleNamespace(device=torch.device("cpu"), num_processes=1, process_index=0,
                                          gather=lambda x: x.reshape(-1) if x.dim() == 0 else x)
    trainer.algorithm = SimpleNamespace(max_generation_batches=max_rounds)
    trainer._tokenizer = SimpleNamespace(pad_token_id=0)
    trainer.reward_weights = torch.tensor([1.0])
    trainer.accuracy_reward_index = 0
    trainer.train_dataset = [{"prompt": f"p{i}"} for i in range(dataset_size)]
    trainer.args = SimpleNamespace(seed=11)
    trainer.use_vllm = False  # HF generation: the seed path of the CPU (tests/test_seeding.py covers vLLM)
    trainer.state = SimpleNamespace(global_step=step)
    trainer.generated_inputs, trainer.finished = [], []
    script = iter(accuracies)

    def generate(self, inputs):
        k = len(self.generated_inputs)
        self.generated_inputs.append(inputs)
        accuracy = torch.tensor(next(script))
        self._rewards_per_func = accuracy.unsqueeze(1)
        n = len(inputs)
        ids = torch.arange(n).unsqueeze(1) + 100 * k  # row r of round k carries the id 100·k + r
        return {"prompt_ids": ids.clone(), "prompt_mask": torch.ones(n, 1), "completion_ids": ids.clone(),
                "completion_mask": torch.ones(n, 1), "advantages": torch.zeros(n)}

    def finish(output, rewards, accuracy, group_size, mode, **kwargs):
        trainer.finished.append((output, rewards, accuracy, kwargs))
        return output

    trainer._finish_generation_batch = finish
    return trainer, generate


def _resample(monkeypatch, accuracies, *, max_rounds, prompts=2):
    trainer, generate = _stand_in(accuracies, max_rounds=max_rounds)
    monkeypatch.setattr(UnifiedLossGRPOTrainer.__mro__[1], "_generate_and_score_completions", generate)
    inputs = [{"prompt": f"first{i // G}"} for i in range(prompts * G)]
    output = trainer._generate_with_resampling(inputs, G)
    return trainer, output


def test_mixed_groups_are_counted_over_every_round_and_rounds_stop_at_the_target(monkeypatch):
    # target 2 groups; round 0 holds 1 mixed group (its second), round 1 another (its first): 2 rounds, no cap
    trainer, output = _resample(monkeypatch, [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]],
                                max_rounds=3)
    assert len(trainer.generated_inputs) == 2
    (_, rewards, accuracy, kwargs), = trainer.finished
    assert kwargs == {"rounds": 2, "cap_reached": False}
    assert output["completion_ids"].reshape(-1).tolist() == [2, 3, 100, 101]  # round 0's group 1, round 1's group 0
    assert accuracy.tolist() == [1.0, 0.0, 0.0, 1.0] and rewards.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_the_cap_ends_the_rounds_and_pads_with_the_first_uniform_groups(monkeypatch):
    trainer, output = _resample(monkeypatch, [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]],
                                max_rounds=2)
    assert len(trainer.generated_inputs) == 2
    (_, _, accuracy, kwargs), = trainer.finished
    assert kwargs == {"rounds": 2, "cap_reached": True}
    assert output["completion_ids"].reshape(-1).tolist() == [100, 101, 0, 1]  # the mixed group, then round 0's first


def test_extra_rounds_draw_their_prompts_from_seed_step_and_round_in_whole_groups(monkeypatch):
    uniform = [1.0, 1.0, 1.0, 1.0]
    trainer, _ = _resample(monkeypatch, [uniform, uniform, uniform], max_rounds=3)
    assert len(trainer.generated_inputs) == 3
    for round_index in (1, 2):
        rows = round_prompt_indices(50, seed=11, step=7, round_index=round_index, num_processes=1, process_index=0,
                                    per_process=2)
        expected = [f"p{i}" for i in rows for _ in range(G)]  # G consecutive copies of each prompt: one group
        assert [x["prompt"] for x in trainer.generated_inputs[round_index]] == expected


def test_generation_rounds_and_filtered_share_count_every_generated_group():
    trainer = object.__new__(UnifiedLossGRPOTrainer)
    trainer.accelerator = SimpleNamespace(num_processes=1, process_index=0, gather=lambda x: x)
    trainer.group_filter = GROUP_FILTERS["resample"]
    trainer.advantage_estimator = ADVANTAGES["group_std"]
    trainer._metrics = {"train": defaultdict(list)}
    trainer._log_length_metrics = lambda *args: None
    output = {"completion_mask": torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]]), "advantages": torch.zeros(4)}
    # 3 rounds generated 6 groups; the batch holds 1 mixed group and 1 uniform pad (cap reached)
    out = trainer._finish_generation_batch(output, torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 1.0, 1.0]),
                                           G, "train", rounds=3, cap_reached=True)
    metrics = trainer._metrics["train"]
    assert metrics["train/generation_batches"] == [3.0] and metrics["train/group_filter_cap_reached"] == [1.0]
    assert metrics["train/groups_filtered_frac"] == pytest.approx([5 / 6])  # 5 of the 6 generated groups left out
    assert out["lgrpo_keep"].tolist() == [1.0, 1.0, 0.0, 0.0] and float(out["lgrpo_num_completions"]) == 2.0
    assert float(out["lgrpo_num_tokens"]) == 3.0


# --- unscored completions (NaN rewards) ---------------------------------------------------------------------------
def test_group_filters_count_an_unscored_completion_as_incorrect():
    accuracy = torch.tensor([[1.0, NAN, 1.0, 1.0], [0.0, NAN, 0.0, 0.0], [NAN] * 4, [NAN, 1.0, NAN, 1.0]])
    for name in ("drop", "resample"):
        assert GROUP_FILTERS[name].keep_groups(accuracy).tolist() == [True, False, False, True], name
    assert GROUP_FILTERS["none"].keep_groups(accuracy).tolist() == [True] * 4


def test_total_reward_is_nan_only_when_no_reward_function_scored():
    trainer = object.__new__(UnifiedLossGRPOTrainer)
    trainer.accelerator = SimpleNamespace(num_processes=1, process_index=0)
    trainer.reward_weights = torch.tensor([1.0, 2.0])
    trainer.accuracy_reward_index = 0
    trainer._rewards_per_func = torch.tensor([[1.0, 0.5], [NAN, 0.2], [NAN, NAN], [0.0, NAN]])  # TRL: None → NaN
    total, accuracy = trainer._local_rewards(4)
    assert total[[0, 1, 3]].tolist() == pytest.approx([2.0, 0.4, 0.0]) and math.isnan(total[2])
    assert accuracy[[0, 3]].tolist() == [1.0, 0.0] and accuracy[[1, 2]].isnan().all()


def test_group_mean_advantage_leaves_nan_out_and_gives_it_zero():
    a = ADVANTAGES["group_mean"].compute(torch.tensor([1.0, NAN, 0.0, 0.0]), 4, torch.ones(4))
    assert a.tolist() == pytest.approx([2 / 3, 0.0, -1 / 3, -1 / 3])


def test_batch_std_advantage_takes_the_std_of_the_scored_kept_rewards():
    rewards = torch.tensor([1.0, NAN, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    std = statistics.stdev([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0])  # sample std of the 7 scored rewards
    a = ADVANTAGES["batch_std"].compute(rewards, 4, torch.ones(8))
    expected = [(2 / 3) / (std + 1e-4), 0.0, -(1 / 3) / (std + 1e-4), -(1 / 3) / (std + 1e-4),
                0.25 / (std + 1e-4), -0.75 / (std + 1e-4), 0.25 / (std + 1e-4), 0.25 / (std + 1e-4)]
    assert a.tolist() == pytest.approx(expected, rel=1e-6)


# --- local token mean with dropped rows -----------------------------------------------------------------------------
def test_local_token_mean_counts_only_the_kept_rows_of_the_micro_batch():
    trainer = object.__new__(UnifiedLossGRPOTrainer)
    trainer.accelerator = SimpleNamespace(num_processes=1)
    trainer.args = SimpleNamespace(steps_per_generation=2)
    trainer.aggregation = AGGREGATIONS["local_token_mean"]
    trainer.algorithm = SimpleNamespace(r=None)
    trainer.max_completion_length = 10
    lengths = torch.tensor([2.0, 4.0, 6.0, 8.0], dtype=torch.float64)
    inputs = {"lgrpo_lengths": lengths, "lgrpo_group_lengths": torch.stack([lengths[:2], lengths[:2], lengths[2:], lengths[2:]]),
              "lgrpo_index_in_group": torch.tensor([0, 1, 0, 1]), "lgrpo_num_completions": torch.tensor(2.0),
              "lgrpo_num_tokens": torch.tensor(6.0), "lgrpo_num_groups": torch.tensor(1.0),
              "lgrpo_keep": torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)}  # second group dropped
    weights, _ = trainer.completion_weights_for(inputs)
    assert weights.tolist() == pytest.approx([1 / (2 * 6)] * 2 + [0.0, 0.0])  # 1/(M·Σ kept |o| of the micro-batch)


# --- report keys --------------------------------------------------------------------------------------------------
def test_a_baseline_that_varies_an_option_is_matched_on_it():
    from lgrpo_bench.reports.keys import RowKeys, match_baseline

    keys = RowKeys(("algorithm.epsilon_high", "train.learning_rate"),
                   {"algorithm.epsilon_high": "epsilon_high", "train.learning_rate": "learning_rate"},
                   ("algorithm.epsilon_high", "train.learning_rate"))
    varied = [("0.2", "1e-05"), ("0.28", "1e-05")]
    hit = match_baseline(("0.28", "1e-05"), varied, keys, "grpo")
    assert hit.index == 1 and hit.matched == keys.keys and dict(hit.unmatched) == {}
    miss = match_baseline(("0.3", "1e-05"), varied, keys, "grpo")  # no baseline row at epsilon_high 0.3
    assert miss.index is None and "epsilon_high=0.3" in miss.reason
    # one baseline value: the option follows from the baseline algorithm, not matched but reported
    single = match_baseline(("0.28", "1e-05"), [("0.2", "1e-05")], keys, "grpo")
    assert single.index == 0 and single.matched == ("train.learning_rate",)
    assert dict(single.unmatched) == {"algorithm.epsilon_high": "0.2"}


def _run(name, seed, **params):
    from lgrpo_bench.reports.loader import RunRecord

    return RunRecord(name, name, "grpo", "tiny-s", "0.2M", str(seed), "done", None, "0", 0,
                     params={"algorithm.name": "grpo", "train.seed": str(seed), **params})


def test_only_train_and_eval_seed_are_replicates_in_reports():
    from lgrpo_bench.reports import ReportInputError
    from lgrpo_bench.reports.keys import check_replicates, is_row_key_candidate, resolve_row_keys

    assert not is_row_key_candidate("train.seed") and not is_row_key_candidate("eval.seed")
    assert is_row_key_candidate("model.warm_start_seed") and is_row_key_candidate("task.data_seed")
    runs = [_run(f"r{w}{s}", s, **{"model.warm_start_seed": str(w)}) for w in (0, 1) for s in (0, 1)]
    keys = resolve_row_keys(runs)
    assert keys.keys == ("model.warm_start_seed",)  # a row per warm start, its runs the two train seeds
    with pytest.raises(ReportInputError, match="model.warm_start_seed differ"):
        resolve_row_keys(runs, group_by=[])
    pooled = resolve_row_keys(runs, group_by=[], average_over=["model.warm_start_seed"])  # on purpose only
    check_replicates("grpo", runs, pooled)


def test_only_train_seed_groups_grid_points_as_seeds(tmp_path):
    from lgrpo_bench.runs.resolve import load_grid, run_id

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "w", "base": {"model": {"name": "tiny-s"}, "task": {"name": "arith"}, "train": {"max_steps": 3}},
        "axes": {"model.warm_start_seed": [0, 1], "train.seed": [0, 1]}}, sort_keys=False))
    points = load_grid(grid).points
    assert [p.config.model.warm_start_seed for p in points] == [0, 0, 1, 1]
    assert [p.config.train.seed for p in points] == [0, 1, 0, 1]
    assert len({p.run_id for p in points}) == 4 and all(p.run_id == run_id(p.config) for p in points)


# --- provenance on a GPU machine ----------------------------------------------------------------------------------
def test_a_cpu_computation_on_a_gpu_machine_is_tagged_cpu(monkeypatch):
    from lgrpo_bench.tracking.provenance import provenance_tags
    from lgrpo_bench.tracking.schema import TAG_HARDWARE, TAG_HOST_CUDA_COUNT, TAG_HOST_CUDA_DEVICE

    # a fake only for the CUDA device this machine cannot have
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA Fake")
    on_cpu = provenance_tags(use_cuda=False)
    assert on_cpu[TAG_HARDWARE].startswith("cpu:") and "NVIDIA" not in on_cpu[TAG_HARDWARE]
    assert on_cpu[TAG_HOST_CUDA_COUNT] == "2" and on_cpu[TAG_HOST_CUDA_DEVICE] == "NVIDIA Fake"  # the host has them
    assert provenance_tags()[TAG_HARDWARE] == "cuda:NVIDIA Fakex2"  # default: CUDA computes where available
    assert provenance_tags(use_cuda=True)[TAG_HARDWARE] == "cuda:NVIDIA Fakex2"


# --- warm-start band check ----------------------------------------------------------------------------------------
def test_a_nan_warm_start_accuracy_warns_as_too_little_signal():
    from lgrpo_bench.models.presets import warm_start_band_check

    verdict = warm_start_band_check("tiny-s", 1, NAN)
    assert not verdict.in_band
    assert verdict.warning.startswith("warning: warm start tiny-s seed 1 has greedy held-out accuracy nan, outside")
    assert "too little RL signal" in verdict.warning and "little room left" not in verdict.warning
