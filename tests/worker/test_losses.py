"""Losses checked on hand-made tensors whose right answer is known or computed by a loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.training.losses import (
    AdaptiveKLController,
    FixedKLController,
    dpo_loss,
    entropy_from_logits,
    explained_variance,
    gae,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    pairwise_loss,
    per_token_rewards,
    policy_loss,
    ranking_loss,
    response_mask_after_eos,
    sequence_logprobs,
    sft_loss,
    value_loss,
    weighted_mean,
)


def close(actual: torch.Tensor | float, expected: torch.Tensor | float, tol: float = 1e-6) -> None:
    actual_t = torch.as_tensor(actual, dtype=torch.float64)
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual_t, expected_t, atol=tol, rtol=tol)


def loop_ranking_loss(scores: list[float], groups: list[int]) -> tuple[float, int]:
    """The InstructGPT formula written as plainly as possible: a loop over the pairs."""
    terms = [
        -math.log(1.0 / (1.0 + math.exp(-(scores[i] - scores[j]))))
        for i in range(len(scores))
        for j in range(len(scores))
        if groups[i] >= 0 and groups[j] >= 0 and groups[i] < groups[j]
    ]
    return sum(terms) / len(terms), len(terms)


# Reward model -------------------------------------------------------------------------------


def test_ranking_loss_with_ties_uses_only_cross_group_pairs() -> None:
    scores = [1.5, 0.3, -0.2, -1.0]
    groups = [0, 1, 1, 2]  # samples 1 and 2 tied: 5 pairs, not C(4,2) = 6
    expected, n = loop_ranking_loss(scores, groups)
    assert n == 5

    loss, metrics = ranking_loss(torch.tensor([scores]), torch.tensor([groups]))

    close(loss, expected)
    assert metrics["pairs"].item() == 5


def test_ranking_loss_at_equal_scores_is_log2() -> None:
    loss, metrics = ranking_loss(torch.zeros(1, 3), torch.tensor([[0, 1, 2]]))

    close(loss, math.log(2.0))
    close(metrics["accuracy"], 0.5)  # a tie is half right: all alike is chance


def test_ranking_loss_ignores_padding_even_if_it_holds_nan() -> None:
    scores = torch.tensor([[2.0, 0.5, float("nan"), 100.0]], requires_grad=True)
    groups = torch.tensor([[0, 1, -1, -1]])

    loss, metrics = ranking_loss(scores, groups)
    loss.backward()

    close(loss, -math.log(torch.sigmoid(torch.tensor(1.5)).item()))
    assert metrics["pairs"].item() == 1
    assert torch.isfinite(scores.grad).all()
    close(scores.grad[0, 2:], [0.0, 0.0])


def test_ranking_loss_batch_of_different_k_averages_per_ranking() -> None:
    scores = torch.tensor(
        [
            [1.0, 0.0, -2.0, 0.7],  # K = 4, full order: 6 pairs
            [0.2, 0.9, 9.0, 9.0],  # K = 2 (wrong order): 1 pair
            [3.0, -3.0, 9.0, 9.0],  # K = 2, tied: no pair, must not divide
        ]
    )
    groups = torch.tensor([[0, 2, 3, 1], [0, 1, -1, -1], [0, 0, -1, -1]])
    first, n_first = loop_ranking_loss(scores[0].tolist(), groups[0].tolist())
    second, n_second = loop_ranking_loss(scores[1].tolist(), groups[1].tolist())

    loss, metrics = ranking_loss(scores, groups)

    # Mean over the two rankings with pairs, each already a mean over its own pairs;
    # pooling the 7 pairs instead would give a different number.
    close(loss, (first + second) / 2)
    assert abs((first * n_first + second * n_second) / 7 - (first + second) / 2) > 1e-3
    assert metrics["pairs"].item() == 7
    close(metrics["accuracy"], 6 / 7)  # every pair right except the second ranking's
    margins = [1.0 - 0.7, 1.0 - 0.0, 1.0 + 2.0, 0.7 - 0.0, 0.7 + 2.0, 0.0 + 2.0, 0.2 - 0.9]
    close(metrics["margin"], sum(margins) / 7, tol=1e-5)


def test_ranking_loss_gradient_raises_better_sample_and_lowers_worse() -> None:
    scores = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)

    loss, _ = ranking_loss(scores, torch.tensor([[1, 0, 2]]))  # sample 1 best, sample 2 worst
    loss.backward()

    grad = scores.grad[0]
    assert grad[1] < 0  # gradient descent moves the best score up
    assert grad[2] > 0  # and the worst down
    close(grad[0], 0.0)  # middle: one win, one loss, symmetric at equal scores


def test_ranking_loss_center_term_adds_mean_squared_pair_sum() -> None:
    scores = torch.tensor([[1.0, 0.5, -0.5]])
    groups = torch.tensor([[0, 1, 2]])
    base, _ = loop_ranking_loss(scores[0].tolist(), groups[0].tolist())
    center = ((1.0 + 0.5) ** 2 + (1.0 - 0.5) ** 2 + (0.5 - 0.5) ** 2) / 3

    loss, _ = ranking_loss(scores, groups, center_coef=0.01)

    close(loss, base + 0.01 * center)


def test_ranking_loss_without_pairs_is_zero_and_backpropagates() -> None:
    scores = torch.tensor([[1.0, 2.0], [0.0, 5.0]], requires_grad=True)

    loss, metrics = ranking_loss(scores, torch.tensor([[0, 0], [0, -1]]))
    loss.backward()

    close(loss, 0.0)
    assert metrics["pairs"].item() == 0
    close(scores.grad, torch.zeros(2, 2))


def test_pairwise_loss_is_minus_log_sigmoid_of_margin() -> None:
    chosen = torch.tensor([1.0, -0.5])
    rejected = torch.tensor([0.0, 0.5])
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2

    close(pairwise_loss(chosen, rejected), expected)


def test_ranking_loss_with_two_samples_matches_pairwise_loss() -> None:
    scores = torch.tensor([[0.3, 1.2], [2.0, -1.0]])

    loss, _ = ranking_loss(scores, torch.tensor([[1, 0], [0, 1]]))

    close(loss, pairwise_loss(torch.tensor([1.2, 2.0]), torch.tensor([0.3, -1.0])))


# Masked statistics --------------------------------------------------------------------------


def test_masked_mean_and_var_ignore_masked_entries() -> None:
    x = torch.tensor([[1.0, 2.0, 1000.0], [3.0, 4.0, float("nan")]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])

    close(masked_mean(x, mask), 2.5)
    close(masked_mean(x, mask, dim=1), [1.5, 3.5])
    close(masked_var(x, mask), 5.0 / 3.0)  # sum of squares 5, n - 1 = 3
    close(masked_var(x, mask, unbiased=False), 1.25)


def test_masked_whiten_gives_mean_zero_std_one_on_masked_entries_only() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    real = torch.tensor([1.0, 2.0, 3.0, 4.0])

    out = masked_whiten(x, mask)

    close(out[mask].mean(), 0.0, tol=1e-6)
    close(out[mask].std(), 1.0, tol=1e-5)
    close(out[mask], (real - real.mean()) / real.std(), tol=1e-5)
    close(out[~mask], [0.0, 0.0])


def test_masked_whiten_without_shift_keeps_the_mean() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 77.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]]).bool()

    out = masked_whiten(x, mask, shift_mean=False)

    close(out[mask].mean(), 2.5, tol=1e-5)
    close(out[mask].std(), 1.0, tol=1e-5)


# Log-probs, entropy, masks ------------------------------------------------------------------


def test_logprobs_divide_logits_by_temperature() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    tokens = torch.tensor([[0, 4, 2], [1, 1, 3]])
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, tokens[..., None])[..., 0]

    out = logprobs_from_logits(logits, tokens, temperature=0.7)

    close(out, expected, tol=1e-5)
    assert not torch.allclose(out, logprobs_from_logits(logits, tokens), atol=1e-3)


def test_entropy_of_uniform_is_log_v_and_of_peaked_is_near_zero() -> None:
    logits = torch.zeros(1, 2, 8)
    logits[0, 1, 3] = 50.0

    out = entropy_from_logits(logits)

    close(out[0, 0], math.log(8))
    close(out[0, 1], 0.0, tol=1e-4)


def test_entropy_matches_minus_sum_p_log_p() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6)
    logp = torch.log_softmax(logits, dim=-1)

    close(entropy_from_logits(logits), -(logp.exp() * logp).sum(-1), tol=1e-5)


def test_response_mask_stops_after_first_eos_and_on_padding() -> None:
    eos, pad = 2, 0
    tokens = torch.tensor(
        [
            [5, 6, 2, 0, 0],  # ends, then padding
            [5, 6, 7, 8, 9],  # never ends
            [2, 5, 2, 7, 0],  # EOS first: only the EOS counts
            [5, 6, 0, 0, 0],  # no EOS but padded (rollouts of different lengths batched)
        ]
    )

    mask, has_eos = response_mask_after_eos(tokens, eos_id=eos, pad_id=pad)

    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, True],
        [True, False, False, False, False],
        [True, True, False, False, False],
    ]
    assert has_eos.tolist() == [True, False, True, False]


def test_response_mask_when_pad_equals_eos_keeps_the_first_eos() -> None:
    mask, has_eos = response_mask_after_eos(torch.tensor([[5, 2, 2, 2]]), eos_id=2, pad_id=2)

    assert mask.tolist() == [[True, True, False, False]]
    assert has_eos.tolist() == [True]


# PPO ----------------------------------------------------------------------------------------


def test_per_token_rewards_kl_masked_and_score_on_last_real_token() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, -1.0, -1.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, -2.0, -9.0], [-2.0, -2.0, -2.0, -2.0]])
    tokens = torch.tensor([[5, 6, 2, 0], [5, 6, 7, 8]])  # row 0 ends at index 2, row 1 never
    mask, _ = response_mask_after_eos(tokens, eos_id=2, pad_id=0)

    rewards, kl, non_score = per_token_rewards(
        torch.tensor([2.0, -1.0]), logprobs, ref_logprobs, mask, kl_coef=0.1
    )

    close(kl, [[0.5, 0.0, -1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    close(non_score, [[-0.05, 0.0, 0.1, 0.0], [-0.1, -0.1, -0.1, -0.1]])
    close(rewards, [[-0.05, 0.0, 2.1, 0.0], [-0.1, -0.1, -0.1, -1.1]])


def test_gae_matches_hand_computed_three_steps() -> None:
    # γ = 1, λ = 0.95, rewards (0, 0, 1), values (0.5, 0.4, 0.3), V after the end = 0:
    # δ2 = 1 - 0.3 = 0.7                      A2 = 0.7
    # δ1 = 0.3 - 0.4 = -0.1                   A1 = -0.1 + 0.95·0.7   = 0.565
    # δ0 = 0.4 - 0.5 = -0.1                   A0 = -0.1 + 0.95·0.565 = 0.43675
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])

    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)

    close(advantages, [[0.43675, 0.565, 0.7]], tol=1e-6)
    close(returns, [[0.93675, 0.965, 1.0]], tol=1e-6)


def test_gae_bootstraps_zero_after_last_real_token_and_zeros_padding() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0, 5.0], [0.0, 1.0, 3.0, 3.0, 3.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 7.0, 7.0], [0.5, 0.4, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])

    advantages, returns = gae(rewards, values, mask)

    # Row 1: δ1 = 1 - 0.4 = 0.6 (the padded value 9 is not bootstrapped), A0 = -0.1 + 0.95·0.6
    close(advantages, [[0.43675, 0.565, 0.7, 0, 0], [0.47, 0.6, 0, 0, 0]], tol=1e-6)
    close(returns, [[0.93675, 0.965, 1.0, 0, 0], [0.97, 1.0, 0, 0, 0]], tol=1e-6)


def test_policy_loss_unclipped_is_minus_advantage_times_ratio() -> None:
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.1, 0.9]]))
    adv = torch.tensor([[2.0, -1.0]])

    loss, metrics = policy_loss(new, old, adv, torch.ones(1, 2))

    close(loss, (-2.0 * 1.1 + 1.0 * 0.9) / 2, tol=1e-6)
    close(metrics["clipfrac"], 0.0)
    close(metrics["approx_kl"], 0.5 * (math.log(1.1) ** 2 + math.log(0.9) ** 2) / 2, tol=1e-7)


@pytest.mark.parametrize(
    ("ratio", "advantage", "expected_loss"),
    [
        (1.5, 2.0, -2.0 * 1.2),  # positive advantage, ratio above 1 + ε: capped gain
        (0.5, -2.0, 2.0 * 0.8),  # negative advantage, ratio below 1 - ε: capped gain
    ],
)
def test_policy_loss_clipped_ratio_gives_zero_gradient(
    ratio: float, advantage: float, expected_loss: float
) -> None:
    new = torch.tensor([[math.log(ratio)]], requires_grad=True)

    loss, metrics = policy_loss(
        new, torch.zeros(1, 1), torch.tensor([[advantage]]), torch.ones(1, 1)
    )
    loss.backward()

    close(loss, expected_loss, tol=1e-6)
    close(new.grad, [[0.0]])
    close(metrics["clipfrac"], 1.0)


def test_policy_loss_does_not_clip_the_pessimistic_side() -> None:
    # Positive advantage but the ratio fell below 1 - ε: the unclipped (worse) term wins,
    # so the gradient still pushes the probability back up.
    new = torch.tensor([[math.log(0.5)]], requires_grad=True)

    loss, metrics = policy_loss(new, torch.zeros(1, 1), torch.tensor([[2.0]]), torch.ones(1, 1))
    loss.backward()

    close(loss, -2.0 * 0.5, tol=1e-6)
    close(new.grad, [[-2.0 * 0.5]], tol=1e-6)  # d(-A·e^logp)/dlogp = -A·ratio
    close(metrics["clipfrac"], 0.0)


def test_policy_loss_ignores_masked_tokens() -> None:
    new = torch.tensor([[math.log(1.1), 5.0]])
    old = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, 100.0]])

    loss, metrics = policy_loss(new, old, adv, torch.tensor([[1, 0]]))

    close(loss, -1.1, tol=1e-6)
    close(metrics["approx_kl"], 0.5 * math.log(1.1) ** 2, tol=1e-7)


def test_value_loss_clips_the_update_around_old_values() -> None:
    # Token 0 moved from 0 to 1 (beyond ε = 0.2): clipped value 0.2, error (0.2 - 1)² = 0.64.
    # Token 1 moved from 0 to 0.1 (inside): error (0.1 - 1)² = 0.81 both ways.
    values = torch.tensor([[1.0, 0.1]], requires_grad=True)
    returns = torch.ones(1, 2)

    loss, metrics = value_loss(values, torch.zeros(1, 2), returns, torch.ones(1, 2))
    loss.backward()

    close(loss, 0.5 * (0.64 + 0.81) / 2, tol=1e-6)
    close(metrics["clipfrac"], 0.5)
    close(values.grad[0, 0], 0.0)  # clipped term is constant in v
    close(values.grad[0, 1], 0.5 * 2 * (0.1 - 1.0) / 2, tol=1e-6)


def test_value_loss_ignores_masked_tokens() -> None:
    values = torch.tensor([[0.1, 50.0]])

    loss, _ = value_loss(values, torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[1, 0]]))

    close(loss, 0.5 * 0.81, tol=1e-6)


def test_explained_variance_perfect_and_uninformative_critic() -> None:
    returns = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0]])

    assert explained_variance(returns.clone(), returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 4), 2.0), returns, mask) == pytest.approx(0.0)
    assert math.isnan(explained_variance(returns, torch.ones(1, 4), mask))


def test_adaptive_kl_controller_moves_towards_target() -> None:
    above = AdaptiveKLController(init_kl_coef=0.15, target=6.0, horizon=10000)
    above.update(current_kl=7.2, n_steps=1000)  # error +0.2
    below = AdaptiveKLController(init_kl_coef=0.15, target=6.0, horizon=10000)
    below.update(current_kl=3.0, n_steps=1000)  # error -0.5, clipped to -0.2
    far_above = AdaptiveKLController(init_kl_coef=0.15, target=6.0, horizon=10000)
    far_above.update(current_kl=600.0, n_steps=1000)  # clipped to +0.2

    assert above.value == pytest.approx(0.15 * (1 + 0.2 * 0.1))
    assert below.value == pytest.approx(0.15 * (1 - 0.2 * 0.1))
    assert far_above.value == pytest.approx(above.value)


def test_fixed_kl_controller_never_moves() -> None:
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=10_000)

    assert ctl.value == 0.05


# SFT and DPO --------------------------------------------------------------------------------


def test_sft_loss_is_mean_cross_entropy_over_response_tokens() -> None:
    torch.manual_seed(2)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 1, -100]])  # 2-token prompt, 2-token response, pad
    # logits[:, t] predicts labels[:, t + 1]: positions 1 and 2 carry the loss.
    logp = torch.log_softmax(logits, dim=-1)
    expected = -(logp[0, 1, 3] + logp[0, 2, 1]) / 2

    close(sft_loss(logits, labels), expected, tol=1e-6)


def test_sft_loss_ignores_logits_that_predict_prompt_tokens() -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 1, 4], [-100, -100, 2, 2, -100]])
    changed = logits.clone()
    changed[:, 0] += torch.randn(2, 7) * 10  # predicts a prompt token
    changed[1, 3:] += torch.randn(2, 7) * 10  # predicts padding / nothing
    response_changed = logits.clone()
    response_changed[:, 1] += torch.randn(2, 7) * 10  # predicts the first response token

    base = sft_loss(logits, labels)

    close(sft_loss(changed, labels), base)
    assert not torch.isclose(sft_loss(response_changed, labels), base)


def test_sequence_logprobs_sums_response_token_logprobs() -> None:
    torch.manual_seed(4)
    logits = torch.randn(2, 4, 6)
    labels = torch.tensor([[-100, 5, 0, -100], [-100, -100, -100, 2]])
    logp = torch.log_softmax(logits, dim=-1)
    expected = torch.stack([logp[0, 0, 5] + logp[0, 1, 0], logp[1, 2, 2]])

    close(sequence_logprobs(logits, labels), expected, tol=1e-6)


def test_dpo_sigmoid_loss_and_metrics_match_formula() -> None:
    # h = (-1 - -2) - (-3 - -2) = 2; loss = -log σ(0.1 · 2)
    loss, metrics = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    )

    close(loss, math.log1p(math.exp(-0.2)), tol=1e-6)
    close(metrics["chosen_rewards"], 0.1, tol=1e-7)
    close(metrics["rejected_rewards"], -0.1, tol=1e-7)
    close(metrics["reward_margin"], 0.2, tol=1e-7)
    close(metrics["reward_accuracy"], 1.0)


def test_dpo_sigmoid_loss_averages_over_batch() -> None:
    pc, pr = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    h = (pc - rc) - (pr - rr)  # (2, -5)

    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.5)

    close(loss, -F.logsigmoid(0.5 * h).mean(), tol=1e-6)
    close(metrics["reward_accuracy"], 0.5)


def test_ipo_loss_is_squared_distance_to_half_inverse_beta() -> None:
    # h = 2, β = 0.1: (2 - 1/0.2)² = 9
    loss, _ = dpo_loss(
        torch.tensor([-1.0]),
        torch.tensor([-3.0]),
        torch.tensor([-2.0]),
        torch.tensor([-2.0]),
        beta=0.1,
        loss_type="ipo",
    )

    close(loss, 9.0, tol=1e-5)


def test_dpo_rejects_unknown_loss_type() -> None:
    one = torch.zeros(1)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(one, one, one, one, loss_type="hinge")  # type: ignore[arg-type]


# Reliability weights (one per ranking or pair; training notes §Reward model) ----------------

SCORES = torch.tensor([[1.0, 0.0, -2.0, 0.7], [0.2, 0.9, 9.0, 9.0], [0.4, -0.3, 0.1, 9.0]])
GROUPS = torch.tensor([[0, 2, 3, 1], [0, 1, -1, -1], [2, 0, 1, -1]])


def _ranking_loss_and_grad(
    scores: torch.Tensor, groups: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = scores.clone().requires_grad_(True)
    loss, _ = ranking_loss(leaf, groups, center_coef=0.01, weights=weights)
    loss.backward()
    assert leaf.grad is not None
    return loss.detach(), leaf.grad


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e3))
def test_ranking_loss_with_equal_weights_is_the_unweighted_loss(weight: float) -> None:
    plain, plain_grad = _ranking_loss_and_grad(SCORES, GROUPS, None)

    loss, grad = _ranking_loss_and_grad(SCORES, GROUPS, torch.full((3,), weight))

    close(loss, plain, tol=1e-6)
    close(grad, plain_grad, tol=1e-6)


def test_ranking_loss_with_unit_weights_is_exactly_todays_loss() -> None:
    plain, plain_grad = _ranking_loss_and_grad(SCORES, GROUPS, None)

    loss, grad = _ranking_loss_and_grad(SCORES, GROUPS, torch.ones(3))

    assert torch.equal(loss, plain)
    assert torch.equal(grad, plain_grad)


def test_a_weight_0_ranking_is_as_if_dropped() -> None:
    kept = torch.tensor([0, 2])
    without, without_grad = _ranking_loss_and_grad(SCORES[kept], GROUPS[kept], None)

    loss, grad = _ranking_loss_and_grad(SCORES, GROUPS, torch.tensor([1.0, 0.0, 1.0]))

    close(loss, without)
    close(grad[kept], without_grad)
    close(grad[1], torch.zeros(4))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.just(0.0) | st.floats(min_value=1e-3, max_value=10.0), min_size=3, max_size=3))
def test_ranking_loss_is_the_weighted_mean_of_the_per_ranking_losses(
    weights: list[float],
) -> None:
    per_ranking = [loop_ranking_loss(SCORES[b].tolist(), GROUPS[b].tolist())[0] for b in range(3)]
    total = sum(weights)
    expected = sum(w * x for w, x in zip(weights, per_ranking, strict=True)) / total if total else 0

    loss, _ = ranking_loss(SCORES, GROUPS, weights=torch.tensor(weights))

    close(loss, expected, tol=1e-5)


def test_weights_scale_each_rankings_gradient() -> None:
    # Weights (3, 1): ranking 0's gradient is 3/4 of its own loss's, ranking 1's is 1/4 of its.
    _, own_0 = _ranking_loss_and_grad(SCORES[:1], GROUPS[:1], None)
    _, own_1 = _ranking_loss_and_grad(SCORES[1:2], GROUPS[1:2], None)

    _, grad = _ranking_loss_and_grad(SCORES[:2], GROUPS[:2], torch.tensor([3.0, 1.0]))

    close(grad[0], 0.75 * own_0[0])
    close(grad[1], 0.25 * own_1[0])


def test_ranking_loss_with_only_weight_0_rankings_is_zero_and_backpropagates() -> None:
    loss, grad = _ranking_loss_and_grad(SCORES, GROUPS, torch.zeros(3))

    close(loss, 0.0)
    close(grad, torch.zeros_like(SCORES))


def test_ranking_loss_rejects_negative_or_misshapen_weights() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        ranking_loss(SCORES, GROUPS, weights=torch.tensor([1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match="weights must be"):
        ranking_loss(SCORES, GROUPS, weights=torch.ones(2))


def test_weighted_mean_of_nothing_weighted_is_zero_not_nan() -> None:
    close(weighted_mean(torch.tensor([float("inf"), 2.0]), torch.tensor([0.0, 0.0])), 0.0)


DPO_BATCH = (
    torch.tensor([-1.0, -4.0, -2.5]),
    torch.tensor([-3.0, -1.0, -2.0]),
    torch.tensor([-2.0, -2.0, -2.2]),
    torch.tensor([-2.0, -2.0, -1.9]),
)


def _dpo_loss_and_grad(
    weights: torch.Tensor | None, loss_type: str = "sigmoid", rows: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    pick = rows if rows is not None else [0, 1, 2]
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = (t[pick] for t in DPO_BATCH)
    policy_chosen.requires_grad_(True)
    loss, _ = dpo_loss(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        beta=0.5,
        loss_type=loss_type,  # type: ignore[arg-type]
        weights=weights,
    )
    loss.backward()
    assert policy_chosen.grad is not None
    return loss.detach(), policy_chosen.grad


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_loss_with_equal_weights_is_the_unweighted_loss(loss_type: str) -> None:
    plain, plain_grad = _dpo_loss_and_grad(None, loss_type)

    loss, grad = _dpo_loss_and_grad(torch.full((3,), 2.5), loss_type)

    close(loss, plain)
    close(grad, plain_grad)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_a_weight_0_dpo_pair_is_as_if_dropped(loss_type: str) -> None:
    without, without_grad = _dpo_loss_and_grad(None, loss_type, rows=[0, 2])

    loss, grad = _dpo_loss_and_grad(torch.tensor([1.0, 0.0, 1.0]), loss_type)

    close(loss, without)
    close(grad[[0, 2]], without_grad)
    close(grad[1], 0.0)


def test_dpo_weights_scale_each_pairs_gradient() -> None:
    _, plain_grad = _dpo_loss_and_grad(None)  # each pair's gradient / 3

    _, grad = _dpo_loss_and_grad(torch.tensor([2.0, 1.0, 0.0]))  # pair 0: 2/3, pair 1: 1/3

    close(grad, plain_grad * torch.tensor([2.0, 1.0, 0.0]))
