"""The Python API: what the CLI does, for notebooks and scripts.

    import ktemplate

    run = ktemplate.train("image_cnn", epochs=5, filters=16)   # Config fields as keywords
    run.metrics["test_accuracy"], run.history["train"]["val_loss"], run.model.summary()
    ktemplate.export(run, formats=["onnx"])
    champion = ktemplate.tune("image_cnn", max_trials=4, max_epochs=3)
    again = ktemplate.load_run("saved_models/image_cnn/20261202-101500")

`ktemplate train/tune/export` call these functions (with a template and a Config already checked
before TensorFlow's import); nothing global changes for the caller:
plots are drawn on their own figures (matplotlib's backend is left alone), TensorFlow's INFO
logs are kept out of the output while a call runs, and progress shows as Keras shows it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import os
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


def _config(name, dataset: str | None, config_file, overrides: dict[str, Any], config=None):
    """(template, config, the fields set): `name` is a template's name or a loaded template;
    `config` an already resolved Config, which excludes the other ways of setting fields."""
    _import_tensorflow()
    from ktemplate import config as config_lib
    from ktemplate import templates

    template = templates.load(name) if isinstance(name, str) else name
    fixed = {**({"dataset": dataset} if dataset is not None else {}), **overrides}
    if config is not None:
        if fixed or config_file:
            raise ValueError("config= is the whole Config: drop dataset, config_file and fields.")
        return template, config, {}
    config = config_lib.resolve_config(template.Config, config_file)
    return template, config_lib.apply_overrides(config, fixed), fixed


def train(
    name: Any,
    dataset: str | None = None,
    *,
    config: Any = None,
    config_file: str | Path | None = None,
    output_dir: str | Path = "saved_models",
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    strategy: Any = "auto",
    verbose: int | str = "auto",
    export_formats: list[str] | None = None,
    quantize: str = "none",
    **overrides: Any,
) -> Run | None:
    """Trains, evaluates and exports template `name`, like `ktemplate train`.

    Args:
        name: a template (`ktemplate list`), built in or made with `ktemplate new`, or the
            template as `ktemplate.templates.load` returns it.
        dataset: the data source (`digits`, `tfds:NAME`, `dir:PATH`, `csv:PATH`, ...); the
            template's default when None.
        config: a whole resolved Config instead of dataset/config_file/overrides.
        config_file: a JSON/TOML/YAML file of Config fields, applied before `overrides`.
        output_dir: parent of the `<template>/<run-id>` folders.
        resume: an interrupted run folder to continue (its recorded config is used).
        run_dir: the run folder to write (default: a new dated one under `output_dir`).
        strategy: auto, default, mirrored, tpu or multi_worker (see README), or a
            `tf.distribute.Strategy`.
        verbose: Keras' progress: "auto" (a bar on a terminal, else a line per epoch), 1 (a
            bar), 2 (a line per epoch) or 0.
        export_formats: litert and/or onnx beside the SavedModel.
        quantize: none, dynamic or float16, for the LiteRT file.
        **overrides: Config fields, e.g. `epochs=5, filters=16` (checked like `--set`).

    Returns:
        The finished run, with its model, metrics, history and export; None in a worker of a
        multi-worker run that is not the chief (the chief writes the run folder).
    """
    _import_tensorflow()
    from ktemplate import run
    from ktemplate.tuning import strategies

    if resume is not None and (overrides or dataset or config_file):
        raise ValueError("resume= continues a run with its recorded config; drop the overrides.")
    template, config, _ = _config(name, dataset, config_file, overrides, config)
    if isinstance(strategy, str):
        strategy = strategies.make_strategy(strategy)
    with _quiet():
        folder = run.train(
            template,
            config,
            output_dir=output_dir,
            resume=resume,
            strategy=strategy,
            run_dir=run_dir,
            verbose=verbose,
            export_formats=export_formats,
            quantize=quantize,
        )
    role = run.worker_role(strategy)
    return None if role is not None and not role.chief else load_run(folder)


SWEEP_OPTIONS = (
    "executions_per_trial",
    "max_retries_per_trial",
    "max_consecutive_failed_trials",
    "champion",
)


def tune(
    name: Any,
    dataset: str | None = None,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    max_epochs: int | None = None,
    objective: str | None = None,
    config: Any = None,
    fixed: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    output_dir: str | Path = "saved_models",
    sweep_name: str | None = None,
    restart: bool = False,
    min_score: float | None = None,
    strategy: str = "auto",
    verbose: int | str = "auto",
    trials_per_process: int | None = None,
    **sweep_or_fields: Any,
) -> Run | Path | None:
    """Runs a keras-tuner sweep in this process, like `ktemplate tune`, then retrains the best
    hyperparameters and exports the champion. Fields given as keywords (and `dataset`) are
    fixed in the sweep, as `--set` is; with `config=` (a resolved Config) `fixed` names them.
    Keywords that are `search.Sweep` fields (executions_per_trial, max_retries_per_trial,
    max_consecutive_failed_trials, champion) set the sweep.

    Returns:
        The champion run (`run.sweep_dir` is the sweep folder with the leaderboard); the sweep
        folder with champion=False; None in a keras-tuner worker process.
    """
    _import_tensorflow()
    from ktemplate.tuning import search

    options = {k: sweep_or_fields.pop(k) for k in list(sweep_or_fields) if k in SWEEP_OPTIONS}
    template, config, set_fields = _config(name, dataset, config_file, sweep_or_fields, config)
    sweep = search.Sweep(
        template=template.NAME,
        tuner=tuner,
        max_trials=max_trials,
        max_epochs=max_epochs,
        objective=objective,
        min_score=min_score,
        **options,
    )
    with _quiet():
        folder = search.tune(
            template,
            config,
            set_fields if fixed is None else fixed,
            sweep,
            output_dir=output_dir,
            name=sweep_name,
            strategy_name=strategy,
            restart=restart,
            # keras-tuner's display wants a number; a progress bar only on a terminal
            verbose=(1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose,
            trials_per_process=trials_per_process,
        )
    if os.environ.get("KERASTUNER_TUNER_ID") not in (None, "chief"):  # a worker runs trials
        return None
    return load_run(folder / "champion") if sweep.champion else folder


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
