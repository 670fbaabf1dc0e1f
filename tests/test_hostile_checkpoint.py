"""Checkpoints as hostile input (issue 10): a valid checkpoint mutated member by member, byte by byte and
re-zipped with hostile headers is refused with one line naming the file — or, where the change touched
nothing that is read, loads exactly as the original — in bounded time and memory, through `checkpoint.load`,
`mlp eval`, `mlp predict` and `mlp train --resume`, without changing anything already written."""

from __future__ import annotations

import json
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlpcli import checkpoint
from mlpcli.cli import cli
from mlpcli.errors import CheckpointError
from mlpcli.schema import to_dict
from mlpcli.train import Progress
from tests.conftest import TINY
from tests.helpers import run_with_peak
from tests.helpers import folder_digest, traced_peak
from tests.hostile import Member, Template, hostile_checkpoints, members_of, npy_header, stored, zip_bytes

MEMORY = 64 << 20      # bytes loading any of these checkpoints may allocate (the valid one needs ~30 KB)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A trained tiny run (shapes, pixels, a 2-layer net, momentum)."""
    root = tmp_path_factory.mktemp("hostile_run")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(cli, ["train", str(root / "tiny.yaml"), "--out", str(root / "run"), "-q"])
    assert result.exit_code == 0, result.output
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "image.png")
    return root / "run"


@pytest.fixture(scope="module")
def template(run_folder) -> Template:
    return Template(run_folder / "checkpoints" / "last.npz")


@pytest.fixture(scope="module")
def original(run_folder) -> checkpoint.Checkpoint:
    return checkpoint.load(run_folder / "checkpoints" / "last.npz")


def same_content(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint) -> bool:
    arrays = all(getattr(a, group).keys() == getattr(b, group).keys()
                 and all(np.array_equal(getattr(a, group)[k], getattr(b, group)[k]) for k in getattr(a, group))
                 for group in checkpoint.GROUPS)
    return (arrays and to_dict(a.config) == to_dict(b.config) and a.classes == b.classes
            and a.image_shape == b.image_shape and a.input_dim == b.input_dim and a.progress == b.progress)


def load_traced(path: Path) -> tuple[checkpoint.Checkpoint | None, str | None]:
    """(checkpoint, None) or (None, its one-line error), after checking time and memory."""
    outcome = [None, None]

    def attempt():
        try:
            outcome[0] = checkpoint.load(path)
        except CheckpointError as err:
            outcome[1] = str(err)

    started = time.perf_counter()
    peak = traced_peak(attempt)
    assert peak < MEMORY and time.perf_counter() - started < 5, f"{peak:,} bytes"
    message = outcome[1]
    if message is not None:
        assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 1000, message
    return outcome[0], message


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_hostile_checkpoints_load_or_give_one_line(template, original, tmp_path, data):
    hostile = data.draw(hostile_checkpoints(template))
    path = tmp_path / "hostile.npz"
    path.write_bytes(hostile.checkpoint)
    loaded, message = load_traced(path)
    if hostile.invalid:
        assert message is not None, f"accepted {hostile.what}"
    elif hostile.invalid is False:
        assert loaded is not None, f"refused {hostile.what}: {message}"
    if loaded is not None:
        assert same_content(loaded, original), f"{hostile.what} loaded as something else"


def one_error_line(result, path: Path) -> str:
    assert result.exit_code not in (0, None) and not isinstance(result.exception, AssertionError), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0], result.stderr
    return lines[0]


@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), command=st.sampled_from(["eval", "predict", "resume"]))
def test_hostile_checkpoints_through_eval_predict_and_resume(run_folder, template, tmp_path, data, command):
    hostile = data.draw(hostile_checkpoints(template))
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(run_folder, run)
    path = run / "checkpoints" / "last.npz"
    path.write_bytes(hostile.checkpoint)
    (run / "checkpoints" / "best.npz").write_bytes(hostile.checkpoint)
    before = folder_digest(run)
    args = {"eval": ["eval", str(path)], "predict": ["predict", str(path), str(run_folder.parent / "image.png")],
            "resume": ["train", "--resume", str(run), "-q", "train.epochs=5"]}[command]
    result = CliRunner().invoke(cli, args)
    if result.exit_code == 0:
        assert not hostile.invalid, f"accepted {hostile.what}"
    else:
        one_error_line(result, run if command == "resume" else path)
        assert folder_digest(run) == before, f"{command} of {hostile.what} changed the run folder"


@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_hostile_checkpoints_in_real_processes_use_little_memory(template, tmp_path, data):
    hostile = data.draw(hostile_checkpoints(template).filter(lambda h: h.invalid))
    path = tmp_path / "hostile.npz"
    path.write_bytes(hostile.checkpoint)
    done = run_with_peak([sys.executable, "-m", "mlpcli", "eval", str(path)])
    assert done.code == 1
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"Error: {path}: "), (hostile.what, done.stderr)
    assert 0 < done.peak_kib < 400 << 10, f"{done.peak_kib:,} KiB"


def rewritten(template: Template, path: Path, **meta) -> Path:
    path.write_bytes(template.with_meta({**template.meta, **meta}))
    return path


@pytest.mark.parametrize("field, value, message", [
    ("format_version", 1.0, "checkpoint format version 1.0; this mlpcli reads version 1"),
    ("format_version", True, "checkpoint format version True"),
    ("classes", "abcd", "meta classes is 'abcd'; expected a list of 2 to 100,000 class names"),
    ("classes", ["a", "a", "b"], "names a class twice"),
    ("classes", [1, 2, 3], "meta classes holds 1"),
    ("classes", None, "meta classes is None"),
    ("image_shape", 16, "meta image_shape is 16"),
    ("image_shape", None, "meta image_shape is None"),
    ("image_shape", "16", "meta image_shape is '16'"),
    ("image_shape", [16, 16, 3.0], "meta image_shape is [16, 16, 3.0]"),
    ("input_dim", 324.7, "meta input_dim is 324.7, but its features of [16, 16, 3] images have 768 dimensions"),
    ("input_dim", 0, "meta input_dim is 0"),
    ("input_dim", -768, "meta input_dim is -768"),
    ("input_dim", 10 ** 10, "meta input_dim is 10000000000"),
    ("input_dim", None, "meta input_dim is None"),
    ("input_dim", "768", "meta input_dim is '768'"),
    ("config", [], "its config is [], not a mapping of config keys"),
])
def test_meta_fields_of_the_wrong_type_or_range(template, tmp_path, field, value, message):
    path = rewritten(template, tmp_path / "a.npz", **{field: value})
    with pytest.raises(CheckpointError, match=None) as err:
        checkpoint.load(path)
    assert message in str(err.value)


@pytest.mark.parametrize("raw, message", [
    (b"[1, 2]", "'meta' is a JSON list, not an object"),
    (b"[" * 50_000 + b"]" * 50_000, "'meta' is not valid JSON"),
    (b'{"a": ' * 40 + b"1" + b"}" * 40, "'meta' is nested deeper than 32 levels"),
    (b'{"a": NaN}', "'meta' is not valid JSON (NaN is not a JSON number"),
    (b"\xff\xfe", "'meta' is not valid JSON"),
    (b'{"format_version": 1, "format_version": 1}', "an object repeats a key"),
    (b"9" * 5000, "'meta' is not valid JSON"),
])
def test_meta_that_is_not_an_object(template, tmp_path, raw, message):
    path = tmp_path / "a.npz"
    path.write_bytes(template.with_meta(raw))
    _, error = load_traced(path)
    assert message in error


@pytest.mark.parametrize("change, message", [
    ({"evil": 1}, "meta progress is"),
    ({"epoch": -5}, "meta progress.epoch is -5"),
    ({"epoch": "2"}, "meta progress.epoch is '2'"),
    ({"step": 10 ** 9}, "meta progress.step is 1000000000"),
    ({"rng_state": {"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 624}}}, "progress.rng_state"),
    ({"rng_state": "x"}, "meta progress.rng_state is 'x'"),
    ({"best_epoch": 99}, "meta progress.best_epoch is 99"),
    ({"stopped": "weird"}, "meta progress.stopped is 'weird'"),
    ({"stopped": "", "epoch": 2, "best_epoch": 2, "stale": 0, "step": 6},
     "meta progress.step is 6, but an epoch of this run ends after step 5"),
])
def test_progress_that_does_not_fit_refuses_resume(run_folder, template, tmp_path, change, message):
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    rewritten(template, run / "checkpoints" / "last.npz", progress={**template.meta["progress"], **change})
    before = folder_digest(run)
    line = one_error_line(CliRunner().invoke(cli, ["train", "--resume", str(run), "-q"]), run)
    assert message in line and folder_digest(run) == before


def test_progress_must_be_an_object(template, tmp_path):
    for value in ([], "x", 5):
        _, error = load_traced(rewritten(template, tmp_path / "a.npz", progress=value))
        assert "meta progress is" in error


def test_progress_schema_covers_every_field_of_training_progress():
    assert set(checkpoint.PROGRESS) == set(Progress.__dataclass_fields__)


def test_a_round_one_checkpoint_without_newer_progress_fields_still_loads(template, original, tmp_path):
    progress = {key: value for key, value in template.meta["progress"].items() if key not in checkpoint.PROGRESS_ADDED}
    loaded = checkpoint.load(rewritten(template, tmp_path / "a.npz", progress=progress))
    assert loaded.progress == progress and np.array_equal(loaded.params["layer0.W"], original.params["layer0.W"])


@pytest.mark.parametrize("name", ["params/extra", "features/extra", "optim/extra", "buffers/running_mean"])
def test_extra_members_are_refused(template, tmp_path, name):
    path = tmp_path / "a.npz"
    path.write_bytes(template.with_arrays({**template.arrays, name: np.zeros(3, np.float32)}))
    _, error = load_traced(path)
    assert f"unexpected arrays ['{name}'], which its config does not describe" in error


@pytest.mark.parametrize("array, message", [
    (np.zeros(5, np.float32), "'features/normalize.mean' is float32 (5,), but its config describes float32 (768,)"),
    (np.zeros(768, np.float64), "'features/normalize.mean' is float64 (768,), but its config describes float32"),
    (np.zeros((768, 1), np.float32), "is float32 (768, 1)"),
    (np.full(768, np.nan, np.float32), "'features/normalize.mean' holds non-finite values"),
])
def test_normalization_arrays_of_the_wrong_shape_dtype_or_values(template, tmp_path, array, message):
    path = tmp_path / "a.npz"
    path.write_bytes(template.with_arrays({**template.arrays, "features/normalize.mean": array}))
    _, error = load_traced(path)
    assert message in error


def test_a_zero_standard_deviation_is_refused(template, tmp_path):
    path = tmp_path / "a.npz"
    path.write_bytes(template.with_arrays({**template.arrays, "features/normalize.std": np.zeros(768, np.float32)}))
    assert "'features/normalize.std' holds values that are not positive" in load_traced(path)[1]


@pytest.mark.parametrize("method", [1, 99])
def test_unreadable_compression_methods(template, tmp_path, method):
    members = members_of(template.arrays)
    members[0].method = method
    path = tmp_path / "a.npz"
    path.write_bytes(zip_bytes(members))
    assert f"uses compression method {method}; only stored (0) and deflate (8) are read" in load_traced(path)[1]


def test_encrypted_members(template, tmp_path):
    members = members_of(template.arrays)
    members[-1].flags |= 0x1
    path = tmp_path / "a.npz"
    path.write_bytes(zip_bytes(members))
    assert "is encrypted or patched (zip flags 0x1)" in load_traced(path)[1]


def test_a_member_that_is_not_npy(template, tmp_path):
    members = members_of(template.arrays)
    members[1] = stored(members[1].name, b"just some text")
    path = tmp_path / "a.npz"
    path.write_bytes(zip_bytes(members))
    assert f"member '{members[1].name[:-4]}' is not a .npy array" in load_traced(path)[1]


def test_deflated_checkpoints_as_numpy_writes_them_load(template, original, tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, **template.arrays)
    assert same_content(checkpoint.load(path), original)


def zeros_deflated(size: int, chunk: int = 64 << 20) -> bytes:
    """Raw deflate data of `size` zero bytes (a multiple of `chunk`), made without compressing them all:
    a fully flushed block is byte-aligned and independent, so one block of `chunk` zeros repeats."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size // chunk) + compressor.flush()


def test_a_member_claiming_64_gib_in_a_small_file_is_refused_unread(template, tmp_path):
    members = members_of(template.arrays)
    name = "params/layer0.W.npy"
    index = [m.name for m in members].index(name)
    members[index].size = 64 << 30
    path = tmp_path / "a.npz"
    path.write_bytes(zip_bytes(members))
    assert path.stat().st_size < 400_000
    error = load_traced(path)[1]
    assert f"member 'params/layer0.W' declares {64 << 30:,} bytes, but its header announces float32 (768, 16)" in error


def test_a_1_5_gib_member_is_refused_from_its_header_undecompressed(template, tmp_path):
    count = 3 << 27                                            # float32 values: 1.5 GiB
    header = npy_header((count,))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH) + zeros_deflated(4 * count)
    # sizes and header tell the truth; the CRC is left 0, as the data is never read
    member = Member("params/layer0.W.npy", data, len(header) + 4 * count, 0, method=8)
    path = tmp_path / "a.npz"
    path.write_bytes(zip_bytes([member if m.name == member.name else m for m in members_of(template.arrays)]))
    assert path.stat().st_size < 3 << 20
    error = load_traced(path)[1]
    assert f"array 'params/layer0.W' is float32 ({count},), but its config describes float32 (768, 16)" in error


def test_a_checkpoint_too_big_for_memory_is_refused_before_reading(template, tmp_path, monkeypatch):
    config = json.loads(json.dumps(template.meta["config"]))
    config["model"]["hidden"] = [1_000_000]
    path = rewritten(template, tmp_path / "a.npz", config=config)
    monkeypatch.setattr("mlpcli.budget.available", lambda: 1 << 30)
    error = load_traced(path)[1]
    assert "loading this checkpoint needs about" in error and "but 1.0 GiB is available" in error
