"""`mlp report SWEEP_DIR`: one page for a sweep — each swept key against the metric (log axis for
log-scaled keys), the spread over seeds, every trial's validation curve, the configurations best first
with links to each trial's own report, and the resolved spec.

Like a run's report, the page carries its CSS inline and refers to PNGs beside it (SWEEP/report/), so
the sweep folder is the unit to copy or archive.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from matplotlib.ticker import PercentFormatter
from tqdm import tqdm

from mlpcli.atomic import write_text_atomic
from mlpcli.errors import MlpError, one_line
from mlpcli.plots import STYLE, _figure, _save
from mlpcli.report import CSS, write_report
from mlpcli.runs import read_metrics
from mlpcli.sweep.folder import SweepDir
from mlpcli.sweep.results import METRIC_KEYS, configurations, format_score, format_value, is_number

PICTURES = "report"             # folder in the sweep for the page's PNGs
STATUS_COLORS = {"completed": "#1f77b4", "early_stop": "#1f77b4", "pruned": "#aaaaaa", "paused": "#aaaaaa"}


def write_sweep_report(folder: str | Path, progress: bool = True) -> Path:
    """Write SWEEP/report.html (and each finished trial's report.html that is missing); its path."""
    import matplotlib

    sweep = SweepDir.existing(folder)
    spec = sweep.load_spec()
    metric = spec.sweep.metric
    records = list(sweep.read_trials().values())
    if not records:
        raise MlpError(f"{sweep.trials} holds no trials yet; run or resume the sweep first "
                       f"(mlp sweep --resume {sweep.path})")
    links = _trial_reports(sweep, records, progress)
    with matplotlib.rc_context(STYLE):
        pictures = [_keys_plot(sweep, spec, records, metric), _seeds_plot(sweep, records, metric),
                    _curves_plot(sweep, records)]
    rows = configurations(records, metric)
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(sweep.path.name)} — mlp sweep report</title>", f"<style>{CSS}</style></head><body>",
        _header(sweep, spec, records, rows),
        *(f'<figure class="plot"><img src="{_e(p)}" alt="{_e(alt)}"></figure>' for p, alt in pictures if p),
        _table(rows, metric, links),
        "<h2>Sweep spec</h2>", f"<pre>{_e(sweep.spec.read_text(encoding='utf-8'))}</pre>",
        "</body></html>"])
    path = sweep.path / "report.html"
    write_text_atomic(path, page)
    return path


def _trial_reports(sweep: SweepDir, records: list[dict], progress: bool) -> dict[str, str]:
    """{trial: relative link}: its report.html (written when missing) for finished trials, else its folder."""
    links, todo = {}, []
    for record in records:
        run = sweep.path / record["run"]
        links[record["trial"]] = f"{record['run']}/report.html" if (run / "report.html").exists() else f"{record['run']}/"
        if record["status"] in ("completed", "early_stop") and not (run / "report.html").exists():
            todo.append(record)
    for record in tqdm(todo, desc="trial reports", unit="trial", disable=None if progress else True, leave=False):
        try:
            write_report(sweep.path / record["run"])
            links[record["trial"]] = f"{record['run']}/report.html"
        except MlpError as err:
            tqdm.write(f"no report for trial {record['trial']}: {one_line(err)}")
    return links


def _keys_plot(sweep: SweepDir, spec, records: list[dict], metric: str) -> tuple[str | None, str]:
    """The metric of every trial against each swept key: one panel per key."""
    keys = list(spec.sweep.params)
    scored = [r for r in records if is_number(r.get(METRIC_KEYS[metric]))]
    if not keys or not scored:
        return None, ""
    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    fig = _figure(4.2 * columns, 3.2 * rows)
    for n, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, n + 1)
        values = [r["params"][key] for r in scored]
        if all(is_number(v) for v in values):
            xs = values
            if spec.sweep.params[key].log or _spans_decades(values):
                ax.set_xscale("log")
        else:                               # lists, words: one position per distinct value
            labels = list(dict.fromkeys(format_value(v) for v in values))
            xs = [labels.index(format_value(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        ys = [r[METRIC_KEYS[metric]] for r in scored]
        colors = [STATUS_COLORS.get(r["status"], "#d62728") for r in scored]
        ax.scatter(xs, ys, c=colors, s=24, alpha=0.8)
        ax.set_xlabel(key)
        ax.set_ylabel(_metric_label(metric))
        if metric == "val_acc":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    fig.suptitle("each swept key against the metric (gray: pruned early)")
    return _written(fig, sweep, "keys.png"), "swept keys against the metric"


def _seeds_plot(sweep: SweepDir, records: list[dict], metric: str) -> tuple[str | None, str]:
    """Each configuration's seeds (dots) and their mean ± std, best configuration first."""
    rows = [row for row in configurations(records, metric) if row["n"] > 1]
    if not rows:
        return None, ""
    by_trial = {r["trial"]: r for r in records}
    fig = _figure(min(12.0, 2.0 + 0.45 * len(rows)), 3.4)
    ax = fig.add_subplot()
    for x, row in enumerate(rows):
        ys = [by_trial[t][METRIC_KEYS[metric]] for t in row["trials"] if is_number(by_trial[t][METRIC_KEYS[metric]])]
        ax.scatter([x] * len(ys), ys, s=16, color="#1f77b4", alpha=0.7)
        ax.errorbar([x], [row["mean"]], yerr=[row["std"] or 0.0], fmt="_", color="#d62728", capsize=4, markersize=14)
    ax.set_xticks(range(len(rows)), [str(row["config"]) for row in rows])
    ax.set_xlabel("configuration (best mean first)")
    ax.set_ylabel(_metric_label(metric))
    if metric == "val_acc":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title("spread over seeds: each seed (dots), mean ± std (red)")
    return _written(fig, sweep, "seeds.png"), "spread over seeds"


def _curves_plot(sweep: SweepDir, records: list[dict]) -> tuple[str | None, str]:
    """Validation accuracy per epoch of every trial (pruned trials in gray)."""
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot()
    drawn = 0
    for record in records:
        rows = read_metrics(sweep.path / record["run"])
        points = [(row["epoch"], row["val_acc"]) for row in rows if row.get("val_acc") is not None]
        if points:
            ax.plot(*zip(*points), color=STATUS_COLORS.get(record["status"], "#d62728"), alpha=0.6, linewidth=1)
            drawn += 1
    if not drawn:
        return None, ""
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title("validation accuracy per epoch of every trial")
    return _written(fig, sweep, "curves.png"), "validation curves"


def _header(sweep: SweepDir, spec, records: list[dict], rows: list[dict]) -> str:
    s = spec.sweep
    counts = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    best = rows[0] if rows and rows[0]["mean"] is not None else None
    facts = {
        "method": f"{s.method}" + (f", successive halving (1/{s.eta} continue)" if s.prune == "halving" else ""),
        "trials": ", ".join(f"{n} {status}" for status, n in counts.items()),
        "seeds per configuration": str(s.seeds),
        "ranked by": _metric_label(s.metric),
        "best": "-" if best is None else (f"configuration {best['config']}: {format_score(best['mean'], best['std'], s.metric)}"
                                          f" (n={best['n']}) with " + ", ".join(f"{k}={format_value(v)}"
                                                                                for k, v in best["params"].items())),
    }
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items())
    return f"<h1>{_e(sweep.path.name)}</h1><p class=\"muted\">{_e(sweep.path)}</p><dl class=\"facts\">{items}</dl>"


def _table(rows: list[dict], metric: str, links: dict[str, str]) -> str:
    keys = list(rows[0]["params"]) if rows else []
    head = "".join(f"<th>{_e(h)}</th>" for h in ["#", *keys, _metric_label(metric), "n", "test acc", "epochs",
                                                   "status", "trials"])
    body = []
    for k, row in enumerate(rows):
        trials = " ".join(f'<a href="{_e(links[t])}">{_e(t)}</a>' for t in row["trials"])
        cells = [str(row["config"]), *(format_value(row["params"].get(key)) for key in keys),
                 format_score(row["mean"], row["std"], metric), str(row["n"]),
                 "-" if row["test_mean"] is None else f"{row['test_mean']:.2%}", str(row["epochs"]), row["status"]]
        best = ' class="best"' if k == 0 and row["mean"] is not None else ""
        body.append(f"<tr{best}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td>{trials}</td></tr>")
    return (f"<h2>Configurations</h2><p class=\"muted\">best first; mean ± std over seeds; each trial links to its "
            f"report</p><div class=\"scroll\"><table><tr>{head}</tr>{''.join(body)}</table></div>")


def _written(fig, sweep: SweepDir, name: str) -> str:
    _save(fig, sweep.path / PICTURES / name)
    return f"{PICTURES}/{name}"


def _spans_decades(values: list) -> bool:
    """Positive numbers whose largest is at least 100 times the smallest: best seen on a log axis."""
    return all(v > 0 for v in values) and max(values) >= 100 * min(values)


def _metric_label(metric: str) -> str:
    return {"val_acc": "best validation accuracy", "val_loss": "lowest validation loss"}[metric]


def _e(text) -> str:
    return html.escape(str(text))
