from __future__ import annotations

import json

import pytest

from mlpcli.errors import MlpError
from mlpcli.runs import filter_runs, format_duration, format_runs, list_runs, read_summary, sort_runs


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
               "val": {"accuracy": val_acc}}
    if test_acc is not None:
        summary["test"] = {"accuracy": test_acc}
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
                                "time"]
    assert len(lines) == 1 + len(runs)
    assert lines[1].startswith("bow-1 ") and "2026-01-03 08:30" in lines[1] and "75.0%" in lines[1]
    assert "1h06m" in lines[1]                        # 4000 s
    hog = next(line for line in lines if line.startswith("hog-1"))
    assert "hog+color_hist" in hog and "62.0%" in hog and "61.0%" in hog and "2m05s" in hog
    val_end = lines[0].index("val acc") + len("val acc")
    assert all(line[val_end - 1] in "%c" for line in lines)      # right-aligned under the header
    unfinished = next(line for line in lines if line.startswith("pixels-2"))
    assert " - " in unfinished and "unfinished" in unfinished
    assert format_runs([]) == "no runs"


def test_durations_read_naturally():
    assert [format_duration(s) for s in (3.21, 59.9, 60, 754, 3600, 7322)] == [
        "3.2s", "59.9s", "1m00s", "12m34s", "1h00m", "2h02m"]


def test_read_summary_names_the_missing_or_damaged_file(tmp_path):
    with pytest.raises(MlpError, match=r"summary.json not found: the run has not finished"):
        read_summary(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(MlpError, match=r"summary.json: not valid JSON"):
        read_summary(tmp_path / "summary.json")
