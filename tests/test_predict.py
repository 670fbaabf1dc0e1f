"""`mlp predict` at scale: files, folders and globs, batches, CSV and JSON, skipped files, rounding."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mlpcli.cli import cli
from mlpcli.data.sources.builtin import render_shapes
from mlpcli.predict import classify, image_files, rounded_probabilities
from mlpcli.predictor import Classifier

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import TINY
    import yaml

    folder = tmp_path_factory.mktemp("predict")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(cli, ["train", str(folder / "tiny.yaml"), "--out", str(folder / "run"), "-q"])
    assert result.exit_code == 0, result.output
    return folder / "run"


@pytest.fixture
def photos(tmp_path):
    """photos/{0,1}.png, photos/deeper/more/{2,3}.jpg, notes.txt, a broken PNG, and a FIFO named like an image."""
    root = tmp_path / "photos"
    (root / "deeper" / "more").mkdir(parents=True)
    images = render_shapes(np.array([0, 1, 2, 0]), 16, 0.05, np.random.default_rng(5).spawn(4))
    for i, image in enumerate(images):
        Image.fromarray(image).resize((24, 24)).save(root / (f"{i}.png" if i < 2 else f"deeper/more/{i}.JPG"))
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    os.mkfifo(root / "deeper" / "pipe.png")
    return root


def run(args, **kwargs):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], **kwargs)


def test_folders_are_walked_recursively_for_image_files_in_sorted_order(photos):
    skipped = []
    found = list(image_files([str(photos)], lambda path, why: skipped.append(path)))
    assert found == [str(photos / name) for name in
                     ("0.png", "1.png", "broken.png", "deeper/pipe.png", "deeper/more/2.JPG", "deeper/more/3.JPG")]
    assert skipped == []


def test_globs_expand_and_patterns_that_match_nothing_are_reported(photos):
    skipped = []
    found = list(image_files([str(photos / "**" / "*.JPG"), str(photos / "*.gif")],
                             lambda path, why: skipped.append((path, why))))
    assert found == [str(photos / "deeper/more/2.JPG"), str(photos / "deeper/more/3.JPG")]
    assert skipped == [(str(photos / "*.gif"), "no file matches this pattern")]


def test_batches_give_the_same_scores_as_one_pass(trained, photos):
    clf = Classifier.from_checkpoint(trained)
    paths = [str(p) for p in sorted(photos.rglob("*")) if p.suffix in (".png", ".JPG") and p.stat().st_size > 100]
    whole = list(classify(clf, paths, lambda *a: None, batch=100))
    assert len(whole) == 4
    for batch in (1, 3):
        parts = list(classify(clf, paths, lambda *a: None, batch=batch))
        assert [p for p, _ in parts] == paths
        np.testing.assert_allclose(np.stack([v for _, v in parts]), np.stack([v for _, v in whole]), atol=1e-4)


def test_unreadable_and_special_files_are_skipped_not_fatal(trained, photos):
    result = run([trained, photos, photos / "missing.png"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(photos / n) for n in ("0.png", "1.png", "deeper/more/2.JPG",
                                                                               "deeper/more/3.JPG")]
    problems = result.stderr.splitlines()
    assert problems[0].startswith(f"cannot read image {photos / 'broken.png'}: ")
    assert problems[1] == f"cannot read image {photos / 'deeper' / 'pipe.png'}: not a regular file"   # no hang
    assert problems[2] == f"cannot read image {photos / 'missing.png'}: No such file or directory"
    assert problems[3] == "4 image(s) classified, 3 skipped"


def test_nothing_classified_is_an_error(trained, photos):
    result = run([trained, photos / "broken.png", photos / "deeper" / "pipe.png"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: no image could be classified (2 input(s) skipped, see above)"
    empty = photos / "deeper" / "empty"
    empty.mkdir()
    assert run([trained, empty]).stderr == "Error: no image files found in the given folders\n"


def test_a_fifo_does_not_hang_a_real_process(trained, photos):
    done = subprocess.run([sys.executable, "-m", "mlpcli", "predict", str(trained), str(photos / "deeper" / "pipe.png"),
                           str(photos / "0.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(str(photos / "0.png"))
    assert "not a regular file" in done.stderr and "Traceback" not in done.stderr


def test_json_and_csv_print_four_decimals_that_sum_to_one(trained, photos, tmp_path):
    out = tmp_path / "labels.csv"
    result = run([trained, photos, "--json", "--csv", out])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout, parse_float=Decimal)
    assert len(rows) == 4 and rows[0]["image"] == str(photos / "0.png")
    for row in rows:
        values = list(row["probabilities"].values())
        assert list(row["probabilities"]) == CLASSES and sum(values) == 1
        assert all(value.as_tuple().exponent >= -4 for value in values)
        assert row["class"] == max(row["probabilities"], key=row["probabilities"].get)
    table = list(csv.reader(io.StringIO(out.read_text())))
    assert table[0] == ["image", "class", *CLASSES]
    assert [r[:2] for r in table[1:]] == [[row["image"], row["class"]] for row in rows]
    assert [[Decimal(v) for v in r[2:]] for r in table[1:]] == [list(row["probabilities"].values()) for row in rows]
    assert "0.00000" not in out.read_text() and "e-" not in out.read_text()


def test_csv_to_stdout_and_a_failed_run_keeps_the_old_file(trained, photos, tmp_path):
    result = run([trained, photos / "0.png", "--csv", "-"])
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "image,class," + ",".join(CLASSES)
    out = tmp_path / "labels.csv"
    out.write_text("earlier results\n")
    assert run([trained, photos / "broken.png", "--csv", out]).exit_code == 1
    assert out.read_text() == "earlier results\n" and sorted(tmp_path.iterdir()) == [out, photos]   # no temp file
    assert run([trained, photos / "0.png", "--json", "--csv", "-"]).exit_code == 2


@pytest.mark.parametrize("csv_arg, message", [("", "give a file name"), ("no/such/folder/x.csv", "no such folder")])
def test_a_csv_path_that_cannot_be_written_is_refused_before_any_work(trained, photos, tmp_path, csv_arg, message):
    result = run([trained, photos / "0.png", "--csv", csv_arg and tmp_path / csv_arg])
    assert result.exit_code == 2 and message in result.output
    assert sorted(tmp_path.iterdir()) == [photos]


@pytest.mark.parametrize("extreme", [{"params/layer0.b": 3e38, "params/layer1.W": 3e38},
                                     {"features/normalize.std": 1e-45}])
def test_a_checkpoint_whose_finite_values_overflow_the_scores_is_refused(trained, photos, tmp_path, extreme):
    from mlpcli.npzfile import save_npz

    arrays = dict(np.load(trained / "checkpoints" / "best.npz"))
    arrays.update({member: np.full_like(arrays[member], value) for member, value in extreme.items()})
    save_npz(tmp_path / "extreme.npz", arrays)
    for args in (["--json"], []):
        result = run([tmp_path / "extreme.npz", photos / "0.png", *args])
        assert result.exit_code == 1, result.output
        assert result.output.splitlines()[-1].startswith("Error: the checkpoint's weights or feature statistics give "
                                                         "non-finite class scores for 1 of 1 images")
        assert "NaN" not in result.output


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_subnormal=False), min_size=2, max_size=12).filter(lambda row: sum(row) > 0),
       st.integers(1, 6))
def test_rounded_probabilities_sum_to_one_and_move_each_value_less_than_a_unit(weights, decimals):
    p = np.array([weights]) / np.sum(weights)
    rounded = rounded_probabilities(p, decimals)
    units = np.rint(rounded * 10 ** decimals)
    assert units.sum() == 10 ** decimals and (units >= 0).all()
    assert np.all(np.abs(rounded - p) < 10.0 ** -decimals)
    assert all(len(repr(v).split(".")[-1]) <= decimals or "e" in repr(v) for v in rounded.ravel().tolist())
