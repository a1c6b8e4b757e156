"""The update loop RLOO and GRPO share: K samples per prompt, one advantage per sample from
its group, PPO's clipped loss, no value head (training notes §Critic-free rounds).

The arrangement is PPO's (worker/training/ppo.py): ONE base, the policy a LoRA adapter on it,
the reference the same model with the adapter disabled, the reward `score_fn` or a reward model
loaded as a second adapter (`SharedBaseReward`). Rollouts, log-probs and prompt fitting are
ppo.py's own functions; what differs is the baseline. RLOO (rloo.py) and GRPO (grpo.py) each
hand this loop their advantage function and their way of averaging token losses.

One update: rollout (each prompt K times) -> rewards -> group advantages -> optimisation ->
logging. The KL penalty to the reference is either in the reward (k1 summed over the
response's tokens, PPO's per-token penalty) or a k3 loss term (GRPO's), `kl_in`.

Files written into `out_dir` (only after the last step), as PPO's less the value head:
    policy/        the LoRA adapter, peft format
    metrics.json   config, per-step metrics, final figures
    tokenizer files

Shape letters: N prompts per update, K samples per prompt, B = N·K rollouts, R response tokens.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from peft import PeftModel
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.generation import batch_seed, stop_strings_for
from worker.training.loop import ADAPTER_NAME, add_policy_adapter
from worker.training.losses import (
    LossAggregation,
    group_policy_loss,
    masked_mean,
    per_token_rewards,
)
from worker.training.models import ensure_pad_token, forked_rng, load_causal_lm
from worker.training.outcomes import Progress, ShouldStop, TrainingCancelled, TrainingDiverged
from worker.training.ppo import (
    METRICS_FILE,
    ScoreFn,
    SharedBaseReward,
    _prompt_order,
    _rollout,
    _score_on_policy_base,
    forward_response,
    shard_policy,
)
from worker.training.prompts import Prompt, PromptCuts
from worker.training.reward_model import ADAPTER_NAME as REWARD_ADAPTER_NAME
from worker.training.shards import (
    dealt,
    gather_rollout,
    gather_values,
    is_main,
    lockstep_rows,
    micro_rows,
    rank_seed,
    reduce_means,
    shard,
    sync_grads,
    whole,
    world,
)

if TYPE_CHECKING:
    from worker.distributed.context import DistContext

KLIn = Literal["reward", "loss"]
Advantages = Callable[[Tensor], Tensor]
"""(N, K) sequence rewards -> (N, K) advantages (losses.rloo_advantages, group_advantages)."""


@dataclass
class CriticFreeConfig:
    """Settings RLOO and GRPO share; PPO's defaults where they carry over (training notes
    §Critic-free rounds)."""

    steps: int = 100
    """Updates; each samples `group_size` responses to each of `batch_size` fresh prompts."""
    batch_size: int = 4
    """Prompts per update: 4 prompts × 4 samples = PPO's 16 rollouts per update."""
    group_size: int = 4
    """K, samples per prompt: the baseline of each is the other K - 1 (a round: the project's
    samples per prompt, the group annotators rank)."""
    mini_batch_size: int = 8
    """Rollouts per optimizer step (PPO's); the last mini-batch of a pass may be smaller."""
    grad_accum: int = 1
    """Micro-batches per mini-batch: every forward pass runs on mini_batch_size / grad_accum
    rows."""
    epochs: int = 4
    """Passes over each rollout batch in shuffled mini-batches (PPO's ppo_epochs: the same
    clipped loss makes the same reuse of a rollout safe)."""
    lr: float = 3e-4
    """AdamW learning rate of the LoRA parameters (PPO's)."""
    adam_eps: float = 1e-5
    max_new_tokens: int = 64
    stop_strings: list[str] | None = None
    """As PPOConfig.stop_strings: the project's, None from the chat template."""
    max_prompt_length: int = 512
    temperature: float = 1.0
    """Rollout temperature, also dividing the logits of policy and reference (§PPO 4)."""
    kl_coef: float = 0.05
    """β of the KL penalty to the reference (PPO's)."""
    kl_in: KLIn = "reward"
    """"reward": -β Σ_t (log π - log π_ref) joins each response's reward before the baseline
    (PPO's per-token penalty, summed); "loss": β·k3 per token joins the loss (GRPO's)."""
    clip_range: float = 0.2
    """Ratio clip ε (PPO's)."""
    max_grad_norm: float = 1.0
    missing_eos_penalty: float | None = -1.0
    """Score given instead of the reward to a response that did not end (§PPO 2)."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    seed: int = 0
    kl_bound: float | None = None
    """KL (nats per response) to stay under; reported in final["kl_within_bound"]."""
    device: str | None = None
    dtype: str = "auto"

    def __post_init__(self) -> None:
        positive_ints = (
            "steps", "batch_size", "mini_batch_size", "grad_accum", "epochs", "max_new_tokens",
            "max_prompt_length", "lora_r", "lora_alpha",
        )  # fmt: skip
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be >= 2 (a baseline needs others), got {self.group_size}"
            )
        if self.mini_batch_size % self.grad_accum:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must be a multiple of grad_accum "
                f"({self.grad_accum})"
            )
        for name in ("lr", "adam_eps", "temperature", "clip_range", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.kl_coef >= 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_in not in ("reward", "loss"):
            raise ValueError(f"kl_in must be 'reward' or 'loss', got {self.kl_in!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.missing_eos_penalty is not None and not math.isfinite(self.missing_eos_penalty):
            raise ValueError(f"missing_eos_penalty must be finite, got {self.missing_eos_penalty}")
        if self.kl_bound is not None and not self.kl_bound > 0:
            raise ValueError(f"kl_bound must be > 0, got {self.kl_bound}")

    @property
    def micro_batch_size(self) -> int:
        """Rows per forward pass."""
        return max(1, self.mini_batch_size // self.grad_accum)


@dataclass
class CriticFreeResult:
    adapter_dir: Path
    metrics_per_step: list[dict[str, float]]
    final: dict[str, Any]
    model: PeftModel = field(repr=False)
    """The base with the trained "policy" adapter active (disable_adapter() = reference)."""


def train_critic_free(
    base: str | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    score_fn: ScoreFn | SharedBaseReward,
    config: CriticFreeConfig,
    *,
    algorithm: str,
    advantages_fn: Advantages,
    aggregation: LossAggregation,
    init_adapter_dir: Path | None = None,
    out_dir: Path,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> CriticFreeResult:
    """`config.steps` updates of a LoRA policy, each on K samples of `batch_size` prompts.

    The contract is train_ppo's (base loaded or modified in place, the reference its current
    weights, progress after and should_stop before each step, TrainingDiverged on a non-finite
    score, KL or loss, nothing written unless the run completes, deterministic on CPU).
    `ctx` runs it as one rank of several, as train_ppo's, sharded by prompt: a rank samples all
    K responses of each of its prompts, so no group is split (worker/training/shards.py).
    `fsdp` shards the base and its adapters over the ranks (FSDP2), as train_ppo's.
    """
    if not prompts:
        raise ValueError(f"prompts is empty: {algorithm} needs prompts to sample from")
    if config.batch_size < world(ctx)[1]:
        raise ValueError(
            f"batch_size ({config.batch_size} prompts) must be at least the number of "
            f"processes ({world(ctx)[1]}): each samples whole groups of a batch"
        )
    model_name = base if isinstance(base, str) else getattr(base, "name_or_path", "")
    if isinstance(base, str):
        base = load_causal_lm(base, device=config.device, dtype=config.dtype)
    pad_id = ensure_pad_token(tokenizer, base)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token, so responses could never end")
    stops = stop_strings_for(tokenizer, config.stop_strings)
    device = base.device
    n, k = config.batch_size, config.group_size
    sharded = fsdp and world(ctx)[1] > 1
    lockstep = lockstep_rows(n, ctx, unit=k) if sharded else None

    with forked_rng(device):
        torch.manual_seed(config.seed)
        model = add_policy_adapter(
            base, config, dropout=config.lora_dropout, init_adapter_dir=init_adapter_dir
        )
        if isinstance(score_fn, SharedBaseReward):
            score_fn = _score_on_policy_base(model, score_fn, lockstep=lockstep)
        model.eval()  # dropout off everywhere (§PPO 5); LoRA parameters still get gradients
        if sharded:
            assert ctx is not None
            shard_policy(ctx, model, None)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, eps=config.adam_eps)
        generator = torch.Generator().manual_seed(config.seed)
        prompt_batches = _prompt_order(len(prompts), n, generator)

        metrics_per_step: list[dict[str, float]] = []
        cuts = PromptCuts()
        run_start = time.perf_counter()
        for step in range(1, config.steps + 1):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(
                    f"{algorithm} cancelled after {step - 1} step(s)",
                    steps_done=step - 1,
                    metrics_per_step=metrics_per_step,
                )
            tic = time.perf_counter()

            def diverged(what: str, step: int = step) -> TrainingDiverged:
                return TrainingDiverged(
                    f"{algorithm} diverged at step {step}: {what}",
                    step=step,
                    metrics_per_step=metrics_per_step,
                )

            # 1. Rollout: each prompt K times, group-major (rows i·K .. i·K + K-1) -----------
            # (several processes: each rank its share of the prompts, all K samples of each)
            batch_ids = next(prompt_batches)
            batch_prompts = [prompts[i] for i in batch_ids for _ in range(k)]
            my_prompts = [prompts[i] for i in shard(batch_ids, ctx) for _ in range(k)]
            ro = _rollout(
                model, None, tokenizer, my_prompts, config,
                seed=rank_seed(batch_seed(config.seed, step), ctx), stops=stops,
                lockstep=lockstep,
            )  # fmt: skip

            # 2. Rewards: the score per response, less β·KL when the KL is in the reward -----
            my_scores = score_fn(my_prompts, ro.responses)
            if len(my_scores) != len(my_prompts):
                raise ValueError(
                    f"score_fn returned {len(my_scores)} scores for {len(my_prompts)} responses"
                )
            ro = gather_rollout(ro, ctx, pad_id=pad_id, unit=k)
            rm_scores = torch.tensor(
                gather_values(list(my_scores), ctx, unit=k), dtype=torch.float32, device=device
            )  # (B,)
            mask = ro.response_mask  # (B, R)
            for prompt, fitted in zip(batch_prompts[::k], ro.prompts[::k], strict=True):
                cuts.note(prompt, fitted)
            if not torch.isfinite(rm_scores).all():
                raise diverged("score_fn returned a non-finite score")
            scores = rm_scores  # (B,)
            if config.missing_eos_penalty is not None:
                scores = torch.where(ro.has_eos, rm_scores, config.missing_eos_penalty)
            in_reward = config.kl_coef if config.kl_in == "reward" else 0.0
            _, kl, non_score = per_token_rewards(
                scores, ro.logprobs, ro.ref_logprobs, mask, in_reward
            )  # (B, R) each
            mean_kl = float(kl.sum(dim=1).mean())
            if not math.isfinite(mean_kl):
                raise diverged(f"mean KL is {mean_kl}")
            rewards = scores + non_score.sum(dim=1)  # (B,)

            # 3. Advantages: each response against its own group (no value head) ------------
            advantages = advantages_fn(rewards.view(n, k)).reshape(-1)  # (N, K) -> (B,)

            # 4. Optimisation: epochs over shuffled mini-batches, accumulated ---------------
            # (several processes: micro-batches dealt out round-robin, gradients summed;
            # FSDP: as many passes on every rank, its reduce-scatter averaging them)
            stats: dict[str, list[float]] = {
                key: [] for key in ("policy_loss", "kl_loss", "approx_kl", "clipfrac")
            }
            grad_norms: list[float] = []
            ref_logprobs = ro.ref_logprobs if config.kl_in == "loss" else None
            rows = micro_rows(config.micro_batch_size, config.mini_batch_size, ctx)
            for _ in range(config.epochs):
                order = torch.randperm(n * k, generator=generator)
                for mb in order.split(config.mini_batch_size):
                    optimizer.zero_grad(set_to_none=True)
                    for idx, weight in dealt(mb.split(rows), ctx, fsdp=sharded):
                        idx = idx.to(device)
                        new_logprobs, _, _ = forward_response(
                            model, None, ro.input_ids[idx], ro.attention_mask[idx],
                            ro.n_response, temperature=config.temperature, pad_id=pad_id,
                        )  # fmt: skip
                        # Policy loss: clipped surrogate, PPO eq. 7, one advantage per response
                        loss, pg_stats = group_policy_loss(
                            new_logprobs, ro.logprobs[idx], advantages[idx], mask[idx],
                            config.clip_range, aggregation=aggregation,
                            max_tokens=config.max_new_tokens,
                            ref_logprobs=None if ref_logprobs is None else ref_logprobs[idx],
                            kl_coef=config.kl_coef,
                        )  # fmt: skip
                        # (several processes: a non-finite loss reaches every rank through
                        # the summed gradient, and all stop there together)
                        if world(ctx)[1] == 1 and not torch.isfinite(loss):
                            raise diverged(f"loss is {float(loss)}")
                        (loss * weight).backward()
                        if not weight:  # a pass that only keeps FSDP's ranks in step
                            continue
                        stats["policy_loss"].append(loss.item())
                        for key in ("kl_loss", "approx_kl", "clipfrac"):
                            stats[key].append(float(pg_stats[key]))
                    if not sharded:
                        sync_grads(params, ctx)
                    grad_norm = whole(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
                    if not torch.isfinite(grad_norm):
                        raise diverged(f"gradient norm is {float(grad_norm)}")
                    grad_norms.append(float(grad_norm))
                    optimizer.step()

            # 5. Logging: PPO's chart keys where they mean the same -------------------------
            metrics: dict[str, float] = {
                "step": step,
                "score": float(rm_scores.mean()),
                "reward": float(rewards.mean()),
                "kl": mean_kl,
                "non_score_reward": float(non_score.sum(dim=1).mean()),
                "entropy": float(masked_mean(ro.entropy, mask)),
                **reduce_means(stats, ctx),  # over every rank's micro-batches
                "grad_norm": sum(grad_norms) / len(grad_norms),
                "advantage_abs": float(advantages.abs().mean()),
                "group_score_std": float(rm_scores.view(n, k).std(dim=1).mean()),
                "response_length": float(mask.sum(dim=1).float().mean()),
                "eos_share": float(ro.has_eos.float().mean()),
                "kl_coef": config.kl_coef,
                "time": time.perf_counter() - tic,
            }
            metrics_per_step.append(metrics)
            if progress is not None:  # every rank: entry.progress writes on rank 0 only
                progress(step, config.steps, metrics)

    # Save (only a completed run gets here; rank 0 alone, FSDP's shards gathered by all) -----
    gathered = None
    if sharded and ctx is not None:
        from worker.distributed.context import full_state_dict

        gathered = full_state_dict(ctx, model)
    if REWARD_ADAPTER_NAME in model.peft_config:
        model.delete_adapter(REWARD_ADAPTER_NAME)  # the result is the policy alone
    out_dir = Path(out_dir)
    if not is_main(ctx):
        return CriticFreeResult(
            adapter_dir=out_dir / ADAPTER_NAME,
            metrics_per_step=metrics_per_step,
            final=dict(metrics_per_step[-1]),
            model=model,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {} if gathered is None else {"state_dict": gathered}
    model.save_pretrained(
        str(out_dir), selected_adapters=[ADAPTER_NAME], save_embedding_layers=False,
        **saved,
    )  # fmt: skip
    tokenizer.save_pretrained(str(out_dir))
    last = metrics_per_step[-1]
    final: dict[str, Any] = {
        **last,
        "steps_done": len(metrics_per_step),
        "train_seconds": time.perf_counter() - run_start,
        "max_kl": max(m["kl"] for m in metrics_per_step),
        "kl_bound": config.kl_bound,
        "kl_within_bound": None if config.kl_bound is None else last["kl"] <= config.kl_bound,
        **cuts.figures(),
    }
    (out_dir / METRICS_FILE).write_text(
        json.dumps(
            {
                "algorithm": algorithm,
                "base_model": str(model_name),
                "adapter_name": ADAPTER_NAME,
                "init_adapter_dir": str(init_adapter_dir) if init_adapter_dir else None,
                "vocab_size": model.get_input_embeddings().num_embeddings,
                "config": asdict(config),
                "stop_strings": stops,
                "metrics_per_step": metrics_per_step,
                "final": final,
            },
            indent=2,
        )
    )
    return CriticFreeResult(
        adapter_dir=out_dir / ADAPTER_NAME,
        metrics_per_step=metrics_per_step,
        final=final,
        model=model,
    )
