"""Timing shared by the benchmarks."""

from __future__ import annotations

import time


def best_run(run, repeats: int) -> tuple[float, float, object]:
    """Of `repeats` calls of `run()`, the fastest: its wall time and CPU time (all threads) in seconds;
    and the last call's result."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return *min(times), result


def best_time(run, repeats: int) -> float:
    """The shortest wall time of `repeats` calls of `run()`, in seconds."""
    return best_run(run, repeats)[0]
