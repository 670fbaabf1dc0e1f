"""Timing shared by the benchmarks: best-of-N calls in this process, and whole commands with their memory."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def best_run(run, repeats: int) -> tuple[float, float, object]:
    """Of `repeats` calls of `run()`, the fastest: its wall time and CPU time in seconds (all threads of this
    process and of its worker processes that live through the call); and the last call's result."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), tree_cpu()
        result = run()
        times.append((time.perf_counter() - wall, tree_cpu() - cpu))
    return *min(times), result


def tree_cpu() -> float:
    """CPU seconds used so far by this process and its live descendants (worker processes)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def best_time(run, repeats: int) -> float:
    """The shortest wall time of `repeats` calls of `run()`, in seconds."""
    return best_run(run, repeats)[0]


@dataclass
class Ran:
    """What a command cost: wall and CPU time (s, the CPU time of the process and every descendant it and they
    waited for), the largest single process's peak RSS and the process tree's summed peak RSS (bytes)."""

    seconds: float
    cpu: float
    max_rss: int
    tree_rss: int


def run_command(cmd: list[str], cwd: Path, env: dict[str, str]) -> Ran:
    """Run `cmd` to its end and measure it (RuntimeError with its stderr if it fails). The CPU time also
    counts descendants nobody waits for (a fork server's workers), sampled with the memory every 50 ms."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, cpu, done = [0], {}, threading.Event()

    def sample():
        while not done.wait(0.05):
            rss, seconds = tree_usage(process.pid)
            peak[0] = max(peak[0], rss)
            cpu.update({pid: max(cpu.get(pid, 0.0), used) for pid, used in seconds.items()})

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{process.stderr.read().decode()[-2000:]}")
    return Ran(seconds, max(usage.ru_utime + usage.ru_stime, sum(cpu.values())), usage.ru_maxrss * 1024, peak[0])


def tree_usage(root: int) -> tuple[int, dict[int, float]]:
    """Summed resident memory (bytes) of process `root` and all its descendants, and the CPU seconds each
    of them has used so far (pid: seconds)."""
    parents, rss, cpu = {}, {}, {}
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            statm = Path(entry.path, "statm").read_text()
        except OSError:              # the process ended meanwhile
            continue
        pid, fields = int(entry.name), stat.rsplit(")", 1)[1].split()
        parents[pid] = int(fields[1])
        rss[pid] = int(statm.split()[1]) * page
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick      # utime, stime
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree), {pid: cpu[pid] for pid in tree if pid in cpu}
