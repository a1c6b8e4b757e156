"""Pure torch losses and the per-token bookkeeping around them: reward model, PPO, RLOO, GRPO,
SFT, DPO.

Nothing here loads a model or touches a device; every function takes tensors and returns tensors,
so each one is unit-tested on hand-made inputs (tests/worker/test_losses.py).

Shape letters: B batch, K samples per ranking, T tokens, V vocabulary.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100
"""Label value for tokens that carry no loss (prompt and padding), as in transformers."""


# ---------------------------------------------------------------------------------------------
# Reward model
# ---------------------------------------------------------------------------------------------


def ranking_loss(
    scores: Tensor, groups: Tensor, *, center_coef: float = 0.0, weights: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """K-way Bradley-Terry loss: each ranking is one example, every sample scored once.

    InstructGPT §3.5 (https://arxiv.org/abs/2203.02155): loss = -mean_{(w,l)} log σ(r_w - r_l)
    over all pairs of one ranking, then the mean over rankings. Scoring a ranking's K samples
    once instead of 2·C(K,2) times per pair is cheaper and does not overfit
    (training notes §Reward model).

    scores: (B, K) one reward per sample. groups: (B, K) tie-group per sample, 0 = best group,
    -1 = padding. Pairs exist only across groups; rankings without such pairs are skipped (they
    neither add to nor divide the loss). The optional centering term
    ``center_coef · mean((r_w + r_l)^2)`` (TRL's center_rewards_coefficient) keeps rewards near 0
    and is averaged the same way as the main term (per ranking, then over rankings).
    Metrics are pooled over all pairs of the batch (a tie counts half right); with no pair,
    accuracy and margin are 0.

    weights: (B,) ≥ 0, one per ranking (its annotator's reliability): the loss becomes
    Σ_r w_r·loss_r / Σ_r w_r over the rankings with pairs (training notes §Reward model), so
    equal weights give the plain mean, a weight-0 ranking adds nothing and a batch of only
    weight-0 rankings gives a graph-connected 0. The metrics stay unweighted.
    """
    if scores.shape != groups.shape or scores.dim() != 2:
        raise ValueError(
            f"scores and groups must both be (B, K); got {scores.shape}, {groups.shape}"
        )
    if weights is not None and weights.shape != scores.shape[:1]:
        raise ValueError(f"weights must be (B,) for scores {scores.shape}; got {weights.shape}")
    valid = groups >= 0  # (B, K)
    # Padded slots may hold garbage (even NaN): zero them so they cannot leak into gradients.
    s = scores.masked_fill(~valid, 0.0)  # (B, K)

    g_i = groups.unsqueeze(2)  # (B, K, 1)
    g_j = groups.unsqueeze(1)  # (B, 1, K)
    pair_mask = valid.unsqueeze(2) & valid.unsqueeze(1) & (g_i < g_j)  # (B, K, K): i beats j
    diff = s.unsqueeze(2) - s.unsqueeze(1)  # (B, K, K): s_i - s_j
    pair_sum = s.unsqueeze(2) + s.unsqueeze(1)  # (B, K, K): s_i + s_j

    n_pairs = pair_mask.sum(dim=(1, 2))  # (B,)
    has_pairs = n_pairs > 0  # (B,)
    denom = n_pairs.clamp(min=1).to(s.dtype)  # (B,)

    nll = torch.where(pair_mask, -F.logsigmoid(diff), 0.0)  # (B, K, K)
    per_ranking = nll.sum(dim=(1, 2)) / denom  # (B,)
    if center_coef:
        center = torch.where(pair_mask, pair_sum.square(), 0.0).sum(dim=(1, 2)) / denom  # (B,)
        per_ranking = per_ranking + center_coef * center
    # Rankings without pairs are excluded from the (weighted) mean; with none at all the loss is
    # a graph-connected 0, so loss.backward() still works on such a batch.
    w = (
        has_pairs.to(s.dtype)
        if weights is None
        else torch.where(has_pairs, weights.to(s.dtype), 0.0)
    )
    loss = weighted_mean(per_ranking, w)

    with torch.no_grad():
        total = n_pairs.sum()
        d = diff[pair_mask]  # (P,)
        metrics = {
            # A tie is half right, as in ranking_accuracy_counts: a model that scores all
            # answers alike is at chance (0.5), not always wrong.
            "accuracy": ((d > 0).float() + 0.5 * (d == 0).float()).sum() / total.clamp(min=1),
            "margin": d.float().sum() / total.clamp(min=1),
            "pairs": total,
        }
    return loss, metrics


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Σ w·x / Σ w over (B,) values whose weights are ≥ 0; a 0 weight drops its value (even a
    NaN or inf one), and weights that sum to 0 give a graph-connected 0, not NaN."""
    if (weights < 0).any():
        raise ValueError("weights must be >= 0")
    keep = weights > 0  # (B,)
    total = torch.where(keep, values * weights, 0.0).sum()
    return total / weights.sum().clamp(min=torch.finfo(weights.dtype).tiny)


def pairwise_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """-mean log σ(r_chosen - r_rejected), each pair its own example (TRL's RewardTrainer).

    Kept as the baseline the benchmark compares ranking_loss against. chosen, rejected: (N,).
    """
    return -F.logsigmoid(chosen - rejected).mean()


# ---------------------------------------------------------------------------------------------
# Masked statistics (PPO batches are ragged: padding must not move a mean or a variance)
# ---------------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of x over entries where mask is true; padding contributes nothing."""
    m = mask.to(torch.bool)
    xm = torch.where(m, x, 0.0)  # NaN-safe, unlike x * mask
    if dim is None:
        return xm.sum() / m.sum()
    return xm.sum(dim=dim) / m.sum(dim=dim)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of x over the masked entries (Bessel-corrected unless unbiased=False)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean).square(), mask)
    if unbiased:
        n = int(mask.to(torch.bool).sum())
        if n < 2:
            raise ValueError(f"unbiased variance needs at least 2 masked entries, got {n}")
        var = var * (n / (n - 1))
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """Normalise x to mean 0, std 1 over the masked entries (N+ detail: whiten advantages).

    With shift_mean=False the mean is kept and only the scale changes (used for rewards, whose
    sign carries meaning). Masked-out entries come back as 0.
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.to(torch.bool), whitened, 0.0)


# ---------------------------------------------------------------------------------------------
# Per-token log-probs, entropy, response masks
# ---------------------------------------------------------------------------------------------


def logprobs_from_logits(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """log π(token_t) from the logits at position t, after dividing by the sampling temperature.

    The policy and the reference must both see the temperature the rollouts were sampled with,
    or the logged KL is wrong (training notes §PPO 4; N+ https://arxiv.org/abs/2403.17031).
    The caller aligns: logits[:, t] must be the distribution that produced tokens[:, t].
    logits: (B, T, V), tokens: (B, T) -> (B, T), float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.float() / temperature  # (B, T, V)
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (B, T)


def entropy_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of the next-token distribution at each position; logged to spot collapse.

    H = logsumexp(z) - Σ softmax(z)·z, z = logits / temperature. (B, T, V) -> (B, T), float32.
    """
    z = logits.float() / temperature  # (B, T, V)
    p = torch.softmax(z, dim=-1)  # (B, T, V)
    return torch.logsumexp(z, dim=-1) - (p * z).sum(dim=-1)  # (B, T)


def response_mask_after_eos(tokens: Tensor, eos_id: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """Mask of the real response tokens: up to and including the first EOS, not padding.

    Everything generated after the first EOS is masked out (training notes §PPO 2); has_eos says
    which rows ended, so the caller can give the others a penalty score instead of the RM score.
    If pad_id == eos_id the padding is told apart by position only (it comes after the EOS).
    tokens: (B, T) response tokens only -> mask (B, T) bool, has_eos (B,) bool.
    """
    is_eos = tokens == eos_id  # (B, T)
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # (B, T): EOS strictly before t
    mask = eos_before == 0  # (B, T)
    if pad_id != eos_id:
        mask = mask & (tokens != pad_id)
    return mask, is_eos.any(dim=1)


# ---------------------------------------------------------------------------------------------
# PPO: rewards, advantages, losses (https://arxiv.org/abs/2403.17031, cleanrl ppo.py)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def per_token_rewards(
    scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kl_coef: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token reward: r_t = -β (log π - log π_ref), plus the RM score on the last real token.

    k1 KL estimator as in Ziegler et al. (https://arxiv.org/abs/1909.08593) and N+ detail 1.
    Rollout quantities: computed without gradient. Rows with no real token get no score.
    scores: (B,), logprobs, ref_logprobs, mask: (B, T) -> rewards, kl, non_score (B, T), 0 on
    masked positions.
    """
    m = mask.to(torch.bool)
    kl = torch.where(m, logprobs - ref_logprobs, 0.0)  # (B, T)
    non_score = -kl_coef * kl  # (B, T)

    T = mask.shape[1]
    positions = torch.arange(T, device=mask.device).expand_as(m)  # (B, T)
    last = torch.where(m, positions, -1).amax(dim=1)  # (B,): -1 when the row is empty
    bonus = torch.where(last >= 0, scores.to(non_score.dtype), 0.0)  # (B,)
    rewards = non_score.scatter_add(1, last.clamp(min=0).unsqueeze(1), bonus.unsqueeze(1))
    return rewards, kl, non_score


@torch.no_grad()
def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al., https://arxiv.org/abs/1506.02438).

    δ_t = r_t + γ V_{t+1} - V_t, A_t = δ_t + γλ A_{t+1}; the value after the last real token is 0
    (the episode ends there). Masked entries are read as zero reward and zero value, so with a
    real-tokens-then-padding mask the padding is inert; their advantage and return are 0.
    rewards, values, mask: (B, T) -> advantages, returns: (B, T).
    """
    m = mask.to(torch.bool)
    r = torch.where(m, rewards, 0.0)  # (B, T)
    v = torch.where(m, values, 0.0)  # (B, T)
    T = r.shape[1]
    advantages = torch.zeros_like(r)  # (B, T)
    last_gae = torch.zeros_like(r[:, 0])  # (B,)
    for t in reversed(range(T)):
        next_value = v[:, t + 1] if t + 1 < T else torch.zeros_like(v[:, t])  # (B,)
        delta = r[:, t] + gamma * next_value - v[:, t]  # (B,)
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    advantages = torch.where(m, advantages, 0.0)
    returns = torch.where(m, advantages + v, 0.0)
    return advantages, returns


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_range: float = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate objective, PPO eq. 7 (https://arxiv.org/abs/1707.06347), as a loss.

    L = mean_t max(-A_t ρ_t, -A_t clip(ρ_t, 1-ε, 1+ε)), ρ_t = π/π_old, over real tokens.
    Metrics: clipfrac (share of tokens where the clipped term wins) and approx_kl
    0.5·mean(Δlogp²) between the current and the rollout policy (N+ detail; training notes §PPO 8).
    All tensors (B, T).
    """
    log_ratio = logprobs - old_logprobs  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    pg_unclipped = -advantages * ratio  # (B, T)
    pg_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)  # (B, T)
    loss = masked_mean(torch.maximum(pg_unclipped, pg_clipped), mask)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((pg_clipped > pg_unclipped).float(), mask),
            "approx_kl": 0.5 * masked_mean(log_ratio.square(), mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, metrics


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_range_value: float = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss: 0.5·max((V - R)², (clip(V, V_old ± ε) - R)²) over real tokens.

    The value head may move at most ε from its rollout prediction per update (N+ detail; cleanrl).
    Metric clipfrac: share of tokens where the clipped term wins. All tensors (B, T).
    """
    v_clipped = old_values + torch.clamp(
        values - old_values, -clip_range_value, clip_range_value
    )  # (B, T)
    err_unclipped = (values - returns).square()  # (B, T)
    err_clipped = (v_clipped - returns).square()  # (B, T)
    loss = 0.5 * masked_mean(torch.maximum(err_unclipped, err_clipped), mask)
    with torch.no_grad():
        metrics = {"clipfrac": masked_mean((err_clipped > err_unclipped).float(), mask)}
    return loss, metrics


@torch.no_grad()
def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var(R - V) / Var(R) over real tokens: 1 is a perfect critic, ≤ 0 a useless one.

    NaN when the returns have no variance (nothing to explain), as in cleanrl.
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    if var_returns.item() == 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns)


class AdaptiveKLController:
    """Adapts β so the observed KL tracks a target (Ziegler et al. 2019, arXiv 1909.08593 §2.2).

    β ← β·(1 + clip(KL/target - 1, -0.2, 0.2) · n_steps / horizon).
    """

    def __init__(
        self, init_kl_coef: float = 0.15, target: float = 6.0, horizon: int = 10000
    ) -> None:
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Raise β when the KL is above target, lower it when below; n_steps = samples seen."""
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon


class FixedKLController:
    """Constant β (N+ uses a fixed 0.05); same interface as AdaptiveKLController."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient is fixed."""


# ---------------------------------------------------------------------------------------------
# SFT and DPO
# ---------------------------------------------------------------------------------------------


def sft_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Next-token cross-entropy, mean over response tokens only.

    labels are the input ids with IGNORE_INDEX (-100) on prompt and padding; the shift is done
    here (logits[:, t] predicts labels[:, t + 1]). No response token at all gives 0, not NaN.
    logits: (B, T, V), labels: (B, T).
    """
    logits = logits[:, :-1].float()  # (B, T-1, V)
    targets = labels[:, 1:]  # (B, T-1)
    total = F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    n_tokens = (targets != IGNORE_INDEX).sum()
    return total / n_tokens.clamp(min=1)


def sequence_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """Σ_t log π(y_t | y_<t, x) over the labelled (response) tokens: the log-prob DPO needs.

    Same shift and IGNORE_INDEX convention as sft_loss. logits: (B, T, V), labels: (B, T) -> (B,).
    """
    targets = labels[:, 1:]  # (B, T-1)
    keep = targets != IGNORE_INDEX  # (B, T-1)
    token_logps = logprobs_from_logits(logits[:, :-1], targets.masked_fill(~keep, 0))  # (B, T-1)
    return torch.where(keep, token_logps, 0.0).sum(dim=1)  # (B,)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid",
    weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO and IPO losses on sequence log-probs (B,).

    h = (log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l)).
    sigmoid: -log σ(β h), DPO eq. 7 (https://arxiv.org/abs/2305.18290).
    ipo: (h - 1/(2β))², IPO eq. 17 (https://arxiv.org/abs/2310.12036); the paper (and TRL) feed
    it length-averaged log-probs, which is the caller's choice.
    Metrics: implicit rewards β·log-ratio (batch means), their margin and accuracy.
    weights: (B,) ≥ 0, one per pair (its annotator's reliability): the loss is
    Σ w·loss / Σ w, as `ranking_loss` weighs rankings; the metrics stay unweighted.
    """
    if weights is not None and weights.shape != policy_chosen_logps.shape:
        raise ValueError(
            f"weights must be (B,) for {policy_chosen_logps.shape} pairs; got {weights.shape}"
        )
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    h = chosen_logratios - rejected_logratios  # (B,)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)).square()
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected 'sigmoid' or 'ipo'")
    with torch.no_grad():
        chosen_rewards = beta * chosen_logratios  # (B,)
        rejected_rewards = beta * rejected_logratios  # (B,)
        metrics = {
            "chosen_rewards": chosen_rewards.mean(),
            "rejected_rewards": rejected_rewards.mean(),
            "reward_margin": (chosen_rewards - rejected_rewards).mean(),
            "reward_accuracy": (chosen_rewards > rejected_rewards).float().mean(),
        }
    if weights is None:
        return losses.mean(), metrics
    return weighted_mean(losses, weights.to(losses.dtype)), metrics


# ---------------------------------------------------------------------------------------------
# Critic-free policy gradients: RLOO and GRPO (training notes §Critic-free rounds)
# ---------------------------------------------------------------------------------------------

LossAggregation = Literal["token", "sequence", "constant"]
"""How per-token losses become one number: "token" averages over every real token of the batch
(PPO's `policy_loss`, DAPO); "sequence" averages each response over its own tokens, then the
responses (the GRPO paper, which weighs a long response's tokens less); "constant" sums each
response's tokens and divides by one fixed length (Dr. GRPO, https://arxiv.org/abs/2503.20783:
no length bias)."""


@torch.no_grad()
def rloo_advantages(rewards: Tensor) -> Tensor:
    """REINFORCE leave-one-out: each sample's reward minus the mean of its group's others.

    A_i = r_i - 1/(K-1) Σ_{j≠i} r_j (Kool et al. 2019; Ahmadian et al. 2024,
    https://arxiv.org/abs/2402.14740 eq. 7): an unbiased baseline with no value head.
    rewards: (N, K), K samples of each of N prompts, K ≥ 2 -> (N, K).
    """
    k = rewards.shape[-1]
    if rewards.dim() != 2 or k < 2:
        raise ValueError(f"rewards must be (N, K) with K >= 2, got {tuple(rewards.shape)}")
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)  # (N, K)
    return rewards - baseline


@torch.no_grad()
def group_advantages(rewards: Tensor, *, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """GRPO's group-relative advantage: (r_i - mean(r)) / (std(r) + eps) within each group.

    Shao et al. 2024 (https://arxiv.org/abs/2402.03300 §4.1.2). scale=False is Dr. GRPO's fix
    (https://arxiv.org/abs/2503.20783): no std division, which otherwise makes near-tied groups
    (easy or hopeless prompts) weigh as much as informative ones. A constant group gives 0.
    rewards: (N, K), K ≥ 2 -> (N, K).
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (N, K) with K >= 2, got {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (N, K)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(π ‖ π_ref): exp(Δ) - Δ - 1 with Δ = log π_ref - log π.

    Non-negative, unbiased on tokens sampled from π (Schulman, http://joschu.net/blog/kl-approx.html);
    GRPO's loss term (https://arxiv.org/abs/2402.03300 eq. 4). Differentiable in `logprobs`.
    (B, T), (B, T) -> (B, T).
    """
    delta = ref_logprobs - logprobs  # (B, T)
    return torch.exp(delta) - delta - 1.0


def aggregate_tokens(
    per_token: Tensor, mask: Tensor, how: LossAggregation, max_tokens: int | None = None
) -> Tensor:
    """One loss from per-token losses over the real tokens (`LossAggregation`).

    per_token, mask: (B, T) -> scalar. `max_tokens` is "constant"'s divisor (the response budget).
    """
    m = mask.to(torch.bool)
    x = torch.where(m, per_token, 0.0)  # (B, T): padding contributes nothing, NaN-safe
    if how == "token":
        return x.sum() / m.sum().clamp(min=1)
    if how == "sequence":
        return (x.sum(dim=1) / m.sum(dim=1).clamp(min=1)).mean()  # (B,) -> scalar
    if how == "constant":
        if max_tokens is None or max_tokens < 1:
            raise ValueError("the 'constant' aggregation needs max_tokens >= 1")
        return (x.sum(dim=1) / max_tokens).mean()
    raise ValueError(f"unknown aggregation {how!r}; expected 'token', 'sequence' or 'constant'")


def group_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_range: float = 0.2,
    *,
    aggregation: LossAggregation = "token",
    max_tokens: int | None = None,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate with one advantage per response, plus β·k3 KL when
    `ref_logprobs` is given (the KL as a loss term, not in the reward).

    L_t = max(-A ρ_t, -A clip(ρ_t, 1-ε, 1+ε)) + β k3_t, aggregated over real tokens as
    `aggregation` says. logprobs, old_logprobs, mask, ref_logprobs: (B, T); advantages: (B,).
    Metrics as `policy_loss`'s, plus "kl_loss" (the mean k3 term, 0 without a reference).
    """
    m = mask.to(torch.bool)
    # Masked before exp: what follows a response's end gets no value and no gradient, even a
    # NaN or an overflowing ratio there (0·inf would poison every parameter's gradient).
    log_ratio = torch.where(m, logprobs - old_logprobs, 0.0)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = advantages.unsqueeze(1)  # (B, 1): every token of a response shares its advantage
    pg_unclipped = -adv * ratio  # (B, T)
    pg_clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)  # (B, T)
    per_token = torch.maximum(pg_unclipped, pg_clipped)  # (B, T)
    kl_term = torch.zeros_like(per_token)  # (B, T)
    if ref_logprobs is not None:
        kl_term = k3_kl(torch.where(m, logprobs, 0.0), torch.where(m, ref_logprobs, 0.0))
        per_token = per_token + kl_coef * kl_term
    loss = aggregate_tokens(per_token, mask, aggregation, max_tokens)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((pg_clipped > pg_unclipped).float(), m),
            "approx_kl": 0.5 * masked_mean(log_ratio.square(), m),
            "ratio": masked_mean(ratio, m),
            "kl_loss": masked_mean(kl_term, m),
        }
    return loss, metrics
