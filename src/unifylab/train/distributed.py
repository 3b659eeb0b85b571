"""torchrun integration: process group (gloo on CPU, nccl on GPU), DDP or FSDP2 wrapping, full state dicts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from unifylab.errors import UserError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(strategy: str, device: str) -> Dist:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE set) or when a strategy asks for it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if strategy == "none":
        if world > 1:
            raise UserError(
                "launched by torchrun with several processes, but distributed is 'none'; "
                "set --set distributed=ddp (or fsdp2)"
            )
        return Dist()
    if "RANK" not in os.environ:
        raise UserError(
            f"distributed={strategy!r} needs torchrun, e.g. torchrun --nproc_per_node 2 -m unifylab train ..."
        )
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)


def wrap(model: nn.Module, strategy: str, d: Dist, device: torch.device) -> nn.Module:
    """DDP, or FSDP2 (`fully_shard` per block, then the root), of a LossModule; plain module otherwise."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        cfg = model.model.cfg  # model is the LossModule wrapper
        # a forked branch, a modality expert, a split head or the flow output's layers see no token on a rank whose
        # micro-batch lacks that task form or modality: DDP must then reduce those parameters' (zero) gradients
        sparse = cfg.backbone != "shared" or cfg.output_heads == "split" or cfg.image_output == "flow"
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=sparse
        )
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for blk in model.model.attention_layers():  # model is the LossModule wrapper
            fully_shard(blk)
        fully_shard(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def model_state(model: nn.Module, d: Dist) -> dict[str, torch.Tensor]:
    """Full (unsharded) model state dict on CPU; every rank must call it under FSDP."""
    if not d.enabled:
        return unwrap(model).state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, d: Dist) -> dict[str, Any]:
    if not d.enabled:
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_states(
    model: nn.Module, opt: torch.optim.Optimizer, weights: dict[str, torch.Tensor], opt_state: dict[str, Any], d: Dist
) -> None:
    if not d.enabled:
        unwrap(model).load_state_dict(weights)
        opt.load_state_dict(opt_state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
    set_model_state_dict(model, weights, options=opts)
    set_optimizer_state_dict(model, opt, opt_state, options=opts)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
