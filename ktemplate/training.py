"""Shared Keras training machinery: precision, regularizers, optimizers, schedules, callbacks.

Templates call these from `build_model` so that every template honours the same
`TrainingConfig` options in the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # op determinism's switch-off

from ktemplate import files, signals
from ktemplate.config import TrainingConfig


def set_global_options(config: TrainingConfig) -> None:
    """Seeds every RNG, sets op determinism and the dtype policy. Call before building data or
    models.

    `deterministic` turns on TensorFlow's op determinism: kernels with a deterministic
    implementation use it, the others raise, and `tf.data` keeps element order, so that the
    same seed, software and machine give the same weights. Across CPU types oneDNN may pick
    different kernels, so figures can still differ from one machine to another.
    """
    keras.utils.set_random_seed(config.seed)
    set_op_determinism(config.deterministic)
    keras.mixed_precision.set_global_policy(config.mixed_precision)


def set_op_determinism(enabled: bool) -> None:
    """Turns TensorFlow's process-wide op determinism on or off."""
    if enabled:
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def regularizer(config: TrainingConfig) -> keras.regularizers.Regularizer | None:
    """The kernel regularizer for hidden layers, or None when both penalties are 0."""
    if config.l1 == 0 and config.l2 == 0:
        return None
    return keras.regularizers.L1L2(l1=config.l1, l2=config.l2)


def class_weights(
    counts, class_names: list[str], auto, unbalanced_ratio: float = 1.5
) -> dict[int, float] | None:
    """Loss weights per class for `fit`, from the train split's class counts (or the train
    split itself, whose labels are then counted).

    `class_weight` (a config field, read through the `ktemplate.config.Resolver` `auto`)
    `balanced` weighs class c by n / (classes * n_c), as scikit-learn does; `auto` is
    balanced when the largest class has more than `unbalanced_ratio` times the examples of
    the smallest, else `none`. A user's `none` on unbalanced classes gets a warning.
    """
    if hasattr(counts, "element_spec"):  # a split of (x, label) pairs: count its labels
        from ktemplate.pipelines import splits as splits_lib

        counts = splits_lib.label_counts(counts, len(class_names))
    counts = [int(c) for c in counts]
    ratio = max(counts) / max(1, min(counts))
    shown = ", ".join(f"{name} {n}" for name, n in zip(class_names, counts, strict=True))
    unbalanced = ratio > unbalanced_ratio
    choice = auto.pick(
        "class_weight",
        "balanced" if unbalanced else "none",
        f"train classes {'un' if unbalanced else ''}balanced ({shown[:200]}; largest/smallest "
        f"{ratio:.2f})",
    )
    if choice == "none" and unbalanced and not auto.is_auto("class_weight"):
        auto.warn(
            f"class_weight=none was set, but the train classes are unbalanced (largest/smallest "
            f"{ratio:.2f}); the model may favour the large classes. class_weight=balanced "
            "weighs them equally."
        )
    if choice == "none":
        return None
    total, classes = sum(counts), len(counts)
    return {i: total / (classes * max(1, n)) for i, n in enumerate(counts)}


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    return max(1, math.ceil(num_examples / global_batch_size))


def budget_epochs(auto: Any, bounds: tuple[int, int], budget: float, epoch_cost: float | None):
    """Resolves epochs=auto through the `ktemplate.config.Resolver` `auto`: as many epochs
    (within `bounds`) as `budget` multiply-adds allow at `epoch_cost` an epoch (every member's
    forward passes over the train split); the most when the cost is unknown (None)."""
    least, most = bounds
    if epoch_cost is None:
        return auto.pick("epochs", most, "the cost of an epoch is unknown: the most epochs")
    epochs = int(min(most, max(least, budget // epoch_cost)))
    return auto.pick(
        "epochs",
        epochs,
        f"an epoch of every member is {epoch_cost:.3g} forward multiply-adds: {epochs} epochs "
        f"fit the budget of {budget:.3g} (at least {least}, at most {most})",
    )


def make_optimizer(
    config: TrainingConfig,
    steps: int,
    learning_rate: float | None = None,
    epochs: int | None = None,
) -> keras.optimizers.Optimizer:
    """Builds the configured optimizer with its learning-rate schedule and gradient clipping.

    Args:
        config: the run's config.
        steps: optimizer steps per epoch (for the cosine schedule's length).
        learning_rate: overrides `config.learning_rate` (fine-tuning uses a lower rate).
        epochs: overrides `config.epochs` as the schedule's length in epochs.
    """
    lr = config.learning_rate if learning_rate is None else learning_rate
    epochs = epochs or config.epochs
    if config.lr_schedule == "cosine":
        if not isinstance(epochs, int):
            raise ValueError(
                f"epochs is {epochs!r}, and the cosine schedule needs a number: set epochs, or "
                "build from a resolved config (`ktemplate.run.resolved_config(config, spec)`)."
            )
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs, alpha=0.01)
    clip = {"clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **clip)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **clip)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True, **clip)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=config.momentum, **clip)
    if config.optimizer == "adagrad":
        return keras.optimizers.Adagrad(lr, **clip)
    raise ValueError(f"Unknown optimizer {config.optimizer!r}.")


def compile_classifier(
    model: keras.Model,
    config: TrainingConfig,
    train_size: int,
    learning_rate: float | None = None,
    epochs: int | None = None,
) -> None:
    """Compiles a softmax classifier of integer labels: sparse cross-entropy, accuracy, and the
    configured optimizer over `epochs` of `train_size` examples (see `make_optimizer`)."""
    steps = steps_per_epoch(train_size, config.batch_size)
    model.compile(
        optimizer=make_optimizer(config, steps, learning_rate, epochs),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )


def fine_tune_backbone(model: keras.Model, config: Any, train_size: int):
    """The `fine_tune` hook of a classifier with a frozen layer named "backbone": unfreezes it
    and recompiles at `learning_rate * fine_tune_lr_factor` for `fine_tune_epochs`. Returns
    (model, epochs), or None when the config has no backbone or no fine-tuning epochs."""
    if config.backbone == "none" or config.fine_tune_epochs == 0:
        return None
    model.get_layer("backbone").trainable = True
    learning_rate = config.learning_rate * config.fine_tune_lr_factor
    compile_classifier(model, config, train_size, learning_rate, config.fine_tune_epochs)
    return model, config.fine_tune_epochs


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` at the end of each epoch whose `monitor` is below the best so
    far (every epoch with `best_only=False`), as `ModelCheckpoint(save_best_only=...)` does, but
    written whole or not at all: to a temporary file that replaces `path`, with Ctrl-C and
    SIGTERM held until the file is in place."""

    def __init__(self, path, monitor: str, best_only: bool, initial_best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.best_only = Path(path), monitor, best_only
        self.best = math.inf if initial_best is None else initial_best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.best_only:
            if value is None or not float(value) < self.best:
                return
            self.best = float(value)
        with signals.deferred(), files.replacing(self.path) as partial:
            self.model.save(partial, overwrite=True)


class EpochHistory(keras.callbacks.Callback):
    """Per-epoch metrics in a CSV file (epoch, then the metrics sorted, like Keras' CSVLogger),
    one row per epoch: an epoch run again after a resume replaces its row (a process killed
    between writing a row and saving its backup runs that epoch twice)."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    def on_train_begin(self, logs=None):
        if not self.path.is_file():  # the header first: a run that stops now did 0 epochs
            with files.replacing(self.path) as partial:
                partial.write_text("epoch\n")

    def on_epoch_end(self, epoch, logs=None):
        import csv

        rows: dict[int, dict[str, str]] = {}
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = {int(row["epoch"]): row for row in csv.DictReader(f)}
        rows[epoch] = {"epoch": str(epoch), **{k: _cell(v) for k, v in (logs or {}).items()}}
        names = ["epoch", *sorted({k for row in rows.values() for k in row} - {"epoch"})]
        with files.replacing(self.path) as partial, open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names, restval="")
            writer.writeheader()
            writer.writerows(rows[e] for e in sorted(rows))


def _cell(value: Any) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


class Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose weights and epoch are written whole or not at all (temporary
    files and renames, Ctrl-C and SIGTERM held until both are in place): a run killed or
    interrupted while its backup was being written resumes from the epoch before."""

    def _save_model(self):
        with signals.deferred():
            with files.replacing(self._weights_path) as partial:
                self.model.save_weights(partial, overwrite=True)
            metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
            files.write_json(self._training_metadata_path, metadata)


class RestoreOnlyBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that restores from another process's backup but never writes it: a
    multi-worker run's non-chief workers read the chief's backup (on a shared filesystem), so
    every worker resumes from the same epoch and weights; only the chief saves."""

    def _save_model(self):
        pass

    def on_train_end(self, logs=None):
        pass


class _StopOnSigterm(keras.callbacks.Callback):
    """Stops at the next batch when a SIGTERM's exception was lost (see `signals`)."""

    def on_train_batch_end(self, batch, logs=None):
        signals.raise_if_received()


def callbacks(
    config: TrainingConfig,
    run_dir: Path | None,
    phase: str = "train",
    best_val_loss: float | None = None,
    validation: bool = True,
    restore_from: Path | None = None,
) -> list:
    """The standard callbacks; those that write files are only added with a `run_dir`.

    `BackupAndRestore` keeps the state of an interrupted run under `run_dir/backup/<phase>`, so
    running the same run again resumes at the last finished epoch. `best_val_loss` carries the
    best checkpoint's score from an earlier phase so a later phase only replaces it when better.
    Without `validation` (a refit on train+validation for a fixed number of epochs) nothing
    stops early, the learning-rate plateau watches the training loss, and the checkpoint is the
    last epoch's model. With `restore_from` (a non-chief worker: the chief's run folder) the
    backup is read from there and never written.
    """
    monitor = "val_loss" if validation else "loss"
    result: list = [keras.callbacks.TerminateOnNaN(), _StopOnSigterm()]
    if validation and config.early_stopping_patience > 0:
        result.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if config.lr_schedule == "plateau":
        result.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=0.5,
                patience=max(1, config.early_stopping_patience // 3),
                min_lr=config.learning_rate * 1e-3,
            )
        )
    if run_dir is not None:
        run_dir = Path(run_dir)
        result += [
            BestCheckpoint(
                run_dir / "checkpoints" / "best.keras",
                monitor=monitor,
                best_only=validation,
                initial_best=best_val_loss if validation else None,
            ),
            keras.callbacks.TensorBoard(str(run_dir / "logs" / phase)),
            EpochHistory(run_dir / f"history_{phase}.csv"),
            Backup(str(run_dir / "backup" / phase))
            if restore_from is None
            else RestoreOnlyBackup(str(Path(restore_from) / "backup" / phase)),
        ]
    return result


def diagnostics(run_dir: str | Path, config: TrainingConfig) -> list:
    """What a run's own training history suggests trying (`baselines.Try`): more epochs when
    every model used all of `config.epochs` and its validation loss was lowest at the last."""
    from ktemplate.baselines import Try

    histories = sorted(Path(run_dir).glob("history_train.csv")) or sorted(
        Path(run_dir).glob("members/*/history_train.csv")
    )
    if not histories:
        return []
    for path in histories:
        rows = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()]
        if len(rows) < 2 or "val_loss" not in rows[0]:
            return []
        column = rows[0].index("val_loss")
        try:
            losses = [float(r[column]) for r in rows[1:]]
        except ValueError:  # "NA": trained without validation (a refit champion)
            return []
        if len(losses) < config.epochs or min(losses) < losses[-1]:
            return []
    return [
        Try(
            "epochs",
            2 * config.epochs,
            f"validation loss was still falling at the last of the {config.epochs} epochs",
        )
    ]
