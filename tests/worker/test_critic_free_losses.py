"""RLOO's and GRPO's pure pieces on hand-made tensors: baselines, group normalisation, the
k3 KL, token aggregation and masking after the end of a response."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from worker.training.losses import (
    aggregate_tokens,
    group_advantages,
    group_policy_loss,
    k3_kl,
    rloo_advantages,
)


def test_rloo_baseline_is_the_mean_of_the_other_samples() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 4.0]])

    advantages = rloo_advantages(rewards)

    # sample 0: 1 - (2 + 3 + 6) / 3 = -8/3; sample 3: 6 - (1 + 2 + 3) / 3 = 4
    expected = torch.tensor([[-8 / 3, -4 / 3, 0.0, 4.0], [-4 / 3, -4 / 3, -4 / 3, 4.0]])
    torch.testing.assert_close(advantages, expected)


@given(
    st.lists(
        st.lists(st.floats(-100, 100), min_size=2, max_size=8).map(sorted), min_size=1, max_size=4
    ).filter(lambda rows: len({len(r) for r in rows}) == 1)
)
def test_rloo_advantages_are_k_over_k_minus_one_times_the_centred_rewards(
    rows: list[list[float]],
) -> None:
    rewards = torch.tensor(rows, dtype=torch.float64)
    k = rewards.shape[1]
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    torch.testing.assert_close(rloo_advantages(rewards), centred * k / (k - 1))


def test_a_constant_group_gives_zero_advantage_scaled_or_not() -> None:
    rewards = torch.tensor([[0.7, 0.7, 0.7, 0.7], [1.0, 2.0, 3.0, 4.0]])

    for scale in (True, False):
        advantages = group_advantages(rewards, scale=scale)
        assert torch.equal(advantages[0], torch.zeros(4))
        assert torch.isfinite(advantages).all()
    assert torch.equal(rloo_advantages(rewards)[0], torch.zeros(4))


def test_group_advantages_standardise_unless_dr_grpo() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])

    scaled = group_advantages(rewards, scale=True)
    centred = group_advantages(rewards, scale=False)

    torch.testing.assert_close(scaled[0], scaled[1], atol=1e-4, rtol=1e-4)  # scale-free
    torch.testing.assert_close(scaled.std(dim=1), torch.ones(2), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(centred[1], 10 * centred[0])  # Dr. GRPO keeps the scale
    torch.testing.assert_close(centred[0], torch.tensor([-1.5, -0.5, 0.5, 1.5]))


def test_advantages_need_a_group_of_at_least_two() -> None:
    with pytest.raises(ValueError, match="K >= 2"):
        rloo_advantages(torch.ones(3, 1))
    with pytest.raises(ValueError, match="K >= 2"):
        group_advantages(torch.ones(3, 1))


def test_k3_is_zero_on_equal_policies_and_positive_otherwise() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    assert torch.equal(k3_kl(logprobs, logprobs), torch.zeros(1, 3))
    ref = torch.tensor([[-1.5, -1.0, -0.5]])
    kl = k3_kl(logprobs, ref)
    delta = ref - logprobs
    torch.testing.assert_close(kl, torch.exp(delta) - delta - 1)
    assert (kl[0, :2] > 0).all()


def test_aggregations_weigh_long_and_short_responses_as_documented() -> None:
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)

    assert float(aggregate_tokens(per_token, mask, "token")) == pytest.approx(7 / 5)
    assert float(aggregate_tokens(per_token, mask, "sequence")) == pytest.approx((1 + 3) / 2)
    assert float(aggregate_tokens(per_token, mask, "constant", 4)) == pytest.approx((4 + 3) / 8)
    with pytest.raises(ValueError, match="max_tokens"):
        aggregate_tokens(per_token, mask, "constant")


@pytest.mark.parametrize("aggregation", ["token", "sequence", "constant"])
def test_tokens_after_the_end_of_a_response_change_nothing(aggregation: str) -> None:
    """Everything after EOS (padding) is masked out: NaN or huge values there are inert."""
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    logprobs = torch.tensor([[-1.0, -0.5, -2.0, -3.0], [-0.2, -0.3, -0.4, -0.1]])
    old = torch.tensor([[-1.1, -0.4, -2.0, -3.0], [-0.2, -0.5, -0.3, -0.1]])
    ref = torch.tensor([[-1.2, -0.6, -1.0, -1.0], [-0.1, -0.3, -0.5, -0.2]])
    advantages = torch.tensor([1.0, -0.5])
    noisy = logprobs.clone().requires_grad_(True)
    with torch.no_grad():
        noisy[~mask] = float("nan")
        noisy_ref = ref.masked_fill(~mask, 50.0)
    clean = logprobs.clone().requires_grad_(True)

    kwargs: dict[str, Any] = {"aggregation": aggregation, "max_tokens": 4, "kl_coef": 0.1}
    loss_clean, _ = group_policy_loss(clean, old, advantages, mask, 0.2, ref_logprobs=ref, **kwargs)
    loss_noisy, _ = group_policy_loss(
        noisy, old, advantages, mask, 0.2, ref_logprobs=noisy_ref, **kwargs
    )
    loss_noisy.backward()
    loss_clean.backward()

    assert math.isfinite(loss_noisy.item())
    torch.testing.assert_close(loss_noisy, loss_clean)
    assert noisy.grad is not None
    assert clean.grad is not None
    assert torch.equal(noisy.grad[~mask], torch.zeros(int((~mask).sum())))
    torch.testing.assert_close(noisy.grad[mask], clean.grad[mask])


def test_the_policy_loss_is_the_advantage_weighted_ratio_and_clips() -> None:
    mask = torch.ones(2, 2, dtype=torch.bool)
    old = torch.zeros(2, 2)
    same, _ = group_policy_loss(old.clone(), old, torch.tensor([2.0, -1.0]), mask, 0.2)
    # ratio 1 everywhere: loss = mean over tokens of -A = -(2 + 2 - 1 - 1) / 4
    assert float(same) == pytest.approx(-0.5)

    far = torch.full((2, 2), math.log(2.0))  # ratio 2, beyond 1 + ε for a positive advantage
    loss, stats = group_policy_loss(far, old, torch.tensor([1.0, 1.0]), mask, 0.2)
    assert float(loss) == pytest.approx(-1.2)  # clipped at 1 + ε
    assert float(stats["clipfrac"]) == 1.0


def test_the_kl_loss_term_is_beta_times_k3() -> None:
    mask = torch.ones(1, 2, dtype=torch.bool)
    logprobs = torch.tensor([[-1.0, -1.0]])
    ref = torch.tensor([[-2.0, -1.0]])
    zero_advantage = torch.zeros(1)

    loss, stats = group_policy_loss(
        logprobs, logprobs, zero_advantage, mask, 0.2, ref_logprobs=ref, kl_coef=0.5
    )

    k3 = math.exp(-1.0) + 1.0 - 1.0  # Δ = -1 on the first token, 0 on the second
    assert float(stats["kl_loss"]) == pytest.approx(k3 / 2)
    assert float(loss) == pytest.approx(0.5 * k3 / 2)
