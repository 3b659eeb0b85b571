"""Process-wide runtime settings that every entry point (CLI, Trainer, study workers) applies once."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits


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
