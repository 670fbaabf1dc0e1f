from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.transform import resize

from mlpcli import plots
from mlpcli.config import Config
from mlpcli.errors import MlpError
from mlpcli.features import ExtractorSpec
from mlpcli.features.hog import HogConfig
from mlpcli.features.pixels import PixelsConfig
from mlpcli.schema import from_dict

RED = (255, 0, 0)
PIXELS, HOG = ExtractorSpec("pixels", PixelsConfig()), ExtractorSpec("hog", HogConfig())


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def epochs(count: int, with_val: bool = True) -> list[dict]:
    rows = []
    for e in range(1, count + 1):
        row = {"epoch": e, "train_loss": 2.0 / e, "train_acc": 1 - 0.5 / e, "lr": 0.1, "seconds": 0.5}
        if with_val:
            row.update(val_loss=2.0 / e + 0.02 * e, val_acc=0.5 + 0.05 * e - 0.006 * e * e)
        rows.append(row)
    return rows


def sample_images(size: int = 32) -> np.ndarray:
    """(4, size, size, 3) uint8 pictures that scikit-image ships."""
    pictures = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    return np.stack([(resize(p, (size, size, 3), anti_aliasing=True) * 255).astype(np.uint8) for p in pictures])


def test_training_curves_png_of_the_figure_size(tmp_path):
    path = plots.training_curves(epochs(12), tmp_path / "curves.png", title="run")
    assert path == tmp_path / "curves.png"
    assert png_size(path) == (11 * plots.DPI, round(4.2 * plots.DPI))


def test_training_curves_mark_the_best_validation_epoch_in_green(tmp_path):
    metrics = epochs(12)
    best = max(metrics, key=lambda m: m["val_acc"])["epoch"]
    green = pixels(plots.training_curves(metrics, tmp_path / "c.png"))
    marked = np.all(np.abs(green.astype(int) - (44, 160, 44)) < 8, axis=2)   # BEST_COLOR #2ca02c
    assert marked.any()
    moved = epochs(12)
    for m in moved:
        m["val_acc"] = 0.9 - 0.01 * m["epoch"]            # best is now epoch 1
    other = pixels(plots.training_curves(moved, tmp_path / "d.png"))
    other_marked = np.all(np.abs(other.astype(int) - (44, 160, 44)) < 8, axis=2)
    assert best != 1
    assert np.flatnonzero(other_marked.any(axis=0)).min() < np.flatnonzero(marked.any(axis=0)).min()


def with_l2(rows: list[dict]) -> list[dict]:
    """Metric rows as mlp writes them now: data loss and the L2 term apart."""
    return [{**row, "train_data_loss": row["train_loss"] - 0.5, "val_data_loss": row["val_loss"] - 0.5, "l2": 0.5}
            for row in rows]


def test_training_curves_draw_the_l2_term_apart_when_the_rows_have_it(tmp_path):
    purple = np.array([int(plots.L2_COLOR[i:i + 2], 16) for i in (1, 3, 5)])

    def l2_pixels(image):
        return int(np.all(np.abs(image.astype(int) - purple) < 8, axis=2).sum())

    new = plots.training_curves(with_l2(epochs(6)), tmp_path / "new.png")
    old = plots.training_curves(epochs(6), tmp_path / "old.png")
    assert png_size(new) == (round(14.5 * plots.DPI), round(4.2 * plots.DPI))   # a third panel: the L2 term
    assert png_size(old) == (11 * plots.DPI, round(4.2 * plots.DPI))
    assert l2_pixels(pixels(new)) > 100 and l2_pixels(pixels(old)) == 0
    resumed = epochs(3) + with_l2(epochs(6))[3:]          # an old run continued by a newer mlp
    assert png_size(plots.training_curves(resumed, tmp_path / "mixed.png"))[0] == round(14.5 * plots.DPI)


def test_training_curves_without_validation_or_with_one_epoch(tmp_path):
    assert png_size(plots.training_curves(epochs(5, with_val=False), tmp_path / "a.png"))
    assert png_size(plots.training_curves(epochs(1), tmp_path / "b.png"))
    with pytest.raises(MlpError, match="no epochs to plot"):
        plots.training_curves([], tmp_path / "c.png")


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_confusion_heatmap_grows_with_the_classes(tmp_path, classes):
    rng = np.random.default_rng(classes)
    confusion = rng.integers(0, 20, (classes, classes)) + np.diag(rng.integers(50, 500, classes))
    names = [f"class {i}" for i in range(classes)]
    width, height = png_size(plots.confusion_heatmap(confusion, names, tmp_path / "m.png"))
    assert width >= 4.5 * plots.DPI and height >= 3.8 * plots.DPI
    assert width >= classes * 0.14 * plots.DPI          # at least 0.14 inch per class: names stay legible


def test_confusion_heatmap_colours_by_share_of_the_true_class(tmp_path):
    # the second class has 10× the images but the same shares, so its row has the same colours
    image = pixels(plots.confusion_heatmap([[8, 2], [80, 20]], ["few", "many"], tmp_path / "m.png")).astype(int)

    def area(share: float) -> int:
        colour = np.round(np.array(matplotlib.colormaps["Blues"](share ** plots.SHARE_GAMMA)[:3]) * 255)
        return int(np.all(np.abs(image - colour) <= 1, axis=2).sum())

    dark, light = area(0.8), area(0.2)                  # two cells each: the first and the second column
    assert dark > (0.5 * plots.DPI) ** 2 and 0.85 < dark / light < 1.15


def test_confusion_heatmap_rejects_a_shape_mismatch(tmp_path):
    with pytest.raises(MlpError, match=r"shape \(2, 2\) does not match 3 class names"):
        plots.confusion_heatmap(np.eye(2), ["a", "b", "c"], tmp_path / "m.png")


def test_weight_templates_rescale_each_tile_to_its_own_range(tmp_path):
    # every template: left half pure red, right half black, but each unit at its own scale and offset
    h, w, units = 8, 8, 7
    template = np.zeros((h, w, 3))
    template[:, : w // 2, 0] = 1.0
    W = np.stack([template.ravel() * (u + 1) * 0.3 - u for u in range(units)], axis=1)     # (192, 7)
    image = pixels(plots.weight_templates(W, (h, w, 3), tmp_path / "t.png"))
    red = np.all(image == RED, axis=2).sum()
    per_tile = red / units
    scale = np.sqrt(per_tile / (h * w // 2))
    assert scale >= 1 and scale == int(scale)            # whole-pixel enlargement, every tile pure red


def test_weight_templates_show_at_most_max_tiles(tmp_path):
    template = np.zeros((4, 4, 3))
    template[..., 0] = 1.0
    template[0, 0] = 0.0
    W = np.repeat(template.reshape(-1, 1), 30, axis=1)
    red_all = np.all(pixels(plots.weight_templates(W, (4, 4, 3), tmp_path / "a.png")) == RED, axis=2).sum()
    red_some = np.all(pixels(plots.weight_templates(W, (4, 4, 3), tmp_path / "b.png", max_tiles=12)) == RED,
                      axis=2).sum()
    assert red_some * 30 == red_all * 12


def test_class_templates_are_captioned_with_the_class_names(tmp_path):
    rng = np.random.default_rng(2)
    W = rng.normal(size=(8 * 8 * 3, 4))
    plain = pixels(plots.weight_templates(W, (8, 8, 3), tmp_path / "units.png"))
    named = pixels(plots.weight_templates(W, (8, 8, 3), tmp_path / "classes.png", classes=["cat", "dog", "ox", "eel"]))
    assert named.shape[0] == plain.shape[0] + 2 * plots.CAPTION_PX        # 2 rows of tiles, each with a caption
    below_tiles = named[-plots.CAPTION_PX:]                                # the last row's captions
    assert (below_tiles.max(axis=2) < 100).sum() > 20                      # dark text on white
    with pytest.raises(MlpError, match="3 class names for 4 weight columns"):
        plots.weight_templates(W, (8, 8, 3), tmp_path / "x.png", classes=["a", "b", "c"])


def test_a_linear_model_gets_class_templates(tmp_path):
    run = write_run(tmp_path / "run")
    linear = PixelClassifier([PIXELS], hidden=2)
    linear.config.model.hidden = []
    linear.classes = ["a", "b"]
    hidden = PixelClassifier([PIXELS], hidden=2)
    tall = png_size(plots.write_run_plots(run, linear)[-1])[1]
    assert tall == png_size(plots.write_run_plots(run, hidden)[-1])[1] + plots.CAPTION_PX


def test_weight_templates_of_gray_images_and_wrong_shapes(tmp_path):
    rng = np.random.default_rng(0)
    assert png_size(plots.weight_templates(rng.normal(size=(25 * 25, 5)), (25, 25, 1), tmp_path / "g.png"))
    with pytest.raises(MlpError, match=r"cannot be shown as 32×32×3 templates .*only raw-pixel features"):
        plots.weight_templates(rng.normal(size=(100, 5)), (32, 32, 3), tmp_path / "x.png")


@pytest.mark.parametrize("options", [{}, {"color": "gray", "orientations": 6, "pixels_per_cell": 4}])
def test_hog_glyphs_beside_color_images(tmp_path, options):
    cfg = from_dict(HogConfig, options)
    path = plots.hog_glyphs(sample_images(), [cfg], tmp_path / "hog.png")
    assert png_size(path) == (round(1.8 * 4 * plots.DPI), round(4.2 * plots.DPI))


def test_hog_glyphs_of_gray_images(tmp_path):
    gray = (resize(skimage.data.camera(), (32, 32), anti_aliasing=True) * 255).astype(np.uint8)[None, ..., None]
    assert png_size(plots.hog_glyphs(gray, [HogConfig()], tmp_path / "hog.png"))
    with pytest.raises(MlpError, match="need images of shape"):
        plots.hog_glyphs(np.zeros((0, 32, 32, 3), np.uint8), [HogConfig()], tmp_path / "none.png")
    with pytest.raises(MlpError, match="at least one HOG extractor"):
        plots.hog_glyphs(gray, [], tmp_path / "none.png")


class PixelClassifier:
    """The Classifier attributes write_run_plots reads, for a net on standardized raw pixels."""

    def __init__(self, extractors: list[ExtractorSpec], image_shape=(8, 8, 3), hidden=5):
        self.config = Config()
        self.config.features.extractors = extractors
        self.image_shape = image_shape
        dim = int(np.prod(image_shape))
        rng = np.random.default_rng(1)
        self.model = SimpleNamespace(params={"layer0.W": rng.normal(size=(dim, hidden)).astype(np.float32)})
        self.pipeline = SimpleNamespace(std=np.full(dim, 2.0, np.float32))


def write_run(folder, splits=("val",), metrics=None):
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics or epochs(4)))
    summary = {"name": "run", "started": "2026-01-02T10:00:00+00:00", "seconds": 2.0, "epochs_run": 4,
               "best_epoch": 4, "stopped": "completed", "model": "192-5-2 relu softmax", "features": ["pixels"],
               "classes": ["a", "b"]}
    for split in splits:
        summary[split] = {"accuracy": 0.75, "loss": 0.5, "confusion": [[3, 1], [1, 3]]}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_write_run_plots_writes_what_applies(tmp_path):
    run = write_run(tmp_path / "run", splits=("val", "test"))
    written = plots.write_run_plots(run, PixelClassifier([PIXELS]))
    assert [p.name for p in written] == ["training_curves.png", "confusion_val.png", "confusion_test.png",
                                         "weight_templates.png"]
    assert all(p.parent == run and png_size(p) for p in written)


def test_write_run_plots_without_a_checkpoint_draws_curves_and_confusion(tmp_path):
    run = write_run(tmp_path / "run")
    assert [p.name for p in plots.write_run_plots(run)] == ["training_curves.png", "confusion_val.png"]


@pytest.mark.parametrize("value", ["abc", True, None, -1.0, float("nan"), float("inf"), [0.5], {"a": 1}])
def test_hostile_metric_values_are_gaps_in_the_curves(tmp_path, value):
    rows = epochs(4)
    rows[1] = {key: value if key != "epoch" else 2 for key in rows[1]}     # every value of epoch 2
    rows[2]["val_acc"] = 0.99
    run = write_run(tmp_path / "run", metrics=rows)
    with_gap = pixels(plots.write_run_plots(run)[0])
    rows[1] = epochs(4)[1]
    whole = pixels(plots.training_curves(rows, tmp_path / "whole.png", title="run"))
    assert with_gap.shape == whole.shape and not np.array_equal(with_gap, whole)   # the lines break at epoch 2
    green = np.all(np.abs(with_gap.astype(int) - (44, 160, 44)) < 8, axis=2)
    assert green.any()                                  # the best epoch (3) is still marked


def test_every_hog_extractor_gets_a_row_of_glyphs(tmp_path):
    run = write_run(tmp_path / "run")
    fine = ExtractorSpec("hog", from_dict(HogConfig, {"pixels_per_cell": 4, "color": "gray"}))
    classifier = PixelClassifier([HOG, ExtractorSpec("color_hist", None), fine], image_shape=(32, 32, 3))
    path = plots.write_run_plots(run, classifier, sample_images())[-1]
    assert path.name == "hog_glyphs.png" and png_size(path) == (round(1.8 * 4 * plots.DPI), round(2.1 * 3 * plots.DPI))
    twice = plots.hog_glyphs(sample_images(), [HOG.cfg, HOG.cfg], tmp_path / "twice.png")
    bottom_right = (slice(round(2 * 2.1 * plots.DPI), None), slice(round(0.9 * 4 * plots.DPI), None))
    assert not np.array_equal(pixels(path)[bottom_right], pixels(twice)[bottom_right])   # its own glyphs


def test_write_run_plots_hog_glyphs_not_templates_for_hog_features(tmp_path):
    run = write_run(tmp_path / "run")
    classifier = PixelClassifier([HOG], image_shape=(32, 32, 3))
    names = [p.name for p in plots.write_run_plots(run, classifier, sample_images())]
    assert names == ["training_curves.png", "confusion_val.png", "hog_glyphs.png"]
    assert "hog_glyphs.png" not in [p.name for p in plots.write_run_plots(run, classifier)]   # no samples


def test_templates_follow_the_pixel_options(tmp_path):
    gray = PixelClassifier([ExtractorSpec("pixels", PixelsConfig(gray=True, size=[4, 6]))])
    assert plots.pixel_template_shape(gray) == (4, 6, 1)
    assert plots.pixel_template_shape(PixelClassifier([PIXELS, HOG])) is None
