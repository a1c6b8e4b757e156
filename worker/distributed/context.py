"""Who this process is in a torch.distributed group, and the few collectives trainers need.

One trainer code path serves one process and N: a trainer takes a `DistContext` (default
`single_process()`, where every collective is the identity), shards each global batch with
`ctx.shard`, wraps its trainable module with `ctx.wrap` (DDP, or FSDP2 `fully_shard`) and
averages the figures it logs with `ctx.all_reduce_mean`, so the loss curve of N processes
on the same global batch is the single process's.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's rank in a group of `world_size`; world_size 1 needs no process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes progress, artifacts and the result."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, t: Tensor) -> Tensor:
        """The sum over ranks (a new tensor; `t` is left as it was)."""
        if not self.distributed:
            return t.clone()
        out = t.detach().clone().to(self._comm_device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(t.device)

    def all_reduce_mean(self, t: Tensor) -> Tensor:
        """The mean over ranks, e.g. of a logged loss."""
        return self.all_reduce_sum(t) / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        box: list[Any] = [obj]
        dist.broadcast_object_list(box, src=0)
        return cast(T, box[0])

    def gather_objects(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return cast(list[T], out)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of a global batch: items[rank::world_size].

        Strided, so ranks differ by at most one item and the order inside a shard follows the
        global order."""
        return list(items[self.rank :: self.world_size])

    def wrap(
        self, model: nn.Module, *, fsdp: bool = False, find_unused_parameters: bool = False
    ) -> nn.Module:
        """The module to train: `model` itself in one process; else DDP over it, or FSDP2.

        DDP registers only parameters that require grad, so a LoRA model's frozen base is not
        synchronised. Set `find_unused_parameters` when some trainable parameter may get no
        gradient in a step (e.g. an adapter the forward pass skips). Under DDP the gradients
        are averaged over ranks only when the call goes through the returned module's
        `forward`; call another method through `Methods` (below).

        FSDP2 shards every transformer block (each `nn.ModuleList` child), then the root;
        the parameters become DTensors, so saving needs `full_state_dict` (below).
        """
        if not self.distributed:
            return model
        if fsdp:
            from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

            root = model.module if isinstance(model, Methods) else model
            for block in _transformer_blocks(root):
                fully_shard(block)
            fully_shard(root)
            for name in model.methods if isinstance(model, Methods) else ():
                register_fsdp_forward_method(root, name)
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=find_unused_parameters
        )

    @property
    def _comm_device(self) -> torch.device:
        # gloo reduces CPU tensors, nccl CUDA ones
        return self.device if self.device.type == "cuda" else torch.device("cpu")


class Methods(nn.Module):
    """`Methods(m, "name")("name", *args)` calls `m.name(*args)` through `forward`.

    DDP synchronises gradients only for calls through its `forward`; wrap this instead of
    `m` when training calls another method (e.g. `RewardModel.forward_shared_prefix`). Under
    FSDP2 `m` itself is the root and the named methods are registered to gather its shards."""

    def __init__(self, module: nn.Module, *methods: str) -> None:
        super().__init__()
        self.module = module
        self.methods = methods

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "forward":  # through __call__, so the module's own hooks run (FSDP's)
            return self.module(*args, **kwargs)
        return getattr(self.module, method)(*args, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP and `Methods` wrappers (FSDP2 shards in place: itself)."""
    while isinstance(model, Methods) or hasattr(model, "module") and _is_ddp(model):
        model = cast(nn.Module, model.module)
    return model


def full_state_dict(
    ctx: DistContext, model: nn.Module, *, trainable_only: bool = True
) -> dict[str, Tensor]:
    """The unsharded state dict of `model` on CPU (collective under FSDP: every rank calls it;
    rank 0 gets the tensors, others an empty dict). Only parameters that require grad unless
    `trainable_only` is False (a LoRA adapter and head, not the frozen base)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad or not trainable_only}
    if ctx.distributed and _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
    else:
        state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    return {k: v for k, v in state.items() if k in names and isinstance(v, Tensor)}


@contextmanager
def root_gathered(model: nn.Module) -> Iterator[None]:
    """The FSDP2 root's own parameters (embeddings, LM head, final norm) whole meanwhile.

    A sharded block gathers its parameters on its own forward, the root only on its forward
    and registered methods; a call straight into a submodule (a reward model reading the
    policy's transformer body) needs this. Run one forward through the root first (its lazy
    initialisation). Collective under FSDP; a no-op for any other model."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def single_process(device: torch.device | str | None = None) -> DistContext:
    """The context of a plain, one-process run (every collective is the identity)."""
    if device is None:
        from worker.training.models import pick_device

        device = pick_device()
    return DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))


def init_from_env(*, timeout_s: float = 600.0) -> DistContext:
    """Join the group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    gloo on CPU, nccl with one CUDA device per local rank."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The children of each outermost nn.ModuleList (a transformer's layers); a list nested in
    a block (e.g. experts) is sharded with its block."""
    blocks: list[nn.Module] = []
    outer: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and not any(name.startswith(f"{o}.") for o in outer):
            outer.append(name)
            blocks.extend(module.children())
    return blocks


def _is_ddp(model: nn.Module) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def _is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())
