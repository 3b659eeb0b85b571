"""Process-wide runtime settings that every entry point (CLI, Trainer, study workers) applies once, and where this
process runs: its cores, host and torch device."""

from __future__ import annotations

import os
import platform
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from unifylab.errors import UserError

if TYPE_CHECKING:
    import torch


@cache
def single_thread_blas() -> None:
    """Limit numpy's BLAS to one thread. Its only work here is the scene parser's small matrix products, which
    threads do not speed up, while its idle threads spin and take cores from torch: on 2 cores a training step
    took 1.9x as long with OpenBLAS's default pool (benchmarks/train.py)."""
    threadpool_limits(limits=1, user_api="blas")


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads counted once): the unit that parallel trainings of
    small models divide, since two threads of one core share its arithmetic units."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:  # no sysfs topology (not Linux): every logical CPU counts
            cores.add(("", str(cpu)))
    return max(1, len(cores))


def cpp_compiler() -> str:
    """The C++ compiler torch.compile's CPU kernels are built with: $CXX, else inductor's own default."""
    return os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")


def host() -> dict[str, Any]:
    """Where this process runs: host name, CPU model, physical cores and torch threads (recorded per run)."""
    import torch

    model = platform.processor()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "host": platform.node(),
        "cpu": model,
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
    }


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when CUDA is there, else cpu; cpu, cuda and cuda:N as given. Training and
    evaluation both resolve devices here, so a bad name or CUDA without CUDA is one UserError everywhere."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise UserError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r}: CUDA is not available here; use cpu (or auto)")
    return torch.device(name)
