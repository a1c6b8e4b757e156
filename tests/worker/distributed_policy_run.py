"""One rank of the 2-process policy runs that tests/worker/test_distributed_ppo.py compares
with one process: `python -m torch.distributed.run --nproc_per_node 2 --standalone -m
tests.worker.distributed_policy_run <tiny_model_dir> <out_dir> [fsdp]` (`fsdp`: FSDP2 shards,
tests/worker/test_policy_fsdp.py).

Sampling is made independent of sharding (`shard_independent_sampling`), so that one process
and two draw the very same responses and the comparison isolates what distribution changes:
sharded scoring, the gathered batch, advantages over it, dealt-out micro-batches, summed
gradients, reduced figures, rank 0 saving.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from worker.training import critic_free, ppo
from worker.training.models import load_causal_lm, load_tokenizer
from worker.training.prompts import Prompt
from worker.training.rloo import RLOOConfig, train_rloo
from worker.training.shards import merge_rollouts

NEW_TOKENS = 12
PROMPTS = cast(
    list[Prompt],
    [
        "How do I make a cup of tea?",
        "Why is the sky blue?",
        "Tell me about a walk in the park.",
        "What is a good name for a dog?",
        "Explain what a noun is.",
        "How often should I water a cactus?",
        [{"role": "user", "content": "What does a good morning routine look like?"}],
        "Can you suggest a name for a small grey cat?",
    ],
)
PPO = ppo.PPOConfig(
    steps=3, batch_size=8, mini_batch_size=8, grad_accum=2, ppo_epochs=2,
    max_new_tokens=NEW_TOKENS, lr=1e-3, seed=0, device="cpu",
)  # fmt: skip
"""Global batch 8, mini-batch 8 in 2 micro-batches of 4: one process runs both, two
processes one each."""
RLOO = RLOOConfig(
    steps=2, batch_size=4, group_size=3, mini_batch_size=12, grad_accum=2, epochs=2,
    max_new_tokens=NEW_TOKENS, lr=1e-3, seed=0, device="cpu",
)  # fmt: skip
"""4 prompts × K=3 samples; each rank samples 2 prompts' groups."""


def brevity(tokenizer: Any, seen: list[list[str]]) -> ppo.ScoreFn:
    """Score in [-1, 0] (shorter is better, as tests/worker/test_ppo.py); records the prompts
    each call scored, in order."""

    def score(prompts: list[Prompt], responses: list[str]) -> list[float]:
        seen.append([json.dumps(p) for p in prompts])
        lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]
        return [-min(n, NEW_TOKENS) / NEW_TOKENS for n in lengths]

    return score


@contextmanager
def shard_independent_sampling() -> Iterator[None]:
    """Rollouts sample each row alone under a seed of (call, prompt, occurrence), whatever
    else shares its batch: the same rows for one process and for any sharding."""
    original = ppo._rollout
    calls = [0]

    def sample(
        model: Any, value_head: Any, tokenizer: Any, prompts: list[Prompt], config: Any,
        *, seed: int, stops: list[str], **lockstep: Any,
    ) -> ppo.Rollout:  # fmt: skip
        calls[0] += 1
        seen: Counter[str] = Counter()
        parts = []
        for prompt in prompts:
            key = json.dumps(prompt)
            seen[key] += 1
            text = f"{calls[0]}|{seen[key]}|{key}".encode()
            row_seed = int.from_bytes(hashlib.sha256(text).digest()[:6], "big")
            parts.append(
                original(
                    model,
                    value_head,
                    tokenizer,
                    [prompt],
                    config,
                    seed=row_seed,
                    stops=stops,
                    **lockstep,
                )  # fmt: skip
            )
        return merge_rollouts(parts, pad_id=tokenizer.pad_token_id)

    ppo._rollout = sample  # type: ignore[assignment]
    critic_free._rollout = sample  # type: ignore[assignment]
    try:
        yield
    finally:
        ppo._rollout = original  # type: ignore[assignment]
        critic_free._rollout = original  # type: ignore[assignment]


def run(
    kind: str, model_dir: Path, out_dir: Path, ctx: Any = None, *, fsdp: bool = False
) -> dict[str, Any]:
    """One PPO or RLOO run on the tiny model; its per-step metrics and the prompts scored."""
    tokenizer = load_tokenizer(str(model_dir))
    base = load_causal_lm(str(model_dir), device="cpu")
    seen: list[list[str]] = []
    train: Callable[..., Any] = ppo.train_ppo if kind == "ppo" else train_rloo
    config = PPO if kind == "ppo" else RLOO
    with shard_independent_sampling():
        result = train(
            base, tokenizer, PROMPTS, brevity(tokenizer, seen), config,
            out_dir=out_dir, ctx=ctx, fsdp=fsdp,
        )  # fmt: skip
    return {"metrics": result.metrics_per_step, "scored": seen}


def main(model_dir: Path, out_dir: Path, *, fsdp: bool = False) -> None:
    from worker.distributed.context import init_from_env, shutdown

    ctx = init_from_env()
    for kind in ("ppo", "rloo"):
        found = run(kind, model_dir, out_dir / kind, ctx, fsdp=fsdp)
        (out_dir / f"{kind}-rank{ctx.rank}.json").write_text(json.dumps(found))
    shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), fsdp=sys.argv[3:] == ["fsdp"])
