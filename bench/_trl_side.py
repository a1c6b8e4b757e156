"""The TRL side of bench/trl_compare.py: TRL's GRPOTrainer or RLOOTrainer, timed, in TRL's venv.

It runs under bench/.trl-venv/bin/python (trl, peft, torch; not RankLoop's packages), so it
imports nothing of RankLoop: bench/trl_compare.py passes the settings as JSON on stdin and
reads one JSON line back (seconds per update, peak RSS, rewards). `length_reward` is the
fixed reward both sides get; trl_compare.py imports it from here, so it is defined once.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "TRL_SIDE_RESULT "
"""Prefix of the one stdout line that carries the result (TRL and transformers print too)."""


def length_reward(completions: list[str], target_words: int) -> list[float]:
    """A fixed reward both sides optimise: 0 at `target_words` words, -1 per `target_words`
    words away. Cheap and deterministic, so the timings are the trainers' own."""
    return [-abs(len(c.split()) - target_words) / target_words for c in completions]


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """One TRL run as `spec` says; its figures."""
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.pytorch_utils import Conv1D

    torch.set_num_threads(spec["threads"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    peft_config = LoraConfig(  # RankLoop's worker.training.models.lora_config
        r=spec["lora_r"],
        lora_alpha=spec["lora_alpha"],
        lora_dropout=spec["lora_dropout"],
        target_modules="all-linear",
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
        bias="none",
        task_type="CAUSAL_LM",
    )
    target = spec["target_words"]

    def reward(completions: list[str], **_: Any) -> list[float]:
        return length_reward(completions, target)

    rollouts = spec["prompts_per_update"] * spec["group_size"]
    micro = spec["mini_batch"] // spec["grad_accum"]
    # One update = one generation batch reused `epochs` times in mini-batches: optimizer steps
    optimizer_steps = spec["epochs"] * rollouts // spec["mini_batch"]
    step_times: list[float] = []
    rewards: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step_times.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step_times.append(time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    with tempfile.TemporaryDirectory() as out_dir:
        common: dict[str, Any] = {
            "output_dir": out_dir,
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": spec["grad_accum"],
            "generation_batch_size": rollouts,
            "num_generations": spec["group_size"],
            "num_iterations": spec["epochs"],
            "max_completion_length": spec["new_tokens"],
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 1.0,
            "learning_rate": spec["lr"],
            "lr_scheduler_type": "constant",
            "adam_epsilon": spec["adam_eps"],
            "weight_decay": 0.01,  # torch.optim.AdamW's default, which RankLoop uses
            "max_grad_norm": spec["max_grad_norm"],
            "beta": spec["kl_coef"],
            "epsilon": spec["clip_range"],
            "max_steps": spec["updates"] * optimizer_steps,
            "gradient_checkpointing": False,
            "bf16": False,
            "use_cpu": True,
            "disable_dropout": True,
            "logging_steps": 1,
            "report_to": "none",
            "save_strategy": "no",
            "seed": spec["seed"],
        }
        if spec["algorithm"] == "grpo":
            args = trl.GRPOConfig(**common, loss_type="grpo", scale_rewards="group")
            trainer_class = trl.GRPOTrainer
        else:
            args = trl.RLOOConfig(**common, normalize_advantages=False)
            trainer_class = trl.RLOOTrainer
        trainer = trainer_class(
            model=model,
            reward_funcs=reward,
            args=args,
            train_dataset=Dataset.from_dict({"prompt": spec["prompts"]}),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[Clock()],
        )
        cpu = time.process_time()
        trainer.train()
        cpu = time.process_time() - cpu
    ends = step_times[::optimizer_steps]  # train start, then the end of each update
    return {
        "algorithm": spec["algorithm"],
        "step_seconds": [b - a for a, b in zip(ends, ends[1:], strict=False)],
        "cpu_seconds": cpu / spec["updates"],
        "peak_rss_mb": _peak_rss_mb(),
        "trainable_m": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad) / 1e6,
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
    }


if __name__ == "__main__":
    print(RESULT_MARK + json.dumps(run(json.loads(sys.stdin.read()))), flush=True)
