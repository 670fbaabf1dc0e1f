"""Work split over the cores, with BLAS single-threaded in each worker.

Two kinds of workers. Threads, for array work on data already in memory (k-means distance blocks): NumPy
releases the GIL in its array loops and matrix products, so threads keep both cores busy without copying
the data. Processes, for chunks of images (mlpcli.features.pipeline): decoding small image files and
generating images hold the GIL, and a worker process can read its own images and write its own rows of a
feature store. Either way BLAS runs on the worker alone — each worker's products use its own core, with no
hand-offs between BLAS threads: on a loaded machine, multi-threaded OpenBLAS was measured to take 0.5 s for a
product that takes 0.5 ms on one thread.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from concurrent.futures.process import BrokenProcessPool

import psutil
from threadpoolctl import threadpool_limits

from mlpcli.errors import MlpError


def map_row_blocks(work: Callable[[slice], object], n_rows: int, block_rows: int) -> list:
    """[work(rows) for consecutive row slices of `block_rows`], run in one thread per core."""
    blocks = [slice(start, min(start + block_rows, n_rows)) for start in range(0, n_rows, block_rows)]
    workers = min(cores(), len(blocks))
    if workers <= 1:
        return [work(rows) for rows in blocks]
    with single_threaded_blas(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, blocks))


MIN_SPLIT_FLOPS = 8e6   # smaller products run whole: handing them to threads would cost more than it saves
_product_threads: ContextVar[ThreadPoolExecutor | None] = ContextVar("product_threads", default=None)


@contextmanager
def split_products(threads: int) -> Iterator[None]:
    """Within `with`: BLAS on one thread, `matmul` splitting each large product into `threads` parts (by
    output rows or columns), one per thread of a pool, and `elementwise` updating blocks on the same threads
    — the training steps' parallelism.

    Why not BLAS's own threads: they wait for one another by spinning, and on a machine whose cores other
    processes also use, a product whose partner thread is not running stalls for a scheduler slice — a
    2-core epoch took 6x as long beside two busy processes. Threads that each run one part of a product
    and block until their part is done share a busy machine fairly. The result depends on `threads` (the
    split), never on timing: the same config and thread count give the same bits.
    """
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    token = _product_threads.set(pool)
    try:
        with single_threaded_blas():
            yield
    finally:
        _product_threads.reset(token)
        if pool is not None:
            pool.shutdown()


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a (M, K) @ b (K, N), into `out` (M, N) if given; split across the threads of `split_products` when
    inside one and the product is large, along the larger of M and N."""
    pool = _product_threads.get()
    (m, k), n = a.shape, b.shape[1]
    if pool is None or 2 * m * k * n < MIN_SPLIT_FLOPS:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), np.result_type(a, b))
    edges = np.linspace(0, max(m, n), pool._max_workers + 1).astype(int)
    if m >= n:
        parts = [pool.submit(np.matmul, a[lo:hi], b, out[lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]
    else:
        parts = [pool.submit(np.matmul, a, b[:, lo:hi], out[:, lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]
    for part in parts:
        part.result()
    return out


ELEMENTWISE_BLOCK = 1 << 17   # elements an elementwise update handles at a time (512 KiB of float32)


def elementwise(update: Callable[..., None], *arrays: np.ndarray) -> None:
    """update(*blocks) over blocks of the same rows of `arrays` (arrays of one shape, at least 1-D), which it
    changes in place; the blocks are split across the threads of `split_products` when inside one.

    Why blocks: a whole-array expression such as `W -= lr * v` on a (9266, 2000) weight matrix makes a
    74 MB temporary, which malloc maps afresh and the kernel zeroes page by page at every step (over a third of
    a bag-of-words step went to such updates, with the other core idle). A block's temporaries stay small
    and reused, and the threads update their blocks side by side. Every element gets the same operations
    whatever the blocks, so the result is the same bits."""
    rows = len(arrays[0])
    per_block = max(1, ELEMENTWISE_BLOCK * rows // max(1, arrays[0].size))
    blocks = [slice(start, start + per_block) for start in range(0, rows, per_block)]

    def run(part: list) -> None:
        for block in part:
            update(*(array[block] for array in arrays))

    pool = _product_threads.get()
    if pool is None or len(blocks) < 2:
        run(blocks)
        return
    edges = np.linspace(0, len(blocks), min(pool._max_workers, len(blocks)) + 1).astype(int)
    for part in [pool.submit(run, blocks[lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]:
        part.result()


def cores() -> int:
    """The workers that run at once (threads of `map_row_blocks`, processes of `ProcessPool`): one per core."""
    return os.cpu_count() or 1


def single_threaded_blas() -> threadpool_limits:
    """A context in which BLAS runs on the calling thread alone."""
    return blas_threads(1)


def blas_threads(threads: int | None) -> threadpool_limits:
    """A context in which BLAS uses at most `threads` threads (None: as many as it would anyway)."""
    return threadpool_limits(limits=threads, user_api="blas")


MALLOC_THRESHOLD = 32 << 20  # bytes: glibc's largest adaptive mmap threshold on 64-bit


def undo_malloc_trim() -> None:
    """Give glibc's malloc back large-allocation thresholds in a process started with MALLOC_TRIM_THRESHOLD_.

    Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's adaptive
    mmap threshold: every numpy temporary above 128 KiB is then mapped and unmapped afresh, its pages
    faulted in each time, and HOG features ran 2.7x slower in a worker. This sets both thresholds where
    the adaptive ones settle (32 MiB) for the rest of the process; a no-op without the variable or glibc."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3       # malloc.h
    libc.mallopt(m_mmap_threshold, MALLOC_THRESHOLD)
    libc.mallopt(m_trim_threshold, MALLOC_THRESHOLD)


class ProcessPool:
    """Worker processes, one per core (or `workers`), started on the first `map` of two or more items (or the
    first `submit`) and kept until `close`; a `map` with one worker or one item runs in this process instead.

    Workers start from a fork server that has imported mlpcli (fast, and safe beside threads), ignore
    Ctrl-C (this process stops them), exit when this process ends however it ends (kill -9 included), and
    run BLAS on one thread.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or cores()
        self._executor: ProcessPoolExecutor | None = None

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """fn(item) for each item, in order (computed ahead on the workers)."""
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            return map(fn, items)
        return self._results(self._start().map(fn, items))

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":
                context.set_forkserver_preload(["mlpcli.features.pipeline"])
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_start,
                                                 initargs=(os.getpid(),))
        return self._executor

    def submit(self, fn: Callable, *args) -> Future:
        """fn(*args) started on a worker process, even with one worker; its value from `result`."""
        return self._start().submit(fn, *args)

    @staticmethod
    def result(future: Future):
        """The value of a `submit`ted call, waiting for it."""
        with _worker_deaths():
            return future.result()

    @staticmethod
    def _results(results: Iterator) -> Iterator:
        with _worker_deaths():
            yield from results

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def _worker_deaths() -> Iterator[None]:
    """A worker process that died becomes a one-line error."""
    try:
        yield
    except BrokenProcessPool:
        raise MlpError("a worker process died (killed, or out of memory); lower features.chunk, "
                       "or free some memory, and run again") from None


def available_memory() -> int:
    """Bytes of memory available to new allocations without swapping (MemAvailable on Linux)."""
    return psutil.virtual_memory().available


def ignore_interrupts() -> None:
    """In a worker process: leave Ctrl-C to the parent, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_start(parent: int) -> None:
    ignore_interrupts()
    _exit_with(parent)
    threadpool_limits(limits=1, user_api="blas")


def _exit_with(parent: int) -> None:
    """In a worker process: exit as soon as process `parent` (the pool's owner) has ended. Workers come from
    the fork server and hold its keep-alive pipe, so after a kill -9 of mlp neither the fork server nor a
    worker waiting for its next task would ever notice; without pidfds (Linux 5.3) this does nothing."""
    try:
        handle = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([handle], [], [])      # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
