"""One seed, independent random streams: each stage of a run draws from its own generator, all spawned
from `cfg.seed`, so changing one stage (say, the features) leaves the others' randomness as it was."""

from __future__ import annotations

import numpy as np

STREAMS = ("data", "features", "init", "shuffle", "dropout", "augment")
"""New streams go at the end: a SeedSequence's i-th child does not depend on how many are spawned, so the
earlier streams keep their values."""


def generators(seed: int) -> dict[str, np.random.Generator]:
    """{stream name: generator} for the run seeded by `seed`."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def keyed_generator(seed: int, stream: str, *key: int) -> np.random.Generator:
    """A generator of stream `stream` of the run seeded by `seed`, keyed further by integers (augment: epoch
    and copy number): the same key gives the same draws, other keys independent ones, in any order."""
    parent = np.random.SeedSequence(seed).spawn(len(STREAMS))[STREAMS.index(stream)]
    return np.random.default_rng(np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, *key)))
