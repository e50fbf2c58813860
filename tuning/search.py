"""The keras-tuner search over a template's search space, and the champion it exports.

A sweep lives in `saved_models/<template>/sweeps/<name>/`:

    sweep.json          what was asked: tuner, objective, epochs, fixed Config fields, strategy
    tuner/              keras-tuner's project (oracle state, one folder per trial)
    trials/<id>.json    per trial: fit seconds, epochs, memory, who ran it (one entry per run)
    logs/<id>/          TensorBoard logs per trial, with the HParams dashboard populated
    leaderboard.csv     all trials, best first (also leaderboard.md)
    champion/           a run folder (see `ktemplate.run`): the best hyperparameters retrained
                        on train+validation, evaluated on test, exported

Running the same command again continues the sweep: keras-tuner reloads its oracle, keeps the
completed trials and re-runs only the one that was interrupted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import shutil
import socket
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import keras_tuner
import numpy as np
from ktemplate.tuning import report, strategies

from ktemplate import config as config_lib
from ktemplate import contract, files, lifecycle, locks, run, training, tuning

TUNER_CLASSES = dict(
    zip(
        tuning.TUNERS,
        (
            keras_tuner.RandomSearch,
            keras_tuner.BayesianOptimization,
            keras_tuner.Hyperband,
            keras_tuner.GridSearch,
        ),
        strict=True,
    )
)
# The settings a resumed sweep must share with the one it continues.
IDENTITY = ("template", "tuner", "objective", "max_epochs", "executions_per_trial", "config")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What `ktemplate tune` was asked for."""

    template: str
    tuner: str = "random"  # random, bayesian, hyperband or grid
    max_trials: int = 10  # trials to run (hyperband: its brackets decide)
    max_epochs: int | None = None  # epochs per trial; None: the config's epochs
    executions_per_trial: int = 1  # fits per trial, averaged (noisy objectives)
    objective: str | None = None  # e.g. val_accuracy, val_loss:min; None: the template's
    max_retries_per_trial: int = 0  # re-runs of a trial that raised an error
    max_consecutive_failed_trials: int = 3  # stop the sweep after this many failures in a row
    min_score: float | None = None  # refuse to export a champion scoring worse than this
    champion: bool = True  # retrain and export the best hyperparameters after the sweep


def objective_for(
    template: ModuleType | contract.Template, name: str | None
) -> keras_tuner.Objective:
    """`name` is a metric like `val_accuracy`, optionally with `:min`/`:max`.

    Without a direction, names with loss/error in them are minimized, others maximized.
    """
    name = name or contract.bind(template).TUNE_OBJECTIVE
    name, _, direction = name.partition(":")
    if not direction:
        lower = name.lower()
        minimize = any(k in lower for k in ("loss", "error", "mae", "mse", "mase"))
        direction = "min" if minimize else "max"
    if direction not in ("min", "max"):
        raise config_lib.ConfigError(f"Objective direction must be min or max, not {direction!r}.")
    if not name.startswith("val_"):
        raise config_lib.ConfigError(
            f"Objective {name!r} is not a validation metric; tune on a val_ metric "
            "(e.g. val_loss, val_accuracy) so the test split stays unseen."
        )
    return keras_tuner.Objective(name, direction)


def searched_names(template: ModuleType | contract.Template) -> list[str]:
    """The Config fields the template's search space tunes."""
    template = contract.bind(template)
    hp = keras_tuner.HyperParameters()
    template.search_space(hp, template.Config())
    return list(hp.values)


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = peak
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) / 1024
    except OSError:
        pass
    return round(current, 1), round(peak, 1)


class TemplateHyperModel(keras_tuner.HyperModel):
    """Builds and fits a template's model for one trial's hyperparameters.

    Data is loaded per trial because searched fields may change it (window length, vocabulary
    size, batch size); `build` and `fit` of one trial share it.
    """

    def __init__(self, template, config, fixed, strategy, trials_dir: Path, verbose: int):
        template = contract.bind(template)
        super().__init__(name=template.NAME)
        self.template = template
        self.config = config
        self.fixed = fixed
        # The space is declared with the template's defaults (a value the user fixed may lie
        # outside the searched choices); fixed fields are applied over each trial's values.
        defaults = template.Config()
        self.search_base = dataclasses.replace(
            config, **{k: getattr(defaults, k) for k in searched_names(template)}
        )
        self.strategy = strategy
        self.trials_dir = trials_dir
        self.verbose = verbose
        self.trial_id: str | None = None
        self._data: run.Data | None = None
        self._trial_config = None

    def config_for(self, hp) -> Any:
        """The Config of one trial: searched values from `hp`, the user's fixed values, and the
        template's candidate (`lifecycle`) that `hp` chose, if it offers any."""
        config = self.template.search_space(hp, self.search_base)
        config = dataclasses.replace(config, **{k: getattr(self.config, k) for k in self.fixed})
        if "candidate" in hp.values:  # the champion: the variant the best trial trained
            spec = run.load_data(self.template, config, self.strategy).spec
            found = lifecycle.variants(self.template, run.resolved_config(config, spec), spec)
            config = dataclasses.replace(config, **found[hp.values["candidate"]])
        return config

    def build(self, hp):
        config = self.template.search_space(hp, self.search_base)
        config = dataclasses.replace(config, **{k: getattr(self.config, k) for k in self.fixed})
        training.set_global_options(config)
        self._data = run.load_data(self.template, config, self.strategy)
        config = run.resolved_config(config, self._data.spec)
        found = lifecycle.variants(self.template, config, self._data.spec)
        if found:  # the template's `auto` variants are one more searched choice
            config = dataclasses.replace(config, **found[hp.Choice("candidate", list(found))])
            self._data = run.load_data(self.template, config, self.strategy)
            config = run.resolved_config(config, self._data.spec)
        self._trial_config = config
        return self.template.build_model(config, self._data.spec)

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        config, data = self._trial_config, self._data
        epochs = kwargs.get("epochs", config.epochs)
        initial_epoch = kwargs.get("initial_epoch", 0)

        def phase(model, first: int, last: int, extra_callbacks: list):
            return model.fit(
                data.train,
                validation_data=data.val,
                epochs=last,
                initial_epoch=first,
                shuffle=False,
                class_weight=data.class_weight,
                callbacks=extra_callbacks + training.callbacks(config, None),
                verbose=self.verbose,
            )

        def finite(history) -> bool:
            losses = history.history.get("loss", [])
            return bool(losses) and all(math.isfinite(v) for v in losses)

        start = time.perf_counter()
        history = phase(model, initial_epoch, epochs, list(callbacks or []))
        # The template's second phase (a backbone unfrozen), as `ktemplate train` runs it:
        # the trial's score is the best epoch of both phases.
        fine_tune = self.template.fine_tune
        tuned = fine_tune(model, config, data.spec) if fine_tune and finite(history) else None
        if tuned is not None:
            model, extra_epochs = tuned
            first_end = initial_epoch + len(history.epoch)
            # TensorBoard's hparams callback (added by keras-tuner) serves one fit only.
            reusable = [
                c
                for c in callbacks or []
                if not type(c).__module__.startswith("tensorboard.plugins.hparams")
            ]
            more = phase(model, first_end, first_end + extra_epochs, reusable)
            for key, values in more.history.items():
                history.history.setdefault(key, []).extend(values)
            history.epoch = list(history.epoch) + list(more.epoch)
        failed = not finite(history)
        seconds = time.perf_counter() - start
        self._record(seconds, len(history.epoch), "failed" if failed else "completed")
        self._data = None
        if failed:
            raise keras_tuner.errors.FailedTrialError(
                "The loss became NaN or infinite; the trial is recorded as failed."
            )
        return history

    def _record(self, seconds: float, epochs: int, status: str) -> None:
        path = self.trials_dir / f"{self.trial_id}.json"
        runs = files.read_json(path)["runs"] if path.exists() else []
        rss, peak = _rss_mb()
        runs.append(
            {
                "fit_seconds": round(seconds, 3),
                "epochs": epochs,
                "status": status,
                "rss_mb": rss,
                "peak_rss_mb": peak,
                "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        )
        files.write_json(path, {"trial_id": self.trial_id, "runs": runs})


class Recycle(Exception):
    """A worker ran its `trials_per_process` trials: it exits so a fresh process replaces it."""


def _tuner_class(base: type) -> type:
    class Tuner(base):
        trials_per_process: int | None = None  # a worker stops after this many trials
        trials_done = 0

        def on_trial_end(self, trial):
            super().on_trial_end(trial)  # reports the trial to the oracle first
            self.trials_done += 1
            if self.trials_per_process and self.trials_done >= self.trials_per_process:
                raise Recycle(f"{self.trials_done} trial(s) done in this process")

        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            self.hypermodel.trial_id = trial.trial_id

    Tuner.__name__ = base.__name__
    return Tuner


def make_tuner(template, config, sweep: Sweep, directory: Path, strategy, fixed, verbose=2):
    """A keras-tuner tuner over `template`'s search space, saved under `directory/tuner`.

    `fixed` maps Config fields the user set to their values: searched fields among them are
    registered as `hp.Fixed`, which takes them out of the search.
    """
    if sweep.tuner not in TUNER_CLASSES:
        raise config_lib.ConfigError(
            f"Unknown tuner {sweep.tuner!r}; choose one of {', '.join(tuning.TUNERS)}."
        )
    hp = keras_tuner.HyperParameters()
    for name in searched_names(template):
        if name in fixed:
            hp.Fixed(name, getattr(config, name))
    hypermodel = TemplateHyperModel(
        template, config, fixed, strategy, directory / "trials", verbose
    )
    common = {
        "hypermodel": hypermodel,
        "objective": objective_for(template, sweep.objective),
        "hyperparameters": hp,
        "tune_new_entries": True,
        "executions_per_trial": sweep.executions_per_trial,
        "max_retries_per_trial": sweep.max_retries_per_trial,
        "max_consecutive_failed_trials": sweep.max_consecutive_failed_trials,
        "distribution_strategy": strategy,
        "directory": str(directory),
        "project_name": "tuner",
        "overwrite": False,
        "seed": config.seed,
    }
    if sweep.tuner == "hyperband":
        return _tuner_class(keras_tuner.Hyperband)(max_epochs=config.epochs, **common)
    return _tuner_class(TUNER_CLASSES[sweep.tuner])(max_trials=sweep.max_trials, **common)


def _check_same_sweep(directory: Path, record: dict[str, Any]) -> None:
    path = directory / "sweep.json"
    if not path.exists():
        return
    old = files.read_json(path)
    changed = [k for k in IDENTITY if old.get(k) != record.get(k)]
    if changed:
        raise ValueError(
            f"{directory} holds a sweep with other settings ({', '.join(changed)} differ). "
            "Continue it with the same options, or start another with --name NAME "
            "(or --restart to delete it)."
        )


def best_epochs(trial) -> int:
    """Epochs the best trial trained up to its best epoch (Hyperband trials start later)."""
    initial = trial.hyperparameters.values.get("tuner/initial_epoch", 0)
    return int(initial + (trial.best_step or 0) + 1)


def tune(
    template: ModuleType | contract.Template,
    config: Any,
    fixed: dict[str, Any],
    sweep: Sweep,
    output_dir: str | Path = "saved_models",
    name: str | None = None,
    strategy_name: str = "auto",
    restart: bool = False,
    verbose: int = 2,
    trials_per_process: int | None = None,
) -> Path:
    """Runs (or continues) a sweep; on the chief, then writes the leaderboard and champion.

    In keras-tuner's distributed mode (`KERASTUNER_TUNER_ID` set) a worker only runs trials;
    the chief serves the oracle, and once every trial is done, reports and exports. A worker
    given `trials_per_process` raises `Recycle` after that many trials, so that a fresh
    process can take its place: TensorFlow keeps some memory of every model trained in a
    process, even after the Keras session is cleared.

    Returns:
        The sweep folder.
    """
    template = contract.bind(template)
    config = dataclasses.replace(config, epochs=sweep.max_epochs or config.epochs)
    if sweep.tuner == "hyperband" and config.epochs == config_lib.AUTO:
        raise ValueError(
            "--tuner hyperband needs a number of epochs per trial and the config's epochs is "
            "auto (resolved from each trial's data): add --max-epochs N."
        )
    directory = report.sweep_dir(output_dir, template.NAME, name or sweep.tuner)
    role = os.environ.get("KERASTUNER_TUNER_ID")
    worker = role is not None and role != "chief"
    strategy = strategies.make_strategy(strategy_name)
    objective = objective_for(template, sweep.objective)
    record = {
        "template": template.NAME,
        "tuner": sweep.tuner,
        "objective": f"{objective.name}:{objective.direction}",
        "max_epochs": config.epochs,
        "executions_per_trial": sweep.executions_per_trial,
        "config": config_lib.to_dict(config),
        "fixed": fixed,
        "max_trials": sweep.max_trials,
        **strategies.describe(strategy),
    }
    if not worker:
        with locks.hold(directory, "sweep chief"):
            if restart:
                files.clear_folder(directory, keep=locks.LOCK_FILE)
            _check_same_sweep(directory, record)
            files.write_json(directory / "sweep.json", record)
            tuner = make_tuner(template, config, sweep, directory, strategy, fixed, verbose)
            # A larger --max-trials on a resumed sweep runs the extra trials.
            tuner.oracle.max_trials = sweep.max_trials
            _search(tuner, directory, verbose, chief=True)
            report.write_leaderboard(directory)
            if sweep.champion:
                train_champion(
                    template, config, sweep, directory, tuner, strategy, objective, verbose
                )
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tuner = make_tuner(template, config, sweep, directory, strategy, fixed, verbose)
    tuner.trials_per_process = trials_per_process
    _search(tuner, directory, verbose, chief=False)
    return directory


def _search(tuner, directory: Path, verbose: int, chief: bool) -> None:
    tensorboard = keras.callbacks.TensorBoard(str(directory / "logs"))
    try:
        tuner.search(callbacks=[tensorboard], verbose=verbose)
    except RuntimeError as e:  # keras-tuner gives up after too many failed trials in a row
        if chief:
            # keras-tuner raises before it saves the trial that hit the limit: save it here.
            oracle = tuner.oracle
            for trial in oracle.trials.values():
                if trial.status == keras_tuner.engine.trial.TrialStatus.FAILED:
                    oracle._save_trial(trial)
            oracle.ongoing_trials.clear()
            oracle.save()
            report.write_leaderboard(directory)
        raise ValueError(f"The sweep stopped: {str(e).splitlines()[0]} See {directory}.") from e


def _champion_score(metrics: dict[str, Any], objective, trial) -> tuple[str, float]:
    """The champion's test counterpart of the objective, else the best trial's score."""
    test_name = "test_" + objective.name.removeprefix("val_")
    if isinstance(metrics.get(test_name), (int, float)):
        return test_name, float(metrics[test_name])
    return objective.name, float(trial.score)


def train_champion(template, config, sweep: Sweep, directory, tuner, strategy, objective, verbose):
    """Retrains the best trial's hyperparameters on train+validation and exports the result."""
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise ValueError(
            f"No trial of the sweep in {directory} completed, so there is no champion; "
            "see leaderboard.md for why the trials failed."
        )
    trial = best[0]
    champion_config = dataclasses.replace(
        tuner.hypermodel.config_for(trial.hyperparameters), epochs=best_epochs(trial)
    )
    hyperparameters = {
        k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")
    }
    extra = {
        "sweep": {
            "folder": str(directory),
            "tuner": sweep.tuner,
            "objective": f"{objective.name}:{objective.direction}",
            "best_trial": trial.trial_id,
            "best_trial_score": trial.score,
            "best_hyperparameters": hyperparameters,
            "refit": "train+validation",
            "refit_epochs": champion_config.epochs,
        }
    }

    def check(metrics: dict[str, Any]) -> None:
        if sweep.min_score is None:
            return
        metric, score = _champion_score(metrics, objective, trial)
        worse = score > sweep.min_score if objective.direction == "min" else score < sweep.min_score
        if worse or np.isnan(score):
            raise ValueError(
                f"The champion's {metric} is {score:.4g}, worse than --min-score "
                f"{sweep.min_score}; it was not exported (its metrics are in "
                f"{directory / 'champion' / 'metrics.json'})."
            )

    champion = directory / "champion"
    if (champion / "metrics.json").exists():
        info = run.read_run(champion)
        if info.get("extra", {}).get("sweep", {}).get("best_trial") == trial.trial_id:
            # Already retrained; export it now if an earlier --min-score refused it.
            metrics = files.read_json(champion / "metrics.json")
            check(metrics)
            if info["status"] != "finished":
                run.export(template, champion, metrics=metrics, overwrite=True)
                files.write_json(champion / "run.json", {**info, "status": "finished"})
            return champion
        shutil.rmtree(champion)  # the sweep went on since: retrain from its new best
    resume = champion if (champion / "run.json").exists() else None
    return run.train(
        template,
        champion_config,
        resume=resume,
        strategy=strategy,
        verbose=verbose,
        run_dir=None if resume else champion,
        refit=True,
        before_export=check,
        extra_info=extra,
    )
