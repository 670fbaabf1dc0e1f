"""The memory budget: the network it counts is the one mlp builds, its estimates bound what training and
gradcheck allocate, and what cannot fit is refused in one line before anything large is allocated."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli import budget
from mlpcli.config import load_config
from mlpcli.errors import ConfigError
from mlpcli.nn.gradcheck import check_model
from mlpcli.nn.model import MLP
from tests.conftest import TINY
from tests.helpers import run_with_peak, traced_peak

MODELS = st.fixed_dictionaries({"hidden": st.lists(st.integers(1, 12), max_size=3),
                                "activation": st.sampled_from(["relu", "tanh", "maxout"]),
                                "maxout_pieces": st.integers(2, 4)})


@settings(max_examples=40, deadline=None)
@given(model=MODELS, inputs=st.integers(1, 20), classes=st.integers(2, 6))
def test_layer_shapes_are_the_networks(model, inputs, classes):
    cfg = load_config(None, [f"model.{key}={value}" for key, value in model.items()])
    network = MLP.from_config(inputs, classes, cfg.model, cfg.loss, cfg.reg, np.random.default_rng(0))
    weights = [network.params[f"layer{i}.W"].shape for i in range(len(cfg.model.hidden) + 1)]
    assert budget.layer_shapes(cfg.model, inputs, classes) == weights
    params = sum(array.size for array in network.params.values())
    assert budget.network(cfg, inputs, classes, "w", copies=1, rows=0)[0].bytes == 4 * params


@pytest.mark.parametrize("overrides", [[], ["optim.name=adam", "model.hidden=[64, 32]", "train.batch_size=8"],
                                       ["model.activation=maxout", "model.maxout_pieces=3", "features.extractors=[hog]"]])
def test_the_training_estimate_bounds_what_training_allocates(tmp_path, overrides):
    from mlpcli import experiment

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = load_config(tmp_path / "tiny.yaml", overrides)
    images = 3 * 30                                   # the images and their features are not in the estimate:
    data = images * (16 * 16 * 3 + 8 * 768)           # pixels, and features in float32 and float64 copies
    estimate = sum(need.bytes for need in budget.training(cfg, (16, 16, 3), 3, images))
    peak = traced_peak(lambda: experiment.run(cfg, tmp_path / "run"))
    assert peak <= estimate + data + (4 << 20), (peak, estimate)


def test_the_gradcheck_estimate_bounds_what_gradcheck_allocates():
    cfg = load_config(None, ["model.hidden=[300]", "model.dtype=float64"])
    rng = np.random.default_rng(0)
    estimate = sum(need.bytes for need in budget.gradcheck(cfg, 50, 5, 8, gates=False))

    def check():
        model = MLP.from_config(50, 5, cfg.model, cfg.loss, cfg.reg, rng)
        check_model(model, rng.standard_normal((8, 50)), rng.integers(0, 5, 8), samples=3, rng=rng)

    assert traced_peak(check) <= estimate + (1 << 20)


def test_what_does_not_fit_is_refused_naming_the_settings(monkeypatch):
    monkeypatch.setattr(budget, "available", lambda: 100 << 20)
    cfg = load_config(None, ["model.hidden=[4000, 4000]"])
    with pytest.raises(ConfigError) as err:
        budget.require(budget.training(cfg, (32, 32, 3), 10, 50_000), "training")
    message = str(err.value)
    assert message.startswith("training needs about ") and ", but 100.0 MiB is available (" in message
    assert "for the weights, gradients and optimizer state (" in message and "; lower model.hidden" in message
    monkeypatch.setattr(budget, "available", lambda: 1 << 30)
    budget.require(budget.training(load_config(), (32, 32, 3), 10, 1000), "training")     # the default fits


def run_limited(code: str, limit: int) -> subprocess.CompletedProcess:
    """`python -c code` under an address-space limit of `limit` bytes (ulimit -v)."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          preexec_fn=limit_memory)


def test_an_address_space_limit_lowers_what_is_available():
    result = run_limited("from mlpcli.budget import available; print(available())", 2 << 30)
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) < 2 << 30


@pytest.mark.parametrize("args, what", [
    (["gradcheck", "model.activation=maxout", "model.maxout_pieces=1000", "model.hidden=[100000]"], "gradcheck needs"),
    (["train", "-q", "model.hidden=[1000000]", "output.dir=."], "training needs"),
    (["features", "features.extractors=[{bow: {patches: 20000000}}]", "cache_dir=null"], "feature extraction needs"),
])
def test_real_runs_that_cannot_fit_stop_at_once_in_one_line(tmp_path, args, what):
    limit = 2 << 30
    done = run_with_peak([sys.executable, "-m", "mlpcli", *args], cwd=tmp_path,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert done.code == 1
    assert done.stderr.startswith(f"Error: {what} about ") and len(done.stderr.splitlines()) == 1, done.stderr
    assert 0 < done.peak_kib < 400 << 10                     # KiB: refused before allocating
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call, message", [
    ("Pixels(size=[8192, 8192]).fit_transform(np.zeros((20, 16, 16, 3), np.uint8))",
     r"Pixels.transform needs about [\d.,]+ GiB of memory, but .* is available \(.*\); lower its parameters or the "
     r"number of images"),
    ("BagOfWords(words=100000, patches=100000).fit(np.zeros((20, 16, 16, 3), np.uint8))",
     r"BagOfWords.fit needs about .*; lower its parameters"),
    ("MLPClassifier(hidden=(10**6, 10**6)).fit(np.zeros((4, 3)), [0, 1, 0, 1])",
     r"fit needs about [\d.,]+ GiB of memory, .*; lower hidden, the features or batch_size"),
])
def test_estimators_that_cannot_fit_are_refused_before_allocating(call, message):
    result = run_limited(f"""
        import numpy as np
        from mlpcli import BagOfWords, MLPClassifier, Pixels
        from mlpcli.arrays import InputError
        try:
            {call}
        except InputError as err:
            print(err)
        """, 2 << 30)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(message, result.stdout.strip()), result.stdout
