"""The training loop SFT and DPO share; the loss is the part each brings.

Both train a LoRA adapter named "policy" on a frozen base, epoch by epoch, on examples split
by prompt, and measure the held-out prompts after every epoch. sft.py and dpo.py each read
top to bottom around these pieces:

    train, heldout, max_length = start_run(...)  # device, seed, split by prompt, token budget
    policy = add_policy_adapter(base, config, ...) # frozen base + trainable LoRA "policy"
    steps = AdapterSteps(policy, config, ...)      # AdamW on the adapter
    for epoch in 1..epochs:
        for batch in batches:
            steps.take(epoch, step_loss, batch)    # cancel? loss, finite? backward, clip, step
        steps.end_epoch(epoch, held-out figures)
    save_run(policy, out_dir, ...)                 # adapter first, metrics.json last

Nothing is saved unless the run completes: a cancel raises TrainingCancelled, a non-finite
loss TrainingDiverged (worker/training/outcomes.py).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from peft import PeftModel, get_peft_model
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.models import lora_config, move_to
from worker.training.outcomes import Progress, ShouldStop, TrainingCancelled, TrainingDiverged
from worker.training.prompts import Prompt, prompt_key, token_limit

ADAPTER_NAME = "policy"
"""Name of the trained adapter inside the PeftModel; on disk the adapter sits in out_dir."""
METRICS_FILE = "metrics.json"


class AdapterConfig(Protocol):
    """The settings SFTConfig and DPOConfig share (each documents them)."""

    lr: float
    max_length: int
    heldout_fraction: float
    seed: int
    max_grad_norm: float
    device: str | None


@dataclass
class AdapterResult:
    """What an SFT or DPO run produced; `model` is the trained PeftModel, usable as it is."""

    adapter_dir: Path
    epochs: list[dict[str, Any]]
    """Per epoch: the trainer's figures, the held-out ones, steps and seconds so far."""
    steps: list[dict[str, float]]
    """Per optimizer step: step, epoch and the trainer's step figures (loss first)."""
    final: dict[str, Any]
    """The kept epoch's figures, held-out figures before training, counts and timings."""
    model: PeftModel = field(repr=False)


# ---------------------------------------------------------------------------------------------
# Data: held-out prompts never seen in training
# ---------------------------------------------------------------------------------------------


class _HasPrompt(Protocol):
    prompt: Prompt


ItemT = TypeVar("ItemT", bound=_HasPrompt)


def split_by_prompt(
    items: Sequence[ItemT], *, heldout_fraction: float, seed: int
) -> tuple[list[ItemT], list[ItemT]]:
    """(train, held-out) with every prompt on one side only, so held-out figures are honest.

    With a positive fraction and at least 2 distinct prompts, both sides get at least one.
    """
    keys = list(dict.fromkeys(prompt_key(item.prompt) for item in items))
    random.Random(seed).shuffle(keys)
    n_held = round(heldout_fraction * len(keys))
    if heldout_fraction > 0 and len(keys) >= 2:
        n_held = min(max(n_held, 1), len(keys) - 1)
    held = set(keys[:n_held])
    train = [item for item in items if prompt_key(item.prompt) not in held]
    heldout = [item for item in items if prompt_key(item.prompt) in held]
    return train, heldout


def start_run(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[ItemT],
    config: AdapterConfig,
    *,
    what: str,
) -> tuple[list[ItemT], list[ItemT], int]:
    """(train, held-out, max_length): the model on its device, torch seeded, the split by
    prompt, and the tokens a sequence may take (`max_length`, or less if the context is)."""
    if config.device is not None:
        move_to(model, config.device)
    torch.manual_seed(config.seed)
    train, heldout = split_by_prompt(
        items, heldout_fraction=config.heldout_fraction, seed=config.seed
    )
    if not train:
        raise ValueError(f"no {what} to train on")
    max_length = token_limit(tokenizer, config.max_length, model) or config.max_length
    return train, heldout, max_length


# ---------------------------------------------------------------------------------------------
# Model: frozen base + trainable LoRA adapter (ppo.py uses this too)
# ---------------------------------------------------------------------------------------------


class LoraSettings(Protocol):
    """The LoRA shape a trainer's config names (SFTConfig, DPOConfig, PPOConfig)."""

    @property
    def lora_r(self) -> int: ...
    @property
    def lora_alpha(self) -> int: ...
    @property
    def target_modules(self) -> list[str] | str | None: ...


def add_policy_adapter(
    model: PreTrainedModel,
    lora: LoraSettings,
    *,
    dropout: float,
    init_adapter_dir: Path | None,
) -> PeftModel:
    """Wrap the base (modified in place) with a trainable "policy" adapter, new or loaded.

    A loaded adapter keeps its own LoRA shape; `lora` and `dropout` then do not apply.
    """
    if isinstance(model, PeftModel):
        raise TypeError(
            "pass the base model: merge earlier adapters into it (merge_and_unload) first, "
            "or continue one through init_adapter_dir"
        )
    if init_adapter_dir is not None:
        return PeftModel.from_pretrained(
            model, str(init_adapter_dir), adapter_name=ADAPTER_NAME, is_trainable=True
        )
    config = lora_config(
        model,
        r=lora.lora_r,
        alpha=lora.lora_alpha,
        dropout=dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config, adapter_name=ADAPTER_NAME)


def trainable_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the trainable weights (the frozen base is left out: it never moves)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def restore_state(module: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Put back the weights `trainable_state` copied."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name in state:
                param.copy_(state[name])


# ---------------------------------------------------------------------------------------------
# Optimizer steps
# ---------------------------------------------------------------------------------------------

BatchT = TypeVar("BatchT")
StepLoss = Callable[[BatchT], tuple[Tensor, dict[str, float]]]
"""A batch's loss (a scalar with gradient) and the step's figures, `loss` among them."""


class AdapterSteps:
    """AdamW on the adapter, one optimizer step at a time, each step done the same way.

    A step polls `should_stop` first (True raises TrainingCancelled), refuses a non-finite
    loss (TrainingDiverged), clips the gradients' global L2 norm, times itself (forward pass
    included), records {"step", "epoch", **figures} and reports progress(step, total,
    {the `reported` figures, "epoch"}).
    """

    def __init__(
        self,
        policy: PeftModel,
        config: AdapterConfig,
        *,
        weight_decay: float,
        total_steps: int,
        reported: Sequence[str],
        progress: Progress | None,
        should_stop: ShouldStop | None,
    ) -> None:
        self.params = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=weight_decay)
        self.max_grad_norm = config.max_grad_norm
        self.total_steps = total_steps
        self.reported = tuple(reported)
        self.progress = progress
        self.should_stop = should_stop
        self.done = 0
        """Optimizer steps taken."""
        self.train_seconds = 0.0
        """Time spent inside steps; held-out evaluation is not counted."""
        self.records: list[dict[str, float]] = []
        self.epochs: list[dict[str, Any]] = []

    def take(self, epoch: int, step_loss: StepLoss[BatchT], batch: BatchT) -> None:
        """One optimizer step on `step_loss(batch)` (epoch counts from 1)."""
        if self.should_stop is not None and self.should_stop():
            raise TrainingCancelled(
                f"stopped at step {self.done} of {self.total_steps}",
                steps_done=self.done,
                metrics_per_step=self.records,
            )
        tic = time.perf_counter()
        loss, figures = step_loss(batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"non-finite loss {loss.item()} at step {self.done + 1}",
                step=self.done + 1,
                metrics_per_step=self.records,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.train_seconds += time.perf_counter() - tic
        self.done += 1
        self.records.append({"step": self.done, "epoch": epoch, **figures})
        if self.progress is not None:
            shown = {k: figures[k] for k in self.reported}
            self.progress(self.done, self.total_steps, {**shown, "epoch": float(epoch)})

    def of_epoch(self, epoch: int) -> list[dict[str, float]]:
        """The step records of one epoch."""
        return [r for r in self.records if r["epoch"] == epoch]

    def end_epoch(self, epoch: int, figures: dict[str, Any]) -> dict[str, Any]:
        """Record an epoch's figures, with the steps and training seconds so far."""
        record = {
            "epoch": epoch,
            **figures,
            "steps": self.done,
            "train_seconds": self.train_seconds,
        }
        self.epochs.append(record)
        return record


# ---------------------------------------------------------------------------------------------
# Save: adapter first, metrics last (a metrics.json means the run completed)
# ---------------------------------------------------------------------------------------------


def save_adapter(
    policy: PeftModel, out_dir: Path, *, state_dict: dict[str, Tensor] | None = None
) -> None:
    """Write the "policy" adapter's files directly into out_dir (peft would nest them).

    peft saves a non-default adapter under out_dir/<name>/; moving the files up lets
    `PeftModel.from_pretrained(base, out_dir)` load it. save_embedding_layers=False: "auto"
    would look the base model up on the hub. `state_dict`: the weights gathered whole
    (worker/distributed `full_state_dict`) when the policy's parameters are FSDP shards.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    gathered: dict[str, Any] = {} if state_dict is None else {"state_dict": state_dict}
    with tempfile.TemporaryDirectory(dir=out_dir) as staging:
        policy.save_pretrained(
            staging, selected_adapters=[ADAPTER_NAME], save_embedding_layers=False, **gathered
        )
        for path in (Path(staging) / ADAPTER_NAME).iterdir():
            path.replace(out_dir / path.name)


def save_run(
    policy: PeftModel,
    out_dir: Path,
    config: Any,
    steps: AdapterSteps,
    final: dict[str, Any],
    *,
    state_dict: dict[str, Tensor] | None = None,
) -> AdapterResult:
    """Save the adapter, then metrics.json (config, epochs, final); return the result."""
    save_adapter(policy, out_dir, state_dict=state_dict)
    (out_dir / METRICS_FILE).write_text(
        json.dumps({"config": asdict(config), "epochs": steps.epochs, "final": final}, indent=2)
    )
    return AdapterResult(
        adapter_dir=out_dir, epochs=steps.epochs, steps=steps.records, final=final, model=policy
    )
