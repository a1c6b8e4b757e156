"""The policy stages (PPO, RLOO, GRPO) over several processes: what differs from one process.

Each rank samples and scores its shard of the update's global batch (`DistContext.shard`:
rows `rank::world_size`, in units of one row for PPO and of one K-sample group for RLOO and
GRPO, so a group's baseline sees all K samples); the shards are then gathered, so that every
rank holds the whole batch in the global order and computes the same rewards, GAE, whitening
and group advantages as one process would (statistics over the global batch, not per rank).
The optimisation deals each mini-batch's micro-batches out to the ranks and sums the LoRA and
value-head gradients across ranks (`sync_grads`): with as many micro-batches per mini-batch as
one process uses, the update equals one process's up to float summation order.

With FSDP (`fsdp`, FSDP2 shards of the base, the adapters and the value head) every forward
and backward pass is a collective, so the ranks must run the same NUMBER of them in lockstep:
generation keeps stepping until every rank is done (`synced_gpus`), a rank with fewer rows
repeats a row where it would run fewer passes (scoring, log-probs: `lockstep_rows`), a rank
dealt fewer micro-batches runs one again at weight 0 (`dealt`), and FSDP's own reduce-scatter
averages the gradients (so `dealt` weighs each loss × world_size and `sync_grads` stays out).

`ctx=None` everywhere means one process: nothing is gathered, reduced or dealt out, and this
module never imports torch.distributed then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from worker.distributed.context import DistContext
    from worker.training.rollout import Rollout

T = TypeVar("T")


def world(ctx: DistContext | None) -> tuple[int, int]:
    """(rank, world_size); (0, 1) for one process."""
    return (0, 1) if ctx is None else (ctx.rank, ctx.world_size)


def is_main(ctx: DistContext | None) -> bool:
    return ctx is None or ctx.is_main


def shard(items: Sequence[T], ctx: DistContext | None) -> list[T]:
    """This rank's items: items[rank::world_size] (all of them for one process)."""
    return list(items) if ctx is None else ctx.shard(items)


def rank_seed(seed: int, ctx: DistContext | None) -> int:
    """Sampling seed of this rank's shard: rank 0 keeps one process's seed."""
    rank, _ = world(ctx)
    return (seed + rank * 7_919) % (2**63)


def micro_rows(micro_batch_size: int, mini_batch_size: int, ctx: DistContext | None) -> int:
    """Rows per forward pass: the config's, made small enough that every rank gets a
    micro-batch of each mini-batch (at most ceil(mini / world_size) rows)."""
    _, size = world(ctx)
    return max(1, min(micro_batch_size, math.ceil(mini_batch_size / size)))


def mine(index: int, ctx: DistContext | None) -> bool:
    """Whether micro-batch number `index` of a mini-batch is this rank's (round-robin)."""
    rank, size = world(ctx)
    return index % size == rank


def dealt(
    micro: Sequence[Tensor], ctx: DistContext | None, *, fsdp: bool = False
) -> list[tuple[Tensor, float]]:
    """This rank's micro-batches of a mini-batch (round-robin), each with its loss weight.

    The weight 1 / len(micro) makes the gradients summed over ranks (`sync_grads`) the mean
    over micro-batches of one process. With `fsdp` every rank runs ceil(len(micro) / W)
    passes, a rank short of one repeating micro[0] at weight 0, and the weights are × W, since
    FSDP averages the gradients over ranks instead of summing them."""
    _, size = world(ctx)
    mine_ = [(idx, 1.0 / len(micro)) for i, idx in enumerate(micro) if mine(i, ctx)]
    if not fsdp or size == 1:
        return mine_
    passes = math.ceil(len(micro) / size)
    padded = mine_ + [(micro[0], 0.0)] * (passes - len(mine_))
    return [(idx, weight * size) for idx, weight in padded]


def lockstep_rows(units: int, ctx: DistContext | None, *, unit: int = 1) -> int:
    """Rows of the largest shard of `units` units of `unit` rows (`ctx.shard`): under FSDP
    every rank pads its passes to this many rows, so all run the same number."""
    _, size = world(ctx)
    return math.ceil(units / size) * unit


def whole(t: Tensor) -> Tensor:
    """A DTensor (e.g. clip_grad_norm_'s total norm over FSDP shards) as a plain tensor."""
    full = getattr(t, "full_tensor", None)
    return t if full is None else full()


def sync_grads(params: Sequence[Tensor], ctx: DistContext | None) -> None:
    """Sum the gradients over ranks in one flat all-reduce (DDP's job, done by hand: the
    LoRA and value-head gradients are a few MB, and the micro-batches are dealt out, not
    replicated). A parameter a rank left without gradient counts as zeros."""
    if ctx is None or ctx.world_size == 1:
        return
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    flat = ctx.all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n


def reduce_means(stats: dict[str, list[float]], ctx: DistContext | None) -> dict[str, float]:
    """Mean of each list over all ranks' entries (one process: the plain mean)."""
    keys = sorted(stats)
    sums = torch.tensor([[sum(stats[k]), len(stats[k])] for k in keys], dtype=torch.float64)
    if ctx is not None and ctx.world_size > 1:
        sums = ctx.all_reduce_sum(sums)
    rows = zip(keys, sums.tolist(), strict=True)
    return {k: float(s / c) if c else math.nan for k, (s, c) in rows}


def gather_values(values: list[float], ctx: DistContext | None, *, unit: int = 1) -> list[float]:
    """Per-row figures of this rank's shard -> the global batch's, in global order."""
    if ctx is None or ctx.world_size == 1:
        return values
    parts = ctx.gather_objects(values)
    return [parts[r][i] for r, i in global_rows([len(p) for p in parts], unit)]


def global_rows(counts: list[int], unit: int) -> list[tuple[int, int]]:
    """(rank, local row) of each global row, when rank r holds units r, r + W, r + 2W, ...
    of `unit` consecutive rows each (`ctx.shard` of the units)."""
    size = len(counts)
    units = sum(counts) // unit
    return [(g % size, (g // size) * unit + j) for g in range(units) for j in range(unit)]


def gather_rollout(ro: Rollout, ctx: DistContext | None, *, pad_id: int, unit: int = 1) -> Rollout:
    """Every rank's rollout shard -> the global batch's rollout, on every rank."""
    if ctx is None or ctx.world_size == 1:
        return ro
    parts: list[Rollout] = ctx.gather_objects(_to_cpu(ro))
    starts = [0]
    for p in parts[:-1]:
        starts.append(starts[-1] + len(p.responses))
    rows = global_rows([len(p.responses) for p in parts], unit)
    merged = merge_rollouts(parts, pad_id=pad_id, order=[starts[r] + i for r, i in rows])
    return _to(merged, ro.input_ids.device)


def merge_rollouts(
    parts: Sequence[Rollout], *, pad_id: int, order: Sequence[int] | None = None
) -> Rollout:
    """Rollouts of the same policy -> one, its rows in `order` (indices into the parts'
    rows in turn; default as they come). Parts differ in prompt width P and response width R:
    prompts are re-padded on the left, responses and their per-token figures on the right
    (masked out, as everywhere)."""
    width_p = max(p.input_ids.shape[1] - p.n_response for p in parts)
    width_r = max(p.n_response for p in parts)
    padded = [_repad(_to(p, torch.device("cpu")), width_p, width_r, pad_id) for p in parts]
    n = sum(len(p.responses) for p in padded)
    index = torch.tensor(list(range(n)) if order is None else list(order), dtype=torch.long)
    flat_responses = [text for p in padded for text in p.responses]
    flat_prompts = [fitted for p in padded for fitted in p.prompts]
    return replace(
        padded[0],
        **{
            name: torch.cat([getattr(p, name) for p in padded]).index_select(0, index)
            for name in _TENSORS
        },
        responses=[flat_responses[i] for i in index.tolist()],
        prompts=[flat_prompts[i] for i in index.tolist()],
    )


_TENSORS = (
    "input_ids", "attention_mask", "response_mask", "has_eos",
    "logprobs", "ref_logprobs", "values", "entropy",
)  # fmt: skip


def _to(ro: Rollout, device: torch.device) -> Rollout:
    return replace(ro, **{name: getattr(ro, name).detach().to(device) for name in _TENSORS})


def _to_cpu(ro: Rollout) -> Rollout:
    return _to(ro, torch.device("cpu"))


def _repad(ro: Rollout, width_p: int, width_r: int, pad_id: int) -> Rollout:
    """Left-pad the prompt part to width_p, right-pad the response part to width_r."""
    b, r = len(ro.responses), ro.n_response
    p = ro.input_ids.shape[1] - r
    ids = torch.full((b, width_p + width_r), pad_id, dtype=ro.input_ids.dtype)  # (B, T')
    attn = torch.zeros((b, width_p + width_r), dtype=ro.attention_mask.dtype)  # (B, T')
    ids[:, width_p - p : width_p + r] = ro.input_ids
    attn[:, width_p - p : width_p + r] = ro.attention_mask

    def right(t: Tensor) -> Tensor:  # (B, R) -> (B, R'), zeros (False) after
        out = torch.zeros((b, width_r), dtype=t.dtype)
        out[:, :r] = t
        return out

    return replace(
        ro,
        input_ids=ids,
        attention_mask=attn,
        response_mask=right(ro.response_mask),
        logprobs=right(ro.logprobs),
        ref_logprobs=right(ro.ref_logprobs),
        values=right(ro.values),
        entropy=right(ro.entropy),
    )
