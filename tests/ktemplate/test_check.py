"""`ktemplate check`: every built-in template's hooks on a few examples, through a served
prediction in a fresh process — one parametrized test for every template."""

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ktemplate import check, cli, templates
from tests.helpers.images import write_png
from tests.helpers.text import sentence

ROOT = Path(__file__).resolve().parents[2]


def _texts(folder: Path) -> dict:
    rng = random.Random(0)
    rows = [f'"{sentence(rng, i % 2 == 0)}",{"good" if i % 2 == 0 else "bad"}' for i in range(80)]
    path = folder / "reviews.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    # Wide & deep as set, not chosen: the candidates' short fits are tested with the template.
    return {"dataset": f"csv:{path}", "wide": "word_char", "deep": "transformer"}


def _clean_images(folder: Path) -> dict:
    rng = np.random.default_rng(0)
    for i in range(12):
        ramp = np.linspace(0, 255, 48)[None, :] * np.ones((48, 1))
        image = np.clip(ramp + rng.normal(0, 10, (48, 48)), 0, 255).astype("uint8")[..., None]
        write_png(folder / "clean" / f"{i}.png", image)
    return {"dataset": f"dir:{folder / 'clean'}"}


# Each template's own small data (the defaults where they load in a second or two).
CHECK_DATA = {
    "tabular_mlp": lambda folder: {},
    "image_cnn": lambda folder: {"filters": 8},
    "timeseries_lstm": lambda folder: {
        "units": 8,
        "forecast_base": "ets",
        "target_transform": "log",
    },
    "text_transformer": _texts,
    "denoising_autoencoder": _clean_images,
    "anomaly_autoencoder": lambda folder: {"dataset": "breast_cancer"},
}


@pytest.mark.parametrize("name", templates.BUILTIN)
def test_check_runs_every_hook_through_a_served_prediction(name, tmp_path):
    template = templates.load(name)
    config = template.Config(**CHECK_DATA[name](tmp_path))
    steps = check.check(template, config, workdir=tmp_path)
    assert {"contract", "search_space", "train", "export", "serve"} <= set(steps)
    assert steps["serve"].startswith("outputs {")
    if template.baseline is not None:
        assert "baseline" in steps
    if template.portable_endpoint is not None:
        assert "litert and onnx" in steps["portable"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("tmp")) == []


def test_a_hook_that_fails_is_named_and_nothing_is_left(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    path = templates.copy_template("bad_eval", "anomaly_autoencoder", folder)
    source = path.read_text()
    anchor = '    metrics = {f"test_{k}": found[k]'
    assert anchor in source
    path.write_text(source.replace(anchor, '    raise KeyError("threshold_typo")\n' + anchor))
    result = subprocess.run(
        [sys.executable, "-m", "ktemplate", "check", "bad_eval", "--dataset", "breast_cancer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, templates.PROJECT_DIR_ENV: str(folder)},
    )
    assert result.returncode == 2
    assert "hook evaluate of bad_eval.py failed: KeyError: 'threshold_typo'" in result.stderr
    assert not (tmp_path / "saved_models").exists()


def test_train_smoke_is_the_check(capsys):
    assert cli.main(["train", "anomaly_autoencoder", "--smoke", "--set", "epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "anomaly_autoencoder passes the check" in out and "ok  serve" in out
