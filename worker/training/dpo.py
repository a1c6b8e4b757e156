"""Direct preference optimisation (DPO, and its IPO variant) of a LoRA policy adapter.

DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) trains the policy on preference
pairs directly, without a reward model or sampling: with
h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)],
the loss is −log σ(β h) (eq. 7); IPO (https://arxiv.org/abs/2310.12036, eq. 17) regresses h
to 1/(2β) instead. β·(log π − log π_ref) is the policy's implicit reward, so "chosen gets the
higher implicit reward" (h > 0) is the held-out accuracy that the promotion gate reads.

One copy of the weights: the policy is the base plus a LoRA adapter "policy"; the reference
is the same model inside `disable_adapter()` (training notes §Adapters).
To start DPO from an SFT model, merge the SFT adapter into the base first, so the reference
is the SFT model. `init_adapter_dir` continues an earlier policy adapter; the reference is
still the base without it. The reference never changes, so its log-probs are computed once
per pair before training. The model stays in eval mode throughout: dropout would make the
policy and reference log-probs disagree even at step 0 (training notes §PPO 5).

A pair may carry a weight (its annotator's reliability): the batch loss is Σ w·loss / Σ w
(docs/training-notes.md §Reward model, the same rule for rankings), weight-0 pairs are not
trained on, and held-out accuracy stays unweighted (heldout_weighted_accuracy beside it).

Log-probs are sums over the response tokens (prompt masked, EOS included), as in the DPO
paper; the IPO loss uses their per-token means, as the IPO paper and TRL do. Held-out
figures (accuracy, log-ratio margin) always use the sums.

Files written into `out_dir` (as sft.py): the peft adapter (adapter_config.json,
adapter_model.safetensors) and metrics.json. Shape letters: B pairs, T tokens, V vocabulary.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from peft import PeftModel
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.rounds.types.dpo import DPOConfig as DPORound
from worker.distributed.context import DistContext
from worker.training.loop import (
    AdapterResult,
    AdapterSteps,
    add_policy_adapter,
    restore_state,
    save_run,
    start_run,
    trainable_state,
)
from worker.training.losses import IGNORE_INDEX, dpo_loss, sequence_logprobs, weighted_mean
from worker.training.outcomes import Progress, ShouldStop
from worker.training.prompts import Prompt, PromptCuts
from worker.training.sft import collate, encode_examples, pad_token_id, save_on_main

STEP_METRICS = ("loss", "chosen_rewards", "rejected_rewards", "reward_margin", "reward_accuracy")
"""Logged every step and averaged per epoch; rewards are the implicit β·log(π/π_ref)."""
Encoded = tuple[list[int], int]
"""(token ids of prompt + response + EOS, number of prompt tokens), from sft.encode_example."""
DPOResult = AdapterResult
"""epochs: means of the step metrics, heldout_accuracy, heldout_logratio, heldout_loss;
steps: step, epoch, loss, chosen/rejected_rewards (β·log-ratio), reward_margin/accuracy."""


# ---------------------------------------------------------------------------------------------
# Config and data
# ---------------------------------------------------------------------------------------------


ROUND = DPORound()
"""A round's DPO settings: the one source of the defaults below that a round sets."""


@dataclass
class DPOConfig:
    """Hyper-parameters of DPO/IPO with a LoRA policy on a frozen base (the reference)."""

    beta: float = ROUND.beta
    """Strength of the pull towards the reference: small β lets the policy move further."""
    loss_type: Literal["sigmoid", "ipo"] = ROUND.loss
    """"sigmoid" = DPO's −log σ(β h); "ipo" = (h − 1/(2β))² on per-token mean log-probs."""
    epochs: int = ROUND.epochs
    """Passes over the training pairs."""
    lr: float = ROUND.learning_rate
    """AdamW learning rate for the adapter (full-weight DPO uses ~5e-7; LoRA takes far more)."""
    batch_size: int = ROUND.batch_size
    """Pairs per optimizer step (each pair is two sequences in the same forward pass)."""
    max_length: int = 512
    """Tokens of prompt + response; longer sequences lose the start of the prompt first."""
    heldout_fraction: float = ROUND.heldout_fraction
    """Share of distinct prompts held out for the accuracy the promotion gate reads (0: none)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    target_modules: list[str] | str = "all-linear"
    """Modules that get LoRA ("all-linear" = every linear layer but the LM head)."""
    seed: int = 0
    """Seeds the held-out split, the shuffling and the LoRA initialisation."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (global L2 norm of the adapter's gradients)."""
    device: str | None = None
    """Device to train on; None keeps the model where it already is."""

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.loss_type not in ("sigmoid", "ipo"):
            raise ValueError(f"loss_type must be 'sigmoid' or 'ipo', got {self.loss_type!r}")
        for name in ("epochs", "batch_size", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 (prompt + response), got {self.max_length}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


@dataclass
class PreferencePair:
    """A prompt and two responses to it, `chosen` preferred over `rejected`."""

    prompt: Prompt
    chosen: str
    rejected: str
    weight: float = 1.0
    """What the pair counts for in the loss: its annotator's reliability weight (1: plain)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight must be finite and >= 0, got {self.weight}")
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are identical: the pair states no preference")


# ---------------------------------------------------------------------------------------------
# Sequence log-probs of chosen and rejected, under the policy or the reference
# ---------------------------------------------------------------------------------------------


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int,
    cuts: PromptCuts | None = None,
) -> list[tuple[Encoded, Encoded]]:
    """(chosen, rejected) encodings per pair: prompt + response + EOS, as SFT encodes them;
    a prompt too long for both is cut the same way in each (`sft.encode_examples`), and noted
    in `cuts`."""
    encoded = []
    for p in pairs:
        chosen, rejected = encode_examples(
            tokenizer, p.prompt, [p.chosen, p.rejected], max_length=max_length, cuts=cuts
        )
        encoded.append((chosen, rejected))
    return encoded


def _logps(
    model: PeftModel, pairs: Sequence[tuple[Encoded, Encoded]], pad_id: int
) -> tuple[Tensor, Tensor]:
    """Summed response log-probs (B, 2) and response token counts (B, 2), [chosen, rejected].

    Chosen and rejected rows share one forward pass of 2B sequences.
    """
    device = next(model.parameters()).device
    rows = [chosen for chosen, _ in pairs] + [rejected for _, rejected in pairs]
    input_ids, attention_mask, labels = collate(rows, pad_id)  # (2B, T) each
    labels = labels.to(device)
    logits = model(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False
    ).logits  # (2B, T, V)
    logps = sequence_logprobs(logits, labels)  # (2B,)
    counts = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1).to(logps.dtype)  # (2B,)
    n = len(pairs)
    return torch.stack([logps[:n], logps[n:]], dim=1), torch.stack([counts[:n], counts[n:]], 1)


@torch.no_grad()
def _all_logps(
    model: PeftModel,
    pairs: Sequence[tuple[Encoded, Encoded]],
    pad_id: int,
    *,
    batch_size: int,
    reference: bool,
) -> tuple[Tensor, Tensor]:
    """(sums (N, 2), counts (N, 2)) for every pair, without gradient, on the CPU."""
    sums, counts = [torch.zeros((0, 2))], [torch.zeros((0, 2))]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        if reference:
            with model.disable_adapter():
                s, c = _logps(model, chunk, pad_id)
        else:
            s, c = _logps(model, chunk, pad_id)
        sums.append(s.float().cpu())
        counts.append(c.float().cpu())
    return torch.cat(sums), torch.cat(counts)


def _heldout_figures(
    policy_sums: Tensor, ref_sums: Tensor, weights: Tensor | None = None
) -> dict[str, float]:
    """Accuracy of the implicit reward (h > 0) and the mean log-ratio margin h, in nats; with
    `weights` (N,), also the accuracy with each pair counted by its weight."""
    h = (policy_sums[:, 0] - ref_sums[:, 0]) - (policy_sums[:, 1] - ref_sums[:, 1])  # (N,)
    figures = {"accuracy": float((h > 0).float().mean()), "logratio": float(h.mean())}
    if weights is not None:
        right = (h > 0).float()  # (N,)
        figures["weighted_accuracy"] = (
            float(weighted_mean(right, weights)) if bool(weights.sum() > 0) else float("nan")
        )
    return figures


def evaluate_pairs(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> dict[str, float]:
    """Held-out accuracy and mean log-ratio margin of a policy adapter against its reference.

    The reference is `model` with its adapter disabled. accuracy = share of pairs with
    h > 0 (a tie, e.g. an untrained adapter, counts as wrong); logratio = mean h.
    """
    if not pairs:
        raise ValueError("no pairs to evaluate")
    pad_id = pad_token_id(tokenizer)
    encoded = encode_pairs(tokenizer, pairs, max_length=max_length)
    was_training = model.training
    model.eval()
    policy, _ = _all_logps(model, encoded, pad_id, batch_size=batch_size, reference=False)
    ref, _ = _all_logps(model, encoded, pad_id, batch_size=batch_size, reference=True)
    model.train(was_training)
    return _heldout_figures(policy, ref)


def heldout_logratio(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    **sizes: int,
) -> float:
    """Mean of [log π(chosen) − log π(rejected)] − [the same under the reference], in nats.

    Positive: the policy prefers the chosen responses more than the reference does.
    `sizes`: batch_size, max_length as `evaluate_pairs` takes them.
    """
    return evaluate_pairs(model, tokenizer, pairs, **sizes)["logratio"]


def pair_accuracy(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    **sizes: int,
) -> float:
    """Share of pairs whose chosen response gets the higher implicit reward β·log(π/π_ref)."""
    return evaluate_pairs(model, tokenizer, pairs, **sizes)["accuracy"]


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_dpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    config: DPOConfig,
    *,
    out_dir: Path,
    init_adapter_dir: Path | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    ctx: DistContext | None = None,
    fsdp: bool = False,
) -> DPOResult:
    """Train the "policy" adapter on preference pairs, save it into `out_dir`, return metrics.

    `model` is the base (earlier adapters merged in; it is the reference) and is modified in
    place: LoRA layers are injected; `result.model` is the PeftModel wrapping it.
    `progress(step, total, metrics)` follows every optimizer step. `should_stop()` is polled
    before each step; True raises TrainingCancelled, and a non-finite loss raises
    TrainingDiverged; neither saves anything.

    With `ctx` of N processes (worker/distributed), the pairs of each global batch are split
    across the ranks, the adapter trains under DDP with the loss scaled so the averaged
    gradient is the one-process one, step figures are reduced, and rank 0 alone saves;
    `fsdp` shards the model (FSDP2) instead of copying it.
    """
    out_dir = Path(out_dir)
    pad_id = pad_token_id(tokenizer)
    distributed = ctx is not None and ctx.distributed

    # Data: held-out prompts never seen in training
    train, heldout, max_length = start_run(model, tokenizer, pairs, config, what="preference pair")
    cuts = PromptCuts()
    # Weight-0 pairs (an unreliable annotator's) add nothing to the weighted loss: not trained on
    weighted = [p for p in train if p.weight > 0]
    if not weighted:
        raise ValueError("no preference pair of weight above 0 to train on")
    train_enc = encode_pairs(tokenizer, weighted, max_length=max_length, cuts=cuts)
    train_weights = torch.tensor([p.weight for p in weighted])  # (N,)
    held_enc = encode_pairs(tokenizer, heldout, max_length=max_length, cuts=cuts)
    held_weights = torch.tensor([p.weight for p in heldout])  # (M,)

    # Model: frozen base (= reference) + trainable LoRA adapter, dropout off throughout
    policy = add_policy_adapter(model, config, dropout=0.0, init_adapter_dir=init_adapter_dir)
    policy.eval()
    # DDP, or FSDP2's shards (before the optimizer takes the parameters)
    wrapped = (
        cast(PeftModel, ctx.wrap(policy, fsdp=fsdp)) if ctx is not None and distributed else policy
    )
    steps = AdapterSteps(
        policy,
        config,
        weight_decay=0.0,
        total_steps=math.ceil(len(train_enc) / config.batch_size) * config.epochs,
        reported=STEP_METRICS,
        progress=progress,
        should_stop=should_stop,
    )

    # Reference log-probs: the reference never changes, so once per pair
    ref_train, train_counts = _all_logps(
        policy, train_enc, pad_id, batch_size=config.batch_size, reference=True
    )  # (N, 2) each
    ref_held, _ = _all_logps(
        policy, held_enc, pad_id, batch_size=config.batch_size, reference=True
    )  # (M, 2)

    def evaluate_heldout() -> dict[str, float] | None:
        if not held_enc:
            return None
        sums, _ = _all_logps(
            policy, held_enc, pad_id, batch_size=config.batch_size, reference=False
        )
        figures = _heldout_figures(sums, ref_held, held_weights)
        # DPO's loss on unseen prompts, the early-stopping criterion: −mean log σ(β h), weighted
        # as training is (unless no held-out pair has weight).
        h = (sums[:, 0] - ref_held[:, 0]) - (sums[:, 1] - ref_held[:, 1])  # (M,)
        losses = -torch.nn.functional.logsigmoid(config.beta * h)  # (M,)
        weighted_loss = bool(held_weights.sum() > 0)
        figures["loss"] = float(
            weighted_mean(losses, held_weights) if weighted_loss else losses.mean()
        )
        return figures

    # The epoch with the lowest held-out loss is the one kept (its adapter weights, copied).
    best: tuple[float, int, dict[str, Tensor]] | None = None

    before = evaluate_heldout()

    # IPO compares per-token means (IPO paper, TRL); DPO compares sums (DPO paper)
    average = config.loss_type == "ipo"
    ref_train_used = ref_train / train_counts.clamp(min=1) if average else ref_train  # (N, 2)

    def step_loss(idx: list[int]) -> tuple[Tensor, dict[str, float]]:
        # Policy log-probs of chosen and rejected, one forward pass
        sums, counts = _logps(policy, [train_enc[i] for i in idx], pad_id)  # (B, 2) each
        logps = sums / counts.clamp(min=1) if average else sums  # (B, 2)
        ref = ref_train_used[idx].to(logps.device)  # (B, 2)

        # DPO / IPO loss on the log-ratios, each pair weighted by its annotator's reliability
        loss, m = dpo_loss(
            logps[:, 0],
            logps[:, 1],
            ref[:, 0],
            ref[:, 1],
            beta=config.beta,
            loss_type=config.loss_type,
            weights=train_weights[idx].to(logps.device),
        )
        return loss, {"loss": loss.item(), **{k: float(v) for k, v in m.items()}}

    def shard_loss(global_idx: list[int]) -> tuple[Tensor, dict[str, float]]:
        # This rank's pairs of the global batch; a spare rank (more ranks than pairs) runs one
        # pair at weight 0 so that it still joins DDP's gradient average.
        assert ctx is not None
        mine = ctx.shard(global_idx)
        idx = mine or global_idx[:1]
        sums, counts = _logps(wrapped, [train_enc[i] for i in idx], pad_id)  # (B, 2) each
        logps = sums / counts.clamp(min=1) if average else sums  # (B, 2)
        ref = ref_train_used[idx].to(logps.device)  # (B, 2)
        w = train_weights[idx].to(logps.device) * (1.0 if mine else 0.0)  # (B,)
        loss, m = dpo_loss(
            logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1],
            beta=config.beta, loss_type=config.loss_type, weights=w,
        )  # fmt: skip
        # Σ w·loss / Σ w over the global batch: this rank's part, × world (DDP averages)
        part = float(w.sum()) / float(train_weights[global_idx].sum())
        n = float(len(mine))
        totals = ctx.all_reduce_sum(
            torch.tensor([loss.item() * part, n, *(float(m[k]) * n for k in STEP_METRICS[1:])])
        )
        figures = {"loss": float(totals[0])}
        for k, v in zip(STEP_METRICS[1:], totals[2:], strict=True):
            figures[k] = float(v) / float(totals[1])  # the plain means over every rank's pairs
        return loss * (part * ctx.world_size), figures

    order_rng = random.Random(config.seed)
    for epoch in range(1, config.epochs + 1):
        order = list(range(len(train_enc)))
        order_rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            step = shard_loss if distributed else step_loss
            steps.take(epoch, step, order[start : start + config.batch_size])

        # Epoch metrics: step means, then the implicit-reward accuracy on unseen prompts
        done = steps.of_epoch(epoch)
        held = evaluate_heldout()
        steps.end_epoch(
            epoch,
            {
                **{k: sum(s[k] for s in done) / len(done) for k in STEP_METRICS},
                "heldout_accuracy": held["accuracy"] if held else None,
                "heldout_logratio": held["logratio"] if held else None,
                "heldout_loss": held["loss"] if held else None,
                "heldout_weighted_accuracy": held["weighted_accuracy"] if held else None,
            },
        )
        if held is not None and (best is None or held["loss"] < best[0]):
            best = (held["loss"], epoch, trainable_state(policy))

    last = steps.epochs[-1]
    if best is not None and best[1] != last["epoch"]:
        restore_state(policy, best[2])  # a later epoch did worse on unseen prompts
        last = steps.epochs[best[1] - 1]

    # Save: adapter first, metrics last (a metrics.json means the run completed)
    final: dict[str, Any] = {
        **{k: last[k] for k in STEP_METRICS},
        "heldout_accuracy": last["heldout_accuracy"],
        "heldout_logratio": last["heldout_logratio"],
        "heldout_weighted_accuracy": last["heldout_weighted_accuracy"],
        "heldout_accuracy_before": before["accuracy"] if before else None,
        "heldout_logratio_before": before["logratio"] if before else None,
        "beta": config.beta,
        "loss_type": config.loss_type,
        "steps": steps.done,
        "epochs": config.epochs,
        "best_epoch": last["epoch"],
        "n_train": len(train),
        "n_train_weight_zero": len(train) - len(weighted),
        "n_heldout": len(heldout),
        **cuts.figures(),  # distinct prompts (training and held-out) shortened to fit
        "train_seconds": steps.train_seconds,
        "continued_from": str(init_adapter_dir) if init_adapter_dir is not None else None,
    }
    if ctx is None or not distributed:
        return save_run(policy, out_dir, config, steps, final)
    return save_on_main(ctx, policy, out_dir, config, steps, final, fsdp=fsdp)
