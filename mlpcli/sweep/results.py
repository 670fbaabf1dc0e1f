"""A sweep's results per configuration: the metric's mean ± std over seeds and n, as records, a text
table sorted best first, and JSON."""

from __future__ import annotations

import statistics
from typing import Any

from mlpcli.runs import format_duration

METRIC_KEYS = {"val_acc": "best_val_acc", "val_loss": "best_val_loss"}   # metric → trial record field


def configurations(records: list[dict], metric: str) -> list[dict]:
    """One record per configuration, best first (by the mean of `metric` over its scored seeds; the pruned
    after the rest, the unscored last): config, params, n (seeds with a score), mean, std (None for n < 2), test_mean,
    epochs (most of any seed), seconds (summed), status (its trials' statuses), trials (ids)."""
    groups: dict[int, list[dict]] = {}
    for record in records:
        groups.setdefault(record["config"], []).append(record)
    rows = []
    for index, group in groups.items():
        scores = [r[METRIC_KEYS[metric]] for r in group if r["status"] != "failed" and is_number(r[METRIC_KEYS[metric]])]
        tests = [r["test_acc"] for r in group if is_number(r.get("test_acc"))]
        rows.append({
            "config": index, "params": group[0]["params"], "n": len(scores),
            "mean": statistics.fmean(scores) if scores else None,
            "std": statistics.stdev(scores) if len(scores) > 1 else None,
            "test_mean": statistics.fmean(tests) if tests else None,
            "epochs": max((r.get("epochs") or 0) for r in group),
            "seconds": round(sum(r.get("seconds") or 0.0 for r in group), 2),
            "status": ", ".join(dict.fromkeys(r["status"] for r in group)),
            "trials": [r["trial"] for r in group],
        })
    sign = 1 if metric == "val_acc" else -1      # pruned configurations after those that trained to the end
    return sorted(rows, key=lambda row: (row["mean"] is None, row["status"] == "pruned", -sign * (row["mean"] or 0.0),
                                         row["config"]))


def format_table(rows: list[dict], metric: str) -> str:
    """The configurations as a text table: one column per swept key, then the metric (mean ± std), n,
    test accuracy, epochs, time and status."""
    if not rows:
        return "no trials"
    keys = list(rows[0]["params"])
    title = "val acc" if metric == "val_acc" else "val loss"
    header = ["#", *keys, title, "n", "test acc", "epochs", "time", "status"]
    table = [header] + [[str(row["config"]), *(format_value(row["params"].get(k)) for k in keys),
                         format_score(row["mean"], row["std"], metric), str(row["n"]),
                         "-" if row["test_mean"] is None else f"{row['test_mean']:.1%}",
                         str(row["epochs"]), format_duration(row["seconds"]), row["status"]] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    left = {0, *range(1, len(keys) + 1), len(header) - 1}
    return "\n".join("  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in table)


def format_score(mean: float | None, std: float | None, metric: str) -> str:
    if mean is None:
        return "-"
    if metric == "val_acc":
        return f"{mean:.2%}" + ("" if std is None else f" ± {std * 100:.2f}")
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def is_number(value: Any) -> bool:
    """A real number (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
