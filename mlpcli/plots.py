"""PNG pictures of a run: training curves, confusion matrix, first-layer templates, HOG glyphs.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state), in one
style, at `DPI` dots per inch; each function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.colors import PowerNorm
from matplotlib.ticker import MaxNLocator, PercentFormatter

from mlpcli.errors import MlpError
from mlpcli.predictor import Classifier
from mlpcli.rundir import RunDir
from mlpcli.runs import read_metrics, read_summary
from mlpcli.table import elide

DPI = 100
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "savefig.facecolor": "white",
}
TRAIN_COLOR, VAL_COLOR, BEST_COLOR, L2_COLOR = "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"
SHARE_GAMMA = 0.5       # confusion colours ∝ share**γ, so that small confusions stay visible
TEMPLATE_BORDER = 0.25  # gray level of the lines between weight tiles
CAPTION_PX = 14         # room under a class template for its name


def _figure(width: float, height: float) -> Figure:
    """A white figure of width × height inches on the Agg canvas, laid out without overlaps."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def training_curves(metrics: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Loss and accuracy per epoch, train and validation, side by side; the best validation epoch marked.

    metrics: one dict per epoch with "epoch", "train_loss", "train_acc" and, when there is a
    validation split, "val_loss", "val_acc" (accuracies as fractions), as `runs.read_metrics` reads
    them: a value that is None is a gap in its line. Rows that also carry "train_data_loss",
    "val_data_loss" and "l2" (λ·ΣW²) get the data loss and the L2 term drawn apart, in panels of their
    own scale; older rows without them get the total loss.
    """
    if not metrics:
        raise MlpError(f"no epochs to plot for {path}: the metrics list is empty")
    epochs = [m["epoch"] for m in metrics]
    scored = [m for m in metrics if m.get("val_acc") is not None]
    best = max(scored, key=lambda m: m["val_acc"]) if scored else None
    has_val = best is not None
    apart = any("l2" in m for m in metrics)
    marker = "o" if len(epochs) <= 30 else None

    def series(key: str) -> list[float]:
        return [np.nan if m.get(key) is None else m[key] for m in metrics]

    with matplotlib.rc_context(STYLE):
        fig = _figure(14.5 if apart else 11, 4.2)
        axes = fig.subplots(1, 3 if apart else 2)
        loss_key, loss_label = ("data_loss", "data loss") if apart else ("loss", "loss")
        for ax, key, label in ((axes[0], loss_key, loss_label), (axes[-1], "acc", "accuracy")):
            ax.plot(epochs, series(f"train_{key}"), color=TRAIN_COLOR, marker=marker, ms=3, label="train")
            if has_val:
                ax.plot(epochs, series(f"val_{key}"), color=VAL_COLOR, marker=marker, ms=3, label="validation")
            ax.set_ylabel(label)
            ax.set_title(f"{label} per epoch")
        if apart:
            axes[1].plot(epochs, series("l2"), color=L2_COLOR, marker=marker, ms=3)
            axes[1].set_ylabel("λ·ΣW²")
            axes[1].set_title("L2 term of the loss per epoch")
        for ax in axes:
            if has_val:
                ax.axvline(best["epoch"], color=BEST_COLOR, ls="--", lw=1, label=f"best epoch {best['epoch']}")
            ax.set_xlabel("epoch")
            ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        acc_ax = axes[-1]
        if has_val:
            acc_ax.plot(best["epoch"], best["val_acc"], "*", color=BEST_COLOR, ms=12, zorder=3,
                        label=f"best validation {best['val_acc']:.1%}")
        acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        handles, labels = acc_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
        if title:
            fig.suptitle(title)
        return _save(fig, path)


def confusion_heatmap(confusion, classes: list[str], path: str | Path, title: str = "Confusion matrix") -> Path:
    """A C×C confusion matrix (rows = true class): counts as text, colour = share of the true class
    (on a square-root scale, so that confusions of a few percent show).

    The figure grows with C so that 2 to 100 class names stay readable; counts are written in the
    cells only while they fit.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    n = len(classes)
    if counts.shape != (n, n):
        raise MlpError(f"confusion matrix of shape {counts.shape} does not match {n} class names for {path}")
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    cell = min(0.6, max(0.14, 6.0 / n))                 # inches per cell
    label_size = min(10.0, cell * 72 * 0.75)            # points
    label_room = 0.5 + max(len(c) for c in classes) * label_size * 0.6 / 72
    side = n * cell + label_room
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = _figure(max(4.5, side + 1.6), max(3.8, side + 0.5))
        ax = fig.subplots()
        norm = PowerNorm(SHARE_GAMMA, vmin=0, vmax=1)
        image = ax.imshow(fractions, cmap="Blues", norm=norm, interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, shrink=0.8 if n <= 20 else 0.5, format=PercentFormatter(1.0),
                           ticks=[0, 0.05, 0.2, 0.5, 1])
        bar.set_label("share of the true class")
        ticks = np.arange(n)
        ax.set_xticks(ticks, classes, fontsize=label_size, rotation=90 if n > 20 else 45,
                      ha="center" if n > 20 else "right", rotation_mode="anchor" if n <= 20 else "default")
        ax.set_yticks(ticks, classes, fontsize=label_size)
        ax.tick_params(length=0)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if cell * 72 >= 20:
            digits = len(str(counts.max()))
            size = min(10.0, cell * 72 / max(digits, 2) * 1.3)
            for (i, j), count in np.ndenumerate(counts):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=size,
                        color="white" if norm(fractions[i, j]) > 0.6 else "black")
        return _save(fig, path)


def weight_templates(W: np.ndarray, image_shape, path: str | Path, max_tiles: int = 100,
                     classes: list[str] | None = None) -> Path:
    """First-layer weights as image tiles: column h of W (D, H) reshaped to image_shape (h, w, c).

    One tile per hidden unit (the first `max_tiles`), each rescaled to its own min..max, laid out in a
    near-square grid with thin borders; pixels are enlarged by a whole factor so they stay sharp. For a
    linear classifier the columns are classes: pass their names as `classes` to title the picture
    "class templates" and write each class's name under its tile.
    """
    W = np.asarray(W, dtype=np.float64)
    height, width, channels = image_shape
    if W.ndim != 2 or W.shape[0] != height * width * channels:
        raise MlpError(f"weights of shape {W.shape} cannot be shown as {height}×{width}×{channels} templates "
                       f"(need {height * width * channels} rows): only raw-pixel features make image tiles")
    if classes is not None and len(classes) != W.shape[1]:
        raise MlpError(f"{len(classes)} class names for {W.shape[1]} weight columns in {path}")
    count = min(W.shape[1], max_tiles)
    tiles = W[:, :count].T.reshape(count, height, width, channels)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - low
    tiles = (tiles - low) / np.where(span > 0, span, 1)
    if channels == 1:
        tiles = np.repeat(tiles, 3, axis=3)
    scale = max(1, 96 // max(height, width))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    border, caption = 2, (CAPTION_PX if classes is not None else 0)
    tile_h, tile_w = height * scale + border + caption, width * scale + border
    mosaic = np.ones((rows * tile_h + border, columns * tile_w + border, 3))
    for k, tile in enumerate(tiles):
        top, left = border + (k // columns) * tile_h, border + (k % columns) * tile_w
        mosaic[top - border:top + height * scale + border, left - border:left + tile_w] = TEMPLATE_BORDER
        mosaic[top:top + height * scale, left:left + width * scale] = tile
    heading = 48
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(mosaic.shape[1], 480) / DPI, (mosaic.shape[0] + heading) / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        fig_w, fig_h = fig.bbox.width, fig.bbox.height
        xo = (fig_w - mosaic.shape[1]) // 2
        fig.figimage(mosaic, xo=xo, yo=0, origin="upper")
        if classes is None:
            what = f"First-layer weights: {count} of {W.shape[1]} hidden units"
            how = f"one {height}×{width} template per unit, each scaled to its own min..max"
        else:
            what = f"Class templates of the linear classifier: {count} of {W.shape[1]} classes"
            how = f"each class's {height}×{width} weights, scaled to their own min..max"
            for k, name in enumerate(classes[:count]):
                top, left = border + (k // columns) * tile_h, border + (k % columns) * tile_w
                x, y = xo + left + width * scale / 2, mosaic.shape[0] - (top + height * scale + 2)
                fig.text(x / fig_w, y / fig_h, elide(name, max(4, width * scale // 6)), ha="center", va="top",
                         fontsize=8)
        fig.text(0.5, 1 - 14 / fig_h, what, ha="center", va="top", fontsize=11)
        fig.text(0.5, 1 - 32 / fig_h, how, ha="center", va="top", fontsize=9, color="dimgray")
        return _save(fig, path)


def hog_glyphs(images: np.ndarray, hog_cfgs: list, path: str | Path, max_images: int = 6) -> Path:
    """Sample images (N, H, W, C) uint8 above their HOG glyphs (skimage.feature.hog(visualize=True)),
    one row of glyphs per HOG extractor.

    hog_cfgs: the HOG extractors' options (mlpcli.features.hog.HogConfig); each glyph star shows one
    cell's orientation histogram, computed on the image the extractor sees (gray or all channels).
    """
    from skimage.color import rgb2gray
    from skimage.feature import hog

    images = np.asarray(images)[:max_images]
    if images.ndim != 4 or len(images) == 0:
        raise MlpError(f"HOG glyphs for {path} need images of shape (N, H, W, C) with N ≥ 1, "
                       f"got {np.shape(images)}")
    if not hog_cfgs:
        raise MlpError(f"HOG glyphs for {path} need at least one HOG extractor's options")
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = _figure(1.8 * max(len(images), 3), 2.1 * (1 + len(hog_cfgs)))
        axes = fig.subplots(1 + len(hog_cfgs), len(images), squeeze=False)
        for k, image in enumerate(images):
            color = image.shape[2] == 3
            axes[0, k].imshow(image if color else image[..., 0], cmap=None if color else "gray",
                              interpolation="nearest")
            for row, cfg in enumerate(hog_cfgs, start=1):
                seen = rgb2gray(image) if color and cfg.color == "gray" else image if color else image[..., 0]
                cell = cfg.pixels_per_cell
                _, glyphs = hog(seen, orientations=cfg.orientations, pixels_per_cell=(cell, cell),
                                cells_per_block=(cfg.cells_per_block,) * 2, block_norm=cfg.block_norm,
                                transform_sqrt=cfg.transform_sqrt, visualize=True,
                                channel_axis=-1 if seen.ndim == 3 else None)
                axes[row, k].imshow(glyphs, cmap="gray", interpolation="nearest")
            for ax in axes[:, k]:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.spines[:].set_visible(False)
        axes[0, 0].set_ylabel("image")
        for row, cfg in enumerate(hog_cfgs, start=1):
            number = f" {row}" if len(hog_cfgs) > 1 else ""
            axes[row, 0].set_ylabel(f"HOG{number}: {cfg.orientations} bins,\n"
                                    f"{cfg.pixels_per_cell}×{cfg.pixels_per_cell} cells, {cfg.color}", fontsize=8)
        fig.suptitle("What the network sees: HOG glyphs" + (f" of {len(hog_cfgs)} extractors" if len(hog_cfgs) > 1
                                                           else ""))
        return _save(fig, path)


def write_run_plots(run_dir: str | Path, classifier: Classifier | None = None,
                    samples: np.ndarray | None = None) -> list[Path]:
    """Write every plot that applies to the run in `run_dir` as RUN/*.png; the paths written.

    training_curves.png (from metrics.jsonl), confusion_val.png and confusion_test.png (from
    summary.json), weight_templates.png (pixel features only) and hog_glyphs.png (HOG features and
    `samples` given). classifier: the run's trained network (default: checkpoints/best.npz, if saved);
    samples: a few images (N, H, W, C) uint8 to draw HOG glyphs of.
    """
    run = RunDir(run_dir)
    written = []
    metrics = read_metrics(run.path)
    if metrics:
        written.append(training_curves(metrics, run.path / "training_curves.png", title=run.path.name))
    if run.summary.exists():
        summary = read_summary(run.summary)
        for split, label in (("val", "validation"), ("test", "test")):
            if split in summary:
                written.append(confusion_heatmap(
                    summary[split]["confusion"], summary["classes"], run.path / f"confusion_{split}.png",
                    title=f"Confusion matrix, {label} split (accuracy {summary[split]['accuracy']:.1%})"))
    if classifier is None and run.best.exists():
        classifier = Classifier.from_checkpoint(run.best)
    if classifier is None:
        return written
    template_shape = pixel_template_shape(classifier)
    if template_shape is not None:
        W = classifier.model.params["layer0.W"]
        if classifier.pipeline.std is not None:
            W = W / classifier.pipeline.std[:, None]     # the template on raw pixels, before standardizing
        linear = not classifier.config.model.hidden      # its weight columns are the classes
        written.append(weight_templates(W, template_shape, run.path / "weight_templates.png",
                                        classes=list(classifier.classes) if linear else None))
    hog_cfgs = [spec.cfg for spec in classifier.config.features.extractors if spec.name == "hog"]
    if hog_cfgs and samples is not None and len(samples):
        written.append(hog_glyphs(samples, hog_cfgs, run.path / "hog_glyphs.png"))
    return written


def pixel_template_shape(classifier: Classifier) -> tuple[int, int, int] | None:
    """The (h, w, c) image a first-layer weight column is, when the features are raw pixels alone."""
    specs = classifier.config.features.extractors
    if [spec.name for spec in specs] != ["pixels"]:
        return None
    height, width, channels = classifier.image_shape
    if specs[0].cfg.size is not None:
        height, width = specs[0].cfg.size
    if specs[0].cfg.gray:
        channels = 1
    return height, width, channels
