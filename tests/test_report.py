from __future__ import annotations

import base64
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlpcli.config import Config, dump_config, load_config
from mlpcli.data.dataset import in_memory
from mlpcli.errors import MlpError
from mlpcli.features import ExtractorSpec
from mlpcli.features.pixels import PixelsConfig
from mlpcli.metrics import classification_report
from mlpcli.predictor import softmax
from mlpcli.report import _header, _per_class_section, write_report
from mlpcli.rundir import RunDir
from mlpcli.runs import read_summary
from mlpcli.train import train

CLASSES = ["cat", "dog", "<b>bird</b>"]


class LinearClassifier:
    """The Classifier interface over scores = pixels @ W, on raw 8×8 RGB pixels."""

    def __init__(self, rng: np.random.Generator):
        self.config = Config()
        self.config.features.extractors = [ExtractorSpec("pixels", PixelsConfig())]
        self.classes = CLASSES
        self.image_shape = (8, 8, 3)
        self.model = SimpleNamespace(params={"layer0.W": rng.normal(size=(8 * 8 * 3, len(CLASSES)))})
        self.pipeline = SimpleNamespace(names=["pixels"], std=None)

    def scores(self, images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1) / 255 @ self.model.params["layer0.W"]


@pytest.fixture
def run(tmp_path):
    """A finished run folder, its classifier and validation split."""
    rng = np.random.default_rng(0)
    classifier = LinearClassifier(rng)
    val = in_memory(rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, 30), CLASSES)
    predicted = classifier.scores(val.images).argmax(axis=1)
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(dump_config(classifier.config))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train_loss": 1 / e, "train_acc": 0.5 + e / 20, "val_loss": 1.2 / e,
                    "val_acc": 0.3 + e / 30, "lr": 0.1, "seconds": 0.25}) + "\n" for e in range(1, 6)))
    summary = {"name": "linear", "started": "2026-01-02T10:00:00+00:00", "seconds": 3.5, "epochs_run": 5,
               "best_epoch": 5, "stopped": "completed", "classes": CLASSES, "image_shape": [8, 8, 3],
               "input_dim": 192, "features": ["pixels"], "model": "192-3 softmax",
               "val": {**classification_report(val.labels, predicted, 3), "loss": 1.1}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return SimpleNamespace(folder=folder, classifier=classifier, val=val, predicted=predicted)


def sources(html_path) -> list[str]:
    return re.findall(r'src="([^"]+)"', html_path.read_text(encoding="utf-8"))


def png_bytes(src: str) -> bytes:
    """The PNG a data: URI holds."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix):], validate=True)


def mistakes(html_path) -> list[int]:
    """Indices of the validation images shown as mistakes, in page order."""
    return [int(i) for i in re.findall(r'alt="validation image (\d+)"', html_path.read_text(encoding="utf-8"))]


def test_report_is_self_contained(run):
    path = write_report(run.folder, run.classifier, run.val)
    assert path == run.folder / "report.html"
    srcs = sources(path)
    plots = ["training_curves.png", "confusion_val.png", "weight_templates.png"]
    assert [png_bytes(src) for src in srcs[:3]] == [(run.folder / name).read_bytes() for name in plots]
    for src in srcs[3:]:
        with Image.open(io.BytesIO(png_bytes(src))) as image:
            assert image.format == "PNG"
    assert len(srcs) == 3 + len(mistakes(path))
    assert sorted(p.name for p in run.folder.iterdir()) == sorted(["checkpoints", "config.yaml", "metrics.jsonl",
                                                                  "summary.json", "report.html", *plots])


def test_a_config_file_with_bytes_that_are_not_utf8_is_shown_with_replacement_characters(run):
    with open(run.folder / "config.yaml", "ab") as f:
        f.write(b"# \xff\xfe caf\xe9\n")
    page = write_report(run.folder, run.classifier, run.val).read_text(encoding="utf-8")
    assert "# \ufffd\ufffd caf\ufffd" in page


def test_report_shows_the_most_confident_mistakes_with_their_images(run):
    html = write_report(run.folder, run.classifier, run.val, max_examples=5).read_text(encoding="utf-8")
    probabilities = softmax(run.classifier.scores(run.val.images))
    wrong = np.flatnonzero(run.predicted != run.val.labels)
    expected = wrong[np.argsort(-probabilities[wrong].max(axis=1))][:5]
    assert mistakes(run.folder / "report.html") == list(expected)
    for i, src in zip(expected, sources(run.folder / "report.html")[3:]):
        saved = np.asarray(Image.open(io.BytesIO(png_bytes(src))))
        np.testing.assert_array_equal(saved, run.val.images[i])
    first = html.index(f'alt="validation image {expected[0]}"')
    caption = html[first:html.index("</figure>", first)]
    true, predicted = CLASSES[run.val.labels[expected[0]]], CLASSES[run.predicted[expected[0]]]
    assert caption.index(escape(true)) < caption.index("→") < caption.index(escape(predicted))
    assert f"({probabilities[expected[0]].max():.0%})" in caption
    assert f"5 of the mistakes among {len(run.val)} validation images" in html


def escape(name: str) -> str:
    return name.replace("<", "&lt;").replace(">", "&gt;")


def test_report_tables(run):
    html = write_report(run.folder, run.classifier, run.val).read_text(encoding="utf-8")
    assert "<b>bird</b>" not in html and "&lt;b&gt;bird&lt;/b&gt;" in html
    metrics = html[html.index("Metrics per epoch"):html.index("Per-class")]
    assert metrics.count("<tr>") + metrics.count('<tr class="best">') == 1 + 5
    assert '<tr class="best"><td>5</td>' in metrics
    per_class = html[html.index("Per-class"):html.index("Misclassified")]
    report = classification_report(run.val.labels, run.predicted, 3)
    for c, name in enumerate(CLASSES):
        assert (f"<td>{escape(name)}</td><td>{np.sum(run.val.labels == c)}</td>"
                f"<td>{report['precision'][c]:.1%}</td><td>{report['recall'][c]:.1%}</td>"
                f"<td>{report['f1'][c]:.1%}</td>") in per_class
    assert f"<td>(macro F1)</td><td>30</td><td></td><td></td><td>{report['macro_f1']:.1%}</td>" in per_class
    assert "optim:" in html and "extractors:" in html     # the resolved config


def test_the_metrics_table_shows_data_loss_and_l2_when_the_rows_have_them(run):
    html = write_report(run.folder, run.classifier, run.val).read_text(encoding="utf-8")
    assert "<th>train data loss</th>" not in html and "<th>L2 term</th>" not in html     # rows of an older mlp
    rows = [json.loads(line) for line in (run.folder / "metrics.jsonl").read_text().splitlines()]
    (run.folder / "metrics.jsonl").write_text("".join(json.dumps(
        {**row, "train_data_loss": row["train_loss"] - 0.125, "val_data_loss": row["val_loss"] - 0.125,
         "l2": 0.125}) + "\n" for row in rows))
    html = write_report(run.folder, run.classifier, run.val).read_text(encoding="utf-8")
    head = html.split("Metrics per epoch")[1].split("</tr>")[0]
    assert "<th>train data loss</th>" in head and "<th>val data loss</th>" in head and "<th>L2 term</th>" in head
    assert f"<td>{rows[0]['train_loss'] - 0.125:.4f}</td>" in html and "<td>0.125</td>" in html


@pytest.mark.parametrize("missing", ["summary.json", "metrics.jsonl", "config.yaml"])
def test_missing_pieces_are_named(run, missing):
    (run.folder / missing).unlink()
    with pytest.raises(MlpError, match=rf"cannot report on .*run: .*{re.escape(missing)} is missing"):
        write_report(run.folder, run.classifier, run.val)


def test_without_a_classifier_the_best_checkpoint_is_needed(run):
    with pytest.raises(MlpError, match=r"checkpoints/best.npz is missing"):
        write_report(run.folder)


def test_a_different_validation_split_is_refused(run):
    shuffled = in_memory(run.val.images[::-1].copy(), run.val.labels, CLASSES)
    with pytest.raises(MlpError, match="do not reproduce the validation results"):
        write_report(run.folder, run.classifier, shuffled)


def test_report_of_a_real_run_rebuilds_its_validation_split(tiny_config, tmp_path):
    cfg = load_config(tiny_config, [f"output.dir={tmp_path}"])
    folder = RunDir.create(cfg)
    train(cfg, folder, progress=False)
    path = write_report(folder.path)
    titles = re.findall(r'title="([^"]+)"', path.read_text(encoding="utf-8"))
    assert {"training_curves.png", "confusion_val.png", "weight_templates.png"} <= set(titles)
    assert all(src.startswith("data:image/png;base64,") for src in sources(path))


def test_hinge_models_rank_mistakes_by_score_margin_without_probabilities(run):
    run.classifier.config.loss.name = "hinge"
    html = write_report(run.folder, run.classifier, run.val, max_examples=3).read_text(encoding="utf-8")
    scores = run.classifier.scores(run.val.images)
    wrong = np.flatnonzero(run.predicted != run.val.labels)
    margin = scores[wrong, run.predicted[wrong]] - scores[wrong, run.val.labels[wrong]]
    assert mistakes(run.folder / "report.html") == list(wrong[np.argsort(-margin)][:3])
    examples = html[html.index("Misclassified"):]
    assert "%)" not in examples


def test_hostile_metric_values_are_shown_as_dashes(run):
    rows = [json.loads(line) for line in (run.folder / "metrics.jsonl").read_text().splitlines()]
    rows[1].update(val_acc="abc", train_loss="x", lr=True, seconds=float("nan"))
    (run.folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    html = write_report(run.folder, run.classifier, run.val).read_text(encoding="utf-8")
    assert f"<tr><td>2</td><td>-</td><td>{rows[1]['train_acc']:.2%}</td>" in html
    assert "abc" not in html and "True" not in html


def edited_summary(run, field: tuple[str, ...], value) -> dict:
    """The run's summary.json with the value at `field` (a path of keys) replaced."""
    summary = json.loads((run.folder / "summary.json").read_text())
    holder = summary
    for key in field[:-1]:
        holder = holder[key]
    holder[field[-1]] = value
    return summary


@pytest.mark.parametrize("field, value", [(("val", "accuracy"), "x"), (("seconds",), "x"), (("classes",), [1, 2, 3]),
                                          (("started",), 5), (("val",), []), (("val", "confusion"), [[1]])])
def test_a_summary_field_of_another_kind_is_one_line_naming_the_file(run, field, value):
    (run.folder / "summary.json").write_text(json.dumps(edited_summary(run, field, value)))
    with pytest.raises(MlpError, match=rf'summary.json: not a run summary \("{".".join(field)}" is .*\); the file '
                                       r"is damaged$"):
        write_report(run.folder, run.classifier, run.val)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([("name",), ("started",), ("seconds",), ("epochs_run",), ("best_epoch",), ("stopped",),
                             ("model",), ("features",), ("classes",), ("val",), ("test",), ("val", "accuracy"),
                             ("val", "loss"), ("val", "confusion")]), value=json_values)
def test_any_summary_field_is_read_for_the_page_or_refused_in_one_line(run, path, value):
    (run.folder / "edited.json").write_text(json.dumps(edited_summary(run, path, value)))
    try:
        checked = read_summary(run.folder / "edited.json")
    except MlpError as err:
        assert str(err).startswith(f"{run.folder / 'edited.json'}: ") and "\n" not in str(err)
        return
    _header(RunDir(run.folder), checked)
    _per_class_section(checked)
