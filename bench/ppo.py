"""PPO seconds per update and peak memory: one base with adapters vs separate models.

Default layout "shared" (what a round does when its reward model was trained on the policy's
base, which is the default):
    policy     base + LoRA adapter "policy"            one copy of the base weights
    reference  the same base, adapter disabled         no extra weights
    value      zero-initialised linear head            H + 1 parameters
    reward     adapter "reward" + head on the SAME base (`ppo.SharedBaseReward`), switched on
               only while scoring
`--reward-own-base` also runs "rm-own-base": the reward model on its own copy of the base (what
a round does after SFT or with `reference: previous`, when the policy's base holds merged
adapters the reward model was not trained on). `--separate-models` also runs the layout TRL's
PPO trainer used: a full-parameter policy, a separate reference copy, a separate reward model
and a full-parameter critic (base body + value head), each trained with its own AdamW.

The reward model (random adapter and head) is made and saved first, in a process of its own;
each layout then runs in a fresh process, so its peak RSS (/proc/self/status VmHWM) is its own;
on CUDA the peak allocated GPU memory is printed too.

    .venv/bin/python -m bench.ppo                       # builds a random 12x768 GPT-2 (~86M)
    .venv/bin/python -m bench.ppo --reward-own-base --separate-models --steps 1
    .venv/bin/python -m bench.ppo --model /path/to/model --device cuda
    .venv/bin/python -m bench.ppo --layers 24 --width 1280 --steps 1   # ~0.47B parameters
    .venv/bin/python -m bench.ppo --layers 28 --width 2048 --steps 1 --dtype bf16  # ~1.4B

Measured (issue 6's notes): 1.4B in bf16, one update, shared layout: 5.4 GB peak RSS on
2 CPU cores (85 s); on an NVIDIA H200, 11 s and 3.9 GB of peak allocated GPU memory.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench._process import run_in_process

app = typer.Typer(add_completion=False)
console = Console()

LAYOUTS = {
    "shared": "one base copy: policy = LoRA adapter 'policy', reference = adapter disabled, "
    "value = zero-init head on the policy's last hidden state, RM = adapter 'reward' + head "
    "on the same base",
    "rm-own-base": "two base copies: policy, reference and value head as in 'shared'; RM = "
    "its own base copy + 'reward' adapter + head",
    "separate": "four base copies: full-parameter policy, separate frozen reference, separate "
    "RM (base + 'reward' adapter + head), full-parameter critic (base body + value head)",
}


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MB (VmHWM = peak RSS, VmRSS = current RSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def weights_mb(*models: Any) -> float:
    """Bytes of the models' parameters and buffers, each tensor counted once, in MB.

    RSS right after loading says little: safetensors weights are memory-mapped and only
    become resident when a forward pass touches them.
    """
    seen: dict[int, int] = {}
    for model in models:
        for t in [*model.parameters(), *model.buffers()]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values()) / 2**20


def build_random_gpt2(
    out_dir: Path, *, n_layer: int = 12, n_embd: int = 768, dtype: Any = None
) -> Path:
    """A GPT-2-shaped model (vocab 2048) with random weights, saved like a hub checkpoint.

    Its tokenizer is trained on the shipped tiny corpus, so nothing is downloaded. It is
    saved in `dtype` (default float32), as hub checkpoints are saved in the dtype they are
    used in: loading fp32 files into bf16 would keep the memory-mapped fp32 file pages
    resident next to the bf16 copy and inflate the peak RSS measured.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from worker.training.tiny_model import corpus_documents, train_tokenizer

    vocab = 2048
    tokenizer = train_tokenizer(corpus_documents(), vocab_size=vocab)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=512,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_embd // 64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def bench_prompts() -> list[str]:
    """The user turns of the tiny corpus: short, realistic prompts."""
    from worker.training.tiny_model import corpus_documents

    return [
        line.removeprefix("User: ")
        for doc in corpus_documents()
        for line in doc.splitlines()
        if line.startswith("User: ")
    ]


def _save_reward_model(model_dir: str, out_dir: str, args: dict[str, Any]) -> None:
    """A reward model with a random adapter and head, saved as a round's RM stage saves one."""
    import torch

    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
    from worker.training.reward_model import RewardModel, RewardModelConfig

    tokenizer = load_tokenizer(model_dir)
    base = load_causal_lm(model_dir, device=args["device"], dtype=args["dtype"])
    ensure_pad_token(tokenizer, base)
    torch.manual_seed(args["seed"])
    RewardModel.create(base, RewardModelConfig(), base_model=model_dir).save(
        Path(out_dir), tokenizer=tokenizer
    )


def _run(layout: str, model_dir: str, rm_dir: str, args: dict[str, Any]) -> dict[str, Any]:
    """One layout in a fresh process; returns its figures."""
    import torch

    from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
    from worker.training.ppo import PPOConfig, SharedBaseReward, train_ppo
    from worker.training.reward_model import load_reward_model, score

    torch.set_num_threads(args["threads"])
    device = args["device"]
    config = PPOConfig(
        steps=args["steps"],
        batch_size=args["batch"],
        mini_batch_size=args["mini_batch"],
        grad_accum=args["grad_accum"],
        ppo_epochs=args["ppo_epochs"],
        max_new_tokens=args["new_tokens"],
        lr=3e-6 if layout == "separate" else 5e-5,  # full weights vs LoRA (training notes §PPO 6)
        seed=args["seed"],
        device=device,
    )
    tokenizer = load_tokenizer(model_dir)
    prompts = bench_prompts()
    if layout == "shared":
        base = load_causal_lm(model_dir, device=device, dtype=args["dtype"])
        ensure_pad_token(tokenizer, base)
        n_base = sum(p.numel() for p in base.parameters())
        reward = SharedBaseReward(Path(rm_dir), batch_size=config.micro_batch_size)
        cpu = time.process_time()
        with tempfile.TemporaryDirectory() as out_dir:
            result = train_ppo(base, tokenizer, prompts, reward, config, out_dir=Path(out_dir))
        cpu = time.process_time() - cpu
        step_seconds = [m["time"] for m in result.metrics_per_step]
        n_trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
        n_trainable += sum(p.numel() for p in result.value_head.parameters())
        weights = weights_mb(result.model, result.value_head)
    else:
        rm = load_reward_model(Path(rm_dir), device=device, dtype=args["dtype"])
        n_base = sum(p.numel() for n, p in rm.lm.named_parameters() if "lora_" not in n)

        def score_fn(prompts: list, responses: list[str]) -> list[float]:
            return score(rm, tokenizer, prompts, responses, batch_size=config.micro_batch_size)

        if layout == "separate":
            cpu = time.process_time()  # its models' loading included
            weights, step_seconds, n_trainable = _separate_models(
                model_dir, tokenizer, prompts, score_fn, config, args["dtype"]
            )
            weights += weights_mb(rm)
            cpu = time.process_time() - cpu
        else:
            base = load_causal_lm(model_dir, device=device, dtype=args["dtype"])
            ensure_pad_token(tokenizer, base)
            cpu = time.process_time()
            with tempfile.TemporaryDirectory() as out_dir:
                result = train_ppo(
                    base, tokenizer, prompts, score_fn, config, out_dir=Path(out_dir)
                )
            cpu = time.process_time() - cpu
            step_seconds = [m["time"] for m in result.metrics_per_step]
            n_trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
            n_trainable += sum(p.numel() for p in result.value_head.parameters())
            weights = weights_mb(rm, result.model, result.value_head)
    return {
        "layout": layout,
        "base_params_m": n_base / 1e6,
        "trainable_m": n_trainable / 1e6,
        "step_seconds": step_seconds,
        "cpu_seconds": cpu / len(step_seconds),  # the process's CPU time per update
        "weights_mb": weights,
        "peak_rss_mb": _status_mb("VmHWM"),
        "peak_gpu_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        ),
    }


def _separate_models(
    model_dir: str, tokenizer: Any, prompts: list[str], score_fn: Any, config: Any, dtype: str
) -> tuple[float, list[float], int]:
    """TRL-style PPO: same algorithm and losses as train_ppo, but four separate models.

    Returns (MB of its models' weights, the RM's not included; seconds per update; trainable
    parameters).
    """
    import torch
    from transformers import AutoModel

    from worker.training.generation import _pad_left, batch_seed
    from worker.training.losses import (
        gae,
        masked_whiten,
        per_token_rewards,
        policy_loss,
        response_mask_after_eos,
        value_loss,
    )
    from worker.training.models import ensure_pad_token, load_causal_lm
    from worker.training.ppo import (
        ValueHead,
        forward_response,
        rollout_prompt_limit,
        rollout_sampling_kwargs,
    )
    from worker.training.prompts import fit_prompt

    device = torch.device(config.device)
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    torch.manual_seed(config.seed)
    policy = load_causal_lm(model_dir, device=config.device, dtype=dtype)  # every parameter
    reference = load_causal_lm(model_dir, device=config.device, dtype=dtype).requires_grad_(False)
    critic = AutoModel.from_pretrained(model_dir, dtype=policy.dtype)  # body, no LM head
    critic = critic.to(device).eval()  # eval(): dropout off, as for the policy
    for m in (policy, reference, critic):
        ensure_pad_token(tokenizer, m)
    critic_head = ValueHead(critic.config.hidden_size, device=device)
    policy_params = list(policy.parameters())
    critic_params = list(critic.parameters()) + list(critic_head.parameters())
    policy_opt = torch.optim.AdamW(policy_params, lr=config.lr, eps=config.adam_eps)
    critic_opt = torch.optim.AdamW(critic_params, lr=config.lr, eps=config.adam_eps)

    def values_of(ids: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        hidden = critic(input_ids=ids, attention_mask=mask, position_ids=position_ids)
        return critic_head(hidden.last_hidden_state[:, -(n + 1) : -1])  # (B, R)

    def logprobs_of(model: Any, ids: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
        logprobs, _, _ = forward_response(
            model, None, ids, mask, n, temperature=config.temperature, pad_id=pad_id
        )
        return logprobs  # (B, R)

    limit = rollout_prompt_limit(policy, tokenizer, config)  # as train_ppo's rollouts fit them
    step_seconds = []
    generator = torch.Generator().manual_seed(config.seed)
    for step in range(1, config.steps + 1):
        tic = time.perf_counter()
        # Rollout
        idx = torch.randperm(len(prompts), generator=generator)[: config.batch_size].tolist()
        batch_prompts = [prompts[i] for i in idx]
        rows = [fit_prompt(tokenizer, p, limit).ids for p in batch_prompts]
        prompt_ids, prompt_mask = _pad_left(rows, pad_id)  # (B, P)
        torch.manual_seed(batch_seed(config.seed, step))
        with torch.no_grad():
            output = policy.generate(
                input_ids=prompt_ids.to(device),
                attention_mask=prompt_mask.to(device),
                **rollout_sampling_kwargs(config, eos_id=eos_id, pad_id=pad_id),
            )
        response = output[:, prompt_ids.shape[1] :].cpu()  # (B, R)
        mask, has_eos = response_mask_after_eos(response, eos_id, pad_id)  # (B, R), (B,)
        response = response.masked_fill(~mask, pad_id)
        ids = torch.cat([prompt_ids, response], 1).to(device)  # (B, T)
        attn = torch.cat([prompt_mask, mask.long()], 1).to(device)  # (B, T)
        mask, has_eos, n = mask.to(device), has_eos.to(device), response.shape[1]
        texts = [tokenizer.decode(r, skip_special_tokens=True).strip() for r in response.tolist()]
        with torch.no_grad():
            parts = [
                (
                    logprobs_of(policy, ids[i], attn[i], n),
                    logprobs_of(reference, ids[i], attn[i], n),
                    values_of(ids[i], attn[i], n),
                )
                for i in torch.arange(len(rows)).split(config.micro_batch_size)
            ]
        logprobs, ref_logprobs, values = (torch.cat(p) for p in zip(*parts, strict=True))
        # Rewards and advantages
        scores = torch.tensor(score_fn(batch_prompts, texts), device=device)  # (B,)
        scores = torch.where(has_eos, scores, config.missing_eos_penalty)
        rewards, _, _ = per_token_rewards(scores, logprobs, ref_logprobs, mask, config.kl_coef)
        advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)
        advantages = masked_whiten(advantages, mask)
        # Optimisation: both models, every mini-batch
        for _ in range(config.ppo_epochs):
            for mb in torch.randperm(len(rows), generator=generator).split(config.mini_batch_size):
                policy_opt.zero_grad(set_to_none=True)
                critic_opt.zero_grad(set_to_none=True)
                for i in mb.split(config.micro_batch_size):
                    pg, _ = policy_loss(
                        logprobs_of(policy, ids[i], attn[i], n), logprobs[i], advantages[i],
                        mask[i], config.clip_range,
                    )  # fmt: skip
                    vf, _ = value_loss(
                        values_of(ids[i], attn[i], n), values[i], returns[i], mask[i],
                        config.clip_range_value,
                    )  # fmt: skip
                    ((pg + config.vf_coef * vf) / config.grad_accum).backward()
                torch.nn.utils.clip_grad_norm_(policy_params, config.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(critic_params, config.max_grad_norm)
                policy_opt.step()
                critic_opt.step()
        step_seconds.append(time.perf_counter() - tic)
    n_trainable = sum(p.numel() for p in policy_params + critic_params)
    weights = weights_mb(policy, reference, critic, critic_head)
    return weights, step_seconds, n_trainable


def model_or_random_gpt2(
    model: str | None, tmp: Path, layers: int, width: int, dtype: str, device: str
) -> str:
    """`model`, or a random GPT-2 of that shape built under `tmp` (the benches' default)."""
    if model is not None:
        return model
    console.print(f"building a random GPT-2 ({layers} layers x {width}, vocab 2048)...")
    from worker.training.models import resolve_dtype

    return str(
        build_random_gpt2(
            tmp / "gpt2-random", n_layer=layers, n_embd=width, dtype=resolve_dtype(dtype, device)
        )
    )


@app.command()
def main(
    model: str | None = typer.Option(None, help="Model dir; default: a random GPT-2 built here."),
    layers: int = typer.Option(12, help="Layers of the random GPT-2 built when --model is unset."),
    width: int = typer.Option(768, help="Width of that GPT-2 (heads of 64)."),
    batch: int = typer.Option(16, help="Prompts (rollouts) per PPO update."),
    mini_batch: int = typer.Option(8, help="Rollouts per optimizer step."),
    grad_accum: int = typer.Option(
        2, help="Micro-batches per mini-batch (2: four rows per forward pass on CPU)."
    ),
    new_tokens: int = typer.Option(48, help="max_new_tokens of each rollout."),
    ppo_epochs: int = typer.Option(4),
    steps: int = typer.Option(2, help="PPO updates to time."),
    reward_own_base: bool = typer.Option(
        False, help="Also run the reward model on its own copy of the base."
    ),
    separate_models: bool = typer.Option(
        False, help="Also run the TRL layout: full policy, reference, RM and full critic."
    ),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    dtype: str = typer.Option(
        "auto", help="Weights' dtype: auto (bf16/fp16 on CUDA, float32 on CPU), bf16, fp32..."
    ),
    threads: int = typer.Option(2, help="torch CPU threads."),
) -> None:
    """Print seconds per PPO update and peak memory for one or both arrangements."""
    args = {
        "batch": batch,
        "mini_batch": mini_batch,
        "grad_accum": grad_accum,
        "new_tokens": new_tokens,
        "ppo_epochs": ppo_epochs,
        "steps": steps,
        "seed": seed,
        "device": device,
        "dtype": dtype,
        "threads": threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_random_gpt2(model, Path(tmp), layers, width, dtype, device)
        rm_dir = str(Path(tmp) / "reward-model")
        run_in_process(_save_reward_model, model, rm_dir, args)
        layouts = ["shared"] + ["rm-own-base"] * reward_own_base + ["separate"] * separate_models
        runs = [run_in_process(_run, layout, model, rm_dir, args) for layout in layouts]

    console.print(f"model {model}; batch {batch}, mini-batch {mini_batch}, grad_accum "
                  f"{grad_accum}, {new_tokens} new tokens, {ppo_epochs} PPO epochs, {steps} "
                  f"updates, device {device}, dtype {dtype}, {threads} threads")  # fmt: skip
    table = Table(title="PPO: seconds per update and peak memory")
    columns = ("layout", "base params (M)", "trainable (M)", "s/update (each)", "s/update (mean)",
               "weights MB", "peak RSS MB", "peak GPU MB")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in runs:
        secs = r["step_seconds"]
        table.add_row(
            r["layout"], f"{r['base_params_m']:.1f}", f"{r['trainable_m']:.2f}",
            " ".join(f"{s:.1f}" for s in secs), f"{sum(secs) / len(secs):.1f}",
            f"{r['weights_mb']:.0f}", f"{r['peak_rss_mb']:.0f}", f"{r['peak_gpu_mb']:.0f}",
        )  # fmt: skip
    console.print(table)
    for layout in layouts:
        console.print(f"{layout}: {LAYOUTS[layout]}")


if __name__ == "__main__":
    app()
