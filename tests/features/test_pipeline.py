from __future__ import annotations

import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlpcli.config import load_config
from mlpcli.data.augment import Copy, Images, Mirror, shift_and_flip
from mlpcli.data.dataset import ArrayReader, Dataset, in_memory
from mlpcli.errors import CheckpointError, DataError
from mlpcli.features import pixels
from mlpcli.features.pipeline import FeaturePipeline, column_stats
from mlpcli.features import store as store_module
from mlpcli.features.store import MappedRows, StoreRoot
from mlpcli.npzfile import load_npz
from mlpcli.parallel import ProcessPool


BOTH = (Images(), Mirror())


def images(n: int, seed: int, shape=(6, 5, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def split(batch: np.ndarray) -> Dataset:
    return in_memory(batch, np.arange(len(batch)) % 2, ["a", "b"])


def pipeline(overrides=()) -> FeaturePipeline:
    cfg = load_config(None, ["features.extractors=[pixels]", *overrides])
    return FeaturePipeline(cfg.features, cfg.model.dtype, progress=False)


@pytest.fixture
def stores(tmp_path):
    root = StoreRoot(str(tmp_path / "cache"))
    yield root
    root.close()


def test_standardization_is_fit_on_training_images_only():
    pipe = pipeline()
    train = pipe.fit_transform(images(50, 0), np.random.default_rng(0))
    assert train.dtype == np.float32 and train.shape == (50, 90)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    other = images(20, 1)
    expected = (other.reshape(20, -1) / 255 - pipe.mean) / pipe.std
    np.testing.assert_allclose(pipe.transform(other), expected, rtol=1e-5, atol=1e-5)


def test_stored_bytes_do_not_depend_on_the_chunks_or_the_worker_processes(tmp_path):
    """One task in this process, or tasks of 7 images on two worker processes: the same store files."""
    data = split(images(40, 0))
    whole = StoreRoot(str(tmp_path / "whole"))
    one = pipeline(["features.chunk=1000"]).fit(data, np.random.default_rng(0), whole, views=BOTH)
    parts = StoreRoot(str(tmp_path / "parts"))
    with ProcessPool(2) as pool:
        fitted = pipeline(["features.chunk=7"])
        many = fitted.fit(data, np.random.default_rng(0), parts, pool, views=BOTH)
        other = fitted.store(split(images(20, 1)), parts, pool)
    for name in ("rows.npy", "state.npz"):
        assert (one.path / name).read_bytes() == (many.path / name).read_bytes()
    np.testing.assert_array_equal(other.rows(in_memory=True), fitted.transform(images(20, 1)))


def test_mirror_appends_the_features_of_the_mirror_images():
    batch = images(9, 0)
    pipe = pipeline(["features.chunk=4"])
    both = pipe.fit_transform(batch, np.random.default_rng(0), views=BOTH)
    assert both.shape == (18, 90)
    np.testing.assert_allclose(both.mean(axis=0), 0, atol=1e-5)       # standardized over images and mirrors
    np.testing.assert_array_equal(both[:9], pipe.transform(batch))
    np.testing.assert_array_equal(both[9:], pipe.transform(np.ascontiguousarray(batch[:, :, ::-1])))
    np.testing.assert_array_equal(pipe.transform(batch, views=BOTH), both)


def test_extractors_are_concatenated_in_order():
    pipe = pipeline(["features.extractors=[{pixels: {gray: true}}, {pixels: {}}]", "features.normalize=none"])
    batch = images(4, 0)
    features = pipe.transform(batch)
    assert features.shape == (4, 30 + 90) and pipe.dims((6, 5, 3)) == [30, 90]
    np.testing.assert_allclose(features[:, :30], (batch / 255 @ pixels.LUMA).reshape(4, -1), rtol=1e-6)
    np.testing.assert_allclose(features[:, 30:], batch.reshape(4, -1) / 255, rtol=1e-6)


def test_state_round_trip_reproduces_features():
    fitted = pipeline()
    fitted.fit_transform(images(40, 0), np.random.default_rng(0))
    restored = pipeline()
    restored.load_state(fitted.state())
    np.testing.assert_array_equal(restored.transform(images(5, 2)), fitted.transform(images(5, 2)))


def test_missing_state_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="normalize.mean"):
        pipeline().load_state({})


def test_images_of_another_size_are_refused():
    pipe = pipeline()
    pipe.fit_transform(images(10, 0), np.random.default_rng(0))
    with pytest.raises(CheckpointError, match="differ in size"):
        pipe.transform(images(3, 0, shape=(7, 5, 3)))


def test_a_stored_split_is_served_from_the_cache(stores, monkeypatch):
    data = split(images(30, 0))
    first = pipeline().fit(data, np.random.default_rng(0), stores).rows(in_memory=True)

    def fail(self, images):
        raise AssertionError("extracted again instead of reading the store")

    monkeypatch.setattr(pixels.Pixels, "transform", fail)
    again = pipeline()
    np.testing.assert_array_equal(again.fit(data, np.random.default_rng(0), stores).rows(in_memory=True), first)
    assert again.mean is not None and again.cache_hits == 1


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["rows.npy", "state.npz"]), cut=st.integers(0, 10 ** 6), extra=st.binary(max_size=64),
       rewrite=st.booleans())
def test_a_damaged_cached_store_is_removed_and_built_again(name, cut, extra, rewrite):
    """Cut short, lengthened or rewritten with another shape, rows.npy (or a damaged state.npz) is not served:
    the split is extracted again, to the same rows, and the damaged store replaced. (Bytes changed in place,
    at the same length, would need a checksum of every row, read at every use: not kept.)"""
    data = split(images(30, 0))
    with tempfile.TemporaryDirectory() as tmp:
        stores = StoreRoot(tmp)
        store = pipeline().fit(data, np.random.default_rng(0), stores)
        first = store.rows(in_memory=True)
        path = store.path / name
        content = path.read_bytes()
        damaged = content[:min(cut, len(content) - 1)] + extra
        assume(rewrite or len(damaged) != len(content))
        state = load_npz(store.path / "state.npz")
        if rewrite and name == "rows.npy":
            np.save(path, first[:-1])
        else:
            path.write_bytes(damaged)
        try:      # a zip archive may take bytes appended or cut from its trailing comment and read the same
            unharmed = name == "state.npz" and load_npz(path).keys() == state.keys() and all(
                np.array_equal(load_npz(path)[key], value) for key, value in state.items())
        except ValueError:
            unharmed = False
        again = pipeline()
        np.testing.assert_array_equal(again.fit(data, np.random.default_rng(0), stores).rows(in_memory=True), first)
        assert again.cache_hits == unharmed and store.intact()


def test_stores_are_keyed_by_the_images_the_feature_config_and_the_extractor_version(stores, monkeypatch):
    data = split(images(10, 0))
    pipeline().fit(data, np.random.default_rng(0), stores)
    pipeline(["features.extractors=[{pixels: {gray: true}}]"]).fit(data, np.random.default_rng(0), stores)
    pipeline().fit(data.subset(np.arange(8)), np.random.default_rng(0), stores)
    monkeypatch.setattr(pixels.Pixels, "version", pixels.Pixels.version + 1)
    again = pipeline()
    again.fit(data, np.random.default_rng(0), stores)
    assert again.cache_hits == 0
    assert len([p for p in stores.path.iterdir() if not p.name.startswith(".")]) == 4


def test_a_failed_extraction_leaves_no_store_behind(stores, monkeypatch):
    calls = []

    def fail_on_the_second_task(self, batch):
        calls.append(len(batch))
        if len(calls) == 3:        # the probe for the width, the first task, then this one
            raise DataError("broken image")
        return batch.reshape(len(batch), -1).astype(np.float32)

    monkeypatch.setattr(pixels.Pixels, "transform", fail_on_the_second_task)
    with pytest.raises(DataError, match="broken image"):
        pipeline(["features.chunk=5"]).fit(split(images(20, 0)), np.random.default_rng(0), stores)
    assert list(stores.path.iterdir()) == []


class FlakyReader(ArrayReader):
    """Images in memory, of which those at `broken` positions cannot be read (as data.on_error: skip)."""

    def __init__(self, images: np.ndarray, broken: set[int], positions=None) -> None:
        super().__init__(images, key=f"flaky {sorted(broken)}")
        self.broken, self.positions = broken, np.arange(len(images)) if positions is None else positions

    def read(self, index):
        batch, _ = super().read(index)
        problems = {row: f"cannot read image {i}" for row, i in enumerate(self.positions[index]) if i in self.broken}
        batch[list(problems)] = 0
        return batch, problems

    def part(self, index):
        return FlakyReader(self.images[index], self.broken, self.positions[index])


def test_unreadable_images_are_marked_left_out_of_the_statistics_and_counted(stores):
    batch = images(12, 0)
    data = Dataset(FlakyReader(batch, {3, 8}), np.arange(12), np.arange(12) % 2, ["a", "b"])
    pipe = pipeline(["features.chunk=5"])
    with pytest.warns(UserWarning, match="skipped 2 unreadable image.*cannot read image 3"):
        store = pipe.fit(data, np.random.default_rng(0), stores, views=BOTH)
    unreadable = store.unreadable()
    np.testing.assert_array_equal(np.flatnonzero(unreadable), [3, 8, 15, 20])
    readable = np.delete(batch, [3, 8], axis=0)
    raw = np.concatenate([readable, readable[:, :, ::-1]]).reshape(20, -1).astype(np.float32) / 255
    np.testing.assert_allclose(pipe.mean, raw.mean(axis=0), rtol=1e-5)
    rows = store.rows(in_memory=True)
    np.testing.assert_allclose(rows[~unreadable], pipe.transform(readable, views=BOTH)[np.r_[0:10, 10:20]], atol=1e-5)


def test_a_class_left_without_readable_images_is_an_error(stores):
    data = Dataset(FlakyReader(images(6, 0), {1, 3, 5}), np.arange(6), np.arange(6) % 2, ["a", "b"])
    with warnings.catch_warnings(), pytest.raises(DataError, match="class 'b' has no readable image left"):
        warnings.simplefilter("ignore")
        pipeline().fit(data, np.random.default_rng(0), stores)


def test_non_finite_features_name_their_extractor(stores):
    pipe = pipeline(["features.extractors=[pixels, {bow: {words: 2, patches: 20, patch: 2, pool: 1, power: 1000}}]"])
    with pytest.raises(DataError, match="the bow extractor gave non-finite features"):
        pipe.fit(split(images(10, 0, shape=(8, 8, 3))), np.random.default_rng(0), stores)
    assert list(stores.path.iterdir()) == []


def test_the_least_recently_used_stores_go_first_beyond_the_size_limit(tmp_path):
    root = StoreRoot(str(tmp_path), max_gb=None)
    pipe = pipeline()
    stores = [pipe.fit(split(images(200, seed)), np.random.default_rng(0), root) for seed in range(4)]
    size = stores[0].nbytes
    for age, store in enumerate(stores):      # oldest use first: 0, then 1, ...
        os.utime(store.path / "info.json", (1000 + age, 1000 + age))
    limited = StoreRoot(str(tmp_path), max_gb=2.5 * size / 2 ** 30)
    limited.open(stores[0].path.name)          # just used: stays
    limited.evict()
    left = sorted(p.name for p in limited.path.iterdir())
    assert left == sorted([stores[0].path.name, stores[3].path.name])


def test_a_store_read_row_by_row_and_not_cached_is_read_through_once_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "MAP_WHOLE_BYTES", 0)          # pread, as a store of over 256 MB
    monkeypatch.setattr(store_module, "PREFETCH_BYTES", 1000)
    np.save(tmp_path / "rows.npy", np.arange(3000, dtype=np.float32).reshape(1000, 3))
    read, readv, cached_in_fact = [], os.readv, store_module._cached
    monkeypatch.setattr(os, "readv", lambda handle, buffers: read.append(readv(handle, buffers)) or read[-1])
    started = set(threading.enumerate())
    for cached in (True, False):
        monkeypatch.setattr(store_module, "_cached", lambda handle, size: cached)
        MappedRows(tmp_path / "rows.npy").prefetch()
    for thread in set(threading.enumerate()) - started:
        thread.join(timeout=30)
    assert sum(read) == (tmp_path / "rows.npy").stat().st_size and read[-1] == 0 and max(read) == 1000
    handle = os.open(tmp_path / "rows.npy", os.O_RDONLY)
    assert cached_in_fact(handle, os.fstat(handle).st_size)          # just read: in the cache
    os.close(handle)


@pytest.mark.parametrize("map_whole", [256 << 20, 0], ids=["mapped", "pread"])
def test_mapped_rows_gather_and_slice_like_the_rows_in_memory(stores, monkeypatch, map_whole):
    monkeypatch.setattr(store_module, "MAP_WHOLE_BYTES", map_whole)
    store = pipeline().fit(split(images(30, 0)), np.random.default_rng(0), stores)
    whole, mapped = store.rows(in_memory=True), store.rows(in_memory=False)
    assert isinstance(mapped, MappedRows) and len(mapped) == 30
    index = np.random.default_rng(1).permutation(30)[:12]
    np.testing.assert_array_equal(mapped.take(index, np.empty((12, 90), np.float32)), whole[index])
    for rows in (slice(5, 17), slice(0, 30), slice(28, 40), slice(3, 20, 4), slice(7, 7)):
        np.testing.assert_array_equal(mapped[rows], whole[rows])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 39), st.integers(1, 12)), min_size=1, max_size=8),
       st.integers(0, 2**32 - 1))
def test_a_store_read_row_by_row_reads_runs_of_rows_whole_and_gathers_any_rows(runs, seed):
    """Runs of consecutive rows (in any order, repeated, overlapping, or scattered rows) come out as from
    memory; a gather of mostly runs reads each run with one pread."""
    rows = np.random.default_rng(seed).standard_normal((50, 3)).astype(np.float32)
    index = np.concatenate([np.arange(start, min(start + length, 50)) for start, length in runs])
    index = np.random.default_rng(seed).permutation(index)
    with tempfile.TemporaryDirectory() as folder:
        np.save(f"{folder}/rows.npy", rows)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store_module, "MAP_WHOLE_BYTES", 0)
            mapped = MappedRows(Path(folder) / "rows.npy")
            reads = []
            real = mapped._read
            patch.setattr(mapped, "_read", lambda out, start: reads.append(len(out)) or real(out, start))
            np.testing.assert_array_equal(mapped.take(index, np.empty((len(index), 3), np.float32)), rows[index])
    ordered = np.sort(index)
    run_count = 1 + np.count_nonzero(np.diff(ordered) != 1)
    assert len(reads) == (run_count if run_count <= len(index) // 2 else len(index))


def test_random_gathers_from_a_large_store_keep_the_resident_memory_bounded(tmp_path, monkeypatch):
    """A fault on a cached file maps the folio around the page too: gathering a few MB of random small rows
    through a memory map mapped the whole 64 MB file; a store over MAP_WHOLE_BYTES is read with pread."""
    monkeypatch.setattr(store_module, "MAP_WHOLE_BYTES", 8 << 20)
    path = tmp_path / "rows.npy"
    rows = np.random.default_rng(0).standard_normal((48_000, 334)).astype(np.float32)
    np.save(path, rows)                                      # 64 MB, in the page cache once written
    mapped, out = MappedRows(path), np.empty((200, 334), np.float32)
    rng, process = np.random.default_rng(0), psutil.Process()
    before = process.memory_info().rss
    for _ in range(100):                                     # 20,000 rows, 27 MB gathered at random
        index = rng.integers(0, 48_000, 200)
        np.testing.assert_array_equal(mapped.take(index, out), rows[index])
    assert process.memory_info().rss - before < 16 << 20
    np.save(path, rows[:1000])
    with pytest.raises(DataError, match="shorter than its header"):
        mapped.take(np.array([47_999]), out[:1])


def test_column_stats_in_row_blocks_equal_numpy():
    X = (np.random.default_rng(0).standard_normal((1000, 7)) * 3 + 5).astype(np.float32)
    mean, std = column_stats(X, block=97)
    np.testing.assert_allclose(mean, X.mean(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(std, X.std(axis=0, dtype=np.float64), rtol=1e-12)
    keep = np.arange(1000) % 3 > 0
    mean, std = column_stats(X, keep, block=97)
    np.testing.assert_allclose(std, X[keep].std(axis=0, dtype=np.float64), rtol=1e-12)


def test_augmented_copies_follow_the_images_rows_with_bytes_independent_of_the_chunks(tmp_path):
    """A store of views (images, mirror images, two copies): each copy's block holds the features of the
    copies drawn for its images, whether one task in this process or tasks of 7 on two worker processes
    extracted them."""
    batch = images(40, 0, shape=(8, 9, 3))
    copies = tuple(Copy(seed=3, epoch=0, copy=k, pad=2, fill="zero", flip=True) for k in range(2))
    views = (*BOTH, *copies)
    raw = ["features.normalize=none"]
    one = pipeline(["features.chunk=1000", *raw]).fit(split(batch), np.random.default_rng(0),
                                                       StoreRoot(str(tmp_path / "whole")), views=views)
    with ProcessPool(2) as pool:
        many = pipeline(["features.chunk=7", *raw]).fit(split(batch), np.random.default_rng(0),
                                                        StoreRoot(str(tmp_path / "parts")), pool, views=views)
    assert (one.path / "rows.npy").read_bytes() == (many.path / "rows.npy").read_bytes()
    assert one.info["views"] == ["images", "mirror images", "copy 1", "copy 2"]
    rows = one.rows(in_memory=True)
    assert rows.shape == (160, 8 * 9 * 3)
    np.testing.assert_array_equal(rows[:40], pixels.Pixels(pixels.PixelsConfig()).transform(batch))
    for k, view in enumerate(copies):
        shifts, flips = view.draws(40)
        expected = pixels.Pixels(pixels.PixelsConfig()).transform(shift_and_flip(batch, shifts, flips, 2, "zero"))
        np.testing.assert_array_equal(rows[80 + 40 * k:120 + 40 * k], expected)
    assert not np.array_equal(rows[80:120], rows[120:])
