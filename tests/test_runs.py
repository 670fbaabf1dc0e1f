from __future__ import annotations

import json
import math
import os
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpcli.errors import MlpError
from mlpcli.config import dump_config, load_config
from mlpcli.runs import (METRICS, SORT_KEYS, compare_runs, filter_runs, format_comparison, format_duration,
                         format_runs, list_runs, read_metrics, read_summary, run_record, runs_json, short_names,
                         sort_runs)


def write_run(root, folder, *, name, started, features, model, val_acc, test_acc=None, seconds=10.0,
              stopped="completed", epochs=3):
    run = root / folder
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("features:\n  extractors:\n" + "".join(f"  - {f}: {{}}\n" for f in features))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": val_acc,
                    "lr": 0.1, "seconds": seconds / epochs}) + "\n" for e in range(1, epochs + 1)))
    summary = {"name": name, "started": started, "seconds": seconds, "epochs_run": epochs, "best_epoch": epochs,
               "stopped": stopped, "classes": ["a", "b"], "features": features, "model": model,
               "val": {"accuracy": val_acc, "loss": 1.0, "confusion": [[1, 0], [0, 1]]}}
    if test_acc is not None:
        summary["test"] = {"accuracy": test_acc, "loss": 1.0, "confusion": [[1, 0], [0, 1]]}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def root(tmp_path):
    write_run(tmp_path, "pixels-1", name="pixels", started="2026-01-02T10:00:00+00:00", features=["pixels"],
              model="3072-100-10 relu softmax", val_acc=0.45, seconds=30.0)
    write_run(tmp_path, "hog-1", name="hog", started="2026-01-01T09:00:00+00:00", features=["hog", "color_hist"],
              model="334-500-10 relu softmax", val_acc=0.62, test_acc=0.61, seconds=125.0, stopped="early_stop")
    write_run(tmp_path, "bow-1", name="bow", started="2026-01-03T08:30:00+00:00", features=["bow"],
              model="6400-1000-10 relu hinge", val_acc=0.75, seconds=4000.0, stopped="interrupted")
    unfinished = tmp_path / "pixels-2"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "config.yaml").write_text("features:\n  extractors:\n  - pixels: {gray: true}\n")
    (unfinished / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "val_acc": 0.30, "seconds": 2.0}) + "\n"
        + json.dumps({"epoch": 2, "val_acc": 0.35, "seconds": 2.5}) + "\n" + '{"epoch": 3, "val_')
    damaged = write_run(tmp_path, "hog-2", name="hog", started="2026-01-04T00:00:00+00:00", features=["hog"],
                        model="x", val_acc=0.5)
    (damaged / "summary.json").write_text('{"name": "hog", "sta')
    (tmp_path / "notes").mkdir()                      # not a run: no run files inside
    (tmp_path / "README.txt").write_text("my runs")
    return tmp_path


def test_list_runs_reads_finished_and_tolerates_unfinished_and_damaged_runs(root):
    runs = {run["run"]: run for run in list_runs(root)}
    assert set(runs) == {"pixels-1", "hog-1", "bow-1", "pixels-2", "hog-2"}
    hog = runs["hog-1"]
    assert (hog["name"], hog["status"], hog["features"], hog["model"]) == (
        "hog", "early_stop", ["hog", "color_hist"], "334-500-10 relu softmax")
    assert (hog["val_acc"], hog["test_acc"], hog["seconds"], hog["epochs"]) == (0.62, 0.61, 125.0, 3)
    assert hog["path"] == str(root / "hog-1")
    assert runs["bow-1"]["status"] == "interrupted"
    unfinished = runs["pixels-2"]
    assert unfinished["status"] == "unfinished"
    assert unfinished["epochs"] == 2                  # the torn third line is not an epoch
    assert unfinished["val_acc"] == 0.35              # best so far, from the metrics
    assert unfinished["seconds"] == 4.5
    assert unfinished["features"] == ["pixels"]       # from config.yaml
    assert unfinished["test_acc"] is None and unfinished["model"] is None
    assert runs["hog-2"]["status"] == "damaged"
    json.dumps(list_runs(root))                       # the --json output is the list itself


def test_list_runs_is_oldest_first_and_needs_an_existing_folder(root, tmp_path):
    dated = [run["run"] for run in list_runs(root) if run["status"] != "unfinished"]
    assert dated == ["hog-1", "pixels-1", "bow-1", "hog-2"]
    with pytest.raises(MlpError, match="runs folder not found: .*nowhere"):
        list_runs(tmp_path / "nowhere")


def test_sort_by_accuracy_puts_best_first_and_missing_last(root):
    runs = list_runs(root)
    assert [run["run"] for run in sort_runs(runs, "val_acc")] == ["bow-1", "hog-1", "hog-2", "pixels-1", "pixels-2"]
    by_test = sort_runs(runs, "test_acc")
    assert by_test[0]["run"] == "hog-1" and all(run["test_acc"] is None for run in by_test[1:])
    seconds = [run["seconds"] for run in sort_runs(runs, "seconds")]
    assert seconds[0] == 4.5 and seconds == sorted(seconds)
    assert [run["name"] for run in sort_runs(runs, "name")] == sorted(run["name"] for run in runs)
    with pytest.raises(MlpError, match="cannot sort runs by 'speed'; choose one of date, name"):
        sort_runs(runs, "speed")


def test_filter_matches_name_features_model_and_status_ignoring_case(root):
    runs = list_runs(root)
    assert {run["run"] for run in filter_runs(runs, "HOG")} == {"hog-1", "hog-2"}
    assert {run["run"] for run in filter_runs(runs, "color")} == {"hog-1"}
    assert {run["run"] for run in filter_runs(runs, "hinge")} == {"bow-1"}
    assert {run["run"] for run in filter_runs(runs, "unfinished")} == {"pixels-2"}
    assert filter_runs(runs, "resnet") == []


def test_table_has_a_header_and_one_aligned_line_per_run(root):
    runs = sort_runs(list_runs(root), "val_acc")
    lines = format_runs(runs).splitlines()
    assert lines[0].split() == ["run", "date", "status", "epochs", "features", "model", "val", "acc", "test", "acc",
                                "time", "gray"]     # pixels.gray is the one config key that differs
    assert len(lines) == 1 + len(runs)
    assert lines[1].startswith("bow-1 ") and _local("2026-01-03T08:30:00+00:00") in lines[1] and "75.00%" in lines[1]
    assert "1h06m" in lines[1]                        # 4000 s
    hog = next(line for line in lines if line.startswith("hog-1"))
    assert "hog+color_hist" in hog and "62.00%" in hog and "61.00%" in hog and "2m05s" in hog
    val_end = lines[0].index("val acc") + len("val acc")
    assert all(line[val_end - 1] in "%c" for line in lines)      # right-aligned under the header
    unfinished = next(line for line in lines if line.startswith("pixels-2"))
    assert " - " in unfinished and "unfinished" in unfinished and unfinished.endswith("true")
    assert next(line for line in lines if line.startswith("pixels-1")).endswith("false")
    assert format_runs([]) == "no runs"


def _local(iso: str) -> str:
    """How the table shows a UTC time: in local time, to the minute."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def test_durations_read_naturally():
    assert [format_duration(s) for s in (3.21, 59.9, 60, 754, 3600, 7322)] == [
        "3.2s", "59.9s", "1m00s", "12m34s", "1h00m", "2h02m"]


def test_read_summary_names_the_missing_or_damaged_file(tmp_path):
    with pytest.raises(MlpError, match=r"summary.json not found: the run has not finished"):
        read_summary(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(MlpError, match=r"summary.json: not valid JSON"):
        read_summary(tmp_path / "summary.json")


def configured_run(root, folder, overrides: dict, val_acc=0.5, summary=True):
    """A run folder whose config.yaml is a full resolved config with `overrides` ({dotted key: value})."""
    cfg = load_config(None, [f"{key}={json.dumps(value)}" for key, value in overrides.items()])
    run = write_run(root, folder, name="default", started="2026-01-02T10:00:00+00:00", features=["hog"],
                    model="324-100-4 relu softmax", val_acc=val_acc)
    (run / "config.yaml").write_text(dump_config(cfg))
    if not summary:
        (run / "summary.json").unlink()
    return run


def test_a_column_for_each_config_key_that_differs(tmp_path):
    configured_run(tmp_path, "a", {"optim.lr": 0.05, "output.name": "first"})
    configured_run(tmp_path, "b", {"optim.lr": 0.1, "model.hidden": [256, 128], "output.name": "second"})
    configured_run(tmp_path, "c", {"optim.lr": 0.1, "output.dir": "elsewhere"})
    runs = list_runs(tmp_path)
    header, *rows = format_runs(runs).splitlines()
    assert header.split()[-2:] == ["hidden", "lr"]            # config order; output.* is where, not what
    assert [row.split()[-2:] for row in rows] == [["[100]", "0.05"], ["[256,128]", "0.1"], ["[100]", "0.1"]]
    assert [run["config"] for run in runs_json(runs)] == [
        {"model.hidden": [100], "optim.lr": 0.05}, {"model.hidden": [256, 128], "optim.lr": 0.1},
        {"model.hidden": [100], "optim.lr": 0.1}]
    assert "hidden" not in format_runs(runs[:1]).splitlines()[0]     # one run: nothing differs


def test_columns_are_named_by_the_shortest_unambiguous_tail():
    assert short_names(["optim.lr", "seed", "data.shapes.seed", "features.extractors[0].hog.orientations"]) == {
        "optim.lr": "lr", "seed": "seed", "data.shapes.seed": "shapes.seed",
        "features.extractors[0].hog.orientations": "orientations"}
    assert short_names(["train.epochs", "optim.lr"], taken=("epochs", "lr")) == {
        "train.epochs": "train.epochs", "optim.lr": "optim.lr"}


def test_a_swept_key_never_takes_the_title_of_a_fixed_column(tmp_path):
    configured_run(tmp_path, "a", {"train.epochs": 20})
    configured_run(tmp_path, "b", {"train.epochs": 8})
    header = format_runs(list_runs(tmp_path)).splitlines()[0].split()
    assert header.count("epochs") == 1 and header[-1] == "train.epochs"


@pytest.mark.parametrize("config_yaml", ["model: [unclosed", b"\xff\x00", "modell: {hidden: [3]}\n", None])
def test_a_finished_run_with_an_unreadable_config_is_damaged(tmp_path, config_yaml):
    run = configured_run(tmp_path, "a", {"optim.lr": 0.05})
    assert run_record(run)["status"] == "completed"
    if config_yaml is None:
        (run / "config.yaml").unlink()
    elif isinstance(config_yaml, bytes):
        (run / "config.yaml").write_bytes(config_yaml)
    else:
        (run / "config.yaml").write_text(config_yaml)
    record = run_record(run)
    assert record["status"] == "damaged" and record["val_acc"] is not None
    others = [run_record(configured_run(tmp_path, name, {"optim.lr": lr})) for name, lr in (("b", 0.1), ("c", 0.2))]
    rows = format_runs([record, *others]).splitlines()[1:]
    assert [row.split()[-1] for row in rows] == ["?", "0.1", "0.2"]    # its config's keys are unknown


@pytest.mark.parametrize("width", [100, 80, 60, 40])
def test_the_table_fits_the_width_keeping_run_status_and_accuracy(root, width):
    runs = list_runs(root)
    lines = format_runs(runs, width).splitlines()
    assert all(len(line) <= width for line in lines)
    assert lines[0].split()[:2] == ["run", "status"] or lines[0].startswith("run ")
    assert "status" in lines[0] and "val acc" in lines[0]
    assert "unfinished" in format_runs(runs, width)
    wide = format_runs(runs).splitlines()
    assert max(map(len, wide)) > width and len(lines) == len(wide)


def test_hostile_run_folders_are_listed_not_fatal(tmp_path):
    def folder(name, **files):
        path = tmp_path / name
        path.mkdir()
        for file, content in files.items():
            target = path / file.replace("_", ".")
            if content is None:
                target.mkdir()
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        return path

    folder("list", summary_json="[]")
    folder("text-accuracy", summary_json=json.dumps({"val": {"accuracy": "0.9"}, "seconds": "fast", "epochs_run": -3}))
    folder("deep", summary_json="[" * 100_000 + "]" * 100_000)
    folder("binary", summary_json=b"\xff\xfe\x00", config_yaml=b"\xff\x00")
    folder("dirs", summary_json=None, metrics_jsonl=None, config_yaml="model: [unclosed")
    folder("nan", summary_json='{"val": {"accuracy": NaN}, "seconds": Infinity}',
           metrics_jsonl='{"epoch": 1, "val_acc": "high", "seconds": -1}\n[1, 2]\n')
    folder(os.fsdecode(b"bad-\xff-name"), config_yaml="seed: 1\n")
    folder("year-0", summary_json=json.dumps({"started": "0001-01-01T00:00:00+05:00"}))    # 0000-12-31 in UTC
    runs = {run["run"]: run for run in list_runs(tmp_path)}
    assert {name: run["status"] for name, run in runs.items()} == {
        "list": "damaged", "text-accuracy": "damaged", "deep": "damaged", "binary": "damaged", "dirs": "damaged",
        "nan": "damaged", "bad-\ufffd-name": "unfinished", "year-0": "damaged"}
    assert all(run["val_acc"] is None and run["seconds"] in (None, 0.0) for run in runs.values())
    for key in SORT_KEYS:
        assert len(sort_runs(list(runs.values()), key)) == len(runs)
    table = format_runs(list(runs.values()), 80)
    assert "bad-\ufffd-name" in table, table
    json.dumps(runs_json(list(runs.values())))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["val", "test", "accuracy", "seconds", "started", "features", "confusion",
                                         "name", "epochs_run", "best_epoch", "stopped", "model", "loss"]),
                        inner, max_size=4), max_leaves=12))
def test_any_json_summary_gives_a_record(tmp_path_factory, summary):
    folder = tmp_path_factory.mktemp("runs") / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary))
    run = run_record(folder)
    assert run["status"] in {"completed", "early_stop", "damaged"} or isinstance(summary, dict)
    assert run["val_acc"] is None or 0 <= run["val_acc"] <= 1
    for key in SORT_KEYS:
        sort_runs([run, run_record(folder)], key)
    format_runs([run], 60)
    json.dumps(runs_json([run]), allow_nan=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["epoch", *METRICS, "other"]), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)))
def test_metric_values_are_read_as_numbers_of_their_kind_or_none(tmp_path, row):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.5}) + "\n"
                                            + json.dumps({**row, "epoch": 2}) + "\n")
    first, second = read_metrics(tmp_path)
    assert first == {"epoch": 1, "val_acc": 0.5}
    assert second["epoch"] == 2 and set(second) == {"epoch"} | (set(row) & set(METRICS))
    for key, value in second.items():
        assert value is None or (type(value) in (int, float) and math.isfinite(value) and value >= 0)
        assert value is None or key not in ("train_acc", "val_acc") or value <= 1
        assert value is None or key == "epoch" or value == row[key]


def test_a_sweep_folder_lists_its_trials_with_the_swept_keys(tmp_path):
    sweep = tmp_path / "lr-reg-20260101-100000"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "trials.jsonl").write_text("")
    for i, (lr, reg) in enumerate([(0.01, 0.001), (0.1, 0.001), (0.01, 0.01)]):
        configured_run(sweep / "runs", f"trial-{i}", {"optim.lr": lr, "reg": reg, "output.dir": str(sweep / "runs")},
                       val_acc=0.5 + i / 10, summary=i < 2)
    runs = list_runs(sweep)
    assert [run["run"] for run in runs][:2] == ["trial-0", "trial-1"]
    header, *rows = format_runs(sort_runs(runs, "val_acc")).splitlines()
    assert header.split()[-2:] == ["reg", "lr"]
    assert rows[0].startswith("trial-2") and "unfinished" in rows[0] and rows[0].split()[-2:] == ["0.01", "0.01"]
    (tmp_path / "new-sweep").mkdir()
    (tmp_path / "new-sweep" / "trials.jsonl").write_text("")
    assert list_runs(tmp_path / "new-sweep") == []          # no trial has started yet


def test_compare_shows_differing_keys_and_metrics_side_by_side(tmp_path):
    a = configured_run(tmp_path, "a", {"optim.lr": 0.05}, val_acc=0.6)
    b = configured_run(tmp_path, "b", {"optim.lr": 0.1, "model.activation": "tanh"}, val_acc=0.7)
    summary = json.loads((b / "summary.json").read_text())
    summary["val"].update(confusion=[[3, 1], [0, 4]], loss=0.5)
    (b / "summary.json").write_text(json.dumps(summary))
    comparison = compare_runs([a, b])
    assert comparison["runs"] == ["a", "b"]
    assert comparison["config"] == {"model.activation": ["relu", "tanh"], "optim.lr": [0.05, 0.1]}
    assert comparison["metrics"]["val_acc"] == [0.6, 0.7] and comparison["metrics"]["val_loss"] == [1.0, 0.5]
    assert comparison["metrics"]["macro_f1"] == [1.0, pytest.approx((6 / 7 + 8 / 9) / 2, abs=1e-6)]
    lines = format_comparison(comparison).splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[1].split() == ["model.activation", "relu", "tanh"] and lines[2].split() == ["optim.lr", "0.05", "0.1"]
    assert ["val", "acc", "60.00%", "70.00%"] in [line.split() for line in lines]
    assert all(len(line) <= 30 for line in format_comparison(comparison, 30).splitlines())
    with pytest.raises(MlpError, match="is not a run folder"):
        compare_runs([a, tmp_path])


def test_mlp_runs_and_compare_on_the_command_line(root, tmp_path):
    from click.testing import CliRunner

    from mlpcli.cli import cli

    runner = CliRunner()
    narrow = runner.invoke(cli, ["runs", str(root), "--width", "50"])
    assert narrow.exit_code == 0 and all(len(line) <= 50 for line in narrow.output.splitlines())
    wide = runner.invoke(cli, ["runs", str(root)])                 # not a terminal: nothing is cut
    assert max(len(line) for line in wide.output.splitlines()) > 50 and "…" not in wide.output
    listed = json.loads(runner.invoke(cli, ["runs", str(root), "--json", "--sort", "val_acc"]).output)
    assert [run["run"] for run in listed][:2] == ["bow-1", "hog-1"]
    gray = {run["run"]: run["config"]["features.extractors[0].pixels.gray"] for run in listed}
    assert gray == {"bow-1": None, "hog-1": None, "hog-2": None, "pixels-1": False, "pixels-2": True}
    compared = runner.invoke(cli, ["compare", str(root / "hog-1"), str(root / "bow-1"), "--json"])
    assert compared.exit_code == 0 and json.loads(compared.output)["metrics"]["val_acc"] == [0.62, 0.75]
    one = runner.invoke(cli, ["compare", str(root / "hog-1")])
    assert one.exit_code == 2 and "give at least two run folders to compare" in one.output
    notes = runner.invoke(cli, ["compare", str(root / "hog-1"), str(root / "notes")])
    assert notes.exit_code == 1 and "is not a run folder" in notes.output
