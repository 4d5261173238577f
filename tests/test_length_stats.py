"""Length statistics the trainer logs every step (lgrpo_bench.algorithms.length_stats), computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lgrpo_bench.algorithms.length_stats import length_advantage_corr, length_by_correctness


def test_length_by_correctness_by_hand():
    lengths = torch.tensor([5.0, 30.0, 10.0, 20.0])
    accuracy = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert length_by_correctness(lengths, accuracy) == {"incorrect": 7.5, "correct": 25.0}
    # a partial accuracy (> 0) counts as correct: only accuracy 0 is incorrect
    partial = torch.tensor([0.0, 1.0, 0.0, 0.5])
    assert length_by_correctness(lengths, partial) == {"incorrect": 7.5, "correct": 25.0}


def test_length_by_correctness_leaves_out_an_empty_class_and_nan_rows():
    assert length_by_correctness(torch.tensor([4.0, 6.0]), torch.tensor([1.0, 1.0])) == {"correct": 5.0}
    assert length_by_correctness(torch.tensor([4.0, 6.0]), torch.tensor([0.0, math.nan])) == {"incorrect": 4.0}
    assert length_by_correctness(torch.tensor([]), torch.tensor([])) == {}
    with pytest.raises(ValueError, match="shape"):
        length_by_correctness(torch.tensor([1.0]), torch.tensor([1.0, 0.0]))


def test_length_advantage_corr_is_per_group_then_averaged():
    # group 1: lengths 1,2,3 vs advantages 1,2,3 -> rho = +1
    # group 2: lengths 10,20,30 vs advantages 3,2,1 -> rho = -1
    # group 3: lengths 5,5,5 (no variance) -> skipped
    # group 4: lengths 1,2,4, advantages 0,0,1: Lbar=7/3, Abar=1/3; dx = -4/3,-1/3,5/3, dy = -1/3,-1/3,2/3;
    #   Σdx·dy = 4/9+1/9+10/9 = 15/9,
    #   Σdx² = 16/9+1/9+25/9 = 42/9, Σdy² = 1/9+1/9+4/9 = 6/9 -> rho = (15/9)/sqrt(42/9·6/9) = 15/sqrt(252)
    lengths = torch.tensor([1.0, 2, 3, 10, 20, 30, 5, 5, 5, 1, 2, 4])
    advantages = torch.tensor([1.0, 2, 3, 3, 2, 1, -1, 0, 1, 0, 0, 1])
    expected = (1.0 - 1.0 + 15 / math.sqrt(252)) / 3
    assert length_advantage_corr(lengths, advantages, 3) == pytest.approx(expected)


def test_length_advantage_corr_is_not_the_global_correlation():
    # within each group length and advantage are perfectly anti-correlated, across groups positively
    lengths = torch.tensor([1.0, 2.0, 11.0, 12.0])
    advantages = torch.tensor([1.0, -1.0, 11.0, 9.0])
    assert length_advantage_corr(lengths, advantages, 2) == pytest.approx(-1.0)


def test_length_advantage_corr_none_without_a_varying_group():
    assert length_advantage_corr(torch.tensor([3.0, 3.0, 4.0, 5.0]), torch.tensor([1.0, -1.0, 0.0, 0.0]), 2) is None
    with pytest.raises(ValueError, match="groups of 3"):
        length_advantage_corr(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), 3)


def test_trainer_logs_length_metrics_without_nan_and_style_shares():
    from collections import defaultdict
    from types import SimpleNamespace

    from lgrpo_bench.tasks.lenmix import classify_style
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

    fake = SimpleNamespace(style_of=classify_style, _styles=["direct", "ramble", "ramble", "worked"])
    metrics = defaultdict(list)
    lengths = torch.tensor([5.0, 20.0, 5.0, 5.0])
    accuracy = torch.tensor([1.0, 1.0, 1.0, 1.0])  # nothing incorrect: no incorrect_length_mean this batch
    advantages = torch.tensor([0.5, -0.5, 0.0, 0.0])  # group 2 has no length variance: skipped
    UnifiedLossGRPOTrainer._log_length_metrics(fake, metrics, lengths, accuracy, advantages, 2)
    assert "train/incorrect_length_mean" not in metrics
    assert metrics["train/correct_length_mean"] == [pytest.approx(8.75)]
    assert metrics["train/length_advantage_corr"] == [pytest.approx(-1.0)]
    assert {k: v[0] for k, v in metrics.items() if k.startswith("train/style_share/")} == {
        "train/style_share/direct": 0.25, "train/style_share/worked": 0.25, "train/style_share/ramble": 0.5,
        "train/style_share/other": 0.0}
    assert fake._styles == []
