"""`mlp train` as a real process, stopped by Ctrl-C (once or twice) or kill -9 at any moment — while starting up,
preparing data, training or writing its summary — then continued: never a traceback, exit code 130 for Ctrl-C,
and what remains is either nothing, a folder `--out` can reuse, or a run that `--resume` ends byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlpcli.rundir import RunDir
from tests.conftest import TINY
from tests.helpers import sha256

CONFIG = {**TINY, "data": {**TINY["data"], "shapes": {"classes": 3, "per_class": 300, "size": 16}},
          "train": {**TINY["train"], "epochs": 10}}
FRACTIONS = (0.04, 0.3, 0.6, 0.95)   # of the reference run's wall time, jittered: start-up, data, training, end
PYTHON_START = 0.3   # s: a Ctrl-C before the interpreter has imported its site module is Python's own affair


def mlp(*args: str, cwd: Path) -> subprocess.Popen:
    """`mlp ARGS` started in `cwd`, its temporary files there too (a killed process cannot remove them)."""
    return subprocess.Popen([sys.executable, "-m", "mlpcli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(cwd)})


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, float]:
    """(config file, a run folder trained without interruption, its wall time in seconds)."""
    root = tmp_path_factory.mktemp("interrupt")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    started = time.monotonic()
    proc = mlp("train", str(config), "--out", str(root / "reference"), "-q", cwd=root)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return config, root / "reference", time.monotonic() - started


def finish(folder: Path, config: Path) -> None:
    """Continue what an interrupted `mlp train --out folder` left: resume a run folder, else start again."""
    if RunDir(folder).summary.exists():        # it had finished
        return
    if RunDir(folder).config.exists():
        args = ["train", "--resume", str(folder), "-q"]
    else:
        args = ["train", str(config), "--out", str(folder), "-q"]
    proc = mlp(*args, cwd=folder.parent)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, (args, stderr)


def assert_same_run(folder: Path, reference: Path) -> None:
    for name in ("last.npz", "best.npz"):
        assert sha256(folder / "checkpoints" / name) == sha256(reference / "checkpoints" / name)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in RunDir(folder).read_metrics()]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in RunDir(reference).read_metrics()]


@pytest.mark.parametrize("fraction, presses", list(zip(FRACTIONS, [2, 1, 2, 1])))
def test_ctrl_c_at_any_moment_exits_130_and_leaves_a_run_to_resume_or_nothing(reference, tmp_path, fraction,
                                                                               presses):
    config, done, seconds = reference
    wait = max(PYTHON_START, seconds * fraction * np.random.default_rng(int(fraction * 100)).uniform(0.8, 1.2))
    folder = tmp_path / "run"
    proc = mlp("train", str(config), "--out", str(folder), "-q", cwd=tmp_path)
    time.sleep(wait)
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr
    if proc.returncode == 0:        # the run ended before the signal arrived
        assert_same_run(folder, done)
        return
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last == "Aborted." or last.endswith(f"Continue with: mlp train --resume {folder}"), stderr
    assert not folder.exists() or RunDir(folder).config.exists(), "a folder that neither --resume nor --out takes"
    finish(folder, config)
    assert_same_run(folder, done)


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_kill_9_at_any_moment_then_resume_is_byte_identical(reference, tmp_path, fraction):
    config, done, seconds = reference
    wait = seconds * fraction * np.random.default_rng(int(fraction * 100)).uniform(0.8, 1.2)
    folder = tmp_path / "run"
    proc = mlp("train", str(config), "--out", str(folder), "-q", cwd=tmp_path)
    time.sleep(wait)
    proc.kill()
    proc.communicate(timeout=60)
    finish(folder, config)
    assert_same_run(folder, done)
