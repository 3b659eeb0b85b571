"""Process-wide runtime settings that every entry point (CLI, Trainer, study workers) applies once."""

from __future__ import annotations

from functools import cache

from threadpoolctl import threadpool_limits


@cache
def single_thread_blas() -> None:
    """Limit numpy's BLAS to one thread. Its only work here is the scene parser's small matrix products, which
    threads do not speed up, while its idle threads spin and take cores from torch: on 2 cores a training step
    took 1.9x as long with OpenBLAS's default pool (benchmarks/train.py)."""
    threadpool_limits(limits=1, user_api="blas")
