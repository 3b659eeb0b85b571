"""Process-wide runtime settings."""

from threadpoolctl import threadpool_info

from unifylab.runtime import single_thread_blas


def test_numpy_blas_runs_on_one_thread() -> None:
    single_thread_blas()
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
