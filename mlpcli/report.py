"""`report.html`: one page showing a run — summary, plots, metrics per epoch, per-class precision and
recall, the validation images the network got most confidently wrong, and the resolved config.

The page is self-contained: its CSS is inline and every picture (the plots, which are also written as
PNG files beside it, and the thumbnails of the mistakes) is embedded as a data: URI, so report.html
alone can be mailed, archived or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from mlpcli import plots
from mlpcli.atomic import write_text_atomic
from mlpcli.data import load_splits
from mlpcli.data.dataset import Dataset
from mlpcli.errors import MlpError
from mlpcli.metrics import confusion_matrix, macro_f1, per_class
from mlpcli.predictor import Classifier, softmax
from mlpcli.readfile import read_regular
from mlpcli.rundir import RunDir
from mlpcli.runs import format_duration, read_metrics, read_summary
from mlpcli.seeding import generators

HOG_SAMPLES = 6

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.muted { color: #666; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1.2em; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f6; }
tr.best td { background: #e8f5e9; font-weight: 600; }
.scroll { max-height: 28em; overflow-y: auto; display: inline-block; border: 1px solid #eee; }
figure.plot { margin: 1em 0; } figure.plot img { max-width: 100%; height: auto; }
.examples { display: flex; flex-wrap: wrap; gap: 0.8em; }
.examples figure { margin: 0; width: 112px; font-size: 12px; text-align: center; }
.examples img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
                border: 1px solid #ccc; }
.true { color: #2e7d32; } .predicted { color: #c62828; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def write_report(run_dir: str | Path, classifier: Classifier | None = None, val: Dataset | None = None,
                 max_examples: int = 40) -> Path:
    """Regenerate the plots of the run in `run_dir` and write RUN/report.html; its path.

    classifier: the trained network (default: RUN/checkpoints/best.npz); val: the run's validation
    split (default: rebuilt from the run's config). Up to `max_examples` misclassified validation
    images are shown, most confident mistakes first.
    """
    run = RunDir(run_dir)
    for path in (run.config, run.metrics, run.summary) + (() if classifier else (run.best,)):
        if not path.is_file():
            raise MlpError(f"cannot report on {run.path}: {path} is missing "
                           f"(is this a finished run folder written by `mlp train`?)")
    summary = read_summary(run.summary)
    metrics = read_metrics(run.path)
    classifier = classifier or Classifier.from_checkpoint(run.best)
    val = val if val is not None else validation_split(classifier.config)
    scores = classifier.scores(val.images)     # a validation split is small enough to hold
    _check_same_split(val, scores, summary, run)
    samples = val.images[_one_per_class(val.labels, HOG_SAMPLES)]
    pictures = plots.write_run_plots(run.path, classifier, samples)
    examples = _examples(val, scores, classifier.config.loss.name == "softmax", max_examples)
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(run.path.name)} — mlp report</title>",
        f"<style>{CSS}</style></head><body>",
        _header(run, summary),
        _plots_section(pictures),
        _metrics_section(metrics, summary["best_epoch"]),
        _per_class_section(summary),
        _examples_section(examples, len(val)),
        "<h2>Config</h2>",
        f"<pre>{_e(_config_text(run))}</pre>",
        "</body></html>",
    ])
    path = run.path / "report.html"
    write_text_atomic(path, page)
    return path


def _config_text(run: RunDir) -> str:
    """The run's config.yaml as shown on the page (what the scores used comes from the checkpoint): bytes that
    are not UTF-8 shown as U+FFFD, a missing file said so."""
    try:
        return read_regular(run.config).decode("utf-8", errors="replace")
    except OSError as err:
        return f"({run.config.name} cannot be read: {err.strerror})"


def validation_split(cfg) -> Dataset:
    """The validation split the run with config `cfg` was scored on."""
    return load_splits(cfg, generators(cfg.seed)["data"])["val"]


def _check_same_split(val: Dataset, scores: np.ndarray, summary: dict, run: RunDir) -> None:
    """MlpError unless the predictions on `val` reproduce the validation confusion in summary.json."""
    confusion = confusion_matrix(val.labels, scores.argmax(axis=1), scores.shape[1]).tolist()
    if confusion != summary["val"]["confusion"]:
        raise MlpError(f"the validation images rebuilt from {run.config} do not reproduce the validation "
                       f"results in {run.summary}; has the dataset changed since the run?")


def _one_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices (≤ count,) of the first image of each class, in class order."""
    _, first = np.unique(labels, return_index=True)
    return first[:count]


def _examples(val: Dataset, scores: np.ndarray, probabilities: bool, max_examples: int) -> list[dict]:
    """The most confident mistakes, one dict per example for the page (its thumbnail as a data: URI).

    Confidence: the softmax probability of the predicted class, or for scores that are not meant as
    probabilities (hinge loss) the margin of the predicted over the true class score.
    """
    predicted = scores.argmax(axis=1)
    wrong = np.flatnonzero(predicted != val.labels)
    if probabilities:
        sureness = softmax(scores)[wrong, predicted[wrong]]
    else:
        sureness = scores[wrong, predicted[wrong]] - scores[wrong, val.labels[wrong]]
    order = np.argsort(-sureness, kind="stable")[:max_examples]
    chosen, confidence = wrong[order], sureness[order] if probabilities else None
    examples = []
    for k, index in enumerate(chosen):
        image = val.images[index]
        png = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(png, format="PNG")
        examples.append({"src": _data_uri(png.getvalue()), "index": int(index),
                         "true": val.classes[val.labels[index]], "predicted": val.classes[predicted[index]],
                         "confidence": None if confidence is None else float(confidence[k])})
    return examples


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _header(run: RunDir, summary: dict) -> str:
    facts = {
        "folder": str(run.path),
        "started": summary["started"].replace("T", " "),
        "time": format_duration(summary["seconds"]),
        "epochs": f"{summary['epochs_run']} ({summary['stopped']}; best epoch {summary['best_epoch']})",
        "model": summary["model"],
        "features": " + ".join(summary["features"]) or "?",
        "classes": f"{len(summary['classes'])}: {', '.join(summary['classes'])}",
    }
    for split, label in (("val", "validation"), ("test", "test")):
        if split in summary:
            facts[f"{label} accuracy"] = f"{summary[split]['accuracy']:.2%} (loss {summary[split]['loss']:.4f})"
    rows = "".join(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>" for key, value in facts.items())
    return (f"<h1>{_e(summary['name'])}</h1>"
            f'<p class="muted">mlp run report</p><dl class="facts">{rows}</dl>')


def _plots_section(pictures: list[Path]) -> str:
    figures = "".join(f'<figure class="plot"><img src="{_data_uri(p.read_bytes())}" '
                      f'alt="{_e(p.stem.replace("_", " "))}" title="{_e(p.name)}"></figure>' for p in pictures)
    return f"<h2>Plots</h2>{figures}"


def _metrics_section(metrics: list[dict], best_epoch: int) -> str:
    columns = [("epoch", "epoch", "{}"), ("train_loss", "train loss", "{:.4f}"),
               ("train_data_loss", "train data loss", "{:.4f}"), ("train_acc", "train acc", "{:.2%}"),
               ("val_loss", "val loss", "{:.4f}"), ("val_data_loss", "val data loss", "{:.4f}"),
               ("val_acc", "val acc", "{:.2%}"), ("l2", "L2 term", "{:.4g}"), ("lr", "learning rate", "{:.3g}"),
               ("seconds", "seconds", "{:.2f}")]
    columns = [column for column in columns if any(column[0] in m for m in metrics)]
    head = "".join(f"<th>{title}</th>" for _, title, _ in columns)
    rows = []
    for m in metrics:
        cells = "".join(f"<td>{'-' if m.get(key) is None else fmt.format(m[key])}</td>" for key, _, fmt in columns)
        rows.append(f'<tr class="best">{cells}</tr>' if m["epoch"] == best_epoch else f"<tr>{cells}</tr>")
    return (f'<h2>Metrics per epoch</h2><p class="muted">best epoch highlighted; its weights are '
            f'checkpoints/best.npz. Loss = data loss + L2 term λ·ΣW².</p><div class="scroll"><table><tr>{head}</tr>'
            f'{"".join(rows)}</table></div>')


def _per_class_section(summary: dict) -> str:
    splits = [(split, label) for split, label in (("val", "validation"), ("test", "test")) if split in summary]
    scores = {split: per_class(summary[split]["confusion"]) for split, _ in splits}
    head = "<th>class</th>" + "".join(f"<th>{label} images</th><th>precision</th><th>recall</th><th>F1</th>"
                                      for _, label in splits)
    rows = []
    for c, name in enumerate(summary["classes"]):
        cells = "".join(f"<td>{scores[s]['support'][c]}</td><td>{scores[s]['precision'][c]:.1%}</td>"
                        f"<td>{scores[s]['recall'][c]:.1%}</td><td>{scores[s]['f1'][c]:.1%}</td>" for s, _ in splits)
        rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
    macro = "".join(f"<td>{sum(scores[s]['support'])}</td><td></td><td></td>"
                    f"<td>{macro_f1(summary[s]['confusion']):.1%}</td>" for s, _ in splits)
    rows.append(f"<tr><td>(macro F1)</td>{macro}</tr>")
    return (f'<h2>Per-class precision, recall and F1</h2><p class="muted">precision: of the images predicted as '
            f'the class, the share that are; recall: of the images of the class, the share found; F1: their '
            f'harmonic mean</p><table><tr>{head}</tr>{"".join(rows)}</table>')


def _examples_section(examples: list[dict], total: int) -> str:
    if not examples:
        return "<h2>Misclassified validation images</h2><p>None: every validation image is classified correctly.</p>"
    figures = []
    for ex in examples:
        sure = "" if ex["confidence"] is None else f" ({ex['confidence']:.0%})"
        figures.append(f'<figure><img src="{_e(ex["src"])}" alt="validation image {ex["index"]}">'
                       f'<figcaption><span class="true">{_e(ex["true"])}</span> → '
                       f'<span class="predicted">{_e(ex["predicted"])}{sure}</span></figcaption></figure>')
    return (f"<h2>Misclassified validation images</h2><p class=\"muted\">{len(examples)} of the mistakes "
            f"among {total} validation images, most confident first; caption: true class → predicted "
            f"class</p><div class=\"examples\">{''.join(figures)}</div>")


def _e(text) -> str:
    return html.escape(str(text))
