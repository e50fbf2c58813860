"""The Python API: what the CLI does, for notebooks and scripts.

    import ktemplate

    run = ktemplate.train("image_cnn", epochs=5, filters=16)   # Config fields as keywords
    run.metrics["test_accuracy"], run.history["train"]["val_loss"], run.model.summary()
    ktemplate.export(run, formats=["onnx"])
    champion = ktemplate.tune("image_cnn", max_trials=4, max_epochs=3)
    again = ktemplate.load_run("saved_models/image_cnn/20261202-101500")

The same code runs as for `ktemplate train/tune/export`; nothing global changes for the caller:
plots are drawn on their own figures (matplotlib's backend is left alone), TensorFlow's INFO
logs are kept out of the output while a call runs, and progress shows as Keras shows it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ktemplate import files


def _import_tensorflow() -> None:
    """TensorFlow, imported with its C++ start-up banners filtered (as the CLI does), unless
    KTEMPLATE_VERBOSE=1: a notebook's cells show the process's stderr."""
    import os

    if os.environ.get("KTEMPLATE_VERBOSE") != "1":
        from ktemplate import startup

        startup.import_quietly()


@dataclasses.dataclass
class Run:
    """A run folder, read back: what a training run produced.

    Attributes:
        path: the run folder.
        template: the template's name.
        status: run.json's status (`finished`, `failed`, `interrupted`, ...).
        config: the resolved config (the run's config.json).
        metrics: the test metrics with the baseline block (metrics.json; empty until finished).
        history: per phase (`train`, `fine_tune`, `members/0/train`, ...), each logged metric
            per epoch: `history["train"]["val_loss"]` is a list, like Keras' `History.history`.
        export_dir: the SavedModel folder (with manifest.json), or None when there is none.
        sweep_dir: for a sweep's champion, the sweep folder.
    """

    path: Path
    template: str
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: dict[str, dict[str, list[float]]]
    export_dir: Path | None
    sweep_dir: Path | None = None

    @functools.cached_property
    def model(self):
        """The trained Keras model (the best checkpoint; for an ensemble, the average)."""
        _import_tensorflow()
        from ktemplate import run, templates

        templates.load(self.template)  # its layer classes register on import
        return run.load_best_model(self.path)

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        """The export's manifest.json (endpoints, inputs, formats, metrics, config)."""
        if self.export_dir is None:
            raise FileNotFoundError(f"{self.path} has no export; ktemplate.export(run) writes one.")
        from ktemplate import serving

        return serving.read_manifest(self.export_dir)

    @functools.cached_property
    def serving_model(self):
        """The exported SavedModel, loaded with `tf.saved_model.load` as a server would (kept
        here: its functions need the loaded object alive)."""
        if self.export_dir is None:
            raise FileNotFoundError(f"{self.path} has no export; ktemplate.export(run) writes one.")
        import tensorflow as tf

        return tf.saved_model.load(str(self.export_dir))

    def __repr__(self) -> str:
        headline = {k: v for k, v in self.metrics.items() if isinstance(v, int | float)}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(headline.items())[:3])
        where = f"{self.template}, {self.status}, {str(self.path)!r}"
        return f"Run({where}{', ' + shown if shown else ''})"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # Keras' CSVLogger writes NA for a metric an epoch did not log
        return float("nan")


def _history(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    history = {}
    for path in sorted(run_dir.glob("**/history_*.csv")):
        phase = path.relative_to(run_dir).with_suffix("").as_posix().replace("history_", "")
        columns: dict[str, list[float]] = {}
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key != "epoch" and value not in (None, ""):
                        columns.setdefault(key, []).append(_number(value))
        history[phase] = columns
    return history


def load_run(run_dir: str | Path) -> Run:
    """Reads a run folder (a training run or a sweep's `champion`) into a `Run`."""
    from ktemplate import run

    run_dir = Path(run_dir)
    info = run.read_run(run_dir)
    metrics_path = run_dir / "metrics.json"
    export_dir = run_dir / "export"
    sweep_dir = run_dir.parent if run_dir.name == "champion" else None
    return Run(
        path=run_dir,
        template=info["template"],
        status=info.get("status", "unknown"),
        config=files.read_json(run_dir / "config.json"),
        metrics=files.read_json(metrics_path) if metrics_path.is_file() else {},
        history=_history(run_dir),
        export_dir=export_dir if (export_dir / "manifest.json").is_file() else None,
        sweep_dir=sweep_dir,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TensorFlow's Python INFO logs (e.g. `Assets written to ...`) off while a call runs."""
    _import_tensorflow()
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def _config(name: str, dataset: str | None, config_file, overrides: dict[str, Any]):
    _import_tensorflow()
    from ktemplate import config as config_lib
    from ktemplate import templates

    template = templates.load(name)
    config = config_lib.resolve_config(template.Config, config_file)
    fixed = {**({"dataset": dataset} if dataset is not None else {}), **overrides}
    return template, config_lib.apply_overrides(config, fixed), fixed


def train(
    name: str,
    dataset: str | None = None,
    *,
    config_file: str | Path | None = None,
    output_dir: str | Path = "saved_models",
    resume: str | Path | None = None,
    strategy: str = "auto",
    verbose: int | str = "auto",
    export_formats: list[str] | None = None,
    quantize: str = "none",
    **overrides: Any,
) -> Run:
    """Trains, evaluates and exports template `name`, like `ktemplate train`.

    Args:
        name: a template (`ktemplate list`), built in or made with `ktemplate new`.
        dataset: the data source (`digits`, `tfds:NAME`, `dir:PATH`, `csv:PATH`, ...); the
            template's default when None.
        config_file: a JSON/TOML/YAML file of Config fields, applied before `overrides`.
        output_dir: parent of the `<template>/<run-id>` folders.
        resume: an interrupted run folder to continue (its recorded config is used).
        strategy: auto, default, mirrored, tpu or multi_worker (see README).
        verbose: Keras' progress: "auto" (a bar on a terminal, else a line per epoch), 1 (a
            bar), 2 (a line per epoch) or 0.
        export_formats: litert and/or onnx beside the SavedModel.
        quantize: none, dynamic or float16, for the LiteRT file.
        **overrides: Config fields, e.g. `epochs=5, filters=16` (checked like `--set`).

    Returns:
        The finished run, with its model, metrics, history and export.
    """
    _import_tensorflow()
    from ktemplate import run
    from ktemplate.tuning import strategies

    template, config, _ = _config(name, dataset, config_file, overrides)
    if resume is not None and (overrides or dataset or config_file):
        raise ValueError("resume= continues a run with its recorded config; drop the overrides.")
    with _quiet():
        run_dir = run.train(
            template,
            config,
            output_dir=output_dir,
            resume=resume,
            strategy=strategies.make_strategy(strategy),
            verbose=verbose,
            export_formats=export_formats,
            quantize=quantize,
        )
    return load_run(run_dir)


def tune(
    name: str,
    dataset: str | None = None,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    max_epochs: int | None = None,
    objective: str | None = None,
    config_file: str | Path | None = None,
    output_dir: str | Path = "saved_models",
    sweep_name: str | None = None,
    restart: bool = False,
    min_score: float | None = None,
    strategy: str = "auto",
    verbose: int | str = "auto",
    **overrides: Any,
) -> Run:
    """Runs a keras-tuner sweep in this process, like `ktemplate tune`, then retrains the best
    hyperparameters and exports the champion. Fields given in `overrides` (and `dataset`) are
    fixed in the sweep, as `--set` is.

    Returns:
        The champion run (`run.sweep_dir` is the sweep folder with the leaderboard).
    """
    _import_tensorflow()
    from ktemplate.tuning import search

    template, config, fixed = _config(name, dataset, config_file, overrides)
    sweep = search.Sweep(
        template=name,
        tuner=tuner,
        max_trials=max_trials,
        max_epochs=max_epochs,
        objective=objective,
        min_score=min_score,
    )
    with _quiet():
        folder = search.tune(
            template,
            config,
            fixed,
            sweep,
            output_dir=output_dir,
            name=sweep_name,
            strategy_name=strategy,
            restart=restart,
            # keras-tuner's display wants a number; a progress bar only on a terminal
            verbose=(1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose,
        )
    return load_run(folder / "champion")


def export(
    run: Run | str | Path,
    output: str | Path | None = None,
    *,
    formats: list[str] | None = None,
    quantize: str = "none",
    serving_layout: bool = False,
    overwrite: bool = False,
) -> Path:
    """Exports a run again, like `ktemplate export`: the SavedModel (and `formats`: litert,
    onnx) to `output` (default the run's `export/`, which must not exist unless `overwrite`).

    Returns:
        The export folder (with `serving_layout`, the new version folder).
    """
    _import_tensorflow()
    from ktemplate import run as run_lib
    from ktemplate import templates

    run_dir = run.path if isinstance(run, Run) else Path(run)
    template = templates.load(run_lib.read_run(run_dir)["template"])
    with _quiet():
        return run_lib.export(
            template,
            run_dir,
            output=output,
            overwrite=overwrite,
            formats=formats,
            quantize=quantize,
            serving_layout=serving_layout,
        )
