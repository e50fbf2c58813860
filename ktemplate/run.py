"""Runs a template end to end: data → model → fit → evaluate → export, into one run folder.

A template module provides (see README, "The template contract"):

    NAME                              the template's name
    Config                            frozen dataclass extending `TrainingConfig`
    load_data(config, batch_size)     → Data (batched train/val/test datasets and a JSON spec)
    build_model(config, spec)         → compiled keras.Model
    search_space(hp, config)          → Config with searched fields taken from `hp`
    serving_endpoints(model, spec)    → {name: (fn, input_signature)} for the SavedModel
    manifest_extras(spec)             → facts about inputs/outputs for manifest.json
    evaluate(model, data, out_dir)    → metrics dict; also writes plots to out_dir
    fine_tune(model, config, spec)    optional: → (recompiled model, epochs) or None
    baseline(model, data, config)     optional: → the `baseline` block of metrics.json (a
                                      classical method on the same splits, compared; see
                                      `ktemplate.baselines`)

Run folder layout (`saved_models/<template>/<run-id>/`):

    run.json        template, dataset, run id, status
    config.json     the resolved config
    spec.json       the data spec (input shape, class names, split sizes, ...)
    logs/           TensorBoard logs per phase
    history_*.csv   per-epoch metrics
    checkpoints/best.keras   the best model by val_loss (members > 1: the members' average;
                    with a partner candidate: the one kept, maybe the two's average)
    members/<i>/    members > 1, or a partner candidate (`ktemplate.lifecycle`): each model's
                    checkpoints, logs and history
    ensemble.json   with a partner candidate: both models' and their average's validation
                    scores, and which was kept
    calibrated.json when `calibrate` set weights in place (timeseries_lstm's residual_scale):
                    its constants; the checkpoint holds the weights it set
    backup/         BackupAndRestore state while a run is unfinished
    metrics.json    test metrics (written last: its presence marks a finished run)
    *.png           plots
    export/         the SavedModel and manifest.json
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import tensorflow as tf

from ktemplate import (
    baselines,
    contract,
    convert,
    files,
    lifecycle,
    locks,
    resources,
    serving,
    signals,
    training,
)
from ktemplate import config as config_lib
from ktemplate.contract import Data, Template

# Set while `ktemplate check` runs: a hook that fails is reported by name (`hook`).
_CHECKING: contextvars.ContextVar[bool] = contextvars.ContextVar("checking", default=False)


@contextlib.contextmanager
def hook(name: str, template: Template):
    """Runs a hook call; under `ktemplate check` a failure becomes a CheckFailed naming it.

    Outside a check, errors pass through unchanged (a user error keeps its own message)."""
    if not _CHECKING.get():
        yield
        return
    from ktemplate.check import CheckFailed

    try:
        yield
    except CheckFailed:
        raise
    except Exception as e:
        raise CheckFailed(
            f"hook {name} of {Path(template.file).name} failed: {type(e).__name__}: {e}"
        ) from e


def recorded_config(template: Template, run_dir: str | Path) -> Any:
    """The Config a run folder recorded (its resolved config.json)."""
    return config_lib.apply_overrides(
        template.Config(), files.read_json(Path(run_dir) / "config.json")
    )


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    chief: bool
    name: str  # e.g. "worker1", for temporary folder names and messages


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole | None:
    """This process's role under MultiWorkerMirroredStrategy (None under other strategies).

    The chief is the `chief` task when the cluster has one, else worker 0 (TF_CONFIG).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and not has_chief
    )
    return WorkerRole(chief=chief, name=f"{task_type or 'worker'}{task_id or 0}")


def new_run_dir(output_dir: str | Path, template_name: str) -> Path:
    """Creates and returns `output_dir/<template>/<YYYYmmdd-HHMMSS>[-N]`."""
    parent = Path(output_dir) / template_name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        run_dir = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a new run folder under {parent}.")


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """Reads a run folder's run.json, with a clear error when it is not a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a ktemplate run folder (run.json is missing). "
            "Pass a folder like saved_models/<template>/<run-id>."
        )
    return files.read_json(run_dir / "run.json")


def global_batch_size(config: config_lib.TrainingConfig, strategy: tf.distribute.Strategy) -> int:
    return config.batch_size * strategy.num_replicas_in_sync


def _needs_static_batches(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)


def load_data(
    template: ModuleType | Template, config: Any, strategy: tf.distribute.Strategy | None = None
) -> Data:
    """The template's data batched for `strategy` (global batch = per-replica batch x replicas).

    On a TPU every step must see the same batch shape, so train and validation batches are
    re-cut with `drop_remainder=True` (the test split keeps every example).
    """
    template = contract.bind(template)
    strategy = strategy or tf.distribute.get_strategy()
    batch_size = global_batch_size(config, strategy)
    with hook("load_data", template):
        data = template.load_data(config, batch_size)
    if _needs_static_batches(strategy):
        data = dataclasses.replace(
            data,
            train=data.train.rebatch(batch_size, drop_remainder=True),
            val=None if data.val is None else data.val.rebatch(batch_size, drop_remainder=True),
        )
    return data


def run_data(template: Template, config: Any, strategy=None) -> Data:
    """`load_data` for a run: under `ktemplate check`, cut to a few batches of each split."""
    data = load_data(template, config, strategy)
    if _CHECKING.get():
        from ktemplate.check import smoke_data

        data = smoke_data(data)
    return data


def resolved_config(config: Any, spec: dict[str, Any]) -> Any:
    """`config` with every `auto` field replaced by the value `load_data` resolved from the
    train split (`spec["resolved"]`: field → {"value", "reason"})."""
    return config_lib.with_resolved(config, spec.get("resolved", {}))


def print_resolved(spec: dict[str, Any]) -> None:
    """Prints, once per run, each value resolved from the data and each warning about it."""
    for name, r in spec.get("resolved", {}).items():
        print(f"auto: {name}={r['value']} ({r['reason']})", flush=True)
    for warning in spec.get("warnings", []):
        warn(warning)


def warn(message: str) -> None:
    print(f"ktemplate: warning: {message}", file=sys.stderr, flush=True)


# A non-chief worker of a multi-worker run: (its own temporary run folder, the chief's run
# folder or None). Its BackupAndRestore reads the chief's backups (see `train`).
_WORKER_FOLDERS: contextvars.ContextVar[tuple[Path, Path | None] | None] = contextvars.ContextVar(
    "worker_folders", default=None
)


def _restore_from(run_dir: Path) -> Path | None:
    folders = _WORKER_FOLDERS.get()
    if folders is None or folders[1] is None:
        return None
    own, chief = folders
    return chief / Path(run_dir).relative_to(own)


def _fit(model, data, config, run_dir, phase, epochs, initial_epoch, best_val_loss, verbose):
    history = model.fit(
        data.train,
        validation_data=data.val,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the train dataset shuffles itself
        class_weight=data.class_weight,
        callbacks=training.callbacks(
            config,
            run_dir,
            phase=phase,
            best_val_loss=best_val_loss,
            validation=data.val is not None,
            restore_from=_restore_from(run_dir),
        ),
        verbose=verbose,
    )
    # On a resumed phase `history.epoch` holds only the epochs run now; the phase's length is
    # up to its last epoch.
    last_epoch = history.epoch[-1] + 1 if history.epoch else initial_epoch
    return history.history, last_epoch - initial_epoch


def _first_phase(model, data, config, run_dir: Path, verbose) -> dict[str, Any]:
    """Runs the first training phase, or restores it when a resumed run had finished it.

    A second phase (fine-tuning) changes the model, so the first phase's final weights are
    kept until the run finishes: a run interrupted during fine-tuning resumes from them.
    """
    record = run_dir / "train_phase.json"
    weights = run_dir / "backup" / "train_phase.weights.h5"
    if record.exists() and weights.exists():
        model.load_weights(weights)
        return files.read_json(record)
    start = _starting_weights(model, data, run_dir) if data.spec.get("pretrained") else None
    history, epochs = _fit(model, data, config, run_dir, "train", config.epochs, 0, start, verbose)
    losses = history.get("val_loss")
    best_val_loss = float(min(losses)) if losses else None  # None: trained without validation
    result = {"epochs": epochs, "best_val_loss": best_val_loss}
    if start is not None:  # the built model's weights stay the run's unless training beat them
        kept = best_val_loss is None or not best_val_loss < start
        result |= {"start_val_loss": start, "kept_starting_weights": kept}
        result["best_val_loss"] = start if kept else best_val_loss
        print(
            f"Starting weights ({data.spec['pretrained']}): val_loss {start:.6g}; "
            + ("training did not beat them: the run keeps them as they are."
               if kept else f"training improved it to {best_val_loss:.6g}."),
            flush=True,
        )  # fmt: skip
    weights.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(weights)
    files.write_json(record, result)
    return result


def _starting_weights(model, data: Data, run_dir: Path) -> float | None:
    """A model built from pretrained weights (`spec["pretrained"]`) is the run's best checkpoint
    until an epoch beats its validation loss, so training can only improve on it. Returns that
    loss (recorded once: a resumed run keeps the first figure), None without validation."""
    if data.val is None:
        return None
    record = run_dir / "starting_weights.json"
    if record.exists():
        return files.read_json(record)["val_loss"]
    loss = float(model.evaluate(data.val, verbose=0, return_dict=True)["loss"])
    with signals.deferred(), files.replacing(run_dir / "checkpoints" / "best.keras") as partial:
        model.save(partial)
    files.write_json(record, {"val_loss": loss})
    return loss


def merge_validation(data: Data) -> Data:
    """Train on train+validation: the validation batches join the (shuffled) train batches.

    Normalization statistics stay those of the train split; validation examples are not
    augmented. Used to refit a tuned configuration for a fixed number of epochs.
    """
    merged = data.train.concatenate(data.val).shuffle(256, seed=0)
    return dataclasses.replace(data, train=merged, val=None)


def _data_and_model(template, config, strategy, refit: bool) -> tuple[Data, keras.Model, Any]:
    """Seeds everything from `config.seed`, then loads the data and builds the model.

    Returns the data, the model and the config with its `auto` fields resolved from the data.
    """
    training.set_global_options(config)
    data = run_data(template, config, strategy)
    config = resolved_config(config, data.spec)
    found = lifecycle.variants(template, config, data.spec)
    if found:  # an `auto` choice between variants: short fits, then the winner from scratch
        chosen, record = lifecycle.choose(template, config, found, strategy)
        first = data.spec  # what the first load resolved from the data stays on record
        data, model, config = _data_and_model(template, chosen, strategy, refit)
        _record_choice(data.spec, first, found[record["choice"]], record["reason"])
        data.spec["candidates"] = record
        return data, model, config
    if refit and template.calibrate is None:
        # A template with `calibrate` keeps its validation split out of the refit: constants
        # set on examples the model was fitted on (a threshold on their scores) would be biased.
        data = merge_validation(data)
    resources.check(
        lambda: template.build_model(config, data.spec),
        config,
        global_batch_size(config, strategy),
    )
    with strategy.scope(), hook("build_model", template):
        return data, template.build_model(config, data.spec), config


def _record_choice(spec: dict, first: dict, fields: dict, reason: str) -> None:
    """Keeps in `spec` what the first load resolved from the data (`resolved`, `warnings`) and
    records each chosen field with `reason` (an `auto` value is resolved again by the chosen
    variant's load_data, which says why)."""
    spec["resolved"] = {**first.get("resolved", {}), **spec.get("resolved", {})}
    spec["warnings"] = list(dict.fromkeys(first.get("warnings", []) + spec.get("warnings", [])))
    for field, value in fields.items():
        if value != "auto":
            spec["resolved"][field] = {"value": value, "reason": reason}


def _train_one(template, model, data, config, run_dir: Path, verbose) -> dict[str, int]:
    """Fits one model into `run_dir` (first phase, then the template's optional fine-tuning);
    its best weights end in `run_dir/checkpoints/best.keras`. Returns epochs per phase."""
    first_phase = _first_phase(model, data, config, run_dir, verbose)
    phases = {"train": first_phase["epochs"]}
    with hook("fine_tune", template):
        tuned = template.fine_tune(model, config, data.spec) if template.fine_tune else None
    if tuned is not None:
        model, extra_epochs = tuned
        end_epoch = first_phase["epochs"] + extra_epochs
        _, phases["fine_tune"] = _fit(
            model,
            data,
            config,
            run_dir,
            "fine_tune",
            end_epoch,
            first_phase["epochs"],
            first_phase["best_val_loss"],
            verbose,
        )
    return phases


def _train_members(
    template, model, data, config, strategy, refit, run_dir: Path, verbose
) -> dict[str, list[int]]:
    """Trains `config.members` models independently and saves their average as the run's model.

    Member i uses seed `config.seed + i` (its own initialization, shuffling, dropout and
    augmentation; the split is fixed) and its own folder `run_dir/members/<i>` with the usual
    checkpoints, logs and history; a finished member writes `member.json` there, so a resumed
    run skips it. Returns each phase's epochs, one entry per member.
    """
    phases: dict[str, list[int]] = {}
    best = []
    for i in range(config.members):
        member_dir = run_dir / "members" / str(i)

        def train(i=i, member_dir=member_dir):
            nonlocal data, model
            if i > 0:  # member 0 is the model and data built by the caller
                member_config = dataclasses.replace(config, seed=config.seed + i)
                data, model, _ = _data_and_model(template, member_config, strategy, refit)
            return _train_one(template, model, data, config, member_dir, verbose)

        trained = _train_member(member_dir, f"Member {i + 1}/{config.members}", train)
        for phase, epochs in trained.items():
            phases.setdefault(phase, []).append(epochs)
        best.append(member_dir / "checkpoints" / "best.keras")
    with strategy.scope():
        ensemble = average_models([keras.models.load_model(p, compile=False) for p in best])
    with files.replacing(run_dir / "checkpoints" / "best.keras") as partial:
        ensemble.save(partial)
    return phases


def _train_member(member_dir: Path, message: str, train: Callable[[], dict]) -> dict[str, int]:
    """One model of an ensemble in its own folder: `train()` fits it there unless its
    `member.json` (written when it finished) is there already, so a resumed run skips it.
    Returns its epochs per phase."""
    record = member_dir / "member.json"
    if not record.exists():
        print(message, flush=True)
        member_dir.mkdir(parents=True, exist_ok=True)
        files.write_json(record, train())
        shutil.rmtree(member_dir / "backup", ignore_errors=True)
    return files.read_json(record)


def _recorded_partner(run_dir: Path, config, data: Data) -> dict[str, Any] | None:
    """The chosen candidate's partner (`ktemplate.lifecycle`), as recorded in the run's spec
    when the run began (so a resumed run trains the same pair); None without one, with
    `members` > 1 or without a validation split to choose on."""
    if config.members != 1 or data.val is None:
        return None
    record = files.read_json(run_dir / "spec.json").get("candidates", {})
    return {**record["partner"], "choice": record["choice"]} if "partner" in record else None


def _train_pair(template, model, data, config, strategy, refit, run_dir: Path, verbose, partner):
    """Trains the short fits' choice and its partner in full (`members/0`, `members/1`) and keeps
    the one, the other or their average, whichever scores best on validation; the kept model's
    config and spec become the run's. Returns (epochs per phase, data, config) of the kept.
    `ensemble.json` records the choice last, so a resumed run redoes only what is missing."""
    record = run_dir / "ensemble.json"
    if record.exists():  # resumed after the choice: config.json is already the kept model's
        recorded = files.read_json(run_dir / "spec.json")
        data.spec.update({k: recorded[k] for k in ("ensemble", "candidates", "resolved")})
        return files.read_json(record)["epochs"], data, config
    configs = {
        partner["choice"]: dataclasses.replace(config, **partner["of"]),
        partner["name"]: dataclasses.replace(config, **partner["fields"]),
    }
    phases, models, built = {}, {}, {}
    for i, (name, member_config) in enumerate(configs.items()):
        if member_config == config:
            built[name] = (data, model, config)
        else:  # the partner (or, resumed after config.json changed, the choice)
            built[name] = _data_and_model(template, member_config, strategy, refit)
        member_dir = run_dir / "members" / str(i)
        member_data, member_model, member_config = built[name]
        role = "the short fits' choice" if i == 0 else "its partner"
        train = functools.partial(
            _train_one, template, member_model, member_data, member_config, member_dir, verbose
        )
        trained = _train_member(member_dir, f"Training {name} in full ({role})", train)
        for phase, epochs in trained.items():
            phases.setdefault(phase, []).append(epochs)
        with strategy.scope():
            models[name] = keras.models.load_model(member_dir / "checkpoints" / "best.keras")
    first = files.read_json(run_dir / "spec.json")
    with strategy.scope():
        kept, best, scores = lifecycle.pick_ensemble(template, models, data.val)
    with files.replacing(run_dir / "checkpoints" / "best.keras") as partial:
        best.save(partial)
    data, _, config = built[partner["choice"] if kept == "average" else kept]
    shown = ", ".join(f"{n} {s:.4g}" for n, s in scores.items())
    metric = first["candidates"]["metric"]
    reason = f"best {metric} of the two trained in full and their average: {shown}"
    data.spec["ensemble"] = {"members": list(configs), "kept": kept, "scores": scores,
                             "metric": metric, "reason": reason}  # fmt: skip
    data.spec["candidates"] = first["candidates"]
    _record_choice(data.spec, first, partner["fields" if kept == partner["name"] else "of"], reason)
    print(f"auto: ensemble={kept} ({reason})", flush=True)
    files.write_json(run_dir / "config.json", config_lib.to_dict(config))
    files.write_json(run_dir / "spec.json", data.spec)
    files.write_json(record, {**data.spec["ensemble"], "epochs": phases})
    return phases, data, config


def average_models(models: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose outputs are the element-wise mean of `models`' (same inputs/outputs)."""
    if len(models) == 1:
        return models[0]
    inputs = keras.tree.map_structure(  # the members' own structure: a tensor, list or dict
        lambda t: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name), models[0].input
    )
    outputs = []
    for i, model in enumerate(models):
        model.name = f"member_{i}"
        result = model(inputs)
        outputs.append(result if isinstance(result, list | tuple) else [result])
    averaged = [keras.layers.Average()(list(group)) for group in zip(*outputs, strict=True)]
    return keras.Model(inputs, averaged if len(averaged) > 1 else averaged[0], name=name)


def train(
    template: ModuleType | Template,
    config: Any,
    output_dir: str | Path = "saved_models",
    resume: str | Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int | None = None,
    run_dir: str | Path | None = None,
    refit: bool = False,
    before_export: Callable[[dict[str, Any]], None] | None = None,
    extra_info: dict[str, Any] | None = None,
    export_formats: list[str] | None = None,
    quantize: str = "none",
    smoke: bool = False,
) -> Path:
    """Trains, evaluates and exports one run of `template`; returns the run folder.

    Data loading and model building happen before the run folder is created, so a bad dataset
    or config leaves nothing behind. An interrupted run keeps its folder; passing it as
    `resume` continues from the last finished epoch.

    Args:
        template: a template module (see the module docstring for the contract).
        config: the template's `Config`. Ignored when resuming: the run's config is used.
        output_dir: parent of the `<template>/<run-id>` folders.
        resume: an unfinished run folder to continue.
        strategy: a `tf.distribute` strategy; the default strategy when None.
        verbose: passed to `model.fit`; by default a progress bar on a terminal, else one
            line per epoch.
        run_dir: the new run's folder (must not exist); `output_dir/<template>/<run-id>` by
            default.
        refit: train on train+validation for exactly `config.epochs` (no early stopping);
            the final model is the last epoch's. A template with `calibrate` keeps its
            validation split for calibration: it trains on train alone, with validation
            callbacks (early stopping, best checkpoint) as in a plain run.
        before_export: called with the test metrics before the export; raising `ValueError`
            refuses the export (the run keeps its metrics, status "rejected").
        extra_info: JSON facts recorded in run.json and the export manifest (e.g. the sweep
            a champion comes from).
        export_formats: formats of the export beside the SavedModel (litert, onnx), checked
            before training starts; recorded in run.json, so a resumed run writes them too.
        quantize: none, dynamic or float16, for the LiteRT file.
        smoke: `ktemplate check`: a few batches of each split, and a failing hook is reported
            by name (`ktemplate.check`).
    """
    template = contract.bind(template)  # a contract error names the hook before any data loads
    if smoke:
        token = _CHECKING.set(True)
        try:
            return train(template, config, output_dir, resume, strategy, verbose, run_dir,
                         refit, before_export, extra_info, export_formats, quantize)  # fmt: skip
        finally:
            _CHECKING.reset(token)
    formats = convert.check_formats(export_formats or ["saved_model"], quantize, template)
    if verbose in (None, "auto"):  # a progress bar only on a terminal (no ANSI in log files)
        verbose = 1 if sys.stdout.isatty() else 2
    strategy = strategy or tf.distribute.get_strategy()
    if resume is None and run_dir is not None and (Path(run_dir) / "run.json").is_file():
        resume = run_dir  # a given run folder that holds a run: continue it (or say it's done)
    role = worker_role(strategy)
    if role is not None and not role.chief and _WORKER_FOLDERS.get() is None:
        # Keras' multi-worker convention: every worker runs the same program, only the chief
        # writes the real run folder; this worker writes to a temporary one, removed at the end.
        chief_dir = Path(resume or run_dir) if (resume or run_dir) else None
        own = Path(tempfile.mkdtemp(prefix=f"ktemplate-{role.name}-"))
        token = _WORKER_FOLDERS.set((own / "run", chief_dir))
        try:
            if resume is not None:  # the chief's recorded config, as the chief uses it
                config = recorded_config(template, resume)
            train(
                template,
                config,
                strategy=strategy,
                verbose=0,
                run_dir=own / "run",
                refit=refit,
                before_export=before_export,
                extra_info=extra_info,
            )
        finally:
            _WORKER_FOLDERS.reset(token)
            shutil.rmtree(own, ignore_errors=True)
        return chief_dir if chief_dir is not None else own / "run"
    with contextlib.ExitStack() as held:
        return _train_here(
            template, config, output_dir, resume, strategy, verbose, run_dir, refit,
            before_export, extra_info, held, {"formats": formats, "quantize": quantize},
        )  # fmt: skip


def _train_here(
    template, config, output_dir, resume, strategy, verbose, run_dir, refit, before_export,
    extra_info, held: contextlib.ExitStack, export_options: dict[str, Any],
) -> Path:  # fmt: skip
    """`train` in this process's own run folder, which it holds locked (`ktemplate.locks`)."""
    if resume is not None:
        run_dir = Path(resume)
        run_info = read_run(run_dir)
        held.enter_context(locks.hold(run_dir, "run"))
        _remove_leftovers(run_dir)
        refit = run_info.get("refit", False)
        extra_info = run_info.get("extra")
        export_options = run_info.get("export", export_options)
        if run_info["template"] != template.NAME:
            raise ValueError(
                f"{run_dir} is a run of template '{run_info['template']}', not '{template.NAME}'."
            )
        if (run_dir / "metrics.json").exists():
            raise ValueError(
                f"{run_dir} is already finished (metrics.json exists); nothing to resume."
            )
        config = recorded_config(template, run_dir)

    batch_size = global_batch_size(config, strategy)
    data, model, config = _data_and_model(template, config, strategy, refit)
    destination = Path(run_dir if run_dir is not None else Path(output_dir) / template.NAME)
    files.check_writable(destination, run_bytes(model, config), "this run")
    if resume is None:
        print_resolved(data.spec)
        if run_dir is None:
            run_dir = new_run_dir(output_dir, template.NAME)
        else:
            run_dir = Path(run_dir)
            if run_dir.exists() and any(run_dir.iterdir()):
                raise FileExistsError(
                    f"{run_dir} exists and is not a run folder (no run.json): give a new or "
                    "empty folder."
                )
            run_dir.mkdir(parents=True, exist_ok=True)
        held.enter_context(locks.hold(run_dir, "run"))
        print(f"Run folder: {run_dir}", flush=True)
        files.write_json(run_dir / "config.json", config_lib.to_dict(config))
        files.write_json(run_dir / "spec.json", data.spec)
    run_info = {
        "template": template.NAME,
        "dataset": config.dataset,
        "run_id": run_dir.name,
        "status": "training",
        "replicas": strategy.num_replicas_in_sync,
        "global_batch_size": batch_size,
        "refit": refit,
    }
    if export_options["formats"] != ["saved_model"]:
        run_info["export"] = export_options
    if extra_info:
        run_info["extra"] = extra_info
    files.write_json(run_dir / "run.json", run_info)
    try:
        return _train_and_export(
            template, model, data, config, strategy, refit, run_dir, run_info, verbose,
            before_export,
        )  # fmt: skip
    except KeyboardInterrupt as e:
        how = signals.describe(e)
        _set_status(run_dir, run_info, "interrupted", f"{how}; continue it with --resume")
        e.run_dir = run_dir  # the CLI names it in the resume command
        raise
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
        message = resources.out_of_memory_message(e, config)
        _set_status(run_dir, run_info, "failed", message)
        raise resources.TooLarge(message) from None
    except Exception as e:
        fault = files.disk_error(e)
        if fault is not None:  # full, read-only, not ours: one line, the status says it
            where = f" ({fault.filename})" if fault.filename else ""
            message = f"writing the run failed: {os.strerror(fault.errno)}{where}"
            _set_status(run_dir, run_info, "failed", message)
            raise OSError(fault.errno, f"{message}. The run folder is {run_dir}.") from None
        if files.read_json(run_dir / "run.json").get("status") == "training":
            _set_status(run_dir, run_info, "failed", f"{type(e).__name__}: {str(e)[:500]}")
        raise


def _calibrate(template, model: keras.Model, data: Data, run_dir: Path) -> dict[str, Any]:
    """`template.calibrate`'s constants. Weights it sets in place (`weights_changed`) are saved
    back as the best checkpoint (the model exported), and its constants with them in
    `calibrated.json`: a resumed run reads them there and does not scale the weights twice."""
    record = run_dir / "calibrated.json"
    if record.is_file():
        return files.read_json(record)
    with hook("calibrate", template):
        found = template.calibrate(model, data)
    if found.pop("weights_changed", False):
        with signals.deferred():
            with files.replacing(run_dir / "checkpoints" / "best.keras") as partial:
                model.save(partial)
            files.write_json(record, found)
    return found


def run_bytes(model: keras.Model, config: Any) -> int:
    """About the disk a run needs: per member, a best checkpoint and a backup with the
    optimizer's two moments (3 copies of the weights each) and the export (one more)."""
    members = config.members if isinstance(config.members, int) else 1
    return int(model.count_params() * 4 * 7 * max(1, members) + 16 * 2**20)


def _set_status(run_dir: Path, run_info: dict[str, Any], status: str, reason: str) -> None:
    """Records why a run stopped, and after how many finished epochs, so that a failed run is
    not mistaken for a running one. When even that cannot be written (a full disk), says so on
    stderr instead."""
    record = {**run_info, "status": status, "reason": reason, "epochs_done": epochs_done(run_dir)}
    try:
        files.write_json(run_dir / "run.json", record)
    except OSError as e:
        print(
            f"ktemplate: warning: could not record status {status!r} in {run_dir / 'run.json'} "
            f"({os.strerror(e.errno or 0)}): {reason}",
            file=sys.stderr,
            flush=True,
        )


def epochs_done(run_dir: Path) -> dict[str, int]:
    """Finished epochs per history file (`train`, `fine_tune`, `members/0/train`, ...)."""
    done = {}
    for history in sorted(Path(run_dir).glob("**/history_*.csv")):
        name = history.relative_to(run_dir).with_suffix("").as_posix().replace("history_", "")
        rows = history.read_text(encoding="utf-8").splitlines()
        done[name] = max(0, len(rows) - 1)  # the header line is written when training starts
    return done


def _train_and_export(
    template, model, data, config, strategy, refit, run_dir, run_info, verbose, before_export
) -> Path:
    start = time.perf_counter()
    partner = _recorded_partner(run_dir, config, data)
    try:
        if partner is not None:
            phases, data, config = _train_pair(
                template, model, data, config, strategy, refit, run_dir, verbose, partner
            )
        elif config.members == 1:
            phases = _train_one(template, model, data, config, run_dir, verbose)
        else:
            phases = _train_members(
                template, model, data, config, strategy, refit, run_dir, verbose
            )
    finally:  # an interrupted run keeps the time it trained, and a resumed one adds to it
        train_seconds = _add_train_seconds(run_dir, time.perf_counter() - start)

    model = load_best_model(run_dir)
    if template.calibrate is not None:
        # Constants the export needs from the trained model (an anomaly threshold from the
        # validation scores): into the spec, which the export reads.
        known = set(data.spec.get("resolved", {}))
        found = _calibrate(template, model, data, run_dir)
        for warning in found.pop("warnings", []):
            warn(warning)
            data.spec.setdefault("warnings", []).append(warning)
        data.spec.update(found)
        fresh = {k: v for k, v in data.spec.get("resolved", {}).items() if k not in known}
        print_resolved({"resolved": fresh})  # an `auto` field set from the trained model
        files.write_json(run_dir / "spec.json", data.spec)
    with hook("evaluate", template):
        metrics = template.evaluate(model, data, run_dir)
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["epochs"] = phases
    single = config.members == 1 and partner is None
    phase = files.read_json(run_dir / "train_phase.json") if single else {}
    if "start_val_loss" in phase:
        metrics["starting_weights"] = {
            "weights": data.spec["pretrained"],
            "val_loss": phase["start_val_loss"],
            "kept": phase["kept_starting_weights"],
        }
    if config.members > 1:
        metrics["members"] = config.members
    if "ensemble" in data.spec:
        metrics["ensemble"] = {k: data.spec["ensemble"][k] for k in ("kept", "scores", "metric")}
    if config.baseline and template.baseline is not None:
        metrics["baseline"] = fit_baseline(template, model, data, config, run_dir)
    try:
        if before_export is not None:
            before_export(metrics)
    except ValueError:
        _finish(run_dir, run_info, metrics, "rejected")
        raise
    options = run_info.get("export", {})
    export(
        template,
        run_dir,
        model=model,
        metrics=metrics,
        formats=options.get("formats"),
        quantize=options.get("quantize", "none"),
    )
    _finish(run_dir, run_info, metrics, "finished")
    return run_dir


def _add_train_seconds(run_dir: Path, seconds: float) -> float:
    """Adds `seconds` to the run's training time so far (`train_seconds.json`, kept across
    interruptions) and returns the total."""
    record = run_dir / "train_seconds.json"
    total = (files.read_json(record)["seconds"] if record.exists() else 0.0) + seconds
    files.write_json(record, {"seconds": round(total, 3)})
    return total


def fit_baseline(template, model, data, config, run_dir: Path) -> dict[str, Any]:
    """The template's baseline block, with the run's own diagnostics added to what to try.

    A baseline that fails gives "no verdict" (the run itself still finishes and exports).
    """
    try:
        with hook("baseline", template):
            block = template.baseline(model, data, config)
    except Exception as e:  # a classical fit that cannot finish must not cost the run
        if _CHECKING.get():
            raise
        warn(f"the classical baseline failed, so the run has no verdict: {e}")
        return baselines.failed("classical baseline", e)
    if block.get("comparison", {}).get("verdict") == "worse":
        block["suggestions"] = block.get("suggestions", []) + baselines.suggestions(
            config, training.diagnostics(run_dir, config)
        )
    return block


def _finish(run_dir: Path, run_info: dict[str, Any], metrics: dict[str, Any], status: str):
    files.write_json(run_dir / "metrics.json", metrics)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    files.write_json(run_dir / "run.json", {**run_info, "status": status})


def load_best_model(run_dir: Path) -> keras.Model:
    path = Path(run_dir) / "checkpoints" / "best.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: training saved no checkpoint (did the loss become NaN in the "
            "first epoch?). Try a lower learning_rate."
        )
    # Layer classes from other packages (a keras-hub backbone) register on import.
    spec_path = Path(run_dir) / "spec.json"
    if spec_path.is_file():
        for module in files.read_json(spec_path).get("imports", []):
            importlib.import_module(module)
    return keras.models.load_model(path, compile=False)


def export(
    template: ModuleType | Template,
    run_dir: str | Path,
    output: str | Path | None = None,
    model: keras.Model | None = None,
    metrics: dict[str, Any] | None = None,
    overwrite: bool = False,
    formats: list[str] | None = None,
    quantize: str = "none",
    serving_layout: bool = False,
) -> Path:
    """Exports a run's best model as a self-contained SavedModel with its manifest, and
    optionally LiteRT/ONNX files beside it (`ktemplate.convert`).

    Args:
        template: the run's template module.
        run_dir: the run folder.
        output: the export folder; `run_dir/export` by default.
        model: the model to export; the run's best checkpoint by default.
        metrics: test metrics for the manifest; the run's metrics.json by default.
        overwrite: replace an existing export (its SavedModel too).
        formats: saved_model (always written), litert, onnx. Into an existing export (and
            without `overwrite`), the formats it lacks are added beside its SavedModel and
            checked against it.
        quantize: none, dynamic or float16, for the LiteRT file.
        serving_layout: treat `output` (default `run_dir/serving`) as a TF Serving model base
            path and write the next version folder, `output/<n>/`, chosen while holding the
            base path's lock (another export into it waits its turn); returns that folder.
    """
    template = contract.bind(template)
    formats = convert.check_formats(formats or ["saved_model"], quantize, template)
    run_dir = Path(run_dir)
    run_info = read_run(run_dir)
    with locks.hold(run_dir, "run"):
        status = read_run(run_dir).get("status")
        if model is None and status != "finished" and not overwrite:  # not the run's own
            raise ValueError(
                f"{run_dir} is {status} ({run_info.get('reason', 'no reason recorded')}): its "
                "best checkpoint has no test metrics yet. Finish it with --resume, or export it "
                "as it is with --force (the manifest records its status)."
            )
        _remove_leftovers(run_dir)
        if model is not None and status != "finished":
            overwrite = True  # the run's own export replaces one forced before it finished
        if serving_layout:  # the next version is chosen under the base path's lock
            base = Path(output or run_dir / "serving")
            with locks.hold(base, "export", wait_s=SERVING_LOCK_WAIT_S):
                return _export(template, run_dir, run_info, serving.next_version(base),
                               model, metrics, False, formats, quantize)  # fmt: skip
        output = Path(output or run_dir / "export")
        if output.exists() and not overwrite and (output / serving.MANIFEST).is_file():
            return _add_formats(template, run_dir, output, model, formats, quantize)
        return _export(
            template, run_dir, run_info, output, model, metrics, overwrite, formats, quantize
        )


SERVING_LOCK_WAIT_S = 900.0  # an export into a serving base path waits this long for another


def _remove_leftovers(run_dir: Path) -> None:
    """Partial checkpoints and temporary exports a killed process left in the run folder
    (called while holding its lock, so no live process is writing them)."""
    removed = files.remove_leftovers(run_dir)
    if removed:
        names = ", ".join(str(p.relative_to(run_dir)) for p in removed[:3])
        more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
        print(f"Removed what a killed process left in {run_dir}: {names}{more}", flush=True)


def _add_formats(template, run_dir, output: Path, model, formats, quantize) -> Path:
    """LiteRT/ONNX files added to an existing export, checked against its SavedModel."""
    missing = serving.missing_formats(output, formats, quantize)
    if not missing:
        has = [f for f in formats if f != "saved_model"]
        raise FileExistsError(
            f"{output} already exists"
            + (f" with {' and '.join(has)}" if has else "")
            + ". Add formats with --format litert onnx, export elsewhere with --output, or "
            "pass --force to replace it."
        )
    spec = files.read_json(run_dir / "spec.json")
    config = files.read_json(run_dir / "config.json")
    model = model if model is not None else load_best_model(run_dir)
    return serving.add_formats(
        output,
        lambda folder: convert.write_formats(
            folder, template, model, spec, ["saved_model", *missing], quantize,
            data=_quantize_data(template, config, quantize),
        ),
    )  # fmt: skip


def _export(
    template, run_dir, run_info, output, model, metrics, overwrite, formats, quantize
) -> Path:
    spec = files.read_json(run_dir / "spec.json")
    config = files.read_json(run_dir / "config.json")
    model_given = model is not None  # by the run itself, at its end
    if model is None:
        model = load_best_model(run_dir)
    if metrics is None:
        metrics_path = run_dir / "metrics.json"
        metrics = files.read_json(metrics_path) if metrics_path.exists() else {}
    with hook("manifest_extras", template):
        extras = template.manifest_extras(spec)
    with hook("serving_endpoints", template):
        endpoints = template.serving_endpoints(model, spec)
    manifest = {
        "template": run_info["template"],
        "dataset": config.get("dataset"),
        "run_id": run_info["run_id"],
        **extras,
        "global_batch_size": run_info.get("global_batch_size"),
        "replicas": run_info.get("replicas"),
        "batch_size_note": "config.batch_size is per replica; global = batch_size * replicas",
        **run_info.get("extra", {}),
        **({"run_status": run_info.get("status")} if not model_given else {}),
        "metrics": metrics,
        "config": config,
    }
    return serving.write_export(
        output,
        model,
        endpoints,
        manifest,
        overwrite=overwrite,
        convert=lambda folder: convert.write_formats(
            folder,
            template,
            model,
            spec,
            formats,
            quantize,
            data=_quantize_data(template, config, quantize),
        ),
    )


def _quantize_data(template: Template, config: dict[str, Any], quantize: str) -> Data | None:
    """The run's data, reloaded from its config, for a quantized LiteRT file (int8's
    calibration examples, the quantized test metric); None when nothing is quantized."""
    if quantize == "none":
        return None
    return load_data(template, config_lib.apply_overrides(template.Config(), config))
