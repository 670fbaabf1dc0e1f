"""Sweeps and feature extraction on real Dask clusters started by the tests with Dask's own commands, on
127.0.0.1: plain tcp:// with two `dask worker` processes, and tls:// with certificates made here with openssl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from distributed import Client
from distributed.security import Security

from mlpcli.cli import cli
from mlpcli.cluster import connect
from mlpcli.sweep.folder import SweepDir
from tests.conftest import TINY
from tests.helpers import sha256

DASK = str(Path(sys.executable).with_name("dask"))
STARTUP = 60     # seconds for a scheduler and its workers to come up on a busy machine


def start_cluster(folder: Path, workers: list[list[str]], tls: list[str] = ()) -> tuple[str, list[subprocess.Popen]]:
    """A `dask scheduler` on a free port of 127.0.0.1 and one `dask worker` command per item of `workers`
    (its extra arguments); the scheduler's address and the processes, scheduler first."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": folder}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info), *(["--protocol", "tls"] if tls else []), *tls], **quiet)]
    try:
        deadline = time.monotonic() + STARTUP
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline and procs[0].poll() is None, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for extra in workers:
            procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-dashboard", "--host",
                                           "127.0.0.1", "--local-directory", str(folder), "--death-timeout", "60",
                                           *extra, *tls], **quiet))
        return address, procs
    except BaseException:
        stop(procs)
        raise


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop the processes by their own PIDs: the workers, then the scheduler; politely, then for good."""
    for group in (procs[1:], procs[:1]):
        for proc in group:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in group:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_workers(address: str, count: int, security: Security | None = None) -> None:
    with Client(address, security=security, timeout="20s") as client:
        client.wait_for_workers(count, timeout=STARTUP)


@pytest.fixture(scope="module")
def tcp_cluster(tmp_path_factory):
    address, procs = start_cluster(tmp_path_factory.mktemp("tcp-cluster"), [[], []])
    try:
        wait_for_workers(address, 2)
        yield address
    finally:
        stop(procs)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, str]:
    """A CA and one certificate it signed for 127.0.0.1 (scheduler, workers and client share it)."""
    folder = tmp_path_factory.mktemp("tls")
    openssl = ["/usr/bin/openssl"]

    def run(*args: str) -> None:
        subprocess.run(openssl + list(args), cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=mlp test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem",
        "-days", "2", "-extfile", "ext.cnf")
    return {"ca": str(folder / "ca.pem"), "cert": str(folder / "node.pem"), "key": str(folder / "node.key")}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certificates):
    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]]
    address, procs = start_cluster(tmp_path_factory.mktemp("tls-cluster"), [["--nworkers", "2"]], tls)
    try:
        assert address.startswith("tls://")
        wait_for_workers(address, 2, Security(tls_ca_file=certificates["ca"], tls_client_cert=certificates["cert"],
                                              tls_client_key=certificates["key"], require_encryption=True))
        yield address
    finally:
        stop(procs)


@pytest.fixture
def base(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "cache_dir": str(tmp_path / "cache")}))
    return path


def sweep(*args: str) -> dict:
    done = CliRunner().invoke(cli, ["sweep", *args, "--json", "-q"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def checkpoints(result: dict) -> dict[str, str]:
    folder = Path(result["sweep"])
    return {r["trial"]: sha256(folder / r["run"] / "checkpoints" / "last.npz") for r in result["trials"]}


def test_dask_cluster_gives_the_local_executors_bytes(base, tmp_path, tcp_cluster):
    space = [str(base), "optim.lr=0.02,0.2", "model.hidden=[8],[12,6]"]
    remote = sweep(*space, "--scheduler", tcp_cluster, "--out", str(tmp_path / "remote"))
    local = sweep(*space, "--workers", "2", "--out", str(tmp_path / "local"))
    with Client(tcp_cluster) as client:
        assert {r["worker"] for r in remote["trials"]} <= set(client.scheduler_info()["workers"])
    assert all(r["status"] == "completed" for r in remote["trials"])
    assert checkpoints(remote) == checkpoints(local)
    assert [r["best_val_acc"] for r in remote["trials"]] == [r["best_val_acc"] for r in local["trials"]]


def test_features_extracted_in_shards_on_the_cluster_equal_a_local_extraction(tmp_path, tcp_cluster):
    larger = {**TINY, "data": {**TINY["data"], "shapes": {"classes": 3, "per_class": 200, "size": 16}, "flip": True},
              "features": {"extractors": [{"hog": {"pixels_per_cell": 4}}, {"color_hist": {}}], "chunk": 40}}
    config = tmp_path / "larger.yaml"
    config.write_text(yaml.safe_dump(larger))
    def chunks_done() -> int:
        with Client(tcp_cluster) as client:
            return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.task_prefixes["chunk"].state_counts[
                "memory"] if "chunk" in dask_scheduler.task_prefixes else 0)

    before, stores = chunks_done(), {}
    for where, executor in (("remote", ["--scheduler", tcp_cluster]), ("local", [])):
        done = CliRunner().invoke(cli, ["features", str(config), f"cache_dir={tmp_path / where}", "-q", *executor])
        assert done.exit_code == 0, done.output
        stores[where] = {path.relative_to(tmp_path / where): path.read_bytes()
                         for path in (tmp_path / where).rglob("*") if path.name in ("rows.npy", "state.npz")}
    assert len(stores["remote"]) == 3 and stores["remote"] == stores["local"]      # train (fit), val: rows; state
    assert chunks_done() - before == 31       # the shards ran as tasks on the cluster: 16 of train, 15 of val


def test_workers_of_a_remote_cluster_get_the_malloc_fix_once_mlp_connects(tcp_cluster):
    """`dask worker`'s nanny starts workers with MALLOC_TRIM_THRESHOLD_ (features 2.7x slower); connect()
    registers the plugin that undoes it on every worker."""
    def faults_on_worker() -> int:     # sent by value: the workers cannot import the tests
        import resource

        import numpy as np

        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(40):
            np.ones(1 << 18, np.float32).sum()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    with connect(tcp_cluster) as client:
        client.run(faults_on_worker)
        faults = client.run(faults_on_worker)
    assert len(faults) == 2 and max(faults.values()) < 1000, faults


def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, tcp_cluster):
    slower = {**TINY, "data": {**TINY["data"], "shapes": {"classes": 3, "per_class": 120, "size": 16}},
              "train": {**TINY["train"], "epochs": 12}, "cache_dir": str(tmp_path / "cache")}
    base = tmp_path / "slow.yaml"
    base.write_text(yaml.safe_dump(slower))
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "sweep", str(base), "optim.lr=0.01,0.02,0.03",
                             "--scheduler", tcp_cluster, "--out", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    with Client(tcp_cluster) as client:
        deadline = time.monotonic() + 90
        while killed is None:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            for worker, keys in client.processing().items():
                trials = [key.split("-")[1] + "-" + key.split("-")[2] for key in keys if key.startswith("trial-")]
                metrics = [out / "runs" / t / "metrics.jsonl" for t in trials]
                if any(m.exists() and 1 <= len(m.read_text().splitlines()) < 12 for m in metrics):
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)             # the worker process itself, not its nanny
                    killed = trials[0]
                    break
            time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    records = SweepDir(out).read_trials()
    assert [r["status"] for r in records.values()] == ["completed"] * 3
    run = out / "runs" / killed
    rows = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(1, 13))
    straight = CliRunner().invoke(cli, ["train", str(run / "config.yaml"), "--out", str(tmp_path / "straight"), "-q"])
    assert straight.exit_code == 0, straight.output
    for name in ("last.npz", "best.npz"):
        assert sha256(run / "checkpoints" / name) == sha256(tmp_path / "straight" / "checkpoints" / name)
    wait_for_workers(tcp_cluster, 2)      # the nanny restarted it, for the tests after this one


def test_tls_cluster_runs_a_sweep_with_the_given_certificates(base, tmp_path, tls_cluster, certificates):
    tls = ["--tls-ca", certificates["ca"], "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]]
    result = sweep(str(base), "optim.lr=0.02,0.2", "--scheduler", tls_cluster, *tls, "--out", str(tmp_path / "s"))
    assert [r["status"] for r in result["trials"]] == ["completed"] * 2
    assert all(r["worker"].startswith("tls://127.0.0.1:") for r in result["trials"])
    for r in result["trials"]:
        run = Path(result["sweep"]) / r["run"]
        again = CliRunner().invoke(cli, ["train", str(run / "config.yaml"), "--out", str(tmp_path / r["trial"]), "-q"])
        assert again.exit_code == 0
        assert sha256(run / "checkpoints" / "last.npz") == sha256(tmp_path / r["trial"] / "checkpoints" / "last.npz")


@pytest.mark.parametrize("scheme, tls, message", [
    ("tls", [], "needs TLS files: --tls-ca, --tls-cert and --tls-key"),
    ("tcp", ["--tls-ca", "{ca}", "--tls-cert", "{cert}", "--tls-key", "{key}"], "TLS files given for a plain tcp://"),
    ("tls", ["--tls-ca", "/nonexistent.pem", "--tls-cert", "{cert}"], "TLS ca file not found: /nonexistent.pem"),
])
def test_tls_mistakes_are_one_line_errors(base, tmp_path, tls_cluster, certificates, scheme, tls, message):
    address = f"{scheme}://{tls_cluster.partition('://')[2]}"
    args = [arg.format(**certificates) for arg in tls]
    done = CliRunner().invoke(cli, ["sweep", str(base), "optim.lr=0.02,0.2", "--scheduler", address, *args,
                                    "--out", str(tmp_path / "s")])
    assert done.exit_code == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "s").exists()


def test_an_unreachable_scheduler_is_a_one_line_error(base, tmp_path):
    done = CliRunner().invoke(cli, ["sweep", str(base), "optim.lr=0.02,0.2", "--scheduler", "tcp://127.0.0.1:9",
                                    "--out", str(tmp_path / "s")])
    assert done.exit_code == 1 and done.stderr.startswith("Error: cannot connect to the Dask scheduler at tcp://127.0.0.1:9")
    assert done.stderr.count("\n") == 1
