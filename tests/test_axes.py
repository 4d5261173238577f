"""Every axis value against a hand computation (pure torch, no trainer): aggregations, surrogates and their
gradients, advantages, group filters, re-sampling selection, λ's gradient under every surrogate, and the λ
rate-limit rule on a constructed trajectory."""

from __future__ import annotations

import math

import pytest
import torch

from lgrpo_bench.algorithms import AGGREGATIONS, SURROGATES, SurrogateParams, completion_weights, unified_loss
from lgrpo_bench.algorithms.advantage import ADVANTAGES
from lgrpo_bench.algorithms.base import WeightInputs
from lgrpo_bench.algorithms.group_filter import GROUP_FILTERS, mixed_accuracy_groups
from lgrpo_bench.algorithms.group_filter.resample import needs_another_round, round_prompt_indices, select_groups
from lgrpo_bench.algorithms.weights import batch_weight_inputs
from lgrpo_bench.training.lambda_rate import lambda_rate_limited, rate_limited_fraction

# Two groups of G = 4: N = 8 completions, Σ|o| = 20 + 12 = 32 tokens, L_max = 10.
LENGTHS = torch.tensor([2.0, 4.0, 6.0, 8.0, 3.0, 3.0, 3.0, 3.0], dtype=torch.float64)
G = 4


def micro_batch_inputs(rows: list[int], micro_batches: int) -> WeightInputs:
    """The WeightInputs the trainer builds for the micro-batch made of ``rows`` of the whole batch."""
    whole = batch_weight_inputs(LENGTHS, G, 10)
    index = torch.tensor(rows)
    return WeightInputs(lengths=LENGTHS[index], group_lengths=whole.group_lengths[index],
                        index_in_group=whole.index_in_group[index], num_completions=whole.num_completions,
                        num_tokens=whole.num_tokens, max_completion_length=10, num_groups=whole.num_groups,
                        local_num_tokens=LENGTHS[index].sum(), num_micro_batches=micro_batches)


def test_every_axis_value_is_registered():
    from lgrpo_bench.algorithms.presets import AXES

    assert list(AGGREGATIONS) == list(AXES["aggregation"])
    assert list(SURROGATES) == list(AXES["surrogate"])
    assert list(ADVANTAGES) == list(AXES["advantage"])
    assert list(GROUP_FILTERS) == list(AXES["group_filter"])


# --- aggregations ------------------------------------------------------------------------------------------------
def test_local_token_mean_is_the_mean_of_micro_batch_token_means():
    # micro-batches [0, 1, 4, 5] (2+4+3+3 = 12 tokens) and [2, 3, 6, 7] (6+8+3+3 = 20 tokens), M = 2
    spec = AGGREGATIONS["local_token_mean"]
    first = spec.weight(micro_batch_inputs([0, 1, 4, 5], 2), None, 0.0)
    second = spec.weight(micro_batch_inputs([2, 3, 6, 7], 2), None, 0.0)
    assert first.tolist() == pytest.approx([1 / 24] * 4, rel=1e-12)
    assert second.tolist() == pytest.approx([1 / 40] * 4, rel=1e-12)
    # one micro-batch on one process: DAPO's token mean
    assert completion_weights("local_token_mean", LENGTHS, group_size=G).tolist() == pytest.approx([1 / 32] * 8)


def test_prompt_mean_weights_each_prompt_equally():
    w = completion_weights("prompt_mean", LENGTHS, group_size=G)
    assert w.tolist() == pytest.approx([1 / 40] * 4 + [1 / 24] * 4, rel=1e-12)  # 1/(P·Σ_g|o|), P = 2
    per_prompt = [(w[:4] * LENGTHS[:4]).sum().item(), (w[4:] * LENGTHS[4:]).sum().item()]
    assert per_prompt == pytest.approx([0.5, 0.5])  # every prompt's tokens carry weight 1/P
    keep = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    assert completion_weights("prompt_mean", LENGTHS, group_size=G, keep=keep).tolist() == pytest.approx(
        [1 / 20] * 4 + [0.0] * 4, rel=1e-12)  # P = 1 kept prompt


def test_presets_weigh_as_their_aggregation():
    for name, aggregation in (("gspo", "seq_mean_token_mean"), ("cispo", "token_mean"), ("sapo", "seq_mean_token_mean"),
                              ("bnpo", "local_token_mean")):
        assert torch.equal(completion_weights(name, LENGTHS, group_size=G), completion_weights(aggregation, LENGTHS, group_size=G))


# --- surrogates: value and gradient d ℓ / d log π by hand -----------------------------------------------------------
PARAMS = SurrogateParams(epsilon_low=0.2, epsilon_high=0.28, cispo_epsilon_max=5.0)


def surrogate_at(name: str, ratios: list[float], advantage: float, logp: float = -0.7, mask=None):
    """ℓ (first token) and dℓ/dlog π_t for a one-row batch whose token ratios are ``ratios``."""
    logps = torch.full((1, len(ratios)), logp, dtype=torch.float64, requires_grad=True)
    old = logps.detach() - torch.log(torch.tensor([ratios], dtype=torch.float64))
    mask = torch.ones(1, len(ratios), dtype=torch.float64) if mask is None else torch.tensor([mask], dtype=torch.float64)
    out = SURROGATES[name].loss(logps, old, torch.tensor([[advantage]], dtype=torch.float64), mask, PARAMS)
    loss = (out.per_token_loss.expand_as(mask) * mask).sum()
    loss.backward()
    return out.per_token_loss.reshape(-1)[0].item(), logps.grad[0].tolist(), out


@pytest.mark.parametrize("ratio, advantage, loss, grad", [
    (1.5, 1.0, -1.28, 0.0),    # clipped above: no gradient
    (1.5, -1.0, 1.5, 1.5),     # negative advantage: the unclipped ρA is the min, dℓ/dlogπ = −Aρ
    (0.7, -1.0, 0.8, 0.0),     # clipped below
    (1.1, 1.0, -1.1, -1.1),    # inside the range
])
def test_clip_by_hand(ratio, advantage, loss, grad):
    value, grads, _ = surrogate_at("clip", [ratio], advantage)
    assert value == pytest.approx(loss, abs=1e-12) and grads[0] == pytest.approx(grad, abs=1e-12)


@pytest.mark.parametrize("ratio, advantage, weight", [(1.5, 1.0, 1.5), (6.0, 1.0, 5.0), (6.0, -2.0, 5.0), (0.3, -1.0, 0.3)])
def test_cispo_by_hand(ratio, advantage, weight):
    # ℓ = −sg(min(ρ, 5))·A·log π: value −w·A·logπ, gradient −w·A (even beyond the cap, unlike clip)
    value, grads, out = surrogate_at("cispo", [ratio], advantage, logp=-0.7)
    assert value == pytest.approx(-weight * advantage * -0.7, abs=1e-12)
    assert grads[0] == pytest.approx(-weight * advantage, abs=1e-12)
    assert bool(out.clipped_high.item()) == (ratio > 5.0)


@pytest.mark.parametrize("ratio, advantage", [(1.5, 1.0), (1.5, -1.0), (0.6, 2.0), (1.0, -1.0)])
def test_sapo_by_hand(ratio, advantage):
    tau = 1.0 if advantage > 0 else 1.05
    sigma = 1 / (1 + math.exp(-tau * (ratio - 1)))
    value, grads, _ = surrogate_at("sapo", [ratio], advantage)
    assert value == pytest.approx(-(4 / tau) * sigma * advantage, abs=1e-12)
    # dℓ/dlog π = dℓ/dρ · ρ = −4·σ(1−σ)·A·ρ; at ρ = 1 it is −A, the clipped surrogate's on-policy gradient
    assert grads[0] == pytest.approx(-4 * sigma * (1 - sigma) * advantage * ratio, abs=1e-12)


def test_gspo_uses_one_length_normalised_ratio_per_sequence():
    # s = exp(mean(log 1.2, log 1.5)) = sqrt(1.8) = 1.3416 > 1.28: clipped, every token ℓ = −1.28
    value, grads, out = surrogate_at("gspo", [1.2, 1.5], 1.0)
    assert out.per_token_loss.shape == (1, 1) and value == pytest.approx(-1.28) and grads == [0.0, 0.0]
    assert out.importance_weight.item() == pytest.approx(math.sqrt(1.8))
    # a masked token does not enter s: s = 1.2, inside the range; dℓ/dlogπ_t = −A·s/|o| for the unmasked token
    value, grads, _ = surrogate_at("gspo", [1.2, 1.5], 1.0, mask=[1, 0])
    assert value == pytest.approx(-1.2) and grads == pytest.approx([-1.2, 0.0])
    # negative advantage, s inside: ∂/∂logπ_t of −s·A over |o| = 2 tokens, each counted once by the sum
    value, grads, _ = surrogate_at("gspo", [1.1, 1.1], -1.0)
    assert value == pytest.approx(1.1) and grads == pytest.approx([1.1, 1.1])  # 2 tokens × ds/dlogπ_t = s/2, × −A


def test_on_policy_every_surrogate_has_the_clip_gradient():
    """At ρ ≡ 1 (one pass per batch) every surrogate's gradient equals clip's (the note resolve attaches)."""
    torch.manual_seed(0)
    logps = torch.randn(6, 5, dtype=torch.float64)
    mask = (torch.rand(6, 5) > 0.3).double()
    advantages = torch.randn(6, dtype=torch.float64)
    weights = completion_weights("seq_mean_token_mean", mask.sum(1), group_size=3)
    grads = {}
    for name in SURROGATES:
        x = logps.clone().requires_grad_(True)
        unified_loss(x, x.detach(), advantages, mask, weights, surrogate=name, params=PARAMS).loss.backward()
        grads[name] = x.grad
    for name in SURROGATES:  # every registered surrogate, a new one included
        assert torch.allclose(grads[name], grads["clip"], atol=1e-12), name


# --- λ composes with every surrogate: dL/dλ by finite differences ----------------------------------------------------
@pytest.mark.parametrize("surrogate", list(SURROGATES))
def test_lambda_gradient_matches_finite_difference_under_every_surrogate(surrogate):
    gen = torch.Generator().manual_seed(3)
    rows, width = 16, 9
    lengths = torch.randint(1, width + 1, (rows,), generator=gen)
    mask = (torch.arange(width)[None] < lengths[:, None]).double()
    logps = -torch.rand(rows, width, generator=gen, dtype=torch.float64)
    old = logps + 0.3 * torch.randn(rows, width, generator=gen, dtype=torch.float64)
    advantages = torch.randn(rows, generator=gen, dtype=torch.float64)

    def loss_at(lam):
        w = completion_weights("lambda", lengths.double(), group_size=4, lam=lam, r=0.3)
        return unified_loss(logps, old, advantages, mask, w, surrogate=surrogate, params=PARAMS).loss

    lam = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    loss_at(lam).backward()
    step = 1e-6
    numeric = (loss_at(torch.tensor(0.6 + step, dtype=torch.float64)) - loss_at(torch.tensor(0.6 - step, dtype=torch.float64))) / (2 * step)
    assert lam.grad.item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-10)
    assert abs(lam.grad.item()) > 1e-4


# --- advantages --------------------------------------------------------------------------------------------------
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
ALL = torch.ones(8)


def test_group_std_by_hand():
    std = math.sqrt(1 / 3)  # sample std of [1, 0, 0, 1]
    a = ADVANTAGES["group_std"].compute(REWARDS, 4, ALL)
    assert a.tolist() == pytest.approx([x / (std + 1e-4) for x in (0.5, -0.5, -0.5, 0.5)] + [0.0] * 4, rel=1e-6)


def test_group_mean_by_hand():
    assert ADVANTAGES["group_mean"].compute(REWARDS, 4, ALL).tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])


def test_batch_std_by_hand_over_the_groups_that_enter_the_loss():
    everything = math.sqrt((6 * 0.0625 + 2 * 0.5625) / 7)  # sample std of the 8 rewards (mean 0.75)
    a = ADVANTAGES["batch_std"].compute(REWARDS, 4, ALL)
    assert a.tolist() == pytest.approx([x / (everything + 1e-4) for x in (0.5, -0.5, -0.5, 0.5)] + [0.0] * 4, rel=1e-6)
    kept_only = ADVANTAGES["batch_std"].compute(REWARDS, 4, torch.tensor([1.0] * 4 + [0.0] * 4))
    assert kept_only[:4].tolist() == pytest.approx([x / (math.sqrt(1 / 3) + 1e-4) for x in (0.5, -0.5, -0.5, 0.5)], rel=1e-6)


def test_unscored_completions_leave_the_statistics_and_get_zero_advantage():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.0])
    a = ADVANTAGES["group_std"].compute(rewards, 4, torch.ones(4))
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)
    assert a.tolist() == pytest.approx([(2 / 3) / (std + 1e-4), 0.0, -(1 / 3) / (std + 1e-4), -(1 / 3) / (std + 1e-4)], rel=1e-6)


# --- group filters: decided on accuracy -----------------------------------------------------------------------------
def test_filters_decide_on_accuracy_not_on_the_shaped_reward():
    accuracy = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    shaped = accuracy - torch.tensor([[0.0, 0.3, 0.0, 0.5], [0.0] * 4, [0.0] * 4])  # all correct, partly length-penalised
    assert mixed_accuracy_groups(shaped).tolist() == [True, True, False]  # what a reward-based filter would keep
    for name in ("drop", "resample"):
        assert GROUP_FILTERS[name].keep_groups(accuracy).tolist() == [False, True, False]
    assert GROUP_FILTERS["none"].keep_groups(accuracy).tolist() == [True, True, True]
    assert GROUP_FILTERS["resample"].refills and not GROUP_FILTERS["drop"].refills


def test_select_groups_takes_the_first_mixed_groups_then_pads_with_uniform_ones():
    rounds = [torch.tensor([False, True, False]), torch.tensor([True, True, False])]
    assert select_groups(rounds, 3) == [(0, 1, True), (1, 0, True), (1, 1, True)]
    assert select_groups(rounds, 2) == [(0, 1, True), (1, 0, True)]
    short = [torch.tensor([False, True, False])]
    assert select_groups(short, 3) == [(0, 1, True), (0, 0, False), (0, 2, False)]


def test_another_round_while_any_process_is_short_and_the_cap_allows():
    assert needs_another_round([4, 2], 4, 1, 10)
    assert not needs_another_round([4, 5], 4, 1, 10)
    assert not needs_another_round([4, 2], 4, 10, 10)


def test_round_prompts_are_reproducible_and_disjoint_across_processes():
    draw = [round_prompt_indices(1000, seed=0, step=5, round_index=1, num_processes=2, process_index=p, per_process=8)
            for p in (0, 1)]
    assert len(set(draw[0]) | set(draw[1])) == 16  # one draw without replacement, split between processes
    again = round_prompt_indices(1000, seed=0, step=5, round_index=1, num_processes=2, process_index=0, per_process=8)
    assert again == draw[0]  # a resumed run draws the same prompts
    other = round_prompt_indices(1000, seed=0, step=5, round_index=2, num_processes=2, process_index=0, per_process=8)
    assert other != draw[0]


# --- λ's rate limit -------------------------------------------------------------------------------------------------
def test_rate_limit_flag_on_a_constructed_trajectory():
    # λ under Adam with lr 0.05 and a constant schedule: three steps at the rate limit, then it slows and stops
    trajectory = [0.0, 0.05, 0.10, 0.1455, 0.16, 0.16]
    flags = [lambda_rate_limited(b - a, 0.05, "adam") for a, b in zip(trajectory, trajectory[1:])]
    assert flags == [True, True, True, False, False]  # 0.0455 ≥ 0.045 (0.9·lr) still counts, 0.0145 does not
    assert rate_limited_fraction(flags) == pytest.approx(0.6)
    # a decaying schedule: the limit is lr × factor (factor 0.5 here), downward steps count too
    assert lambda_rate_limited(-0.024, 0.025, "adam") and not lambda_rate_limited(-0.024, 0.05, "adam")
    # SGD moves by lr × gradient: no rate limit
    assert not lambda_rate_limited(0.05, 0.05, "sgd")
    assert rate_limited_fraction([]) is None
    with pytest.raises(ValueError, match="unknown λ optimizer"):
        lambda_rate_limited(0.1, 0.1, "rmsprop")


def test_adam_on_a_one_sign_gradient_is_rate_limited_whatever_its_size():
    """The behaviour the flag exists for: Adam moves λ by ≈ lr per step for gradients of any magnitude."""
    for scale in (1e-4, 1.0, 1e3):
        lam = torch.nn.Parameter(torch.tensor(0.0))
        optimizer = torch.optim.Adam([lam], lr=0.05)
        flags = []
        for step in range(20):
            before = lam.item()
            lam.grad = torch.tensor(-scale * (1 + 0.3 * math.sin(step)))
            optimizer.step()
            flags.append(lambda_rate_limited(lam.item() - before, 0.05, "adam"))
        assert all(flags), scale
        assert lam.item() == pytest.approx(1.0, rel=0.05)  # ≈ lr × steps, not a function of the gradient's size


# --- the report's token-preference view covers every aggregation ----------------------------------------------------
def test_token_preference_view_covers_every_aggregation():
    from lgrpo_bench.reports.preference import example_group_lengths, implied_token_weights

    lengths = example_group_lengths(4, 40)  # [10, 20, 30, 40]
    weights = {name: implied_token_weights(name, lengths, max_completion_length=40, lam=1.0, r=0.3) for name in AGGREGATIONS}
    for name in ("token_mean", "local_token_mean", "prompt_mean"):
        assert weights[name].tolist() == pytest.approx([1.0] * 4), name  # one group, one micro-batch: every token alike
    assert weights["seq_mean_token_mean"].tolist() == pytest.approx([100 / (4 * n) for n in lengths])  # ∝ 1/|o|
    assert weights["constant"].tolist() == pytest.approx([100 / (4 * 40)] * 4)  # flat, Σ|o|/(G·L_max)
    assert list(weights["lambda"]) == sorted(weights["lambda"]) and weights["lambda"].sum() == pytest.approx(4.0)
    # presets are drawn by their aggregation
    assert implied_token_weights("gspo", lengths, max_completion_length=40).tolist() == pytest.approx(weights["seq_mean_token_mean"].tolist())


def test_gmpo_by_hand_on_a_2x3_batch():
    # GMPO (arXiv 2507.20673), ε = 0.4: c = log ρ clipped on the pessimistic side, s_i = exp(mean_t c), ℓ_i = −s_i·A_i.
    # Row 0, A = +1, ratios (1, e^0.6, e^−0.2), all 3 tokens: c = (0, 0.4, −0.2) (e^0.6 capped above at e^0.4;
    #   min(log ρ, clip) keeps −0.2), mean 0.2/3, s = e^(0.2/3), ℓ = −e^(0.2/3) = −1.068939.
    # Row 1, A = −2, ratios (e^−0.6, e^0.6, ·) and the third token padding: c = (−0.4, 0.6) (max(log ρ, clip) keeps
    #   the unbounded 0.6, lifts −0.6 to −0.4), mean 0.1, s = e^0.1, ℓ = −e^0.1·(−2) = 2.210342.
    log_ratios = torch.tensor([[0.0, 0.6, -0.2], [-0.6, 0.6, 5.0]], dtype=torch.float64)
    logps = torch.full((2, 3), -0.5, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    advantages = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    out = SURROGATES["gmpo"].loss(logps, logps.detach() - log_ratios, advantages, mask, SurrogateParams(gmpo_epsilon=0.4))
    assert out.per_token_loss.shape == (2, 1)
    assert out.per_token_loss[:, 0].tolist() == pytest.approx([-math.exp(0.2 / 3), 2 * math.exp(0.1)], abs=1e-12)
    # gradient dℓ_i/dlog π_t = −A·s/|o_i| on unclipped tokens, 0 on clipped ones (and on padding)
    out.per_token_loss.sum().backward()
    s0, s1 = math.exp(0.2 / 3), math.exp(0.1)
    assert logps.grad.tolist()[0] == pytest.approx([-s0 / 3, 0.0, -s0 / 3], abs=1e-12)
    assert logps.grad.tolist()[1] == pytest.approx([0.0, 2 * s1 / 2, 0.0], abs=1e-12)
    assert out.clipped_high.tolist() == [[False, True, False], [False, False, False]]  # high: A > 0 only
    assert out.clipped_low.tolist() == [[False, False, False], [True, False, False]]
