"""A full disk, for real: each scenario runs in a private mount namespace (`unshare -rm`) on a small tmpfs that
it fills with a file, and `mlp` must stop with one line naming the file it could not write, keep every
checkpoint and feature store written before, and resume byte-identical once there is room again."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.conftest import TINY

SCENARIO = textwrap.dedent("""
    import json, os, subprocess, sys, time
    disk, config, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", disk], check=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}

    def mlp(*args):
        return subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, env=env)

    def fill():      # unbuffered: a buffered file keeps the bytes a full disk refused and raises again on close
        with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"x" * 65536)
            except OSError:
                pass

    def listing():
        return sorted(os.path.relpath(os.path.join(d, f), disk) for d, _, fs in os.walk(disk) for f in fs
                      if f != "filler")

    run = os.path.join(disk, "run")
    out = {}
    if mode == "training":
        proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "train", config, "--out", run, "-q"],
                                stderr=subprocess.PIPE, text=True, env=env)
        while not os.path.exists(os.path.join(run, "checkpoints", "last.npz")):
            time.sleep(0.01)
        fill()
        with open(os.path.join(run, "checkpoints", "last.npz"), "rb") as f:
            before = f.read()
        _, out["stderr"] = proc.communicate(timeout=120)
        out["code"] = proc.returncode
        with open(os.path.join(run, "checkpoints", "last.npz"), "rb") as f:
            out["last_kept"] = f.read() == before or f.read() == b""
        out["files"] = listing()
        os.unlink(os.path.join(disk, "filler"))
        resumed = mlp("train", "--resume", run, "-q")
        out["resume_code"], out["resume_stderr"] = resumed.returncode, resumed.stderr
        out["last"] = open(os.path.join(run, "checkpoints", "last.npz"), "rb").read().hex()
    else:
        cache = os.path.join(disk, "cache")
        first = mlp("features", config, "cache_dir=" + cache, "-q")
        out["first_code"] = first.returncode
        before = listing()
        fill()
        second = mlp("features", config, "cache_dir=" + cache, "-q", "features.extractors=[{pixels: {gray: true}}]")
        out["code"], out["stderr"] = second.returncode, second.stderr
        out["before"], out["files"] = before, listing()
    subprocess.run(["umount", disk], check=True)
    print(json.dumps(out))
""")


def scenario(tmp_path: Path, mode: str, config: dict) -> dict:
    (tmp_path / "disk").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(["unshare", "-rm", sys.executable, "-c", SCENARIO, str(tmp_path / "disk"), str(path), mode],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_disk_that_fills_during_training_stops_with_one_line_and_resumes_byte_identical(tmp_path):
    config = {**TINY, "train": {**TINY["train"], "epochs": 40}, "model": {"hidden": [64]},
              "output": {**TINY["output"], "name": "full"}}
    reference = tmp_path / "reference"
    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", str(path), "--out", str(reference), "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = scenario(tmp_path, "training", config)
    assert out["code"] == 1
    line, = out["stderr"].strip().splitlines()
    assert line.startswith("Error: No space left on device: ") and "/run/" in line, line
    assert "run/checkpoints/last.npz" in out["files"] and out["last_kept"]
    assert not [name for name in out["files"] if name.endswith(".tmp")], out["files"]
    assert out["resume_code"] == 0, out["resume_stderr"]
    assert bytes.fromhex(out["last"]) == (reference / "checkpoints" / "last.npz").read_bytes()


def test_a_disk_that_fills_during_extraction_stops_with_one_line_and_keeps_the_stores_before(tmp_path):
    config = {**TINY, "data": {**TINY["data"], "shapes": {"classes": 3, "per_class": 400, "size": 24}},
              "features": {"extractors": [{"pixels": {}}], "chunk": 100}}
    out = scenario(tmp_path, "extraction", config)
    assert out["first_code"] == 0
    assert out["code"] == 1
    line, = out["stderr"].strip().splitlines()
    assert line.startswith("Error: No space left on device"), line
    assert out["files"] == out["before"] and any(name.endswith("rows.npy") for name in out["before"])
