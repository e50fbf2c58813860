"""tabular_mlp: classes and numbers from table rows, raw columns in the export."""

import json

import keras_tuner
import numpy as np
import pytest
from ktemplate.templates import tabular_mlp as tm

from ktemplate import cli, run
from ktemplate import files as files_lib
from tests.helpers.fresh import serve_in_fresh_process

FAST = dict(epochs=3, early_stopping_patience=0)

SERVE = """
import json, sys
sys.modules["ktemplate"] = None  # importing the project must fail here
import tensorflow as tf

folder, rows = sys.argv[1], json.loads(open(sys.argv[2]).read())
serve = tf.saved_model.load(folder).signatures["serve"]
out = serve(**{k: tf.constant(v) for k, v in rows.items()})
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}, default=str))
"""


def write_survey(path, rows=240):
    """A survey: a numeric age, a categorical region, hours of sport; the target is a score."""
    rng = np.random.default_rng(0)
    age = rng.integers(18, 80, rows)
    region = rng.choice(["north", "south", "east"], rows)
    hours = rng.uniform(0, 10, rows).round(2)
    score = 50 + 3 * hours - 0.2 * age + np.where(region == "north", 8, 0) + rng.normal(0, 2, rows)
    lines = ["age,region,hours,score"] + [
        f"{a},{r},{h},{s:.3f}" for a, r, h, s in zip(age, region, hours, score, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_search_space_defaults_equal_config():
    config = tm.Config()
    assert tm.search_space(keras_tuner.HyperParameters(), config) == config


def test_task_is_resolved_from_the_target(tmp_path):
    spec = tm.load_data(tm.Config(), 32).spec
    assert spec["task"] == "classification" and len(spec["class_names"]) == 3
    assert spec["resolved"]["task"]["reason"].startswith("the target holds text")
    spec = tm.load_data(tm.Config(dataset="diabetes"), 32).spec
    assert spec["task"] == "regression" and spec["class_names"] is None
    assert sum(spec["sizes"].values()) == 442


def test_regression_with_a_categorical_column_serves_raw_rows(tmp_path):
    csv = write_survey(tmp_path / "survey.csv")
    config = tm.Config(dataset=f"csv:{csv}", target_column="score", **{**FAST, "epochs": 30})
    run_dir = run.train(tm, config, output_dir=tmp_path / "runs", verbose=0)
    spec = files_lib.read_json(run_dir / "spec.json")
    assert spec["task"] == "regression" and spec["vocabularies"] == {
        "region": ["east", "north", "south"]
    }
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert {"test_mae", "test_rmse", "test_r2"} <= set(metrics)
    block = metrics["baseline"]
    assert block["comparison"]["test"] == "paired t" and block["comparison"]["unit"] == "rows"
    assert {t["method"] for t in block["settings"]["tried"]} == {"ridge", "gradient boosting"}
    rows = {"age": [30.0, 70.0], "region": ["north", "unseen"], "hours": [5.0, 1.0]}
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    served = serve_in_fresh_process(SERVE, tmp_path, run_dir / "export", tmp_path / "rows.json")
    assert len(served["prediction"]) == 2 and all(np.isfinite(served["prediction"]))
    manifest = files_lib.read_json(run_dir / "export" / "manifest.json")
    assert manifest["input"]["categorical"] == ["region"] and manifest["task"] == "regression"


def test_classification_exports_litert_and_onnx_of_numeric_columns(tmp_path, capsys):
    args = ["train", "tabular_mlp", "--output-dir", str(tmp_path), "--set", "epochs=3"]
    assert cli.main([*args, "--export-formats", "litert", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "McNemar" in out
    (run_dir,) = (tmp_path / "tabular_mlp").iterdir()
    export = run_dir / "export"
    assert (export / "model.tflite").is_file() and (export / "model.onnx").is_file()


def test_bad_inputs_are_clear_errors(tmp_path):
    csv = write_survey(tmp_path / "survey.csv")
    with pytest.raises(ValueError, match="target_column='nope' is not a column"):
        tm.load_data(tm.Config(dataset=f"csv:{csv}", target_column="nope"), 32)
    with pytest.raises(ValueError, match="categorical_columns names no column"):
        tm.load_data(
            tm.Config(dataset=f"csv:{csv}", target_column="score", categorical_columns="x"), 32
        )
    with pytest.raises(ValueError, match="use wine, diabetes or csv:PATH"):
        tm.load_data(tm.Config(dataset="iris"), 32)
    # Values that overflow float32 are named by row and column, before anything trains.
    lines = csv.read_text().splitlines()
    lines[5] = "1e308," + lines[5].split(",", 1)[1]
    lines[7] = "inf," + lines[7].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="data row 5, column 'age' holds 1e\\+308 \\(2 value"):
        tm.load_data(tm.Config(dataset=f"csv:{csv}", target_column="score"), 32)
