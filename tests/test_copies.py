"""Copying a template for a new task: a scripted edit of the copy's Config section only, then
train, tune (2 trials), export and serve — as a user would (`ktemplate check` on every
built-in template is tested in tests/ktemplate/test_check.py)."""

import json
import re
import shutil

import numpy as np
import pytest
from ktemplate.pipelines import text

from ktemplate import cli, files, templates
from tests.helpers.fresh import serve_in_fresh_process
from tests.helpers.text import make_vader_sdist

SERVE = """
import json, sys
sys.modules["ktemplate"] = None  # importing the project must fail here
import tensorflow as tf

folder, inputs = sys.argv[1], json.loads(open(sys.argv[2]).read())
serve = tf.saved_model.load(folder).signatures["serve"]
out = serve(**{k: tf.constant(v) for k, v in inputs.items()})
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}, default=str))
"""


def _edit_config(path, replacements: dict[str, str]) -> None:
    """Changes lines of the copy's Config section (NAME to the end of `class Config`) only."""
    source = path.read_text()
    start = source.index("\nNAME = ")
    end = source.index("\n# ----", source.index("class Config("))
    section = source[start:end]
    for pattern, line in replacements.items():
        section, count = re.subn(pattern, line, section, flags=re.M)
        assert count == 1, pattern
    path.write_text(source[:start] + section + source[end:])


def _train_tune_export_serve(project, name, sets, inputs, capsys):
    flags = [arg for item in sets for arg in ("--set", item)]
    assert cli.main(["train", name, *flags]) == 0
    assert "test MAE" in capsys.readouterr().out
    (run_dir,) = (project / "saved_models" / name).iterdir()
    metrics = files.read_json(run_dir / "metrics.json")
    assert metrics["baseline"]["comparison"]["metric"] == "test_mae"
    assert cli.main(["tune", name, "--max-trials", "2", "--max-epochs", "1", *flags]) == 0
    champion = project / "saved_models" / name / "sweeps" / "random" / "champion"
    assert (champion / "export" / "saved_model.pb").is_file()
    (project / "inputs.json").write_text(json.dumps(inputs))
    served = serve_in_fresh_process(SERVE, project, champion / "export", project / "inputs.json")
    predictions = served["prediction"]
    assert len(predictions) == len(next(iter(inputs.values()))) and np.all(np.isfinite(predictions))
    return metrics


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(templates.PROJECT_DIR_ENV, raising=False)
    return tmp_path


def test_text_regression_is_a_config_edit_of_text_transformer(project, monkeypatch, capsys):
    # The movie sentences' mean human ratings (a stand-in archive with the sdist's layout).
    cache = project / "cache" / "vaderSentiment"
    cache.mkdir(parents=True)
    sha256 = make_vader_sdist(cache / text.VADER_SDIST, per_file=80)
    monkeypatch.setenv("KTEMPLATE_CACHE_DIR", str(project / "cache"))
    monkeypatch.setattr(text, "VADER_SHA256", sha256)
    assert cli.main(["new", "sentence_rating", "--from", "text_transformer"]) == 0
    path = project / "templates" / "sentence_rating.py"
    _edit_config(
        path,
        {
            r"^TUNE_OBJECTIVE = .*$": 'TUNE_OBJECTIVE = "val_mae"',
            r"^    task: TaskKind = .*$": '    task: TaskKind = "regression"  # mean rating',
        },
    )
    small = ["epochs=2", "members=1", "embed_dim=16", "ff_dim=16", "vocab_size=200"]
    metrics = _train_tune_export_serve(
        project, "sentence_rating", small, {"text": ["a moving, funny film", "dull"]}, capsys
    )
    assert {"test_mae", "test_rmse", "test_r2"} <= set(metrics)
    assert metrics["baseline"]["name"].endswith("ridge")
    shutil.rmtree(project / "cache")


def test_tabular_regression_is_a_config_edit_of_tabular_mlp(project, capsys):
    assert cli.main(["new", "progression", "--from", "tabular_mlp"]) == 0
    path = project / "templates" / "progression.py"
    _edit_config(path, {r'^    dataset: str = "wine".*$': '    dataset: str = "diabetes"  # data'})
    columns = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    rows = {c: [0.01, -0.02] for c in columns}
    metrics = _train_tune_export_serve(project, "progression", ["epochs=5"], rows, capsys)
    assert metrics["test_examples"] == 88  # 20% of the 442 patients
