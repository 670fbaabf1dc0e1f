"""Work split over the cores: consecutive row blocks, one thread per core, BLAS single-threaded.

NumPy releases the GIL in its array loops and matrix products, so threads keep both cores busy on
array work without copying the data to other processes. BLAS runs on the calling thread alone
meanwhile: each thread's products then use its own core, with no hand-offs between BLAS threads —
on a loaded machine, multi-threaded OpenBLAS was measured to take 0.5 s for a product that takes
0.5 ms on one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits


def map_row_blocks(work: Callable[[slice], object], n_rows: int, block_rows: int) -> list:
    """[work(rows) for consecutive row slices of `block_rows`], run in one thread per core."""
    blocks = [slice(start, min(start + block_rows, n_rows)) for start in range(0, n_rows, block_rows)]
    workers = min(os.cpu_count() or 1, len(blocks))
    if workers <= 1:
        return [work(rows) for rows in blocks]
    with single_threaded_blas(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, blocks))


def single_threaded_blas() -> threadpool_limits:
    """A context in which BLAS runs on the calling thread alone."""
    return blas_threads(1)


def blas_threads(threads: int | None) -> threadpool_limits:
    """A context in which BLAS uses at most `threads` threads (None: as many as it would anyway)."""
    return threadpool_limits(limits=threads, user_api="blas")
