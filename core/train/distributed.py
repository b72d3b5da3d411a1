"""PyTorch's own distributed engine, as launched by ``torchrun``: process group, device, collectives.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/
``MASTER_PORT``) for every process; a plain ``semcorr train`` is one process of
a world of one. NCCL is used on GPUs, gloo on CPUs. Everything here is a no-op
in a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UsageError, param


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global ``rank``, ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_env_from_environ(environ=None) -> DistEnv:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (torchrun's variables); defaults to a world of one."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UsageError(f"inconsistent torchrun variables: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return DistEnv(rank, world, local)


def training_device(requested: str, env: DistEnv) -> torch.device:
    """The device of this process: ``auto``/``cuda`` → ``cuda:LOCAL_RANK`` when a GPU is there, else CPU."""
    if requested not in ("auto", "cpu") and not requested.startswith("cuda"):
        raise UsageError(f"{param('device')} must be auto, cpu or cuda, not '{requested}'")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"{param('device')} cuda was asked for but no CUDA GPU is available (use {param('device')} auto or cpu)")
    if ":" in requested and not env.distributed:
        device = torch.device(requested)
    else:
        if env.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK {env.local_rank} but this machine has {torch.cuda.device_count()} GPUs; "
                "use --nproc_per_node at most the number of GPUs"
            )
        device = torch.device("cuda", env.local_rank)
    torch.cuda.set_device(device)
    return device


def init_process_group(env: DistEnv, device: torch.device) -> None:
    """Join torchrun's process group (NCCL on GPU, gloo on CPU) when the world has several processes."""
    if not env.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size, **kwargs)


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes (in place; returns it)."""
    if _active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_agree(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on every process."""
    if not _active():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def broadcast_int(value: int, device: torch.device, src: int = 0) -> int:
    """Rank ``src``'s ``value`` on every process."""
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src)
    return int(t.item())


def all_gather_int(value: int, device: torch.device) -> list[int]:
    """Every process's ``value``, in rank order."""
    if not _active():
        return [value]
    t = torch.tensor([value], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return [int(x.item()) for x in out]

