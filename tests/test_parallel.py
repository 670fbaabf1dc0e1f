"""Row blocks on one thread per core: every row once, results in block order, BLAS single-threaded inside."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from mlpcli.parallel import blas_threads, cores, map_row_blocks


@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(0, 500), block_rows=st.integers(1, 120))
def test_every_row_is_worked_once_and_results_keep_block_order(n_rows, block_rows):
    seen = []
    results = map_row_blocks(lambda rows: seen.append(rows) or (rows.start, rows.stop), n_rows, block_rows)
    assert results == [(start, min(start + block_rows, n_rows)) for start in range(0, n_rows, block_rows)]
    assert sorted(i for rows in seen for i in range(rows.start, rows.stop)) == list(range(n_rows))


def blas_limits() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_workers_run_on_several_threads_with_single_threaded_blas():
    threads, limits = set(), set()
    barrier = threading.Barrier(min(cores(), 4), timeout=10)

    def work(rows):
        threads.add(threading.get_ident())
        limits.update(blas_limits())
        barrier.wait()                               # all workers at once: they are threads, not a queue
        return rows

    map_row_blocks(work, 4 * min(cores(), 4), 4)
    assert len(threads) == min(cores(), 4)
    assert limits <= {1}


def test_an_error_in_a_block_reaches_the_caller():
    def work(rows):
        if rows.start == 20:
            raise ValueError("block 20")
        return rows

    with pytest.raises(ValueError, match="block 20"):
        map_row_blocks(work, 100, 10)


def test_blas_threads_limits_and_none_leaves_blas_alone():
    before = blas_limits()
    with blas_threads(1):
        assert blas_limits() <= {1}
    with blas_threads(None):
        assert blas_limits() == before
    assert blas_limits() == before and cores() >= 1


def page_faults_of_reused_temporaries() -> int:
    """Minor page faults of 40 allocations of a 1 MiB numpy temporary (below numpy's huge-page size), each
    freed before the next."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        np.ones(1 << 18, np.float32).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.parametrize("undone", [False, True])
def test_undo_malloc_trim_lets_large_temporaries_reuse_their_memory(undone):
    """Under Dask's MALLOC_TRIM_THRESHOLD_ each 1 MiB temporary is mapped afresh (a fault per page: 256 per
    allocation); undone, glibc keeps and reuses the memory."""
    script = ("from mlpcli.parallel import undo_malloc_trim; "
              "from tests.test_parallel import page_faults_of_reused_temporaries as faults; "
              f"{'undo_malloc_trim(); ' if undone else ''}faults(); print(faults())")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"},
                         capture_output=True, text=True, check=True).stdout
    faults = int(out)
    assert faults < 1000 if undone else faults > 5000


def test_worker_processes_end_with_a_parent_killed_by_signal_9(tmp_path):
    """kill -9 of a process whose ProcessPool is up leaves no fork server or worker behind."""
    script = ("import time; from mlpcli.parallel import ProcessPool; pool = ProcessPool(2); "
              "list(pool.map(time.sleep, [0.01, 0.01])); print('up', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})    # the fork server's socket folder
    try:
        assert proc.stdout.readline().strip() == "up"
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 3                              # the fork server and two workers
    finally:
        proc.kill()
        proc.wait(timeout=30)
    _, alive = psutil.wait_procs(family, timeout=20)
    for orphan in alive:
        orphan.kill()
    assert not alive, [p.cmdline() for p in alive]
