"""Reward model: a causal LM with a LoRA adapter ("reward") and a scalar head.

Trained on annotator rankings with the K-way loss of InstructGPT §3.5
(https://arxiv.org/abs/2203.02155): the K samples of one ranking are scored once, in the
same forward pass, and the loss averages -log σ(r_w - r_l) over all cross-group pairs
(`worker.training.losses.ranking_loss`). The K samples share their prompt, so it is run
once per ranking and its keys/values are reused by the K responses
(`RewardModel.forward_shared_prefix`). A ranking may carry a weight (its annotator's
reliability): the batch loss is then Σ w·loss / Σ w over its rankings (docs/training-notes.md
§Reward model); held-out accuracy stays unweighted, and is scored on people's rankings alone
when a judge's train beside them (`split_heldout`). The TRL-style baseline that makes every
pair its own example lives with its benchmark (bench/pairwise_reward_model.py).

The score is read at the last non-pad token of prompt + response, and rewards are
normalised to mean 0, std 1 on the reference policy's samples (docs/training-notes.md
§Reward model), once, at the end of `train_reward_model`.

Files written by `RewardModel.save` (and `train_reward_model`):
    adapter/               peft LoRA adapter (save_pretrained)
    head.safetensors       the scalar head
    reward_model.json      base model id, normalisation, metrics
    tokenizer files        the tokenizer, pad token included
"""

from __future__ import annotations

import inspect
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from worker.distributed.context import DistContext, Methods, full_state_dict
from worker.training.loop import restore_state, split_by_prompt, trainable_state
from worker.training.losses import ranking_loss
from worker.training.models import (
    base_model_of,
    encode_prompt,
    ensure_pad_token,
    format_prompt,
    input_vocab_size,
    load_causal_lm,
    load_tokenizer,
    lora_config,
    pick_device,
)
from worker.training.outcomes import Progress, ShouldStop, TrainingCancelled
from worker.training.prompts import Prompt, PromptCuts, fit_prompt, prompt_key, token_limit

ADAPTER_NAME = "reward"
META_FILE = "reward_model.json"
HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"


@dataclass
class RewardModelConfig:
    """Hyper-parameters of reward-model training (LoRA on a frozen base + scalar head)."""

    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout inside LoRA; 0: dropout is off in every model (docs/training-notes.md §PPO 5)."""
    target_modules: list[str] | str = "all-linear"
    """Modules that get LoRA ("all-linear" = every linear layer but the LM head)."""
    lr: float = 1e-3
    """AdamW learning rate for the adapter and the head."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    epochs: int = 1
    """Passes over the training rankings; InstructGPT uses one to avoid overfitting."""
    max_steps: int | None = None
    """End training after this many optimizer steps in all, saved as usual (None: every epoch;
    the benchmark's budget of sequences per setting)."""
    batch_size: int = 4
    """Rankings per optimizer step (each brings all of its K samples)."""
    max_length: int = 512
    """Tokens of prompt + response; longer inputs lose the start of the prompt."""
    seed: int = 0
    """Seeds the held-out split, shuffling, LoRA and head initialisation."""
    heldout_fraction: float = 0.1
    """Share of distinct prompts held out; no prompt is both trained on and held out."""
    center_coef: float = 0.01
    """Weight of c·mean((r_w + r_l)^2), which keeps raw rewards near 0 (TRL uses 0.01)."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold."""
    warmup_steps: int = 5
    """Linear learning-rate warm-up, then constant."""
    eval_every: int = 0
    """Optimizer steps between held-out evaluations; 0 = only at the end of each epoch."""
    target_accuracy: float | None = None
    """Stop as soon as held-out pairwise accuracy reaches this (None: train all epochs)."""
    patience: int | None = None
    """Early stopping: end training after this many epochs without a lower held-out loss, and
    keep the weights of the best epoch (None: train every epoch, keep the last). The untrained
    model (epoch 0) competes too: a run that never beats it keeps a model that ranks nothing."""
    lr_retries: int = 2
    """With early stopping: when the first epoch's held-out loss is above the untrained model's,
    the learning rate overshot; start again from the initial weights at lr / `lr_backoff`, at
    most this many times. The learning rate is thus chosen by the held-out curve."""
    lr_backoff: float = 3.0
    """Divisor of the learning rate at each retry."""
    eval_batch_size: int = 32
    """Sequences per forward pass when scoring without gradients."""
    device: str | None = None
    """Device to train on; None picks CUDA when present, else CPU."""
    dtype: str = "auto"
    """Base-model dtype ("auto": bf16/fp16 on CUDA, float32 on CPU); adapter and head stay fp32."""
    share_prompt: bool = True
    """K-way training runs a ranking's shared prompt once and lets its K responses attend to
    the cached keys/values (`RewardModel.forward_shared_prefix`); False: K full sequences."""
    pad_to_multiple_of: int = 1
    """Pad every batch's length up to a multiple of this. On a GPU, 8 or 16 bounds the number
    of distinct tensor shapes, whose attention kernels some backends plan once per shape; on a
    CPU the extra padding only costs time, hence 1."""

    def __post_init__(self) -> None:
        positive = (
            "lora_r",
            "lora_alpha",
            "epochs",
            "batch_size",
            "max_length",
            "eval_batch_size",
            "pad_to_multiple_of",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        for name in ("weight_decay", "center_coef", "max_grad_norm", "warmup_steps", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_retries < 0 or self.lr_backoff <= 1.0:
            raise ValueError(
                f"lr_retries must be >= 0 and lr_backoff > 1, got {self.lr_retries}, "
                f"{self.lr_backoff}"
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.target_accuracy is not None and not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")


@dataclass
class RankingExample:
    """One annotated ranking: `groups[i]` is the tie group of `responses[i]`, 0 = best."""

    prompt: Prompt
    responses: list[str]
    groups: list[int]
    weight: float = 1.0
    """What the ranking counts for in the loss: its annotator's reliability weight (1: plain;
    0: trains nothing, still scored held out)."""
    human: bool = True
    """A person's ranking; False: a model judge's, never held out beside people's
    (`split_heldout`)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight must be finite and >= 0, got {self.weight}")
        if len(self.responses) != len(self.groups):
            raise ValueError("responses and groups must have the same length")
        if len(self.responses) < 2:
            raise ValueError("a ranking needs at least 2 responses")
        if any(g < 0 for g in self.groups):
            raise ValueError(f"groups must be >= 0 (0 = best), got {self.groups}")

    @property
    def n_pairs(self) -> int:
        """Cross-group pairs this ranking yields; pairs inside a tie group are not used."""
        return sum(a < b for a in self.groups for b in self.groups)


def split_heldout(
    examples: Sequence[RankingExample], *, heldout_fraction: float, seed: int
) -> tuple[list[RankingExample], list[RankingExample]]:
    """(train, held-out) with no prompt on both sides. With people's and a judge's rankings,
    the held-out prompts are drawn from people's and hold people's rankings only: judge labels
    must not grade the promotion gate, and a judge's ranking of a held-out prompt is dropped
    (training on it would leak the prompt). All people's, or all a judge's (pure RLAIF): the
    plain split by prompt."""
    if all(e.human for e in examples) or not any(e.human for e in examples):
        return split_by_prompt(examples, heldout_fraction=heldout_fraction, seed=seed)
    _, heldout = split_by_prompt(
        [e for e in examples if e.human], heldout_fraction=heldout_fraction, seed=seed
    )
    held = {prompt_key(e.prompt) for e in heldout}
    return [e for e in examples if prompt_key(e.prompt) not in held], heldout


@dataclass
class RewardModelResult:
    """What a training run produced; `model` is ready to `score` without reloading."""

    out_dir: Path
    model: RewardModel = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    epochs: list[dict[str, float]]
    """Per-epoch metrics: loss, train/held-out accuracy, margin, reward mean/std, passes."""
    evaluations: list[dict[str, float]]
    """Every held-out evaluation (per epoch and every `eval_every` steps)."""
    heldout_accuracy: float | None
    """Share of held-out pairs ordered as labelled (unweighted: it measures against labels)."""
    heldout_accuracy_interval: tuple[float, float] | None
    """95 % interval of the held-out accuracy, rankings resampled (their pairs are not
    independent: K samples make C(K,2) pairs)."""
    heldout_ranking_counts: list[tuple[float, int]]
    """(pairs ordered right, pairs) per held-out ranking, to pool with another run's."""
    best_epoch: int | None
    """The epoch whose weights were kept (lowest held-out loss) when early stopping is on;
    0 when no epoch beat the untrained model."""
    reward_mean: float
    reward_std: float
    train_forward_passes: int
    """Sequences scored with gradients while training."""
    eval_forward_passes: int
    """Sequences scored without gradients (held-out evaluation and normalisation)."""
    train_seconds: float
    """Wall time of the training steps alone (evaluation excluded)."""
    steps: int
    n_train: int
    n_heldout: int
    reached_target: bool
    stopped: bool
    """True when `max_steps` ended training before its epochs (a cancel raises instead)."""
    lr_trials: list[dict[str, float]] = field(default_factory=list)
    """Each learning rate tried: lr, the untrained and the first epoch's held-out loss."""
    lr: float | None = None
    """The learning rate of the kept run."""
    prompts_turns_dropped: int = 0
    """Distinct prompts (training and held-out) that lost their oldest turns to fit."""
    prompts_truncated: int = 0
    """Distinct prompts left-truncated to fit (`prompts.fit_prompt`)."""
    heldout_weighted_accuracy: float | None = None
    """Held-out accuracy with each ranking's pairs counted by its weight (equal to
    `heldout_accuracy` when every weight is 1)."""
    n_train_weight_zero: int = 0
    """Training rankings of weight 0, left out of the batches (they would add nothing)."""


# Model -----------------------------------------------------------------------------------


class RewardModel(nn.Module):
    """r(x, y): LoRA-adapted LM body, hidden state at the last real token, linear head."""

    def __init__(self, lm: PeftModel, *, base_model: str) -> None:
        super().__init__()
        self.lm = lm
        self.base_model = base_model
        hidden = base_model_of(lm).config.get_text_config().hidden_size
        self.head = nn.Linear(hidden, 1, device=base_model_of(lm).device)
        # Zero head: the untrained model scores every answer alike (held-out loss exactly ln 2),
        # so the first epochs fit a probe on the base's features instead of undoing a random one,
        # and "no better than untrained" is a clean baseline for early stopping.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.reward_mean = 0.0
        self.reward_std = 1.0
        # transformers 5 renamed forward's `past_key_values` to `cache`; accept both spellings.
        body = cast(nn.Module, base_model_of(lm).base_model)
        self._cache_kwarg = (
            "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
        )

    @classmethod
    def create(
        cls, base: PreTrainedModel, config: RewardModelConfig, *, base_model: str
    ) -> RewardModel:
        """Wrap `base` (modified in place: LoRA layers are injected) with a fresh adapter."""
        lora = lora_config(
            base,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.target_modules,
        )
        return cls(get_peft_model(base, lora, adapter_name=ADAPTER_NAME), base_model=base_model)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Raw scores (N,) for right- or left-padded input_ids (N, T)."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (N, T)
        hidden = self._hidden(input_ids, attention_mask, position_ids)  # (N, T, H)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        last = (attention_mask * positions).argmax(-1)  # (N,) last non-pad token
        return self._read(hidden, last)

    def forward_shared_prefix(
        self,
        prefix_ids: Tensor,
        prefix_mask: Tensor,
        suffix_ids: Tensor,
        suffix_mask: Tensor,
        owner: Tensor,
    ) -> Tensor:
        """Raw scores (N,) of the sequences prefix[owner[n]] + suffix[n], each prefix run once.

        The K samples of a ranking share its prompt. Attention is causal, so the prompt's
        keys and values do not depend on the response: computing them once and letting the
        K responses attend to copies of them gives the scores of `forward` on the full
        sequences, with gradients flowing back into the prompt pass through the copies.

        prefix_ids, prefix_mask: (B, P), left-padded. suffix_ids, suffix_mask: (N, S),
        right-padded, at least one real token each. owner: (N,) row of each suffix's prefix.
        """
        cache = self._new_cache()
        prefix_positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
        self._hidden(prefix_ids, prefix_mask, prefix_positions, cache=cache)  # fills the cache
        if cache.get_seq_length() != prefix_ids.shape[1]:  # e.g. gradient checkpointing drops it
            raise RuntimeError("the model did not fill the prompt's key/value cache")
        cache.batch_select_indices(owner)  # keys/values per layer: (B, h, P, d) -> (N, h, P, d)
        attention_mask = torch.cat([prefix_mask[owner], suffix_mask], dim=1)  # (N, P + S)
        prefix_len = prefix_mask.sum(-1)[owner].unsqueeze(1)  # (N, 1)
        position_ids = prefix_len + (suffix_mask.cumsum(-1) - 1).clamp(min=0)  # (N, S)
        hidden = self._hidden(suffix_ids, attention_mask, position_ids, cache=cache)  # (N, S, H)
        last = suffix_mask.sum(-1) - 1  # (N,) last real token of each suffix
        return self._read(hidden, last)

    @contextmanager
    def scoring(self) -> Iterator[None]:
        """Eval mode and, when the base's layers carry another adapter too, the reward adapter
        active; both restored afterwards.

        Switching adapters with peft's set_adapter also sets which adapter is trainable, so
        the other adapter (PPO's policy) is made active and trainable again on the way out.
        """
        was_training = self.training
        previous = self.lm.active_adapter
        self.eval()
        if previous != ADAPTER_NAME:
            self.lm.set_adapter(ADAPTER_NAME, inference_mode=True)
        try:
            yield
        finally:
            if previous != ADAPTER_NAME:
                self.lm.set_adapter(previous)  # the reward adapter is frozen again
            self.train(was_training)

    def _hidden(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        *,
        cache: DynamicCache | None = None,
    ) -> Tensor:
        """Last hidden states (N, T, H); with `cache`, input_ids continue the cached tokens."""
        hf_model = base_model_of(self.lm)
        body = hf_model.base_model  # the transformer without its LM head
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
        }
        if cache is not None:
            kwargs[self._cache_kwarg] = cache
            kwargs["use_cache"] = True
        if body is not hf_model:
            return body(**kwargs).last_hidden_state  # (N, T, H)
        return hf_model(**kwargs, output_hidden_states=True).hidden_states[-1]  # (N, T, H)

    def _new_cache(self) -> DynamicCache:
        config = base_model_of(self.lm).config
        try:
            return DynamicCache(config=config)  # per-layer kinds (e.g. sliding windows)
        except TypeError:  # transformers 4.x
            return DynamicCache()

    def _read(self, hidden: Tensor, last: Tensor) -> Tensor:
        """Head on the hidden state (N, T, H) at index last (N,) of each row: scores (N,)."""
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (N, H)
        return self.head(h.to(self.head.weight.dtype)).squeeze(-1)  # (N,)

    def save(
        self,
        out_dir: Path,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        extra: dict[str, Any] | None = None,
        state: dict[str, Tensor] | None = None,
    ) -> None:
        """Write adapter, head and metadata; metadata already in out_dir is kept and updated.

        `state`: the trainable weights gathered whole (`full_state_dict`), for a model whose
        parameters are FSDP shards."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        lm_state = head_state = None
        if state is not None:
            lm_state = {k.removeprefix("lm."): v for k, v in state.items() if k.startswith("lm.")}
            head_state = {
                k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")
            }
        # save_embedding_layers=False: "auto" would look the base up on the hub.
        self.lm.save_pretrained(
            str(out_dir / ADAPTER_DIR),
            selected_adapters=[ADAPTER_NAME],
            save_embedding_layers=False,
            **cast(dict[str, Any], {} if lm_state is None else {"state_dict": lm_state}),
        )
        save_file(
            {k: v.detach().cpu() for k, v in (head_state or self.head.state_dict()).items()},
            out_dir / HEAD_FILE,
        )
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
        meta_path = out_dir / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta.update(extra or {})
        meta.update(
            base_model=self.base_model,
            reward_mean=self.reward_mean,
            reward_std=self.reward_std,
            vocab_size=input_vocab_size(base_model_of(self.lm)),
            adapter_name=ADAPTER_NAME,
        )
        meta_path.write_text(json.dumps(meta, indent=2))


def load_reward_model(
    path: Path,
    *,
    base: PreTrainedModel | PeftModel | None = None,
    device: str | None = None,
    dtype: str = "auto",
) -> RewardModel:
    """Load a saved reward model; `base` reuses an already loaded model (modified in place).

    `base` may be a plain model or a PeftModel that carries another adapter (PPO's policy on
    the same base weights): the reward adapter is then added next to it, frozen, and scoring
    switches to it and back, so that one copy of the base serves both (docs/training-notes.md
    §Adapters).
    The tokenizer to use with it is saved alongside: `load_tokenizer(path)`.
    """
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    if base is None:
        base = load_causal_lm(meta["base_model"], device=device, dtype=dtype)
    if base.get_input_embeddings().num_embeddings < meta["vocab_size"]:
        if isinstance(base, PeftModel):
            raise ValueError("the reward model's vocabulary is larger than the policy's")
        base.resize_token_embeddings(meta["vocab_size"], mean_resizing=False)  # the added pad
    adapter_dir = path / ADAPTER_DIR / meta.get("adapter_name", ADAPTER_NAME)
    if isinstance(base, PeftModel):
        if ADAPTER_NAME in base.peft_config:
            raise ValueError(f"the model already has an adapter named {ADAPTER_NAME!r}")
        base.load_adapter(str(adapter_dir), adapter_name=ADAPTER_NAME, is_trainable=False)
        lm = base
    else:
        lm = PeftModel.from_pretrained(base, adapter_dir, adapter_name=ADAPTER_NAME)
    rm = RewardModel(lm, base_model=meta["base_model"])
    rm.head.load_state_dict(load_file(path / HEAD_FILE, device=str(rm.device)))
    rm.reward_mean, rm.reward_std = meta["reward_mean"], meta["reward_std"]
    rm.eval()
    return rm


# Tokenisation ----------------------------------------------------------------------------


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, response: str, *, max_length: int
) -> list[int]:
    """Ids of prompt (as `format_prompt` renders it) followed by the response.

    Prompt and response are tokenised apart, as generation produced them; a space joins
    them when the prompt ends in a non-space (e.g. "Assistant:"), matching the stripped
    text `generate_samples` returns. Too long for `max_length` or the model's context: the
    prompt loses its oldest turns, then its start, behind a marker (`prompts.fit_prompt`).
    """
    return encode_responses(tokenizer, prompt, [response], max_length=max_length)[0]


def encode_responses(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Prompt,
    responses: Sequence[str],
    *,
    max_length: int,
    cuts: PromptCuts | None = None,
) -> list[list[int]]:
    """`encode_pair` of each response, rendering and tokenising the shared prompt once; a
    prompt shortened to fit is noted in `cuts`."""
    prompt_text = format_prompt(tokenizer, prompt)
    joins = bool(prompt_text) and not prompt_text[-1].isspace()
    texts = [(" " if joins and r[:1] != " " else "") + r for r in responses]
    prompt_ids = encode_prompt(tokenizer, prompt_text)
    response_ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    # Too long for max_length or the model's context: the prompt loses its oldest turns,
    # then its start (`prompts.fit_prompt`), the same for every response, so rows keep one
    # prefix.
    limit = token_limit(tokenizer, max_length)
    if limit is None:
        return [prompt_ids + ids for ids in response_ids]
    room = limit - max((len(ids) for ids in response_ids), default=0)
    if room >= 1:
        shared = fit_prompt(tokenizer, prompt, room, ids=prompt_ids)
        if cuts is not None:
            cuts.note(prompt, shared)
        return [shared.ids + ids for ids in response_ids]
    rows = []
    for ids in response_ids:  # a response about as long as the limit: its end, after the prompt
        fitted = fit_prompt(tokenizer, prompt, max(limit - len(ids), 0), ids=prompt_ids)
        if cuts is not None:
            cuts.note(prompt, fitted)
        rows.append(fitted.ids + ids[-limit:])
    return rows


@dataclass(frozen=True)
class EncodedRanking:
    """A ranking tokenised once before training: `rows[i]` = ids of prompt + response i."""

    rows: list[list[int]]
    groups: list[int]
    weight: float = 1.0


def encode_rankings(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[RankingExample],
    *,
    max_length: int,
    cuts: PromptCuts | None = None,
) -> list[EncodedRanking]:
    """Tokenise each ranking once, before training, instead of again at every epoch."""
    return [
        EncodedRanking(
            encode_responses(tokenizer, e.prompt, e.responses, max_length=max_length, cuts=cuts),
            e.groups,
            e.weight,
        )
        for e in examples
    ]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _collate(
    rows: list[list[int]], pad_id: int, device: torch.device, *, multiple: int = 1
) -> tuple[Tensor, Tensor]:
    """Right-padded ids and mask (N, T), T the longest row rounded up to `multiple`."""
    width = _round_up(max(len(r) for r in rows), multiple)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (N, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (N, T)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids.to(device), attention_mask.to(device)


class Scoring(TypedDict):
    """How `score` and `evaluate` batch sequences scored without gradients."""

    batch_size: int
    max_length: int
    pad_to_multiple_of: int


@torch.no_grad()
def score(
    rm: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 512,
    pad_to_multiple_of: int = 1,
    raw: bool = False,
) -> list[float]:
    """Rewards, one per (prompt, response): normalised (mean 0, std 1 on the reference policy's
    samples), or with `raw` the head's output as it is. Batched by similar length to waste
    little on padding."""
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    rows = [
        encode_pair(tokenizer, p, r, max_length=max_length)
        for p, r in zip(prompts, responses, strict=True)
    ]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = [0.0] * len(rows)
    with rm.scoring():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            input_ids, attention_mask = _collate(
                [rows[i] for i in idx],
                tokenizer.pad_token_id,
                rm.device,
                multiple=pad_to_multiple_of,
            )
            for i, s in zip(idx, rm(input_ids, attention_mask).float().tolist(), strict=True):
                out[i] = s
    return out if raw else [(s - rm.reward_mean) / rm.reward_std for s in out]


def normalise(rm: RewardModel, raw: Sequence[float]) -> tuple[float, float]:
    """Set rm's reward mean/std from its raw scores of the reference policy's samples, so that
    `score` gives those samples mean 0, std 1; returns (mean, std)."""
    if len(raw) < 2:
        raise ValueError("normalisation needs at least 2 reference samples")
    values = torch.tensor(list(raw))
    rm.reward_mean = float(values.mean())
    rm.reward_std = max(float(values.std()), 1e-6)
    return rm.reward_mean, rm.reward_std


# Training --------------------------------------------------------------------------------


def _samples(examples: Sequence[RankingExample]) -> tuple[list[Prompt], list[str]]:
    """(prompt, response) of every sample of `examples`, ranking by ranking, as two lists."""
    return [e.prompt for e in examples for _ in e.responses], [
        r for e in examples for r in e.responses
    ]


def _shared_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """Tokens all rows start with (the prompt, unless truncation cut rows differently),
    leaving every row at least one token of its own to read the score at."""
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for t in range(n):
        if any(r[t] != first[t] for r in rows):
            return t
    return n


def _ranking_batch(
    rm: RewardModel,
    batch: Sequence[EncodedRanking],
    pad_id: int,
    *,
    share_prompt: bool,
    pad_to_multiple_of: int = 1,
    via: nn.Module | None = None,
) -> tuple[Tensor, Tensor, int]:
    """Score all samples of `batch` in one batched forward; return (B, K) scores and groups.

    `via`: `Methods(rm)` wrapped by DDP/FSDP, which the calls then go through (DDP averages
    the gradients of calls through its forward only).

    With `share_prompt`, each ranking's common prefix (its prompt) is run once for its K
    samples (`RewardModel.forward_shared_prefix`); otherwise each sample is a full sequence,
    as also happens when some ranking's rows share no prefix (truncation cut them apart).
    """
    rows = [row for r in batch for row in r.rows]
    prefix_lens = [_shared_prefix_len(r.rows) for r in batch] if share_prompt else []
    if share_prompt and min(prefix_lens) > 0:
        # Prompts left-padded (B, P), so that every response starts right after its prompt.
        p_width = _round_up(max(prefix_lens), pad_to_multiple_of)
        prefix_ids = torch.full((len(batch), p_width), pad_id, dtype=torch.long)  # (B, P)
        prefix_mask = torch.zeros((len(batch), p_width), dtype=torch.long)  # (B, P)
        for b, (r, n) in enumerate(zip(batch, prefix_lens, strict=True)):
            prefix_ids[b, p_width - n :] = torch.tensor(r.rows[0][:n], dtype=torch.long)
            prefix_mask[b, p_width - n :] = 1
        suffixes = [row[n:] for r, n in zip(batch, prefix_lens, strict=True) for row in r.rows]
        suffix_ids, suffix_mask = _collate(
            suffixes, pad_id, rm.device, multiple=pad_to_multiple_of
        )  # (N, S)
        owner = torch.repeat_interleave(
            torch.arange(len(batch)), torch.tensor([len(r.rows) for r in batch])
        ).to(rm.device)  # (N,)
        args = (prefix_ids.to(rm.device), prefix_mask.to(rm.device), suffix_ids, suffix_mask, owner)
        flat = (
            rm.forward_shared_prefix(*args)
            if via is None
            else via("forward_shared_prefix", *args)
        ).float()  # (N,)
    else:
        input_ids, attention_mask = _collate(
            rows, pad_id, rm.device, multiple=pad_to_multiple_of
        )  # (N, T)
        flat = (
            rm(input_ids, attention_mask)
            if via is None
            else via("forward", input_ids, attention_mask)
        ).float()  # (N,)
    k = max(len(r.rows) for r in batch)
    scores = flat.new_zeros((len(batch), k))  # (B, K)
    groups = torch.full((len(batch), k), -1, dtype=torch.long, device=flat.device)  # (B, K)
    offset = 0
    for b, r in enumerate(batch):
        n = len(r.rows)
        scores[b, :n] = flat[offset : offset + n]
        groups[b, :n] = torch.tensor(r.groups, device=flat.device)
        offset += n
    return scores, groups, len(rows)


@torch.no_grad()
def evaluate(
    rm: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[RankingExample],
    *,
    batch_size: int = 32,
    max_length: int = 512,
    pad_to_multiple_of: int = 1,
) -> dict[str, float]:
    """Held-out pairwise accuracy, mean margin and loss; raw reward mean/std; passes used.

    The loss (early stopping's criterion) weighs rankings as training does, unless no held-out
    ranking has weight; accuracy counts every pair alike, weighted_accuracy by its weight."""
    prompts, responses = _samples(examples)
    flat = score(
        rm,
        tokenizer,
        prompts,
        responses,
        batch_size=batch_size,
        max_length=max_length,
        pad_to_multiple_of=pad_to_multiple_of,
        raw=True,
    )
    k = max(len(e.responses) for e in examples)
    scores = torch.zeros((len(examples), k))  # (B, K)
    groups = torch.full((len(examples), k), -1, dtype=torch.long)  # (B, K)
    offset = 0
    for b, e in enumerate(examples):
        n = len(e.responses)
        scores[b, :n] = torch.tensor(flat[offset : offset + n])
        groups[b, :n] = torch.tensor(e.groups)
        offset += n
    weights = [e.weight for e in examples if e.n_pairs > 0]  # those of `counts`' rankings
    loss, metrics = ranking_loss(
        scores,
        groups,
        weights=torch.tensor([e.weight for e in examples]) if any(weights) else None,
    )
    values = torch.tensor(flat)
    counts = ranking_accuracy_counts(scores, groups)
    low, high = accuracy_interval(counts)
    return {
        "loss": float(loss),
        "accuracy": float(metrics["accuracy"]),
        "weighted_accuracy": weighted_accuracy(counts, weights),
        "accuracy_low": low,
        "accuracy_high": high,
        "ranking_counts": counts,  # type: ignore[dict-item]
        "margin": float(metrics["margin"]),
        "pairs": int(metrics["pairs"]),
        "reward_mean": float(values.mean()),
        "reward_std": float(values.std()) if len(values) > 1 else 0.0,
        "forward_passes": len(flat),
    }


def ranking_accuracy_counts(scores: Tensor, groups: Tensor) -> list[tuple[float, int]]:
    """(pairs ordered right, pairs) of each ranking that has a pair; a tied score is half right.

    scores, groups: (B, K) as for `ranking_loss`.
    """
    valid = groups >= 0  # (B, K)
    beats = groups.unsqueeze(2) < groups.unsqueeze(1)  # (B, K, K): i's group is above j's
    pair_mask = valid.unsqueeze(2) & valid.unsqueeze(1) & beats
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # (B, K, K): winner minus loser
    right = torch.where(diff > 0, 1.0, torch.where(diff == 0, 0.5, 0.0))  # (B, K, K)
    correct = torch.where(pair_mask, right, 0.0).sum(dim=(1, 2))  # (B,)
    pairs = pair_mask.sum(dim=(1, 2))  # (B,)
    return [(float(c), int(n)) for c, n in zip(correct, pairs, strict=True) if n > 0]


def weighted_accuracy(counts: Sequence[Sequence[float]], weights: Sequence[float]) -> float:
    """Pairwise accuracy with each ranking's (right, pairs) counted by its weight; NaN when no
    pair has weight. `counts` as `ranking_accuracy_counts` gives them, `weights` aligned."""
    total = sum(w * n for w, (_, n) in zip(weights, counts, strict=True))
    right = sum(w * c for w, (c, _) in zip(weights, counts, strict=True))
    return right / total if total > 0 else float("nan")


def accuracy_interval(
    counts: Sequence[Sequence[float]],
    *,
    confidence: float = 0.95,
    rounds: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of pairwise accuracy from per-ranking (right, pairs) counts,
    resampling whole rankings: pairs of one ranking share samples, so resampling pairs would
    make the interval too narrow."""
    if not counts:
        return float("nan"), float("nan")
    table = torch.tensor([[float(c), float(n)] for c, n in counts])  # (B, 2)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(table), (rounds, len(table)), generator=generator)  # (R, B)
    accuracies = table[picks, 0].sum(1) / table[picks, 1].sum(1)  # (R,)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(accuracies, torch.tensor([tail, 1 - tail], dtype=accuracies.dtype))
    return float(low), float(high)


def _optimizer(
    params: list[nn.Parameter], config: RewardModelConfig, lr: float
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a linear warm-up over `config.warmup_steps`, then a constant rate."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup)
    )


def train_reward_model(
    base_name_or_path: str,
    examples: Sequence[RankingExample],
    config: RewardModelConfig,
    *,
    out_dir: Path,
    reference: tuple[Sequence[Prompt], Sequence[str]] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    training_units: Callable[[list[EncodedRanking]], list[EncodedRanking]] = list,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> RewardModelResult:
    """Train with the K-way loss: one example per ranking, its K samples in one forward pass.

    Rewards end normalised on `reference`, the (prompts, responses) of the reference policy's
    samples, or on every annotated sample when it holds fewer than 2. `progress(step, total,
    metrics)` follows every optimizer step; `should_stop()` is polled before each, and True
    raises TrainingCancelled with nothing saved. `training_units` makes the training examples
    of the tokenised rankings: each ranking, or each of its pairs for the benchmark's
    pairwise baseline (bench/pairwise_reward_model.py).

    With `ctx` of N processes (worker/distributed), each global batch of `batch_size` rankings
    is split across the ranks, the trainable part is wrapped in DDP (FSDP2 with `fsdp`), the
    loss is scaled so the averaged gradient is the one-process gradient of the same batch, the
    logged figures are reduced over ranks, and rank 0 alone saves. Held-out evaluation and
    normalisation run on every rank alike, so every rank takes the same decisions.
    """
    distributed = ctx is not None and ctx.distributed
    # 1. Model: the base with a fresh LoRA adapter and a zero head ---------------------------
    device = str(ctx.device) if ctx is not None and distributed else config.device or pick_device()
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(base_name_or_path)
    base = load_causal_lm(base_name_or_path, device=device, dtype=config.dtype)
    ensure_pad_token(tokenizer, base)
    rm = RewardModel.create(base, config, base_model=str(base_name_or_path))
    via = (
        ctx.wrap(Methods(rm, "forward_shared_prefix"), fsdp=fsdp)
        if ctx is not None and distributed
        else None
    )
    params = [p for p in rm.parameters() if p.requires_grad]  # after wrapping: FSDP's shards
    initial = trainable_state(rm)

    # 2. Data: no prompt on both sides of the split, people's rankings alone held out beside a
    # judge's; training rankings tokenised once -----------------------------------------------
    train, heldout = split_heldout(
        examples, heldout_fraction=config.heldout_fraction, seed=config.seed
    )
    # Tokenising counts as training time. Rankings whose samples all tie give no pair, and
    # rankings of weight 0 add nothing to the weighted loss: neither is batched.
    tic = time.perf_counter()
    cuts = PromptCuts()
    units = training_units(
        encode_rankings(
            tokenizer,
            [e for e in train if e.n_pairs > 0 and e.weight > 0],
            max_length=config.max_length,
            cuts=cuts,
        )
    )
    train_seconds = time.perf_counter() - tic
    encode_rankings(tokenizer, heldout, max_length=config.max_length, cuts=cuts)  # to count
    if not units:
        raise ValueError(
            "no training ranking of weight above 0 has two different groups: nothing to learn"
        )
    steps_per_epoch = math.ceil(len(units) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs

    # 3. Held-out evaluation; with early stopping the untrained model competes as epoch 0 ----
    evaluations: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    train_passes = eval_passes = step = 0
    reached = stopped = False
    scoring = Scoring(
        batch_size=config.eval_batch_size,
        max_length=config.max_length,
        pad_to_multiple_of=config.pad_to_multiple_of,
    )

    def run_eval(epoch: float) -> dict[str, float] | None:
        nonlocal eval_passes, reached
        if not heldout:
            return None
        m = evaluate(rm, tokenizer, heldout, **scoring)
        eval_passes += int(m["forward_passes"])
        m = {"epoch": epoch, "step": step, "train_forward_passes": train_passes, **m}
        m["train_seconds"] = train_seconds
        evaluations.append(m)
        if config.target_accuracy is not None and m["accuracy"] >= config.target_accuracy:
            reached = True
        return m

    # (held-out loss, epoch, weights, metrics) of the best epoch so far
    best: tuple[float, int, dict[str, Tensor], dict[str, float]] | None = None
    if config.patience is not None and heldout:
        untrained = run_eval(0.0)
        assert untrained is not None
        best = (untrained["loss"], 0, initial, untrained)
    lr, lr_trials = config.lr, list[dict[str, float]]()
    optimizer, schedule = _optimizer(params, config, lr)
    order_rng = random.Random(config.seed)

    # 4. Epochs of shuffled batches: score the K samples of B rankings, one optimizer step;
    # the loss weighs each ranking by its annotator's reliability (1 when not weighted) -------
    epoch = 0
    while epoch < config.epochs:
        order = list(range(len(units)))
        order_rng.shuffle(order)
        losses, accuracies = [], []
        rm.train()
        for start in range(0, len(order), config.batch_size):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"stopped at step {step} of {total_steps}", steps_done=step)
            tic = time.perf_counter()
            batch = [units[i] for i in order[start : start + config.batch_size]]
            # This rank's rankings; with more ranks than rankings, a spare rank scores one at
            # weight 0 so that it still joins the gradient average.
            share = ctx.shard(batch) if ctx is not None and distributed else batch
            mine = share or [replace(batch[0], weight=0.0)]
            scores, groups, n_seq = _ranking_batch(  # (B, K) each; n_seq real samples
                rm,
                mine,
                tokenizer.pad_token_id,
                # Under FSDP a block's shards are gathered again for backward by a hook on its
                # outputs, which the prompt's cached keys/values bypass: full sequences there.
                share_prompt=config.share_prompt and not fsdp,
                pad_to_multiple_of=config.pad_to_multiple_of,
                via=via,
            )
            weights = torch.tensor([u.weight for u in mine], device=scores.device)  # (B,)
            loss, metrics = ranking_loss(
                scores, groups, center_coef=config.center_coef, weights=weights
            )
            optimizer.zero_grad(set_to_none=True)
            if ctx is not None and distributed:
                # Σ_b w_b·loss_b / Σ_b w_b over the global batch: this rank's part of it, times
                # N because DDP averages the N ranks' gradients.
                part = sum(u.weight for u in mine) / sum(u.weight for u in batch)
                loss = loss * part
                (loss * ctx.world_size).backward()
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            if ctx is not None and distributed:
                pairs = float(metrics["pairs"]) if share else 0.0
                totals = ctx.all_reduce_sum(
                    torch.tensor([loss.item(), float(metrics["accuracy"]) * pairs, pairs, n_seq])
                )
                n_seq = int(totals[3])
                loss = totals[0]
                metrics = {"accuracy": totals[1] / totals[2].clamp(min=1)}
            train_seconds += time.perf_counter() - tic
            train_passes += n_seq
            step += 1
            losses.append(loss.detach().item())
            accuracies.append(float(metrics["accuracy"]))
            if progress is not None:
                progress(step, total_steps, {"loss": losses[-1], "accuracy": accuracies[-1]})
            if config.eval_every and step % config.eval_every == 0:
                run_eval(epoch + (start + config.batch_size) / len(order))
                rm.train()
            if reached or step == config.max_steps:
                stopped = not reached
                break

        # 5. Epoch end: held-out metrics (those of a mid-epoch evaluation at this very step) --
        last = evaluations[-1] if evaluations and evaluations[-1]["step"] == step else None
        held = last or run_eval(epoch + 1.0)
        epochs.append(
            {
                "epoch": epoch + 1,
                "loss": sum(losses) / len(losses),
                "train_accuracy": sum(accuracies) / len(accuracies),
                "heldout_accuracy": held["accuracy"] if held else float("nan"),
                "heldout_margin": held["margin"] if held else float("nan"),
                "heldout_loss": held["loss"] if held else float("nan"),
                "reward_mean": held["reward_mean"] if held else float("nan"),
                "reward_std": held["reward_std"] if held else float("nan"),
                "train_forward_passes": train_passes,
                "train_seconds": train_seconds,
            }
        )
        if reached or stopped:
            break
        if best is not None and held is not None:
            if epoch == 0 and best[1] == 0:
                lr_trials.append(
                    {"lr": lr, "untrained_loss": best[0], "first_epoch_loss": held["loss"]}
                )
                if held["loss"] > best[0] and len(lr_trials) <= config.lr_retries:
                    # The first epoch made held-out predictions worse than none: the step
                    # size overshot. Start again from the same initial weights, smaller.
                    lr /= config.lr_backoff
                    restore_state(rm, initial)
                    optimizer, schedule = _optimizer(params, config, lr)
                    order_rng = random.Random(config.seed)
                    epochs.clear()
                    del evaluations[1:]  # keep the untrained model's, drop the discarded run's
                    total_steps += steps_per_epoch
                    continue
            if held["loss"] < best[0]:
                best = (held["loss"], epoch + 1, trainable_state(rm), held)
            elif epoch + 1 - best[1] >= (config.patience or 0):
                break  # no lower held-out loss for `patience` epochs
        epoch += 1

    # 6. Early stopping keeps the weights of the epoch with the lowest held-out loss ----------
    best_epoch: int | None = None
    final_eval = evaluations[-1] if evaluations else None
    if best is not None:
        _, best_epoch, state, final_eval = best
        restore_state(rm, state)

    # 7. Normalise: mean 0, std 1 on the reference policy's samples, the reward scale PPO's
    # KL coefficient is chosen for (docs/training-notes.md §Reward model) -------------------
    samples = reference if reference is not None and len(reference[1]) >= 2 else None
    # none given: every annotated sample
    raw = score(rm, tokenizer, *(samples or _samples(examples)), raw=True, **scoring)
    normalise(rm, raw)
    eval_passes += len(raw)
    rm.eval()

    # 8. Save the model and its figures; return it ready to score ----------------------------
    interval = (final_eval["accuracy_low"], final_eval["accuracy_high"]) if final_eval else None
    figures: dict[str, Any] = {
        "epochs": epochs,
        "heldout_accuracy": final_eval["accuracy"] if final_eval else None,
        "heldout_accuracy_interval": interval,
        "heldout_weighted_accuracy": final_eval["weighted_accuracy"] if final_eval else None,
        "n_train_weight_zero": sum(e.weight == 0 for e in train),
        "best_epoch": best_epoch,
        "lr": lr,
        "lr_trials": lr_trials,
        "train_forward_passes": train_passes,
        "n_train": len(train),
        "n_heldout": len(heldout),
        **cuts.figures(),
    }
    extra = {"method": "kway", "config": asdict(config), **figures}
    if ctx is None or not distributed:
        rm.save(Path(out_dir), tokenizer=tokenizer, extra=extra)
    else:
        gathered = full_state_dict(ctx, rm) if fsdp else None  # every rank takes part
        if ctx.is_main:
            rm.save(Path(out_dir), tokenizer=tokenizer, extra=extra, state=gathered)
        ctx.barrier()
    return RewardModelResult(
        out_dir=Path(out_dir),
        model=rm,
        tokenizer=tokenizer,
        evaluations=evaluations,
        heldout_ranking_counts=list(cast(Any, final_eval["ranking_counts"])) if final_eval else [],
        reward_mean=rm.reward_mean,
        reward_std=rm.reward_std,
        eval_forward_passes=eval_passes,
        train_seconds=train_seconds,
        steps=step,
        reached_target=reached,
        stopped=stopped,
        **figures,
    )
