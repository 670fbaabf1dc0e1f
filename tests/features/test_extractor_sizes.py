"""What every extractor says about itself before it runs — its output width, the shapes of its fitted state
and the memory it needs — against what it then does, for generated options and image shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpcli.data.dataset import in_memory
from mlpcli.errors import DataError
from mlpcli.features import EXTRACTORS
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.schema import from_dict
from tests.helpers import traced_peak

OPTIONS = {
    "pixels": st.fixed_dictionaries({"gray": st.booleans(),
                                     "size": st.none() | st.lists(st.integers(1, 24), min_size=2, max_size=2)}),
    "color_hist": st.fixed_dictionaries({"space": st.sampled_from(["hue", "rgb", "hsv"]), "bins": st.integers(1, 12),
                                         "grid": st.integers(1, 5)}),
    "hog": st.fixed_dictionaries({"orientations": st.integers(1, 12), "pixels_per_cell": st.integers(2, 10),
                                  "cells_per_block": st.integers(1, 3), "transform_sqrt": st.booleans(),
                                  "color": st.sampled_from(["max_gradient", "gray"]), "interpolate": st.booleans()}),
    "bow": st.fixed_dictionaries({"patch": st.integers(1, 7), "stride": st.integers(1, 3), "words": st.integers(1, 24),
                                  "pool": st.integers(1, 3), "whiten": st.booleans(), "patches": st.integers(24, 400),
                                  "encoding": st.sampled_from(["hard", "triangle"]), "iterations": st.integers(1, 4),
                                  "init": st.sampled_from(["near-mean", "k-means++"])}),
}
SHAPES = st.tuples(st.integers(4, 40), st.integers(4, 40), st.sampled_from([1, 3]))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def extractors(draw):
    name = draw(st.sampled_from(sorted(EXTRACTORS)))
    cls = EXTRACTORS[name]
    return cls(from_dict(cls.Config, draw(OPTIONS[name])))


def fit(extractor, images: np.ndarray) -> None:
    extractor.fit(in_memory(images, np.zeros(len(images), np.int64), [""]), np.random.default_rng(0))


def fitted(extractor, images: np.ndarray):
    fit(extractor, images)
    return extractor


@SETTINGS
@given(extractor=extractors(), shape=SHAPES, n=st.integers(1, 5))
def test_output_dim_and_state_spec_are_what_transform_and_fit_give(extractor, shape, n):
    images = np.random.default_rng(1).integers(0, 256, (n, *shape), dtype=np.uint8)
    try:
        features = fitted(extractor, images).transform(images)
    except DataError as err:
        try:
            extractor.output_dim(shape)
        except DataError as same:
            assert str(same) == str(err)
            return
        raise AssertionError(f"transform refused {shape} images ({err}) but output_dim did not")
    assert extractor.output_dim(shape) == features.shape[1]
    assert extractor.state_spec(shape) == {key: (value.shape, value.dtype) for key, value in extractor.state().items()}


def check_estimates(extractor, images: np.ndarray) -> tuple[int, int]:
    """(fit, transform) peak bytes measured, after checking that the estimates bound them (give or take
    SLACK of interpreter-level allocations). Each is the smaller of two runs: a first run also fills caches
    of a few tables (hog's, by batch size and orientations), which are not what the estimates count."""
    shape, n = images.shape[1:], len(images)
    fitting = min(traced_peak(lambda: fit(extractor, images)) for _ in range(2))
    transform = min(traced_peak(lambda: extractor.transform(images)) for _ in range(2))
    assert fitting <= extractor.fit_bytes(shape) + SLACK
    assert transform <= extractor.transform_bytes(shape, n) + SLACK
    return fitting, transform


SLACK = 1 << 20


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extractor=extractors(), shape=SHAPES, n=st.integers(1, 80))
def test_memory_estimates_bound_what_fit_and_transform_allocate(extractor, shape, n):
    try:
        extractor.output_dim(shape)
    except DataError:
        return
    check_estimates(extractor, np.random.default_rng(2).integers(0, 256, (n, *shape), dtype=np.uint8))


@pytest.mark.parametrize("name, options, shape, n", [
    ("pixels", {}, (32, 32, 3), 2000),
    ("pixels", {"gray": True, "size": [64, 64]}, (32, 32, 3), 500),
    ("hog", {}, (32, 32, 3), 500),
    ("hog", {"interpolate": True, "color": "gray"}, (120, 100, 3), 40),
    ("color_hist", {"space": "rgb", "bins": 16, "grid": 4}, (32, 32, 3), 200),
    ("color_hist", {}, (300, 200, 3), 8),
    ("bow", {"words": 300, "patches": 8_000}, (32, 32, 3), 20),
    ("bow", {"words": 64, "patches": 16_000, "patch": 8, "stride": 2, "encoding": "hard"}, (32, 32, 1), 20),
])
def test_memory_estimates_at_realistic_sizes_are_close(name, options, shape, n):
    cls = EXTRACTORS[name]
    extractor = cls(from_dict(cls.Config, options))
    images = np.random.default_rng(4).integers(0, 256, (n, *shape), dtype=np.uint8)
    fit, transform = check_estimates(extractor, images)
    assert extractor.transform_bytes(shape, n) <= 3 * transform + SLACK        # an upper bound, not a wild one
    assert extractor.fit_bytes(shape) <= 3 * fit + SLACK


def test_the_pipeline_adds_up_its_extractors_and_the_normalization():
    from mlpcli.config import load_config

    cfg = load_config(None, ["features.extractors=[hog, color_hist, {bow: {words: 5, patches: 50}}]"])
    pipeline = FeaturePipeline(cfg.features, cfg.model.dtype)
    images = np.random.default_rng(3).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    features = pipeline.fit_transform(images, np.random.default_rng(0))
    assert sum(pipeline.dims((32, 32, 3))) == features.shape[1]
    assert pipeline.state_spec((32, 32, 3)) == {key: (value.shape, value.dtype)
                                                for key, value in pipeline.state().items()}
