"""How many threads the simulation's math may use (torch intra-op and every BLAS / OpenMP pool).

numpy and scipy each load their own OpenBLAS, which starts one worker per core and lets it spin after each
call. On a small machine (2 cores) whose other core is busy, those workers compete with torch, Numba and
the ROS executor: a vision request took 54 ms with the default BLAS pools and 27 ms with one thread (under
the profiler, one core loaded by another process; on an idle machine the two were equal). Nodes and the
training/evaluation commands call :func:`limit_compute_threads` once.
"""

from __future__ import annotations


def limit_compute_threads(n: int) -> None:
    """Use at most ``n`` (>= 1) threads in torch's intra-op pool and in every BLAS / OpenMP pool loaded in
    this process (numpy's and scipy's OpenBLAS; scipy's is the one Numba's ``np.dot`` calls)."""
    if int(n) < 1:
        raise ValueError(f"need at least one thread, got {n}")
    import scipy.linalg.cython_blas  # noqa: F401, PLC0415 - load scipy's BLAS now, so that it is limited too
    import torch  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    torch.set_num_threads(int(n))
    threadpool_limits(limits=int(n))
