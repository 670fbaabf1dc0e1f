"""Sweeps on the local executor (a Dask LocalCluster of worker processes), end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlpcli.cli import cli
from mlpcli.cluster import connect
from mlpcli.sweep.driver import run_sweep
from mlpcli.sweep.folder import SweepDir
from mlpcli.sweep.results import format_table
from mlpcli.sweep.spec import feature_key, load_spec, plan, trials_of
from tests.conftest import TINY
from tests.test_parallel import page_faults_of_reused_temporaries
from tests.helpers import sha256


@pytest.fixture(scope="module")
def client():
    with connect(workers=2) as client:
        yield client


@pytest.fixture
def base(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "cache_dir": str(tmp_path / "cache")}))
    return path


def sweep_of(base: Path, args: list[str], out: Path, client, settings: dict | None = None) -> tuple[SweepDir, list]:
    folder = SweepDir.create(load_spec(base, args, settings), out)
    return folder, run_sweep(folder, client, progress=False)


def mlp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, cwd=cwd)


def retrained(run: Path, out: Path) -> Path:
    """`mlp train RUN/config.yaml` in folder `out`."""
    done = CliRunner().invoke(cli, ["train", str(run / "config.yaml"), "--out", str(out), "-q"])
    assert done.exit_code == 0, done.output
    return out


def test_cli_sweep_with_seeds_writes_the_folder_and_results(base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, ["sweep", str(base), "optim.lr=0.02,0.2", "model.hidden=[8],[12,6]",
                                    "train.epochs=3", "--seeds", "2", "--workers", "2", "--json", "-q"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    sweep = SweepDir(result["sweep"])
    assert sweep.path.parent == tmp_path / "sweeps" and sweep.path.name.startswith("tiny-")
    records = [json.loads(line) for line in sweep.trials.read_text().splitlines()]
    assert [r["trial"] for r in records] == [f"{i:03d}-seed{s}" for i in range(4) for s in (3, 4)]
    assert all(r["status"] == "completed" and r["epochs"] == 3 and r["worker"].startswith("tcp://") for r in records)
    assert records[2]["params"] == {"optim.lr": 0.02, "model.hidden": [12, 6]}
    for r in records:
        cfg = yaml.safe_load((sweep.path / r["run"] / "config.yaml").read_text())
        assert cfg["seed"] == r["seed"] and cfg["train"]["threads"] == 1 and cfg["sweep"]["params"] == {}
        assert cfg["optim"]["lr"] == r["params"]["optim.lr"] and cfg["model"]["hidden"] == r["params"]["model.hidden"]
        assert cfg["train"]["epochs"] == 3
    rows = result["configurations"]
    assert [row["n"] for row in rows] == [2] * 4
    assert [row["mean"] for row in rows] == sorted((row["mean"] for row in rows), reverse=True)
    best = rows[0]
    scores = [r["best_val_acc"] for r in records if r["config"] == best["config"]]
    assert best["mean"] == pytest.approx(sum(scores) / 2)
    table = format_table(rows, "val_acc").splitlines()
    assert table[0].split()[:3] == ["#", "optim.lr", "model.hidden"] and " ± " in table[1]


def test_a_trial_equals_mlp_train_of_its_config_byte_for_byte(base, tmp_path, client):
    sweep, records = sweep_of(base, ["optim.lr=0.02,0.1"], tmp_path / "sweep", client)
    for record in records:
        run = sweep.path / record["run"]
        again = retrained(run, tmp_path / f"again-{record['trial']}")
        for name in ("last.npz", "best.npz"):
            assert sha256(run / "checkpoints" / name) == sha256(again / "checkpoints" / name)


def test_features_are_extracted_once_before_the_trials(base, tmp_path, client):
    sweep, records = sweep_of(base, ["optim.lr=0.01,0.03,0.1", "reg=0,0.001", "model.hidden=[8],[12]"],
                              tmp_path / "sweep", client)
    cached = list((tmp_path / "cache").rglob("rows.npy"))
    assert cached
    first_trial = min((sweep.path / r["run"] / "config.yaml").stat().st_mtime for r in records)
    assert max(path.stat().st_mtime for path in cached) <= first_trial     # every trial found them cached
    one = tmp_path / "one"                   # a single run of one trial's config, with a cache of its own
    one.mkdir()
    cfg = yaml.safe_load((sweep.path / records[0]["run"] / "config.yaml").read_text())
    (one / "config.yaml").write_text(yaml.safe_dump({**cfg, "cache_dir": str(one / "cache")}))
    retrained(one, tmp_path / "one-run")
    assert len(cached) == len(list((one / "cache").rglob("rows.npy")))      # one set for all 12 trials


def test_cluster_workers_reuse_the_memory_of_numpy_temporaries(client):
    """Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_, which made features 2.7x slower; the plugin
    that connect() registers undoes it on every worker."""
    faults = client.run(page_faults_of_reused_temporaries)
    assert len(faults) == 2 and max(faults.values()) < 1000, faults


def test_trials_share_features_unless_data_features_or_seed_differ():
    spec = load_spec(None, ["optim.lr=0.01,0.1"], {"seeds": 2})
    keys = {}
    for index, params in enumerate(plan(spec)):
        for trial in trials_of(spec, index, params, 3):
            keys.setdefault(feature_key(trial.cfg), []).append(trial.id)
    assert sorted(keys.values()) == [["000-seed0", "001-seed0"], ["000-seed1", "001-seed1"]]
    other = [load_spec(None, ["reg=0,1", *change]) for change in
             (["model.hidden=[5]", "train.epochs=3", "optim.name=adam", "loss.name=hinge"],
              ["data.shapes.noise=0.2"], ["features.normalize=none"], ["model.dtype=float64"])]
    base_key = feature_key(trials_of(spec, 0, {"optim.lr": 0.01}, 3)[0].cfg)
    assert [feature_key(trials_of(s, 0, {"reg": 0}, 3)[0].cfg) == base_key for s in other] == [True, False, False, False]


def test_successive_halving_continues_the_best_from_their_checkpoints(base, tmp_path, client):
    sweep, records = sweep_of(base, ["optim.lr=0.003,0.01,0.03,0.1", "optim.schedule=constant"], tmp_path / "sweep",
                              client, {"prune": "halving"})
    spec = sweep.load_spec()
    assert spec.train.epochs == 4 and spec.sweep.eta == 3
    statuses = sorted((r["status"], r["epochs"]) for r in records)
    assert statuses == [("completed", 4), ("pruned", 1), ("pruned", 1), ("pruned", 1)]
    winner = next(r for r in records if r["status"] == "completed")
    at_rung = {r["trial"]: r["best_val_acc"] for r in records if r["status"] == "pruned"}
    first_epoch = json.loads((sweep.path / winner["run"] / "metrics.jsonl").read_text().splitlines()[0])["val_acc"]
    assert all(first_epoch >= score for score in at_rung.values())
    cached = [path.stat().st_mtime for path in (tmp_path / "cache").rglob("rows.npy")]
    first_trial = min((sweep.path / r["run"] / "config.yaml").stat().st_mtime for r in records)
    assert cached and max(cached) <= first_trial          # continuing from a checkpoint extracted nothing either
    again = retrained(sweep.path / winner["run"], tmp_path / "straight")      # never paused
    for name in ("last.npz", "best.npz"):
        assert sha256(sweep.path / winner["run"] / "checkpoints" / name) == sha256(again / "checkpoints" / name)


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", str(base), "optim.lr=0.05,1e30", "optim.schedule=constant", "--workers", "1", "--out", "s"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    records = SweepDir("s").read_trials()
    failed = records["001-seed3"]
    assert failed["status"] == "failed" and failed["error"].startswith("the loss became")
    assert "\n" not in failed["error"]
    assert records["000-seed3"]["status"] == "completed"
    assert "failed" in done.stdout.splitlines()[-2]           # the table's last row
    done = CliRunner().invoke(cli, ["sweep", str(base), "optim.lr=1e30,1e31", "optim.schedule=constant",
                                    "--workers", "1", "--out", "all-failed"])
    assert done.exit_code == 1 and done.stderr.splitlines()[-1].startswith("Error: every trial failed; the first: the loss")


def test_bad_sweeps_fail_up_front_in_one_line(base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = mlp("sweep", str(base), "optim.lr=0.1,-1", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == ("Error: sweep.params.optim.lr=[0.1, -1]: the value -1 is invalid: optim.lr: -1.0 is out "
                           "of range; it must be at least 0.0\n")
    assert not (tmp_path / "sweeps").exists()
    done = CliRunner().invoke(cli, ["sweep", "--resume", str(tmp_path), "optim.lr=0.1,1"])
    assert done.exit_code == 2 and "--resume takes the sweep folder alone" in done.output
    done = CliRunner().invoke(cli, ["sweep", "--resume", str(tmp_path)])
    assert done.exit_code == 1 and "is not a sweep folder" in done.output


def test_tpe_resume_replays_the_told_rounds(base, tmp_path, client):
    settings = {"method": "tpe", "trials": 6, "round": 2}
    sweep, records = sweep_of(base, ["optim.lr=loguniform(0.001,0.5)", "model.hidden=[8],[16]"], tmp_path / "a",
                              client, settings)
    shutil.copytree(sweep.path, tmp_path / "b")
    partial = SweepDir(tmp_path / "b")
    kept = {r["trial"]: r for r in records[:2]}                     # as if killed after the first round
    partial.write_trials(kept)
    for r in records[2:]:
        shutil.rmtree(partial.path / r["run"])
    again = run_sweep(partial, client, progress=False)
    assert [r["params"] for r in again] == [r["params"] for r in records]
    assert [r["best_val_acc"] for r in again] == [r["best_val_acc"] for r in records]
    assert again[:2] == records[:2]


def _start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlpcli", "sweep", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait(condition, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the sweep did not get there in time")
        time.sleep(0.02)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_driver_killed_or_interrupted_then_resume_keeps_and_finishes(tmp_path, sig, code):
    slower = {**TINY, "data": {**TINY["data"], "shapes": {"classes": 3, "per_class": 120, "size": 16}},
              "train": {**TINY["train"], "epochs": 12}, "cache_dir": str(tmp_path / "cache")}
    base = tmp_path / "slow.yaml"
    base.write_text(yaml.safe_dump(slower))
    out = tmp_path / "sweep"
    proc = _start_sweep([str(base), "optim.lr=0.01,0.02,0.03", "--workers", "1", "--out", str(out), "-q"], tmp_path)
    runs = out / "runs"

    def one_done_one_going() -> bool:
        done = [t for t, r in SweepDir(out).read_trials().items() if r["status"] == "completed"]
        going = [p.parent.name for p in runs.glob("*/metrics.jsonl")
                 if p.parent.name not in done and len(p.read_text().splitlines()) >= 2]
        return bool(done and going)

    _wait(one_done_one_going, proc)
    finished = next(t for t, r in SweepDir(out).read_trials().items() if r["status"] == "completed")
    files = [runs / finished / "checkpoints" / name for name in ("last.npz", "best.npz")]
    before = [(sha256(p), p.stat().st_mtime_ns) for p in files]
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    if sig == signal.SIGINT:
        assert stderr.strip().splitlines()[-1] == ("sweep interrupted with 1 trials finished; continue with: "
                                                   f"mlp sweep --resume {out}")
        assert sorted(r["status"] for r in SweepDir(out).read_trials().values()) == ["completed", "unfinished",
                                                                                      "unfinished"]
    resumed = mlp("sweep", "--resume", str(out), "--workers", "1", "-q")
    assert resumed.returncode == 0, resumed.stderr
    records = SweepDir(out).read_trials()
    assert [r["status"] for r in records.values()] == ["completed"] * 3
    assert before == [(sha256(p), p.stat().st_mtime_ns) for p in files]
    for trial in records:
        again = retrained(runs / trial, tmp_path / f"straight-{trial}")
        assert sha256(runs / trial / "checkpoints" / "last.npz") == sha256(again / "checkpoints" / "last.npz")


def test_report_of_a_sweep_links_every_trial(base, tmp_path, client):
    sweep, records = sweep_of(base, ["optim.lr=0.003,0.03,0.3", "optim.schedule=constant", "train.epochs=3"],
                              tmp_path / "sweep", client, {"seeds": 2, "prune": "halving"})
    done = CliRunner().invoke(cli, ["report", str(sweep.path)])
    assert done.exit_code == 0, done.output
    page = (sweep.path / "report.html").read_text()
    assert done.stdout.strip() == str(sweep.path / "report.html")
    for picture in ("keys.png", "seeds.png", "curves.png"):
        assert f'src="report/{picture}"' in page and (sweep.path / "report" / picture).stat().st_size > 0
    for record in records:
        link = f'runs/{record["trial"]}/report.html' if record["status"] == "completed" else f'runs/{record["trial"]}/'
        assert f'href="{link}"' in page and (sweep.path / link).exists()
    assert page.index("optim.lr") < page.index("Sweep spec")
