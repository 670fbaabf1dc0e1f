"""The feature cache: it removes only what mlp wrote (cache_dir can be any folder, and a config chooses it), and
a store whose info.json cannot be parsed is damaged, built again."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.features.store import StoreRoot, cache_contents, clear_cache, foreign
from mlpcli.npzfile import save_npz

KEY = "0123456789abcdef" * 2
OURS = {"f" * 32, f".{'e' * 32}-abc_1234.part", f"{'d' * 32}.npz", f"folder-{'c' * 32}"}    # as write_ours names them
NEAR_MISSES = [KEY, KEY.upper(), KEY[:-1], KEY + "0", f"{KEY}.npz", f".{KEY}-abcdefgh.part", f".{KEY}.part",
               f"folder-{KEY}", ".tmp-abcdefgh", "rows.npy", "info.json"]     # names mlp gives, on the user's files


def write_ours(cache: Path) -> list[Path]:
    """What mlp writes in a cache (named as OURS): a store, a store being built, round 1's .npz store and
    round 1's decoded images."""
    store = StoreRoot(str(cache)).create("f" * 32, rows=3, dim=2, dtype=np.float32, about={}).finish(None, None)
    building = cache / "features" / f".{'e' * 32}-abc_1234.part"
    building.mkdir()
    np.save(building / "rows.npy", np.zeros((3, 2), np.float32))
    round1 = cache / "features" / f"{'d' * 32}.npz"
    save_npz(round1, {"features": np.zeros((3, 2)), "mean": np.zeros(2)})
    images = cache / "images" / f"folder-{'c' * 32}"
    images.mkdir()
    for name in ("train-images", "train-labels", "skipped"):
        np.save(images / f"{name}.npy", np.zeros(2))
    return [store.path, building, round1, images]


def write_theirs(path: Path, kind: str, elsewhere: Path) -> None:
    """A user's file or folder at `path`: a file, a folder with a store's files and one of the user's, a
    folder with a store's file and a folder named like another, or a link to a folder `elsewhere` holding
    a store's file."""
    if kind == "file":
        path.write_bytes(b"mine")
    elif kind == "link":
        elsewhere.mkdir(parents=True)
        (elsewhere / "rows.npy").write_bytes(b"mine")
        path.symlink_to(elsewhere)
    else:
        path.mkdir()
        (path / "info.json").write_text("{}")
        (path / "rows.npy").mkdir() if kind == "folder in folder" else (path / "results.csv").write_text("mine")


def snapshot(root: Path) -> dict[Path, bytes | str | None]:
    """Every path under `root`: a file's bytes, a link's target, None for a folder."""
    return {path: os.readlink(path) if path.is_symlink() else None if path.is_dir() else path.read_bytes()
            for path in root.rglob("*")}


names = st.one_of(st.sampled_from(NEAR_MISSES),
                  st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                          max_size=40)).filter(lambda name: name not in {".", "..", *OURS})


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.tuples(names, st.sampled_from(["features", "images"]),
                                  st.sampled_from(["file", "folder", "folder in folder", "link"])),
                        min_size=1, max_size=4, unique_by=lambda entry: entry[0]))
def test_eviction_and_clear_remove_what_mlp_wrote_and_never_anything_else(entries):
    """Files and folders of the user's under cache_dir/features and cache_dir/images, named as anything (as mlp
    names its own, too), are neither listed as stores, nor evicted, nor cleared; mlp's own entries beside them
    are."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        (cache / "features").mkdir(parents=True)
        (cache / "images").mkdir()
        for i, (name, folder, kind) in enumerate(entries):
            write_theirs(cache / folder / name, kind, Path(tmp) / "elsewhere" / str(i))
        theirs = snapshot(Path(tmp))
        ours = write_ours(cache)
        assert sorted(foreign(str(cache))) == sorted(name for name, folder, _ in entries if folder == "features")
        assert sorted(entry["key"] for entry in cache_contents(str(cache))) == sorted(path.name for path in ours[:3])
        StoreRoot(str(cache), max_gb=0).evict()
        assert clear_cache(str(cache)) > 0
        assert snapshot(Path(tmp)) == theirs


def test_a_store_whose_info_json_is_nested_too_deeply_is_damaged_and_built_again(tmp_path):
    root = StoreRoot(str(tmp_path))
    store = root.create(KEY, rows=3, dim=2, dtype=np.float32, about={}).finish(None, None)
    (store.path / "info.json").write_text("[" * 100_000 + "]" * 100_000)
    assert not store.intact()
    assert [entry["status"] for entry in cache_contents(str(tmp_path))] == ["damaged"]
    assert root.open(KEY) is None and not store.path.exists()
    again = root.create(KEY, rows=3, dim=2, dtype=np.float32, about={}).finish(None, None)
    assert json.loads((again.path / "info.json").read_text())["rows"] == 3 and root.open(KEY) is not None
