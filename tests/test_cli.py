"""The `mlp` command line, driven through click's CliRunner: help, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from mlpcli.cli import cli
from mlpcli.data.sources.builtin import SHAPE_NAMES, render_shapes


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def trained(runner, tiny_config, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(cli, ["train", str(tiny_config), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def command_paths(group, path=()):
    """The argument lists naming every command and subcommand of `group`, itself first."""
    yield list(path)
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from command_paths(command, (*path, name))
        else:
            yield [*path, name]


@pytest.mark.parametrize("command", list(command_paths(cli)), ids=lambda path: " ".join(path) or "mlp")
def test_every_command_has_help_with_an_example(runner, command):
    result = runner.invoke(cli, [*command, "--help"], prog_name="mlp")
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: mlp {' '.join(command)}".rstrip()) and "--help" in result.output
    leaf = cli
    for name in command:
        leaf = leaf.commands[name]
    if not isinstance(leaf, click.Group):
        assert "mlp " in result.output.split("Options:")[0].split("\n", 2)[-1], "no example in the help"


def test_print_config_shows_defaults_and_overrides(runner):
    result = runner.invoke(cli, ["train", "--print-config", "optim.lr=0.01"])
    assert result.exit_code == 0
    cfg = yaml.safe_load(result.output)
    assert cfg["optim"]["lr"] == 0.01 and cfg["seed"] == 0
    assert cfg["features"]["extractors"]


def test_train_prints_a_summary_line(runner, tiny_config, tmp_path):
    result = runner.invoke(cli, ["train", str(tiny_config), "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0
    assert "val accuracy" in result.output and str(tmp_path / "r") in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "model.hiden=[3]"], "Error: unknown key 'model.hiden'; did you mean 'hidden'?"),
    (["train", "nope.yaml"], "Error: config file not found: nope.yaml"),
    (["train", "optim.lr=-1"], "Error: optim.lr: -1.0 is out of range; it must be at least 0.0"),
    (["eval", "missing.npz"], "does not exist"),
    (["gradcheck", "loss.name=svm"], "Error: loss.name: 'svm' (str) is not one of hinge, softmax"),
])
def test_bad_input_is_one_line_without_traceback(runner, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl", "summary.json"])
def test_a_fifo_in_a_run_folder_never_hangs_a_command(trained, tmp_path, name):
    """Opening a FIFO for reading waits for a writer: every command refuses it, or leaves it out, at once."""
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    (trained / name).unlink()
    os.mkfifo(trained / name)
    for args in (["runs", str(tmp_path)], ["compare", str(trained), str(other)], ["train", "--resume", str(trained)],
                 ["report", str(trained)]):
        done = subprocess.run([sys.executable, "-m", "mlpcli", *args, "-q"] if args[0] == "train" else
                              [sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode == 0 or len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)


def test_a_fifo_as_config_file_is_refused(runner, tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", str(tmp_path / "fifo.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and done.stderr.strip() == f"Error: cannot read config file {tmp_path / 'fifo.yaml'}: "\
        "not a regular file"


def test_malformed_yaml(runner, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    result = runner.invoke(cli, ["train", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: malformed YAML at line")


def test_a_run_that_fails_before_training_leaves_no_folder(runner, tiny_config, tmp_path):
    result = runner.invoke(cli, ["train", str(tiny_config), "--out", str(tmp_path / "r"),
                                 "features.extractors=[{hog: {pixels_per_cell: 16}}]"])
    assert result.exit_code == 1
    assert "Error: hog: 16x16 images are too small" in result.output
    assert not (tmp_path / "r").exists()


def test_out_folder_with_a_run_is_never_overwritten(runner, trained, tiny_config):
    before = (trained / "checkpoints" / "last.npz").read_bytes()
    result = runner.invoke(cli, ["train", str(tiny_config), "--out", str(trained)])
    assert result.exit_code == 1
    assert "already exists and is not empty" in result.output
    assert (trained / "checkpoints" / "last.npz").read_bytes() == before


def test_eval_reports_accuracy_and_confusion(runner, trained):
    result = runner.invoke(cli, ["eval", str(trained), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    summary = json.loads((trained / "summary.json").read_text())
    assert report["split"] == "val"
    assert report["accuracy"] == pytest.approx(summary["val"]["accuracy"])
    assert report["confusion"] == summary["val"]["confusion"]
    assert report["f1"] == summary["val"]["f1"] and report["support"] == [sum(row) for row in report["confusion"]]
    text = runner.invoke(cli, ["eval", str(trained / "checkpoints" / "last.npz"), "--split", "train"])
    assert text.exit_code == 0 and "train split" in text.output and "confusion matrix" in text.output


def test_eval_text_has_f1_support_and_a_labeled_confusion_matrix(runner, trained):
    report = json.loads(runner.invoke(cli, ["eval", str(trained), "--json"]).output)
    lines = runner.invoke(cli, ["eval", str(trained)]).output.splitlines()
    assert lines[0] == (f"val split, {report['samples']} images: accuracy {report['accuracy']:.2%}, "
                        f"macro F1 {report['macro_f1']:.2%}")
    assert lines[2].split() == ["class", "precision", "recall", "F1", "support"]
    for line, name, p, r, f, n in zip(lines[3:], report["classes"], report["precision"], report["recall"],
                                      report["f1"], report["support"]):
        assert line.split() == [name, f"{p:.2%}", f"{r:.2%}", f"{f:.2%}", str(n)]
    matrix = lines[lines.index("confusion matrix (rows: true class, columns: predicted class)") + 1:]
    assert matrix[0].split() == ["true", "\\", "predicted", "circ", "squa", "tria"]
    assert [line.split() for line in matrix[1:]] == [[name, *map(str, row)]
                                                     for name, row in zip(report["classes"], report["confusion"])]


def test_confusion_columns_are_numbered_when_names_cannot_be_cut_apart():
    from mlpcli.cli import _format_report

    classes = ["n0144076_tench", "n0144076_goldfish"]
    text = _format_report({"split": "val", "samples": 3, "accuracy": 2 / 3, "macro_f1": 0.5, "classes": classes,
                           "precision": [1, 0.5], "recall": [0.5, 1], "f1": [2 / 3, 2 / 3], "support": [2, 1],
                           "confusion": [[1, 1], [0, 1]]})
    matrix = text.splitlines()[-3:]
    assert matrix[0].split() == ["true", "\\", "predicted", "0", "1"]
    assert matrix[1].split() == ["0", "n0144076_tench", "1", "1"]


def test_eval_source_must_be_a_registered_data_source(runner, trained, tmp_path):
    result = runner.invoke(cli, ["eval", str(trained), "--data", str(tmp_path), "--source", "bogus"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--source': 'bogus' is not one of 'cifar10'" in result.output


@pytest.mark.parametrize("source", [[], ["--source", "faces"]])
def test_eval_data_with_a_source_that_reads_no_path_is_an_error(runner, trained, source):
    result = runner.invoke(cli, ["eval", str(trained), "--data", "/nonexistent", *source])
    assert result.exit_code == 2 and "accuracy" not in result.output
    assert "source makes its own images and reads no path; say what /nonexistent holds with --source" in result.output
    missing = runner.invoke(cli, ["eval", str(trained), "--data", "/nonexistent", "--source", "folder"])
    assert missing.exit_code == 1 and "Error: data.path /nonexistent does not exist" in missing.output


def _shape_folder(root, names, per_class=6, size=16):
    """An image folder of generated shapes, one class folder per name ("hexagon" gets circles)."""
    shapes = [SHAPE_NAMES.index(name) if name in SHAPE_NAMES else 0 for name in names]
    labels = np.repeat(np.arange(len(names)), per_class)
    images = render_shapes(np.array(shapes)[labels], size, 0.05, np.random.default_rng(7).spawn(len(labels)))
    for i, (label, image) in enumerate(zip(labels, images)):
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / names[label] / f"{i}.png")
    return root


def test_eval_on_another_dataset_matches_classes_by_name(runner, trained, tmp_path):
    folder = _shape_folder(tmp_path / "more", ["triangle", "square"])     # labels 0, 1 here; 2, 1 in the model
    result = runner.invoke(cli, ["eval", str(trained), "--data", str(folder), "--source", "folder", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["split"] == "all" and report["samples"] == 12
    assert report["classes"] == ["circle", "square", "triangle"]
    assert [sum(row) for row in report["confusion"]] == [0, 6, 6]


def test_eval_on_a_dataset_with_unknown_classes(runner, trained, tmp_path):
    folder = _shape_folder(tmp_path / "other", ["circle", "hexagon"])
    result = runner.invoke(cli, ["eval", str(trained), "--data", str(folder), "--source", "folder"])
    assert result.exit_code == 1
    assert "Error: the dataset has classes the model does not know: hexagon" in result.output


@pytest.mark.parametrize("args, message", [(["--split", "val"], "--split val is the validation split drawn at "
                                                                "training; another dataset (--data) has none"),
                                           (["--json", "--split", "val"], "another dataset (--data) has none"),
                                           (["--data", ""], "Invalid value for --data: give the dataset's path")])
def test_eval_on_another_dataset_refuses_what_it_cannot_score_in_one_line(runner, trained, tmp_path, args, message):
    folder = _shape_folder(tmp_path / "more", ["triangle", "square"])
    result = runner.invoke(cli, ["eval", str(trained), "--data", str(folder), "--source", "folder", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_eval_of_a_missing_split(runner, trained):
    result = runner.invoke(cli, ["eval", str(trained), "--split", "test"])
    assert result.exit_code == 1
    assert "Error: this dataset has no 'test' split" in result.output


def test_eval_of_a_corrupt_checkpoint(runner, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    result = runner.invoke(cli, ["eval", str(bad)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {bad}: not a readable .npz file (not a zip archive)"


def test_predict_classifies_image_files(runner, trained, tmp_path):
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2])
    paths = []
    for label, image in zip(labels, render_shapes(labels, 16, 0.1, rng.spawn(len(labels)))):
        path = tmp_path / f"shape{label}.png"
        Image.fromarray(image).resize((40, 40)).save(path)   # another size: predict resizes
        paths.append(str(path))
    result = runner.invoke(cli, ["predict", str(trained), *paths, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["image"] for row in rows] == paths
    for row in rows:
        assert set(row["probabilities"]) == {"circle", "square", "triangle"}
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    text = runner.invoke(cli, ["predict", str(trained), paths[0], "--top", "2"])
    assert text.exit_code == 0 and text.output.startswith(f"{paths[0]}: ")


def test_predict_unreadable_image(runner, trained, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    result = runner.invoke(cli, ["predict", str(trained), str(bad)])
    assert result.exit_code == 1
    assert "Error: " in result.output and "bad.png" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("overrides", [
    ["model.activation=maxout", "loss.name=hinge", "model.hidden=[6,5]"],
    ["model.activation=elu", "model.hidden=[7]"],
])
def test_gradcheck_passes_and_prints_a_table(runner, overrides):
    result = runner.invoke(cli, ["gradcheck", *overrides])
    assert result.exit_code == 0, result.output
    assert "max rel error" in result.output and "FAIL" not in result.output
    hidden = yaml.safe_load(overrides[-1].split("=")[1])
    assert result.output.count("pass") == 2 * (len(hidden) + 1)


def test_gradcheck_per_gate(runner):
    result = runner.invoke(cli, ["gradcheck", "--gates", "model.activation=leaky_relu"])
    assert result.exit_code == 0, result.output
    assert "leaky_relu.dX" in result.output and "linear.W" in result.output


@pytest.mark.parametrize("norm, params", [
    ("batch", ["layer0.W", "norm0.gamma", "norm0.beta", "layer1.W", "norm1.gamma", "norm1.beta", "layer2.W",
               "layer2.b"]),
    ("layer", ["layer0.W", "layer0.b", "norm0.gamma", "norm0.beta", "layer1.W", "layer1.b", "norm1.gamma",
               "norm1.beta", "layer2.W", "layer2.b"]),
])
def test_gradcheck_covers_norm_and_dropout_in_the_network_and_alone(runner, norm, params):
    args = ["gradcheck", f"model.norm={norm}", "model.dropout=[0.5,0.2]", "model.hidden=[6,5]"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"network 10-6-5-5 {norm}_norm relu dropout softmax")
    assert [line.split()[0] for line in lines[2:]] == params and all(line.endswith("pass") for line in lines[2:])
    result = runner.invoke(cli, [args[0], "--gates", *args[1:]])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()[2:]] == [
        "linear.dX", "linear.W", "linear.b", f"{norm}_norm.dX", f"{norm}_norm.gamma", f"{norm}_norm.beta", "relu.dX",
        "dropout.dX", "softmax.dscores"]


def test_gradcheck_catches_a_wrong_backward(runner, monkeypatch):
    from mlpcli.nn import layers

    monkeypatch.setattr(layers.Tanh, "backward", lambda self, dY: dY)   # forgets the local gradient
    result = runner.invoke(cli, ["gradcheck", "model.activation=tanh", "model.hidden=[4]"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "Error: gradient check failed for layer0.W" in result.output


@pytest.mark.parametrize("overrides", [["model.init=normal", "model.init_std=1e300"],
                                       ["model.activation=elu", "model.elu_alpha=1e308"]])
def test_gradcheck_fails_when_the_gradients_overflow(runner, overrides):
    result = runner.invoke(cli, ["gradcheck", "model.hidden=[4]", *overrides])
    assert result.exit_code == 1
    assert "pass" not in result.output and "Error: gradient check failed for layer0.W" in result.output


def test_features_reports_dimensions_and_uses_the_cache(runner, tiny_config, tmp_path):
    args = ["features", str(tiny_config), f"cache_dir={tmp_path / 'cache'}", "-q",
            "features.extractors=[hog, color_hist]"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "hog 36 + color_hist 10 = 46 dimensions" in first.output
    assert "from the cache" not in first.output
    second = runner.invoke(cli, args)
    assert second.output.count("from the cache") == 2          # train and val


def test_features_of_an_extractor_that_learns(runner, tiny_config, tmp_path):
    result = runner.invoke(cli, ["features", str(tiny_config), "cache_dir=null", "-q",
                                 "features.extractors=[{bow: {words: 8, patches: 200, pool: 1}}]"])
    assert result.exit_code == 0, result.output
    assert "bow 8 = 8 dimensions" in result.output


def test_data_info_describes_an_image_folder(runner, tmp_path):
    for name, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "set" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 6), color).save(tmp_path / "set" / name / f"{i}.png")
    result = runner.invoke(cli, ["data", "info", str(tmp_path / "set")])
    assert result.exit_code == 0, result.output
    assert "classes (2): blue, red" in result.output
    assert "train: 6 images (blue 3, red 3)" in result.output
    assert "sizes: 6x8 ×6" in result.output


def test_report_and_runs_on_a_trained_run(runner, trained):
    result = runner.invoke(cli, ["report", str(trained)])
    assert result.exit_code == 0, result.output
    assert (trained / "report.html").is_file()
    listing = runner.invoke(cli, ["runs", str(trained.parent), "--json"])
    assert listing.exit_code == 0
    runs = json.loads(listing.output)
    assert [run["run"] for run in runs] == ["run"] and runs[0]["status"] == "completed"
    table = runner.invoke(cli, ["runs", str(trained.parent), "--filter", "nothing-like-this"])
    assert table.exit_code == 0 and table.output.strip() == "no runs"


def test_report_on_a_folder_that_is_not_a_run(runner, tmp_path):
    result = runner.invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot report on") and "config.yaml is missing" in result.output


def test_cache_info_lists_the_stores_and_clear_removes_them_and_nothing_else(runner, tiny_config, tmp_path):
    cache = tmp_path / "cache"
    (cache / "features").mkdir(parents=True)
    (cache / "features" / "design.md").write_text("mine")
    trained = runner.invoke(cli, ["train", str(tiny_config), "--out", str(tmp_path / "r"), "-q", f"cache_dir={cache}"])
    assert trained.exit_code == 0, trained.output
    info = runner.invoke(cli, ["cache", "info", "--dir", str(cache), "--json"])
    assert info.exit_code == 0, info.output
    stores = json.loads(info.output)["stores"]
    assert sorted((store["rows"], store["dim"]) for store in stores) == [(24, 768), (66, 768)]
    assert all(store["status"] == "ready" and store["features"] == ["pixels"] for store in stores)
    assert json.loads(info.output)["left_alone"] == ["design.md"]
    text = runner.invoke(cli, ["cache", "info", "--dir", str(cache)])
    assert text.output.startswith(f"{cache}: 2 feature store(s)")
    assert text.output.endswith("  design.md: not mlp's, left alone\n")
    cleared = runner.invoke(cli, ["cache", "clear", "--dir", str(cache)])
    assert cleared.exit_code == 0 and cleared.output.startswith("removed ")
    assert json.loads(runner.invoke(cli, ["cache", "info", "--dir", str(cache), "--json"]).output)["stores"] == []
    assert [path.name for path in (cache / "features").iterdir()] == ["design.md"]


def test_features_names_the_views_of_the_training_images_and_soft_threshold_doubles_the_words(runner, tiny_config):
    bow = "features.extractors=[{bow: {words: 8, patches: 200, pool: 1, encoding: soft-threshold}}]"
    result = runner.invoke(cli, ["features", str(tiny_config), "cache_dir=null", "-q", "data.flip=true",
                                 "data.augment.copies=2", bow])
    assert result.exit_code == 0, result.output
    assert "train     264 images" in result.output
    assert "(images, mirror images, copy 1, copy 2: 66 each)" in result.output
    assert "val        24 images" in result.output and "each)" not in result.output.split("val")[1]
    assert "bow 16 = 16 dimensions" in result.output


def test_augmentation_that_cannot_work_is_one_line_on_stderr(runner, tiny_config, tmp_path):
    for override, message in [("data.augment.redraw=true", "there are no copies to redraw"),
                              ("data.augment={copies: 1, pad: 16}", "a shift of 16 pixels leaves nothing of the")]:
        result = runner.invoke(cli, ["train", str(tiny_config), "--out", str(tmp_path / "run"), "-q", override])
        assert result.exit_code == 1 and result.output.startswith("Error: data.augment") and message in result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
