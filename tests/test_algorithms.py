"""The unified weights against hand-computed values, invariants and gradients (pure torch, no trainer)."""

import math

import pytest
import torch

from lgrpo_bench.algorithms import (
    ALGORITHMS,
    completion_weights,
    get_algorithm,
    lambda_preferences,
    length_zscores,
    max_safe_r,
)

# Two groups of G = 4 with uneven lengths: N = 8 completions, Σ|o| = 20 + 12 = 32 tokens, L_max = 10.
LENGTHS = torch.tensor([2.0, 4.0, 6.0, 8.0, 3.0, 3.0, 3.0, 3.0])
G, L_MAX, N, TOKENS = 4, 10, 8, 32


def hand_lambda_factors(lengths, lam, r):
    """f_i = G·softmax(h^λ) with z from the population std, written out with the math module."""
    mean = sum(lengths) / len(lengths)
    std = math.sqrt(sum((x - mean) ** 2 for x in lengths) / len(lengths))
    h = [max(1 + r * (x - mean) / (std + 1e-8), 1e-6) for x in lengths]
    g = [hj**lam for hj in h]
    denom = sum(math.exp(gj) for gj in g)
    return [len(lengths) * math.exp(gj) / denom for gj in g]


def test_grpo_weights_are_one_over_n_times_length():
    w = completion_weights("grpo", LENGTHS, group_size=G)
    expected = [1 / (N * x) for x in [2, 4, 6, 8, 3, 3, 3, 3]]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert w[0].item() == pytest.approx(0.0625)


def test_dapo_weights_are_one_over_batch_tokens():
    w = completion_weights("dapo", LENGTHS, group_size=G)
    assert w.tolist() == pytest.approx([1 / TOKENS] * N, rel=1e-6)


def test_dr_grpo_weights_are_one_over_n_times_lmax():
    w = completion_weights("dr_grpo", LENGTHS, group_size=G, max_completion_length=L_MAX)
    assert w.tolist() == pytest.approx([1 / 80] * N, rel=1e-6)


def test_lambda_grpo_weights_hand_computed():
    w = completion_weights("lambda_grpo", LENGTHS, group_size=G, lam=0.5, r=0.3, max_completion_length=L_MAX)
    # group 1 written out: z = ±0.44721, ±1.34164; h = 1 + 0.3 z; f = 4·softmax(sqrt(h))
    assert w[:4].tolist() == pytest.approx([0.0249082, 0.0291575, 0.0333541, 0.0375802], abs=2e-7)
    expected = [f / TOKENS for f in hand_lambda_factors([2, 4, 6, 8], 0.5, 0.3)] + [1 / TOKENS] * 4
    assert w.tolist() == pytest.approx(expected, rel=1e-5)


def test_lambda_zero_is_exactly_dapo():
    lengths = torch.randint(1, 50, (32,)).float()
    w_lambda = completion_weights("lambda_grpo", lengths, group_size=8, lam=0.0, r=1 / 9)
    w_dapo = completion_weights("dapo", lengths, group_size=8)
    assert torch.allclose(w_lambda, w_dapo, atol=1e-9, rtol=1e-6)


@pytest.mark.parametrize("lam, longer_preferred", [(1.0, True), (-1.0, False)])
def test_lambda_sign_sets_length_preference(lam, longer_preferred):
    f = lambda_preferences(torch.tensor([[5.0, 10.0, 20.0, 40.0]]), lam, 0.2)[0]
    assert f.sum().item() == pytest.approx(4.0, rel=1e-6)
    increasing = bool((f[1:] > f[:-1]).all())
    assert increasing is longer_preferred


def test_equal_lengths_give_unit_factors_for_any_lambda():
    f = lambda_preferences(torch.full((3, 8), 7.0), 2.5, 1 / 9)
    assert torch.allclose(f, torch.ones(3, 8))


def test_zscores_use_population_std():
    z = length_zscores(torch.tensor([2.0, 4.0, 6.0, 8.0]))
    assert z.tolist() == pytest.approx([-3 / math.sqrt(5), -1 / math.sqrt(5), 1 / math.sqrt(5), 3 / math.sqrt(5)], rel=1e-6)


def test_h_is_clamped_when_r_z_below_minus_one():
    # one long outlier: z of the short ones is -1/sqrt(7) ≈ -0.378, with r = 3 → 1 + r z < 0
    f = lambda_preferences(torch.tensor([[1.0] * 7 + [100.0]]), 1.0, 3.0)
    assert torch.isfinite(f).all()
    assert f.sum().item() == pytest.approx(8.0, rel=1e-6)


def test_max_safe_r_matches_worst_case_zscore():
    for group_size in (2, 4, 8, 16):
        lengths = torch.tensor([[1.0] * (group_size - 1) + [1000.0]])
        worst = length_zscores(lengths).min().item()
        assert 1 + max_safe_r(group_size) * worst == pytest.approx(1 / group_size, abs=1e-3) or worst == pytest.approx(
            -1 / math.sqrt(group_size - 1), rel=1e-4
        )
        assert worst == pytest.approx(-1 / math.sqrt(group_size - 1), rel=1e-4)
        # the most negative z of any group is -sqrt(G-1) (all mass on one long completion, reversed)
        short_outlier = torch.tensor([[1000.0] * (group_size - 1) + [1.0]])
        assert length_zscores(short_outlier).min().item() == pytest.approx(-math.sqrt(group_size - 1), rel=1e-4)
        assert max_safe_r(group_size) == pytest.approx(1 / math.sqrt(group_size - 1))


def test_dloss_dlambda_matches_finite_difference():
    torch.manual_seed(0)
    lengths = torch.randint(1, 40, (24,)).double()
    per_completion_loss = torch.randn(24, dtype=torch.float64)
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def loss_at(value):
        return (completion_weights("lambda_grpo", lengths, group_size=8, lam=value, r=0.25) * per_completion_loss).sum()

    loss_at(lam).backward()
    step = 1e-6
    numeric = (loss_at(torch.tensor(0.7 + step, dtype=torch.float64)) - loss_at(torch.tensor(0.7 - step, dtype=torch.float64))) / (2 * step)
    assert lam.grad.item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-10)
    assert abs(lam.grad.item()) > 1e-4  # the check is not vacuous


def test_keep_mask_drops_completions_from_weights_and_normaliser():
    keep = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    w = completion_weights("dapo_full", LENGTHS, group_size=G, keep=keep)
    assert w.tolist() == pytest.approx([1 / 20] * 4 + [0.0] * 4, rel=1e-6)


def test_registry_specs():
    assert set(ALGORITHMS) == {"grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full", "gspo", "cispo", "sapo", "bnpo"}
    assert ALGORITHMS["dr_grpo"].advantage == "group_mean"
    assert all(ALGORITHMS[n].advantage == "group_std" for n in ("grpo", "dapo", "lambda_grpo", "dapo_full"))
    full = ALGORITHMS["dapo_full"]
    assert (full.epsilon_low, full.epsilon_high) == (0.2, 0.28)
    assert full.mask_truncated_completions and full.group_filter == "resample" and full.overlong_penalty
    assert ALGORITHMS["dapo"].group_filter == "none" and ALGORITHMS["dapo"].epsilon_high == 0.2
    assert [n for n, s in ALGORITHMS.items() if s.uses_lambda] == ["lambda_grpo"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: completion_weights("ppo", LENGTHS, group_size=G), "unknown algorithm 'ppo'"),
        (lambda: completion_weights("dapo", LENGTHS, group_size=1), "group_size (num_generations) must be at least 2"),
        (lambda: completion_weights("lambda_grpo", LENGTHS, group_size=G, r=0.0), "r must be > 0"),
        (lambda: completion_weights("dapo", LENGTHS, group_size=3), "not a multiple of group_size=3"),
        (lambda: completion_weights("dr_grpo", LENGTHS, group_size=G), "dr_grpo needs max_completion_length"),
        (lambda: get_algorithm("lambda"), "choose one of grpo, dapo, dr_grpo, lambda_grpo, dapo_full"),
    ],
)
def test_bad_values_raise_clear_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
