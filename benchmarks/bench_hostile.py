"""Issue 10's hostile-input run: configs, overrides and checkpoints drawn from the generators the tests use
(tests/hostile.py), each fed to a real `mlp` process; counts tracebacks, hangs, silent accepts and peak memory.

    python benchmarks/bench_hostile.py --inputs 2000                 # the full run: about an hour on 2 cores
    python benchmarks/bench_hostile.py --inputs 50 --timeout 60      # a smoke run

A trained tiny run (generated shapes) gives the checkpoint that is mutated, the folder `--resume` continues and
an image for `mlp predict`. Each input runs as its own process in a fresh folder, with wait4's ru_maxrss as its
peak memory and an address-space cap (--cap, default 6 GiB) only to protect the machine: the target is 2 GiB at
most for any input under 1 MB. A process fails the run when it prints a traceback, outlives --timeout (a hang),
exits 0 on an input that must be refused (a silent accept), dies by a signal, writes more than one line on
stderr when it fails, or changes the run folder it was refused. Prints a table per category, then every
failure with a command that repeats it; `--out FILE` keeps every result as JSON lines, written as each one ends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hostile import Hostile, Template, hostile_checkpoints, hostile_config_files, hostile_overrides  # noqa: E402

TINY = ["data.shapes.classes=3", "data.shapes.per_class=20", "data.shapes.size=16", "train.epochs=2",
        "train.batch_size=16", "model.hidden=[16]", "features.extractors=[pixels]", "output.plots=false",
        "cache_dir=null", "output.dir=runs"]
KINDS = {"train": 4, "gradcheck": 1, "config": 3, "eval": 2, "predict": 1, "resume": 2}   # shares of the inputs


@dataclass
class Outcome:
    kind: str                 # which command: train, gradcheck, config, eval, predict, resume
    what: str                 # the input's description (category first)
    invalid: bool | None
    args: list[str]
    code: int | None          # exit code; None: killed after --timeout
    seconds: float
    max_rss: int              # bytes
    stderr_lines: int
    traceback: bool
    changed: bool             # a refused --resume changed the run folder

    @property
    def failures(self) -> list[str]:
        found = []
        if self.traceback:
            found.append("traceback")
        if self.code is None:
            found.append("hang")
        elif self.code < 0:
            found.append(f"signal {-self.code}")
        elif self.code == 0 and self.invalid:
            found.append("silent accept")
        elif self.code != 0 and self.stderr_lines != 1:
            found.append(f"{self.stderr_lines} lines on stderr")
        if self.changed:
            found.append("changed the run")
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=2000, help="hostile inputs to run (default: 2000)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a process counts as a hang")
    parser.add_argument("--cap", type=float, default=6, help="address-space cap per process, GiB (machine safety)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the input generators")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, help="write every outcome here as JSON lines")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run, image = prepare(work)
        inputs = draw(args.inputs, Template(run / "checkpoints" / "last.npz"), args.seed)
        print(f"{len(inputs)} inputs; tiny run {run}", file=sys.stderr)
        outcomes = []
        if args.out:
            args.out.write_text("")
        for i, (kind, hostile) in enumerate(inputs, 1):
            outcome = feed(kind, hostile, run, image, work / "case", args.timeout, int(args.cap * (1 << 30)))
            outcomes.append(outcome)
            if args.out:        # as they come: a long run stopped early keeps what it measured
                with args.out.open("a") as out:
                    out.write(json.dumps(asdict(outcome) | {"failures": outcome.failures}) + "\n")
            if i % 50 == 0:
                print(f"  {i}/{len(inputs)}", file=sys.stderr)
        report(outcomes)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def mlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlpcli", *args]


def prepare(work: Path) -> tuple[Path, Path]:
    """A trained tiny run to mutate, and an image to predict."""
    run = work / "tiny"
    subprocess.run(mlp("train", "-q", *TINY, "--out", str(run)), check=True, cwd=work, capture_output=True)
    image = work / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    return run, image


def draw(count: int, template: Template, seed_value: int) -> list[tuple[str, Hostile]]:
    """`count` (command, input) pairs from the generators, in the shares of KINDS."""
    strategies = {"train": hostile_overrides(), "gradcheck": hostile_overrides(), "config": hostile_config_files(),
                  **{kind: hostile_checkpoints(template) for kind in ("eval", "predict", "resume")}}
    kinds = st.sampled_from([kind for kind, share in KINDS.items() for _ in range(share)])
    drawn: list[tuple[str, Hostile]] = []

    @seed(seed_value)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        kind = data.draw(kinds)
        drawn.append((kind, data.draw(strategies[kind])))

    while len(drawn) < count:
        collect()
        collect = seed(seed_value + len(drawn))(collect)
    return drawn[:count]


def feed(kind: str, hostile: Hostile, run: Path, image: Path, case: Path, timeout: float, cap: int) -> Outcome:
    """Run one input in a fresh folder `case`; its outcome."""
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    if kind in ("train", "gradcheck"):
        args = (["train", "-q", *TINY, *hostile.overrides] if kind == "train"
                else ["gradcheck", "--samples", "3", "--batch", "4", *hostile.overrides])
    elif kind == "config":
        (case / "hostile.yaml").write_bytes(hostile.config)
        args = ["train", "-q", "hostile.yaml", *[item for item in TINY if not _same_key(item, hostile.key)]]
    else:
        shutil.copytree(run, case / "run")
        for name in ("last.npz", "best.npz"):
            (case / "run" / "checkpoints" / name).write_bytes(hostile.checkpoint)
        checkpoint = str(case / "run" / "checkpoints" / "last.npz")
        args = {"eval": ["eval", checkpoint], "predict": ["predict", checkpoint, str(image)],
                "resume": ["train", "--resume", str(case / "run"), "-q", "train.epochs=3"]}[kind]
    before = _digest(case / "run") if kind == "resume" else None
    code, stderr, seconds, max_rss = run_process(mlp(*args), case, timeout, cap)
    changed = kind == "resume" and code not in (0, None) and _digest(case / "run") != before
    return Outcome(kind, hostile.what, hostile.invalid, args, code, round(seconds, 2), max_rss,
                   len(stderr.splitlines()), "Traceback (most recent call last)" in stderr, changed)


def run_process(command: list[str], cwd: Path, timeout: float, cap: int) -> tuple[int | None, str, float, int]:
    """(exit code or None after `timeout`, stderr, seconds, peak RSS in bytes from wait4) of `command` run
    under an address-space cap of `cap` bytes, in its own process group (killed whole on a hang)."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        os.setsid()

    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=limit_memory)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(process.stderr.read()))
    reader.start()
    code = None
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.perf_counter() - started > timeout:
            os.killpg(process.pid, signal.SIGKILL)
            _, _, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.01)
    process.returncode = code if code is not None else -signal.SIGKILL      # reaped here, not by Popen
    reader.join()
    process.stderr.close()
    return code, b"".join(chunks).decode("utf-8", "replace"), time.perf_counter() - started, usage.ru_maxrss * 1024


def _same_key(item: str, key: str | None) -> bool:
    """Whether override `item` sets `key`, a key within it, or a section holding it."""
    if key is None:
        return False
    name = item.partition("=")[0]
    return name == key or name.startswith(key + ".") or key.startswith(name + ".")


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def report(outcomes: list[Outcome]) -> None:
    rows: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        rows[f"{outcome.kind} / {outcome.what.split(':')[0]}"].append(outcome)
    header = (f"{'command / category':<34} {'inputs':>6} {'refused':>7} {'tracebacks':>10} {'hangs':>5} "
              f"{'silent':>6} {'other':>5} {'max RSS':>8} {'max s':>6}")
    print(header)
    print("-" * len(header))
    for name, group in [*sorted(rows.items()), ("total", outcomes)]:
        failures = [f for o in group for f in o.failures]
        other = sum(1 for f in failures if f not in ("traceback", "hang", "silent accept"))
        print(f"{name:<34} {len(group):>6} {sum(o.code not in (0, None) for o in group):>7} "
              f"{failures.count('traceback'):>10} {failures.count('hang'):>5} {failures.count('silent accept'):>6} "
              f"{other:>5} {max(o.max_rss for o in group) / (1 << 20):>6.0f}Mi {max(o.seconds for o in group):>6.1f}")
    failed = [o for o in outcomes if o.failures]
    print(f"\n{len(failed)} failing inputs" + (":" if failed else ""))
    for outcome in failed:
        print(f"  {', '.join(outcome.failures)}: {outcome.what} — mlp {' '.join(map(repr, outcome.args))[:300]}")


if __name__ == "__main__":
    main()
