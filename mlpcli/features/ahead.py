"""Minibatch rows gathered ahead on worker processes, into shared memory.

A store too large to map is read with a pread per row (about 2 µs each): for a million rows that doubled the
epoch. Worker processes gather the next groups of batches while this one trains on the current group; the
rows go into slots of shared memory, and only a short message per group crosses between the processes
(sending the rows through the pool's pipe cost the training process as much as reading them).
"""

from __future__ import annotations

from concurrent.futures import Future
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from mlpcli.features.store import MappedRows, StackedRows
from mlpcli.parallel import ProcessPool


class SharedSlots:
    """`count` slots of (rows, D) feature rows in shared memory, filled by `gather` on a worker process of `pool`.
    `close` frees them; if this process is killed, multiprocessing's resource tracker does."""

    def __init__(self, pool: ProcessPool, count: int, rows: int, dim: int, dtype: np.dtype) -> None:
        self.pool, self.shape, self.dtype = pool, (count, rows, dim), np.dtype(dtype)
        self._memory = shared_memory.SharedMemory(create=True, size=max(1, count * rows * dim * self.dtype.itemsize))

    def gather(self, rows: MappedRows | StackedRows, index: np.ndarray, slot: int) -> Future:
        """Start gathering rows `index` (n ≤ rows,) of `rows` into slot `slot` on a worker."""
        return self.pool.submit(gather_into, rows, index, self._memory.name, self.shape, self.dtype, slot)

    def copy(self, slot: int, start: int, out: np.ndarray) -> np.ndarray:
        """Rows start … start+m of slot `slot` (gathered: its future is done) into `out` (m, D)."""
        out[:] = np.ndarray(self.shape, self.dtype, buffer=self._memory.buf)[slot, start:start + len(out)]
        return out

    def close(self) -> None:
        self._memory.close()
        self._memory.unlink()


def gather_into(rows: MappedRows | StackedRows, index: np.ndarray, name: str, shape: tuple[int, int, int],
                dtype: np.dtype, slot: int) -> None:
    """(On a worker process) rows `index` (n,) of `rows` into slot `slot` of the SharedSlots named `name`."""
    slots = np.ndarray(shape, dtype, buffer=_attached(name).buf)
    rows.take(index, slots[slot, :len(index)])


_attachment: list[tuple[str, shared_memory.SharedMemory]] = []   # this worker's last SharedSlots memory


def _attached(name: str) -> shared_memory.SharedMemory:
    """The shared memory `name`, attached once per worker process. Not registered with the resource tracker:
    the process that made it unlinks it (Python < 3.13 registers every attachment, and the tracker would
    then report it leaked, or unlink it early)."""
    if not _attachment or _attachment[0][0] != name:
        for _, old in _attachment:
            old.close()
        register, resource_tracker.register = resource_tracker.register, lambda *args: None
        try:
            _attachment[:] = [(name, shared_memory.SharedMemory(name))]
        finally:
            resource_tracker.register = register
    return _attachment[0][1]
