"""PPO for language models with ONE copy of the base weights (policy adapter, reference, value).

The arrangement (training notes §Adapters):

    policy      base + LoRA adapter "policy"                     (trained)
    reference   the same model inside `model.disable_adapter()`  (frozen: whatever the base holds)
    value       a zero-initialised linear head on the policy's last hidden state (trained)
    reward      `score_fn(prompts, responses)`, supplied by the caller (e.g. reward_model.score),
                or `SharedBaseReward(path)`: a saved reward model whose base is the policy's,
                loaded as a second adapter "reward" on the same base (no second base copy)

The reference is the model PPO must stay close to. With LoRA, an SFT or previous-round adapter
is merged into the base first (`merge_adapter_into_base`), so that disabling the PPO adapter
gives that model back.

One update reads top to bottom as in cleanrl's ppo.py (https://github.com/vwxyzjn/cleanrl):
rollout -> rewards -> advantages -> optimisation -> logging. The numbered details of
"The N+ implementation details of RLHF with PPO" (Huang et al. 2024,
https://arxiv.org/abs/2403.17031) are cited as "N+ n" where a line implements one; the pure
losses live in worker/training/losses.py and are unit-tested there.

Files written into `out_dir` (only after the last step; a diverged or cancelled run writes
nothing):
    policy/                 the LoRA adapter, peft format: PeftModel.from_pretrained(base, dir)
    value_head.safetensors  the value head
    metrics.json            config, per-step metrics, final figures
    tokenizer files         the tokenizer, pad token included (its length is the vocab size)

Shape letters: B rollouts, P prompt tokens (left-padded), R response tokens, T = P + R,
H hidden size, V vocabulary.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.rounds.types.reward_ppo import PPOSettings
from worker.training.generation import (
    _pad_left,
    batch_seed,
    end_answer,
    end_token_ids,
    stop_strings_for,
    stopping_criteria,
)
from worker.training.loop import ADAPTER_NAME, add_policy_adapter
from worker.training.losses import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    explained_variance,
    gae,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    per_token_rewards,
    policy_loss,
    value_loss,
)
from worker.training.models import (
    base_model_of,
    ensure_pad_token,
    forked_rng,
    load_causal_lm,
    load_tokenizer,
)
from worker.training.outcomes import Progress, ShouldStop, TrainingCancelled, TrainingDiverged
from worker.training.prompts import (
    Prompt,
    PromptCuts,
    fit_prompt,
    no_room_message,
    prompt_budget,
    token_limit,
)
from worker.training.reward_model import ADAPTER_NAME as REWARD_ADAPTER_NAME
from worker.training.reward_model import load_reward_model, score
from worker.training.rollout import Rollout
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

VALUE_HEAD_FILE = "value_head.safetensors"
METRICS_FILE = "metrics.json"

ScoreFn = Callable[[list[Prompt], list[str]], list[float]]
"""score_fn(prompts, responses) -> one normalised RM score per response (mean 0, std 1 on the
reference policy's samples, training notes §PPO 7)."""


class RolloutSettings(Protocol):
    """What a rollout reads from its algorithm's config (PPO's, RLOO's, GRPO's): the critic-free
    trainers (worker/training/rloo.py, grpo.py) sample through this file's `_rollout`."""

    max_new_tokens: int
    max_prompt_length: int
    temperature: float

    @property
    def micro_batch_size(self) -> int: ...


@dataclass(frozen=True)
class SharedBaseReward:
    """A saved reward model (reward_model.RewardModel.save) to score with from the policy's base.

    Only valid when the reward model was trained on exactly the weights PPO's base holds
    (the same model, nothing merged into it): its adapter is then added to the policy's
    layers, frozen, and scoring switches to it, so one base copy serves policy, reference,
    value head and reward model. train_ppo removes the adapter before it returns.
    """

    path: Path
    batch_size: int = 16


ROUND = PPOSettings()
"""A round's PPO settings: the one source of the defaults below that a round sets (batch
sizes, epochs, learning rate, KL penalty). What a round sizes from the project (steps,
temperature, rollout length) keeps a default here for callers outside a round."""


@dataclass
class PPOConfig:
    """Hyper-parameters of PPO with a LoRA policy; defaults follow N+ (training notes §PPO)."""

    steps: int = 100
    """PPO updates; each samples `batch_size` fresh rollouts, then optimises on them."""
    batch_size: int = ROUND.batch_size
    """Prompts (= rollouts, one response each) per update."""
    mini_batch_size: int = ROUND.mini_batch_size
    """Rollouts per optimizer step; `batch_size` must be a multiple of it."""
    grad_accum: int = 1
    """Micro-batches per mini-batch (gradient accumulation). Every forward pass, with or
    without gradients, runs on mini_batch_size / grad_accum rows, so raising it keeps memory
    flat as batches grow."""
    ppo_epochs: int = ROUND.ppo_epochs
    """Passes over each rollout batch, in freshly shuffled mini-batches (N+ uses 4)."""
    lr: float = ROUND.learning_rate
    """AdamW learning rate for the LoRA and value-head parameters (a round's: 3e-4; full
    weights take ~3e-6 and LoRA tolerates ~10x more)."""
    adam_eps: float = 1e-5
    """AdamW epsilon (N+: 1e-5, not PyTorch's 1e-8)."""
    max_new_tokens: int = 64
    """Response budget; a response that has not ended by then is "missing EOS"."""
    stop_strings: list[str] | None = None
    """Texts that end a response as EOS does (the project's setting): the tokens that wrote
    one are its last action, the text before it is what the reward model scores. None derives
    them from the chat template (a new "User:" line for the tiny model), [] means EOS and the
    template's end-of-turn token only."""
    max_prompt_length: int = 512
    """Longer prompts lose their oldest turns, then keep their last tokens (where the
    assistant turn starts) behind a marker, as do prompts that would leave no room for
    max_new_tokens in the model's context (`prompts.fit_prompt`, the rule of every stage)."""
    temperature: float = 1.0
    """Rollout sampling temperature; the same value divides the logits of the policy and the
    reference when log-probs are computed (training notes §PPO 4). Sampling is otherwise pure:
    top_k=0, top_p=1, no repetition penalty (§PPO 3)."""
    kl_coef: float = ROUND.kl_coef
    """β of the per-token KL penalty -β (log π - log π_ref) when `adaptive_kl` is off (N+)."""
    adaptive_kl: bool = ROUND.adaptive_kl
    """Adapt β towards `kl_target` (Ziegler et al. 2019, https://arxiv.org/abs/1909.08593)."""
    init_kl_coef: float = 0.15
    """Starting β of the adaptive controller."""
    kl_target: float = 6.0
    """KL (nats per response) the adaptive controller steers towards."""
    kl_horizon: int = 10000
    """Adaptive controller horizon, in rollouts."""
    gamma: float = 1.0
    """Discount; 1 because the reward arrives at the end of a short episode (N+)."""
    lam: float = 0.95
    """GAE λ (N+)."""
    clip_range: float = 0.2
    """PPO ratio clip ε."""
    clip_range_value: float = 0.2
    """How far a value prediction may move from its rollout value per update."""
    vf_coef: float = 0.1
    """Weight of the value loss in the shared loss (N+: 0.1)."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip over the trained parameters."""
    missing_eos_penalty: float | None = -1.0
    """Score given INSTEAD of the RM score to a response that did not end (no EOS, end-of-turn
    token or stop string; training notes §PPO 2), so the policy cannot win by rambling; None keeps
    the RM score."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over each batch's real tokens (N+)."""
    lora_r: int = 8
    """LoRA rank of the policy adapter."""
    lora_alpha: int = 16
    """LoRA scaling numerator (updates are scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """0: dropout makes the rollout and training log-probs disagree (training notes §PPO 5)."""
    target_modules: list[str] | str | None = None
    """Modules that get LoRA; None means "all-linear" (every linear layer but the LM head),
    which works for any architecture, as the reward model does."""
    seed: int = 0
    """Seeds LoRA initialisation, prompt order, rollout sampling and mini-batch shuffling."""
    kl_bound: float | None = None
    """KL (nats per response) a policy should stay under to be promoted (training notes §PPO 9);
    reported in `final["kl_within_bound"]`. A non-finite KL always stops the run."""
    device: str | None = None
    """Device when `base` is a path; None picks CUDA when present. A model keeps its device."""
    dtype: str = "auto"
    """Base dtype when `base` is a path ("auto": bf16/fp16 on CUDA, float32 on CPU)."""

    def __post_init__(self) -> None:
        positive_ints = (
            "steps", "batch_size", "mini_batch_size", "grad_accum", "ppo_epochs",
            "max_new_tokens", "max_prompt_length", "kl_horizon", "lora_r", "lora_alpha",
        )  # fmt: skip
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.mini_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size "
                f"({self.mini_batch_size})"
            )
        if self.mini_batch_size % self.grad_accum:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must be a multiple of grad_accum "
                f"({self.grad_accum})"
            )
        positive = (
            "lr", "adam_eps", "temperature", "init_kl_coef", "kl_target", "clip_range",
            "clip_range_value", "max_grad_norm",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("kl_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.missing_eos_penalty is not None and not math.isfinite(self.missing_eos_penalty):
            raise ValueError(f"missing_eos_penalty must be finite, got {self.missing_eos_penalty}")
        if self.kl_bound is not None and not self.kl_bound > 0:
            raise ValueError(f"kl_bound must be > 0, got {self.kl_bound}")
        if self.stop_strings is not None and not all(self.stop_strings):
            raise ValueError("stop_strings must not hold an empty string")

    @property
    def micro_batch_size(self) -> int:
        """Rows per forward pass."""
        return self.mini_batch_size // self.grad_accum


@dataclass
class PPOResult:
    """What a run produced. `model` and `value_head` are the trained objects, ready to use."""

    adapter_dir: Path
    """The policy adapter: `PeftModel.from_pretrained(base, adapter_dir)` loads it."""
    metrics_per_step: list[dict[str, float]]
    final: dict[str, Any]
    """Last step's metrics plus run totals and the KL-bound check."""
    model: PeftModel = field(repr=False)
    """The base with the trained "policy" adapter active (disable_adapter() = reference)."""
    value_head: ValueHead = field(repr=False)


# ---------------------------------------------------------------------------------------------
# Model pieces
# ---------------------------------------------------------------------------------------------


class ValueHead(nn.Module):
    """V(s_t) = w·h_t + b on the policy's last hidden state, w = b = 0 at start.

    Zero init (training notes §PPO 7) makes the first advantages plain reward-to-go instead of the
    noise of a random critic. Kept in float32 whatever the base dtype.
    """

    def __init__(self, hidden_size: int, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1, device=device, dtype=torch.float32)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """(..., H) -> (...)."""
        return self.linear(hidden.float()).squeeze(-1)

    def save(self, path: Path, *, state: dict[str, Tensor] | None = None) -> None:
        """`state`: the weights gathered whole (`full_state_dict`) when the head is sharded."""
        if state is None:
            state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        save_file(state, path)

    @classmethod
    def load(cls, path: Path, *, device: torch.device | str | None = None) -> ValueHead:
        state = load_file(path, device=str(device or "cpu"))
        head = cls(state["linear.weight"].shape[1], device=device)
        head.load_state_dict(state)
        return head


def merge_adapter_into_base(model: PreTrainedModel, adapter_dir: Path) -> PreTrainedModel:
    """Fold a saved LoRA adapter (SFT or a previous PPO round) into the base weights.

    Do this before `train_ppo` when the round says the reference should be that adapter's
    model: PPO's reference is the base with the PPO adapter disabled (training notes §PPO 7).
    The base's embeddings must already match the adapter's vocabulary.
    """
    merged = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name="merge")
    return merged.merge_and_unload()


def _score_on_policy_base(
    policy: PeftModel, reward: SharedBaseReward, *, lockstep: int | None = None
) -> ScoreFn:
    """Load the reward adapter and head onto the policy's base; a scorer that uses them.

    `lockstep` (FSDP, the base sharded: each forward a collective): every call scores this
    many rows, the last one repeated, so every rank runs as many passes; and the root's own
    parameters are gathered, since the reward model reads the base's body directly."""
    with forked_rng(policy.device):  # loading draws LoRA inits: keep the seed's
        rm = load_reward_model(reward.path, base=policy)  # stream as with a separate model
    rm_tokenizer = load_tokenizer(str(reward.path))

    def score_fn(prompts: list[Prompt], responses: list[str]) -> list[float]:
        if lockstep is None:
            return score(rm, rm_tokenizer, prompts, responses, batch_size=reward.batch_size)
        from worker.distributed.context import root_gathered

        extra = lockstep - len(prompts)
        with root_gathered(policy):
            scores = score(
                rm, rm_tokenizer, prompts + prompts[-1:] * extra,
                responses + responses[-1:] * extra, batch_size=reward.batch_size,
            )  # fmt: skip
        return scores[: len(prompts)]

    return score_fn


def shard_policy(ctx: DistContext, model: PeftModel, value_head: ValueHead | None) -> None:
    """FSDP2 over the shared base (its blocks, then the root: policy and reward adapters,
    the frozen base) and the value head, in place, before the optimizer takes the
    parameters. `generate` is registered as a forward (it enters the model below the root)."""
    from worker.distributed.context import Methods

    ctx.wrap(Methods(model, "generate"), fsdp=True)
    if value_head is not None:
        ctx.wrap(value_head, fsdp=True)


def forward_response(
    model: nn.Module,
    value_head: ValueHead | None,
    input_ids: Tensor,
    attention_mask: Tensor,
    n_response: int,
    *,
    temperature: float,
    pad_id: int,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Log-probs, values and entropies of the last `n_response` tokens of prompt + response.

    One forward pass over the whole sequence; logits at position t predict token t + 1, so
    the R response tokens are scored by positions P-1 .. T-2, and V(s_t) reads the hidden state
    there too (the state before the action). Logits are divided by the sampling temperature
    (training notes §PPO 4) and the pad token is removed from the distribution, exactly as the
    rollout's `suppress_tokens` removed it from sampling.
    input_ids, attention_mask: (B, T) -> logprobs (B, R), values (B, R) or None, entropy (B, R).
    """
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T), left padding
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=value_head is not None,
        logits_to_keep=n_response + 1,  # only the positions that score the response
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()  # (B, R, V)
    # Finite, not -inf: entropy's p·z would give 0·inf = NaN.
    logits = logits.index_fill(-1, torch.tensor([pad_id], device=logits.device), -1e4)
    tokens = input_ids[:, -n_response:]  # (B, R)
    logprobs = logprobs_from_logits(logits, tokens, temperature)  # (B, R)
    entropy = entropy_from_logits(logits.detach(), temperature)  # (B, R)
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, -(n_response + 1) : -1]  # (B, R, H)
        values = value_head(hidden)  # (B, R)
    return logprobs, values, entropy


# ---------------------------------------------------------------------------------------------
# Rollout
# ---------------------------------------------------------------------------------------------


def rollout_sampling_kwargs(
    config: RolloutSettings, *, eos_id: int | list[int], pad_id: int
) -> dict[str, Any]:
    """`generate` options for pure sampling at config.temperature (training notes §PPO 3).

    Every distribution-changing option is set explicitly, because generate() fills gaps from
    the checkpoint's generation_config and from library defaults (top_k=50). `eos_id` may list
    the end-of-turn token beside EOS (`end_token_ids`).
    """
    return {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": True,
        "temperature": config.temperature,
        "top_k": 0,
        "top_p": 1.0,
        "typical_p": 1.0,
        "min_p": 0.0,
        "epsilon_cutoff": 0.0,
        "eta_cutoff": 0.0,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_new_tokens": 0,
        "num_beams": 1,
        "num_return_sequences": 1,
        # A pad token is no response; forward_response drops it from the logits the same way.
        "suppress_tokens": [pad_id],
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }


def _prompt_order(
    n_prompts: int, batch_size: int, generator: torch.Generator
) -> Iterator[list[int]]:
    """Batches of prompt indices: shuffled passes over the prompts, as many as needed."""
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending += torch.randperm(n_prompts, generator=generator).tolist()
        yield pending[:batch_size]
        pending = pending[batch_size:]


def rollout_prompt_limit(
    model: Any, tokenizer: PreTrainedTokenizerBase, config: RolloutSettings
) -> int:
    """Tokens a rollout prompt may take: max_prompt_length, and room for max_new_tokens in
    the model's context."""
    context = token_limit(tokenizer, model=model)
    budget = prompt_budget(context, config.max_new_tokens)
    if context is not None and budget is not None and budget < 1:
        raise ValueError(no_room_message(context, config.max_new_tokens))
    if budget is None:
        return config.max_prompt_length
    return min(config.max_prompt_length, budget)


@torch.no_grad()
def _rollout(
    model: PeftModel,
    value_head: ValueHead | None,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    config: RolloutSettings,
    *,
    seed: int,
    stops: list[str],
    lockstep: int | None = None,
) -> Rollout:
    """Sample one response per prompt purely, then score it with the policy and reference.

    A response ends at its first EOS, end-of-turn token or stop string; what follows is
    masked out and padded (training notes §PPO 2), and the reward model sees the text before it.
    Without a value head (RLOO, GRPO) the values are zeros. K samples of a prompt: list it K
    times (each row draws its own response).
    `lockstep` (FSDP: every forward is a collective) is the largest shard's row count: the
    sampling steps until every rank is done (`synced_gpus`), and the log-prob passes are as
    many as that shard needs, a rank with fewer rows repeating its first micro-batch.
    """
    pad_id = tokenizer.pad_token_id
    end_ids = end_token_ids(tokenizer)
    device = model.device if value_head is None else value_head.linear.weight.device
    limit = rollout_prompt_limit(model, tokenizer, config)
    fitted = [fit_prompt(tokenizer, p, limit) for p in prompts]
    rows = [f.ids for f in fitted]
    prompt_ids, prompt_mask = _pad_left(rows, pad_id)  # (B, P), (B, P)

    with forked_rng(device):
        torch.manual_seed(seed)
        output = model.generate(
            input_ids=prompt_ids.to(device),
            attention_mask=prompt_mask.to(device),
            stopping_criteria=stopping_criteria(tokenizer, stops, prompt_width=prompt_ids.shape[1]),
            **rollout_sampling_kwargs(config, eos_id=end_ids, pad_id=pad_id),
            **({} if lockstep is None else {"synced_gpus": True}),
        )
    response = output[:, prompt_ids.shape[1] :].cpu()  # (B, R)
    answers = [
        end_answer(tokenizer, row, end_ids=end_ids, stops=stops) for row in response.tolist()
    ]
    lengths = torch.tensor([len(a.token_ids) for a in answers])  # (B,)
    response = response[:, : max(int(lengths.max()), 1)]  # (B, R): drop all-padding columns
    response_mask = torch.arange(response.shape[1]) < lengths[:, None]  # (B, R)
    has_eos = torch.tensor([a.finished for a in answers])  # (B,)
    response = response.masked_fill(~response_mask, pad_id)  # (B, R): pad after the end
    input_ids = torch.cat([prompt_ids, response], dim=1).to(device)  # (B, T)
    attention_mask = torch.cat([prompt_mask, response_mask.long()], dim=1).to(device)  # (B, T)
    response_mask, has_eos = response_mask.to(device), has_eos.to(device)
    responses = [a.text for a in answers]

    # Log-probs of policy and reference, values: micro-batches keep memory flat.
    n_response = response.shape[1]
    parts: dict[str, list[Tensor]] = {"logprobs": [], "ref": [], "values": [], "entropy": []}
    chunks = list(torch.arange(len(rows)).split(config.micro_batch_size))
    real = len(chunks)
    if lockstep is not None:  # the largest shard's passes; the extra ones are discarded
        chunks += chunks[:1] * (math.ceil(lockstep / config.micro_batch_size) - real)
    for idx in chunks:
        ids, mask = input_ids[idx], attention_mask[idx]
        logprobs, values, entropy = forward_response(
            model, value_head, ids, mask, n_response,
            temperature=config.temperature, pad_id=pad_id,
        )  # fmt: skip
        with model.disable_adapter():  # the reference: the base weights alone
            ref_logprobs, _, _ = forward_response(
                model, None, ids, mask, n_response,
                temperature=config.temperature, pad_id=pad_id,
            )  # fmt: skip
        parts["logprobs"].append(logprobs)
        parts["ref"].append(ref_logprobs)
        parts["values"].append(torch.zeros_like(logprobs) if values is None else values)
        parts["entropy"].append(entropy)
    parts = {name: found[:real] for name, found in parts.items()}
    return Rollout(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        has_eos=has_eos,
        logprobs=torch.cat(parts["logprobs"]),
        ref_logprobs=torch.cat(parts["ref"]),
        values=torch.cat(parts["values"]),
        entropy=torch.cat(parts["entropy"]),
        responses=responses,
        prompts=fitted,
    )


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_ppo(
    base: str | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    score_fn: ScoreFn | SharedBaseReward,
    config: PPOConfig,
    *,
    init_adapter_dir: Path | None = None,
    out_dir: Path,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> PPOResult:
    """Run `config.steps` PPO updates of a LoRA policy on `prompts` against `score_fn`.

    `base` is a model id/dir or a loaded model; a loaded model is modified in place (the
    "policy" adapter is injected, the pad token added if missing). Its current weights are the
    reference. `init_adapter_dir` continues training that adapter instead of a fresh one; the
    value head always starts at zero. `score_fn` may instead be a `SharedBaseReward`: the
    reward model is then loaded onto the policy's own base. `progress(step, steps, metrics)`
    runs after each step, `should_stop()` before each (True raises TrainingCancelled).
    A non-finite score, KL, loss or gradient raises TrainingDiverged. Nothing is written to
    `out_dir` unless the run completes. Deterministic on CPU under `config.seed`; the caller's
    global RNG state is left untouched.

    `ctx` runs it as one rank of several (worker/training/shards.py): the same global batch,
    sampled and scored in shards, advantages over the whole batch, gradients summed over
    ranks; rank 0 alone reports progress and writes `out_dir`. None is one process.
    `fsdp` (with several processes) shards the base, its adapters and the value head over the
    ranks (FSDP2) instead of a copy per rank; the ranks then step in lockstep (shards.py).
    """
    if not prompts:
        raise ValueError("prompts is empty: PPO needs prompts to sample from")
    if config.batch_size < world(ctx)[1]:
        raise ValueError(
            f"batch_size ({config.batch_size}) must be at least the number of processes "
            f"({world(ctx)[1]}): each samples its share of a batch"
        )
    model_name = base if isinstance(base, str) else getattr(base, "name_or_path", "")
    if isinstance(base, str):
        base = load_causal_lm(base, device=config.device, dtype=config.dtype)
    pad_id = ensure_pad_token(tokenizer, base)  # pad distinct from EOS (training notes §PPO 2)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token, so responses could never end")
    stops = stop_strings_for(tokenizer, config.stop_strings)
    device = base.device
    sharded = fsdp and world(ctx)[1] > 1
    lockstep = lockstep_rows(config.batch_size, ctx) if sharded else None

    with forked_rng(device):
        torch.manual_seed(config.seed)
        model = add_policy_adapter(
            base, config, dropout=config.lora_dropout, init_adapter_dir=init_adapter_dir
        )
        if isinstance(score_fn, SharedBaseReward):
            score_fn = _score_on_policy_base(model, score_fn, lockstep=lockstep)
        # eval(): dropout off everywhere (§PPO 5); LoRA parameters still receive gradients.
        model.eval()
        hidden_size = base_model_of(model).config.get_text_config().hidden_size
        value_head = ValueHead(hidden_size, device=device)
        value_head.eval()
        if sharded:
            assert ctx is not None
            shard_policy(ctx, model, value_head)
        params = [p for p in model.parameters() if p.requires_grad]
        params += list(value_head.parameters())
        optimizer = torch.optim.AdamW(params, lr=config.lr, eps=config.adam_eps)
        kl_ctl: AdaptiveKLController | FixedKLController = (
            AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon)
            if config.adaptive_kl
            else FixedKLController(config.kl_coef)
        )
        generator = torch.Generator().manual_seed(config.seed)
        prompt_batches = _prompt_order(len(prompts), config.batch_size, generator)

        metrics_per_step: list[dict[str, float]] = []
        cuts = PromptCuts()
        run_start = time.perf_counter()
        for step in range(1, config.steps + 1):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(
                    f"PPO cancelled after {step - 1} step(s)",
                    steps_done=step - 1,
                    metrics_per_step=metrics_per_step,
                )
            tic = time.perf_counter()

            def diverged(what: str, step: int = step) -> TrainingDiverged:
                return TrainingDiverged(
                    f"PPO diverged at step {step}: {what}",
                    step=step,
                    metrics_per_step=metrics_per_step,
                )

            # 1. Rollout ------------------------------------------------------------------
            # (several processes: each its shard, then the whole batch on every rank)
            batch_prompts = [prompts[i] for i in next(prompt_batches)]
            my_prompts = shard(batch_prompts, ctx)
            ro = _rollout(
                model, value_head, tokenizer, my_prompts, config,
                seed=rank_seed(batch_seed(config.seed, step), ctx), stops=stops,
                lockstep=lockstep,
            )  # fmt: skip

            # 2. Rewards: RM score on the last real token, -β·KL on every token (N+ 1, 2) ----
            my_scores = score_fn(my_prompts, ro.responses)
            if len(my_scores) != len(my_prompts):
                raise ValueError(
                    f"score_fn returned {len(my_scores)} scores for {len(my_prompts)} responses"
                )
            ro = gather_rollout(ro, ctx, pad_id=pad_id)
            rm_scores = torch.tensor(
                gather_values(list(my_scores), ctx), dtype=torch.float32, device=device
            )  # (B,)
            mask = ro.response_mask  # (B, R)
            for prompt, fitted in zip(batch_prompts, ro.prompts, strict=True):
                cuts.note(prompt, fitted)
            if not torch.isfinite(rm_scores).all():
                raise diverged("score_fn returned a non-finite score")
            scores = rm_scores  # (B,)
            if config.missing_eos_penalty is not None:
                scores = torch.where(ro.has_eos, rm_scores, config.missing_eos_penalty)
            kl_coef = kl_ctl.value
            rewards, kl, non_score = per_token_rewards(
                scores, ro.logprobs, ro.ref_logprobs, mask, kl_coef
            )  # (B, R) each
            kl_per_seq = kl.sum(dim=1)  # (B,)
            mean_kl = float(kl_per_seq.mean())
            if not math.isfinite(mean_kl):
                raise diverged(f"mean KL is {mean_kl}")

            # 3. Advantages: GAE (γ, λ), whitened per batch; returns = A + V (N+ 6) ----------
            advantages, returns = gae(rewards, ro.values, mask, config.gamma, config.lam)
            if config.whiten_advantages and int(mask.sum()) >= 2:
                advantages = masked_whiten(advantages, mask)  # (B, R)

            # 4. Optimisation: ppo_epochs over shuffled mini-batches, accumulated -----------
            # (several processes: micro-batches dealt out round-robin, gradients summed;
            # FSDP: as many passes on every rank, its reduce-scatter averaging them)
            stats: dict[str, list[float]] = {
                k: [] for k in ("policy_loss", "value_loss", "approx_kl", "clipfrac",
                                "value_clipfrac")
            }  # fmt: skip
            grad_norms: list[float] = []
            batch = len(batch_prompts)
            rows = micro_rows(config.micro_batch_size, config.mini_batch_size, ctx)
            for _ in range(config.ppo_epochs):
                order = torch.randperm(batch, generator=generator)
                for mb in order.split(config.mini_batch_size):
                    optimizer.zero_grad(set_to_none=True)
                    for idx, weight in dealt(mb.split(rows), ctx, fsdp=sharded):
                        idx = idx.to(device)
                        new_logprobs, new_values, _ = forward_response(
                            model, value_head, ro.input_ids[idx], ro.attention_mask[idx],
                            ro.n_response, temperature=config.temperature, pad_id=pad_id,
                        )  # fmt: skip
                        assert new_values is not None
                        # Policy loss: clipped surrogate, PPO eq. 7 (arXiv 1707.06347)
                        pg_loss, pg_stats = policy_loss(
                            new_logprobs, ro.logprobs[idx], advantages[idx], mask[idx],
                            config.clip_range,
                        )  # fmt: skip
                        # Value loss: clipped around the rollout values (N+ 6)
                        vf_loss, vf_stats = value_loss(
                            new_values, ro.values[idx], returns[idx], mask[idx],
                            config.clip_range_value,
                        )  # fmt: skip
                        loss = pg_loss + config.vf_coef * vf_loss
                        # (several processes: a non-finite loss reaches every rank through
                        # the summed gradient, and all stop there together)
                        if world(ctx)[1] == 1 and not torch.isfinite(loss):
                            raise diverged(f"loss is {float(loss)}")
                        (loss * weight).backward()
                        if not weight:  # a pass that only keeps FSDP's ranks in step
                            continue
                        stats["policy_loss"].append(pg_loss.item())
                        stats["value_loss"].append(vf_loss.item())
                        stats["approx_kl"].append(float(pg_stats["approx_kl"]))
                        stats["clipfrac"].append(float(pg_stats["clipfrac"]))
                        stats["value_clipfrac"].append(float(vf_stats["clipfrac"]))
                    if not sharded:
                        sync_grads(params, ctx)
                    grad_norm = whole(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
                    if not torch.isfinite(grad_norm):
                        raise diverged(f"gradient norm is {float(grad_norm)}")
                    grad_norms.append(float(grad_norm))
                    optimizer.step()
            kl_ctl.update(mean_kl, batch)

            # 5. Logging (training notes §PPO 8) ---------------------------------------------
            metrics: dict[str, float] = {
                "step": step,
                "score": float(rm_scores.mean()),
                "reward": float((scores + non_score.sum(dim=1)).mean()),
                "kl": mean_kl,
                "non_score_reward": float(non_score.sum(dim=1).mean()),
                "entropy": float(masked_mean(ro.entropy, mask)),
                **reduce_means(stats, ctx),  # over every rank's micro-batches
                "grad_norm": sum(grad_norms) / len(grad_norms),
                "explained_variance": explained_variance(ro.values, returns, mask),
                "value_mean": float(masked_mean(ro.values, mask)),
                "response_length": float(mask.sum(dim=1).float().mean()),
                "eos_share": float(ro.has_eos.float().mean()),
                "kl_coef": kl_coef,
                "time": time.perf_counter() - tic,
            }
            metrics_per_step.append(metrics)
            if progress is not None:  # every rank: entry.progress writes on rank 0 only
                progress(step, config.steps, metrics)

    # Save (only a completed run gets here; rank 0 alone, FSDP's shards gathered by all) -----
    gathered = None
    if sharded and ctx is not None:
        from worker.distributed.context import full_state_dict

        gathered = (full_state_dict(ctx, model), full_state_dict(ctx, value_head))
    if REWARD_ADAPTER_NAME in model.peft_config:
        model.delete_adapter(REWARD_ADAPTER_NAME)  # the result is the policy alone
    out_dir = Path(out_dir)
    if not is_main(ctx):
        return PPOResult(
            adapter_dir=out_dir / ADAPTER_NAME,
            metrics_per_step=metrics_per_step,
            final=dict(metrics_per_step[-1]),
            model=model,
            value_head=value_head,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    # save_embedding_layers=False: "auto" may look the base up on the hub; the vocabulary
    # size is recorded instead (the tokenizer saved here has it).
    saved: dict[str, Any] = {} if gathered is None else {"state_dict": gathered[0]}
    model.save_pretrained(
        str(out_dir), selected_adapters=[ADAPTER_NAME], save_embedding_layers=False,
        **saved,
    )  # fmt: skip
    value_head.save(out_dir / VALUE_HEAD_FILE, state=None if gathered is None else gathered[1])
    tokenizer.save_pretrained(str(out_dir))
    last = metrics_per_step[-1]
    final: dict[str, Any] = {
        **last,
        "steps_done": len(metrics_per_step),
        "train_seconds": time.perf_counter() - run_start,
        "max_kl": max(m["kl"] for m in metrics_per_step),
        "kl_bound": config.kl_bound,
        "kl_within_bound": None if config.kl_bound is None else last["kl"] <= config.kl_bound,
        **cuts.figures(),  # distinct rollout prompts shortened to fit
    }
    (out_dir / METRICS_FILE).write_text(
        json.dumps(
            {
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
    return PPOResult(
        adapter_dir=out_dir / ADAPTER_NAME,
        metrics_per_step=metrics_per_step,
        final=final,
        model=model,
        value_head=value_head,
    )
