"""Supervised fine-tuning (SFT) of a LoRA policy adapter on demonstrations.

The InstructGPT recipe's first step (https://arxiv.org/abs/2203.02155 §3.5): maximise
log π(response | prompt) on human-written demonstrations. The loss is next-token
cross-entropy on the response tokens only (`losses.sft_loss`): prompt and padding carry
label IGNORE_INDEX, so the model learns to answer, not to write prompts. Every response ends
with EOS, so the model also learns to stop.

The base model stays frozen; a LoRA adapter named "policy" is trained on top of it (or an
existing adapter is loaded from `init_adapter_dir` and trained further). The adapter is saved
with peft's `save_pretrained` directly into `out_dir`, so
`PeftModel.from_pretrained(base, out_dir)` loads it; `metrics.json` sits next to it. Merge
the adapter into the base (`merge_and_unload`) before PPO or DPO, so that disabling their
adapter gives this SFT model as the reference (training notes §PPO 7).

Packing (`SFTConfig.packing`) puts several demonstrations in one row of `max_length` tokens.
Position ids restart at 0 for every demonstration and no attention mask is passed, which is
how transformers recognises packed rows and builds a block-diagonal causal mask: a token
never attends to another demonstration in its row (checked against unpacked logits in
tests/worker/test_sft.py). Models whose attention ignores this (custom remote code) should
train unpacked.

Files written into `out_dir`:
    adapter_config.json, adapter_model.safetensors   the peft LoRA adapter
    metrics.json                                     config, per-epoch metrics, final metrics

Shape letters: B batch rows, T tokens, V vocabulary.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from peft import PeftModel
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.rounds.types.sft import SFTConfig as SFTRound
from worker.distributed.context import DistContext, full_state_dict
from worker.training.loop import (
    AdapterResult,
    AdapterSteps,
    add_policy_adapter,
    save_run,
    start_run,
)
from worker.training.losses import IGNORE_INDEX, sft_loss
from worker.training.models import encode_prompt, format_prompt
from worker.training.outcomes import Progress, ShouldStop
from worker.training.prompts import Prompt, PromptCuts, fit_prompt, token_limit

SFTResult = AdapterResult
"""epochs: epoch, train_loss, heldout_loss, heldout_perplexity (None without held-out);
steps: step, epoch, loss, tokens."""


# ---------------------------------------------------------------------------------------------
# Config and data
# ---------------------------------------------------------------------------------------------


ROUND = SFTRound()
"""A round's SFT settings: the one source of the defaults below that a round sets."""


@dataclass
class SFTConfig:
    """Hyper-parameters of SFT: LoRA on a frozen base, cross-entropy on response tokens."""

    epochs: int = ROUND.epochs
    """Passes over the training demonstrations."""
    lr: float = ROUND.learning_rate
    """AdamW learning rate; LoRA tolerates ~10x what full fine-tuning uses (~3e-5)."""
    batch_size: int = ROUND.batch_size
    """Rows per optimizer step: demonstrations, or packed rows when `packing` is on."""
    max_length: int = 512
    """Tokens of prompt + response; longer demonstrations lose the start of the prompt first."""
    heldout_fraction: float = ROUND.heldout_fraction
    """Share of distinct prompts held out to measure loss on unseen prompts (0: none)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout inside LoRA; 0 keeps log-probs deterministic (training notes §PPO 5)."""
    target_modules: list[str] | str = "all-linear"
    """Modules that get LoRA ("all-linear" = every linear layer but the LM head)."""
    packing: bool = False
    """Concatenate demonstrations into rows of up to `max_length` tokens (less padding)."""
    seed: int = 0
    """Seeds the held-out split, the shuffling and the LoRA initialisation."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (global L2 norm of the adapter's gradients)."""
    weight_decay: float = 0.0
    """AdamW weight decay on the adapter."""
    device: str | None = None
    """Device to train on; None keeps the model where it already is."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 (prompt + response), got {self.max_length}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class Demonstration:
    """A prompt (text or chat messages) and the response the model should give to it."""

    prompt: Prompt
    response: str

    def __post_init__(self) -> None:
        if not self.response.strip():
            raise ValueError("a demonstration needs a non-empty response")


# ---------------------------------------------------------------------------------------------
# Tokenisation: prompt + response + EOS, labels only on the response
# ---------------------------------------------------------------------------------------------


def encode_example(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, response: str, *, max_length: int
) -> tuple[list[int], int]:
    """(ids, n_prompt): the formatted prompt, the response and EOS; the first n_prompt are prompt.

    Joined as `reward_model.encode_pair` joins them (a space after a prompt ending in a
    non-space, e.g. "Assistant:"), which is how generation's stripped samples follow the
    prompt. Too long for `max_length` or the model's context (the tokenizer's
    model_max_length): the prompt loses its oldest turns, then its start, behind a marker
    (`prompts.fit_prompt`); a response longer than the limit - 1 tokens loses its end (and
    its EOS), so at least one prompt token predicts the response.
    """
    return encode_examples(tokenizer, prompt, [response], max_length=max_length)[0]


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Prompt,
    responses: Sequence[str],
    *,
    max_length: int,
    cuts: PromptCuts | None = None,
) -> list[tuple[list[int], int]]:
    """`encode_example` of each response to one prompt, the prompt cut the same way for all
    (to fit the longest), so that e.g. DPO's chosen and rejected answer the same text; a
    prompt shortened to fit is noted in `cuts`."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: responses could not end")
    prompt_text = format_prompt(tokenizer, prompt)
    joins = bool(prompt_text) and not prompt_text[-1].isspace()
    prompt_ids = encode_prompt(tokenizer, prompt_text)
    limit = token_limit(tokenizer, max_length) or max_length
    response_ids = [
        (
            tokenizer((" " if joins and r[:1] != " " else "") + r, add_special_tokens=False)[
                "input_ids"
            ]
            + [tokenizer.eos_token_id]
        )[: limit - 1]
        for r in responses
    ]
    room = limit - max((len(ids) for ids in response_ids), default=0)
    shared = fit_prompt(tokenizer, prompt, room, ids=prompt_ids)
    if cuts is not None:
        cuts.note(prompt, shared)
    return [(shared.ids + ids, len(shared.ids)) for ids in response_ids]


def _labels(ids: list[int], n_prompt: int) -> list[int]:
    return [IGNORE_INDEX] * n_prompt + ids[n_prompt:]


def collate(
    examples: Sequence[tuple[list[int], int]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad encoded examples into (input_ids, attention_mask, labels), each (B, T)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, (ids, n_prompt) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, : len(ids)] = torch.tensor(_labels(ids, n_prompt))
    return input_ids, attention_mask, labels


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The pad id, refusing pad == EOS (the responses' final EOS would look like padding)."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None or pad == eos:
        raise ValueError("the pad token must exist and differ from EOS: call ensure_pad_token")
    return int(pad)


def build_sft_batch(
    tokenizer: PreTrainedTokenizerBase, demos: Sequence[Demonstration], max_length: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(input_ids, attention_mask, labels), each (B, T), right-padded.

    labels are the input ids with IGNORE_INDEX on prompt and pad positions: the loss is on
    the response tokens and their final EOS only.
    """
    encoded = [
        encode_example(tokenizer, d.prompt, d.response, max_length=max_length) for d in demos
    ]
    return collate(encoded, pad_token_id(tokenizer))


def pack_rows(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Greedy packing in the given order: indices of the examples that share each row.

    An example is never split across rows; a new row starts when the next one would not fit.
    """
    rows: list[list[int]] = []
    used = max_length  # forces a first row
    for i, n in enumerate(lengths):
        if used + n > max_length:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    return rows


def collate_packed(
    rows: Sequence[Sequence[tuple[list[int], int]]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Packed rows into (input_ids, position_ids, labels), each (B, T); pass no attention mask.

    Position ids restart at 0 for each example (and for the trailing padding), which is what
    transformers reads as "separate sequences" when attention_mask is None.
    """
    width = max(sum(len(ids) for ids, _ in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for r, row in enumerate(rows):
        start = 0
        for ids, n_prompt in row:
            end = start + len(ids)
            input_ids[r, start:end] = torch.tensor(ids)
            position_ids[r, start:end] = torch.arange(len(ids))
            labels[r, start:end] = torch.tensor(_labels(ids, n_prompt))
            start = end
        position_ids[r, start:] = torch.arange(width - start)  # padding: its own sequence
    return input_ids, position_ids, labels


def build_packed_batch(
    tokenizer: PreTrainedTokenizerBase, demos: Sequence[Demonstration], max_length: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(input_ids, position_ids, labels), each (B, T): the demonstrations packed in order."""
    encoded = [
        encode_example(tokenizer, d.prompt, d.response, max_length=max_length) for d in demos
    ]
    rows = pack_rows([len(ids) for ids, _ in encoded], max_length)
    return collate_packed([[encoded[i] for i in row] for row in rows], pad_token_id(tokenizer))


def _perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf


# ---------------------------------------------------------------------------------------------
# Loss over a batch, held-out evaluation
# ---------------------------------------------------------------------------------------------

Batch = tuple[dict[str, Tensor], Tensor]
"""(model keyword arguments, labels (B, T))."""


def _make_batches(
    encoded: Sequence[tuple[list[int], int]],
    rows: Sequence[Sequence[int]],
    *,
    batch_size: int,
    pad_id: int,
    packed: bool,
    device: torch.device,
) -> Iterator[Batch]:
    """Group rows (lists of example indices) into batches, built as they are needed."""
    for start in range(0, len(rows), batch_size):
        chunk = [[encoded[i] for i in row] for row in rows[start : start + batch_size]]
        if packed:
            input_ids, position_ids, labels = collate_packed(chunk, pad_id)
            inputs = {"input_ids": input_ids, "position_ids": position_ids}
        else:
            input_ids, attention_mask, labels = collate([row[0] for row in chunk], pad_id)
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        yield {k: v.to(device) for k, v in inputs.items()}, labels.to(device)


def _batch_loss(model: PeftModel, batch: Batch) -> tuple[Tensor, int]:
    """(mean cross-entropy over the batch's response tokens, how many such tokens)."""
    inputs, labels = batch
    # use_cache=False: a cache would also stop transformers from detecting packed rows.
    # (Packed rows end in pad tokens without an attention mask: transformers warns once.)
    logits = model(**inputs, use_cache=False).logits  # (B, T, V)
    n_tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
    return sft_loss(logits, labels), n_tokens


@torch.no_grad()
def _mean_loss(model: PeftModel, batches: Sequence[Batch]) -> float | None:
    """Token-weighted mean loss (so batches of different size count per token)."""
    total, count = 0.0, 0
    for batch in batches:
        loss, n = _batch_loss(model, batch)
        total += float(loss) * n
        count += n
    return total / count if count else None


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    demos: Sequence[Demonstration],
    config: SFTConfig,
    *,
    out_dir: Path,
    init_adapter_dir: Path | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> SFTResult:
    """Train the "policy" adapter on `demos`, save it into `out_dir`, return the metrics.

    `model` is the base (earlier adapters merged in) and is modified in place: LoRA layers
    are injected; `result.model` is the PeftModel wrapping it. `progress(step, total, metrics)`
    follows every optimizer step. `should_stop()` is polled before each step; True raises
    TrainingCancelled, and a non-finite loss raises TrainingDiverged; neither saves anything.

    With `ctx` of N processes (worker/distributed), the rows of each global batch are split
    across the ranks, the adapter trains under DDP with the loss scaled so the averaged
    gradient is the one-process one, logged losses are reduced, and rank 0 alone saves;
    `fsdp` shards the model (FSDP2) instead of copying it.
    """
    out_dir = Path(out_dir)
    pad_id = pad_token_id(tokenizer)
    distributed = ctx is not None and ctx.distributed

    # Data: held-out prompts never seen in training
    train, heldout, max_length = start_run(model, tokenizer, demos, config, what="demonstration")

    cuts = PromptCuts()

    def encode(demo: Demonstration) -> tuple[list[int], int]:
        (encoded,) = encode_examples(
            tokenizer, demo.prompt, [demo.response], max_length=max_length, cuts=cuts
        )
        return encoded

    train_enc = [encode(d) for d in train]
    held_enc = [encode(d) for d in heldout]
    order_rng = random.Random(config.seed)
    if config.packing:
        # Packed once, in a shuffled order; the rows are then reshuffled every epoch.
        pack_order = list(range(len(train_enc)))
        order_rng.shuffle(pack_order)
        rows = [
            [pack_order[i] for i in row]
            for row in pack_rows([len(train_enc[i][0]) for i in pack_order], max_length)
        ]
    else:
        rows = [[i] for i in range(len(train_enc))]

    # Model: frozen base + trainable LoRA adapter
    policy = add_policy_adapter(
        model, config, dropout=config.lora_dropout, init_adapter_dir=init_adapter_dir
    )
    # DDP, or FSDP2's shards (before the optimizer takes the parameters)
    wrapped = (
        cast(PeftModel, ctx.wrap(policy, fsdp=fsdp)) if ctx is not None and distributed else policy
    )
    steps = AdapterSteps(
        policy,
        config,
        weight_decay=config.weight_decay,
        total_steps=math.ceil(len(rows) / config.batch_size) * config.epochs,
        reported=("loss",),
        progress=progress,
        should_stop=should_stop,
    )
    device = steps.params[0].device

    # Held-out batches are never packed: their loss must not depend on packing.
    held_batches = list(
        _make_batches(
            held_enc,
            [[i] for i in range(len(held_enc))],
            batch_size=config.batch_size,
            pad_id=pad_id,
            packed=False,
            device=device,
        )
    )
    policy.eval()
    heldout_before = _mean_loss(policy, held_batches)

    def step_loss(batch: Batch) -> tuple[Tensor, dict[str, float]]:
        loss, n_tokens = _batch_loss(policy, batch)  # cross-entropy on response tokens
        return loss, {"loss": loss.item(), "tokens": n_tokens}

    def shard_loss(global_rows: list[list[int]]) -> tuple[Tensor, dict[str, float]]:
        # This rank's rows of the global batch; a spare rank (more ranks than rows) runs one
        # row at weight 0 so that it still joins DDP's gradient average.
        assert ctx is not None
        mine = ctx.shard(global_rows)
        (batch,) = _make_batches(
            train_enc,
            mine or global_rows[:1],
            batch_size=len(global_rows),
            pad_id=pad_id,
            packed=config.packing,
            device=device,
        )
        loss, n_tokens = _batch_loss(wrapped, batch)  # (mean over this rank's tokens)
        n_tokens = n_tokens if mine else 0
        totals = ctx.all_reduce_sum(torch.tensor([loss.item() * n_tokens, float(n_tokens)]))
        n_all = max(float(totals[1]), 1.0)
        # The global token mean is Σ_r n_r·loss_r / N; DDP averages over ranks, hence × world
        scaled = loss * (n_tokens * ctx.world_size / n_all)
        return scaled, {"loss": float(totals[0]) / n_all, "tokens": int(totals[1])}

    for epoch in range(1, config.epochs + 1):
        shuffled = list(rows)
        order_rng.shuffle(shuffled)
        policy.train()  # LoRA dropout, if any, applies; load_causal_lm zeroes the base's
        if distributed:
            for start in range(0, len(shuffled), config.batch_size):
                steps.take(epoch, shard_loss, shuffled[start : start + config.batch_size])
        train_batches = () if distributed else _make_batches(
            train_enc,
            shuffled,
            batch_size=config.batch_size,
            pad_id=pad_id,
            packed=config.packing,
            device=device,
        )
        for batch in train_batches:
            steps.take(epoch, step_loss, batch)

        # Held-out loss on unseen prompts, per epoch; the training loss per token
        policy.eval()
        held_loss = _mean_loss(policy, held_batches)
        done = steps.of_epoch(epoch)
        total_tokens = sum(int(s["tokens"]) for s in done)
        steps.end_epoch(
            epoch,
            {
                "train_loss": sum(s["loss"] * s["tokens"] for s in done) / max(total_tokens, 1),
                "heldout_loss": held_loss,
                "heldout_perplexity": _perplexity(held_loss),
            },
        )

    # Save: adapter first, metrics last (a metrics.json means the run completed)
    last = steps.epochs[-1]
    final: dict[str, Any] = {
        "train_loss": last["train_loss"],
        "heldout_loss": last["heldout_loss"],
        "heldout_perplexity": last["heldout_perplexity"],
        "heldout_loss_before": heldout_before,
        "heldout_perplexity_before": _perplexity(heldout_before),
        "steps": steps.done,
        "epochs": config.epochs,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "rows": len(rows),
        "packing": config.packing,
        **cuts.figures(),  # distinct prompts (training and held-out) shortened to fit
        "train_seconds": steps.train_seconds,
        "continued_from": str(init_adapter_dir) if init_adapter_dir is not None else None,
    }
    if ctx is None or not distributed:
        return save_run(policy, out_dir, config, steps, final)
    return save_on_main(ctx, policy, out_dir, config, steps, final, fsdp=fsdp)


def save_on_main(
    ctx: DistContext,
    policy: PeftModel,
    out_dir: Path,
    config: Any,
    steps: AdapterSteps,
    final: dict[str, Any],
    *,
    fsdp: bool = False,
) -> AdapterResult:
    """Rank 0 saves (the DDP replicas are equal; FSDP's shards are gathered first, by every
    rank); every rank gets the run's result."""
    gathered = full_state_dict(ctx, policy) if fsdp else None
    if ctx.is_main:
        result = save_run(policy, out_dir, config, steps, final, state_dict=gathered)
    else:
        result = AdapterResult(
            adapter_dir=out_dir, epochs=steps.epochs, steps=steps.records, final=final, model=policy
        )
    ctx.barrier()
    return result
