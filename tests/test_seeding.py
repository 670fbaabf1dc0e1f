"""One seed, independent streams: each stage's generator depends on the seed and its own name only."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.seeding import STREAMS, generators

SEEDS = st.integers(0, 2 ** 64)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS)
def test_the_same_seed_gives_the_same_streams(seed):
    first, second = generators(seed), generators(seed)
    assert list(first) == list(STREAMS)
    for name in STREAMS:
        assert first[name].bit_generator.state == second[name].bit_generator.state
        assert first[name].integers(0, 2 ** 63, 4).tolist() == second[name].integers(0, 2 ** 63, 4).tolist()


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, other=SEEDS)
def test_streams_differ_between_stages_and_seeds(seed, other):
    draws = {name: tuple(g.integers(0, 2 ** 63, 4)) for name, g in generators(seed).items()}
    assert len(set(draws.values())) == len(STREAMS)
    if other != seed:
        assert not set(draws.values()) & {tuple(g.integers(0, 2 ** 63, 4)) for g in generators(other).values()}


def test_using_one_stream_leaves_the_others_as_they_were():
    untouched = generators(7)
    used = generators(7)
    used["features"].standard_normal(10_000)
    for name in ("data", "init", "shuffle"):
        assert untouched[name].random() == used[name].random()


def test_the_global_random_state_is_neither_used_nor_changed():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    for g in generators(5).values():
        g.standard_normal(10)
    assert np.array_equal(np.random.get_state()[1], state)
