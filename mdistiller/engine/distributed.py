"""Several processes, one model: DistributedDataParallel as launched by `torchrun`.

`torchrun --nproc_per_node N tools/train.py ...` sets RANK / WORLD_SIZE / LOCAL_RANK; one
process per device. Without those variables (plain `python tools/train.py`) everything here
degrades to a single process and no collective is ever called.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        """Rank 0 writes logs, checkpoints and progress bars."""
        return self.rank == 0


def env_dist_info():
    """Rank/world size from torchrun's environment (single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(info, device):
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)


def destroy_process_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor, info):
    """In-place sum over ranks (no-op for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj, info):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info):
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info):
    if info.enabled:
        dist.barrier()


def wrap_ddp(module, device, info):
    """DDP wrapper when several processes train; the module itself otherwise. Only parameters
    that require grad are synchronised, so the frozen teacher costs no communication."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
