"""The keras-tuner sweep in one process: fixed fields, champion, min-score, resume, failures."""

import dataclasses
import json
import types

import keras
import keras_tuner
import numpy as np
import pytest
from ktemplate.templates import image_cnn
from ktemplate.tuning import report, search

from ktemplate import cli, files

# One epoch of a narrow CNN on the digits: a trial takes a few seconds on a CPU.
TINY = {"filters": 8, "dense_units": 16, "epochs": 1, "members": 1}


def _sweep(**kwargs):
    return search.Sweep(template="image_cnn", max_trials=3, max_epochs=1, **kwargs)


def _runs(folder, trial_id):
    return files.read_json(folder / "trials" / f"{trial_id}.json")["runs"]


@pytest.fixture(scope="module")
def rejected_sweep(tmp_path_factory):
    """A 3-trial sweep whose champion is refused by an impossible --min-score."""
    out = tmp_path_factory.mktemp("sweeps")
    config = dataclasses.replace(image_cnn.Config(), **TINY)
    # dense_units=16 is outside the searched choices: fixing it must still work.
    fixed = {"filters": 8, "dense_units": 16}
    with pytest.raises(ValueError, match="worse than --min-score") as error:
        search.tune(image_cnn, config, fixed, _sweep(min_score=1.01), output_dir=out, verbose=0)
    return out / "image_cnn" / "sweeps" / "random", config, fixed, str(error.value)


def test_sweep_runs_each_trial_once_with_fixed_fields(rejected_sweep):
    folder, _, _, _ = rejected_sweep
    rows = report.trials(folder)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    assert len({r["trial"] for r in rows}) == 3
    for row in rows:
        assert row["hyperparameters"]["filters"] == 8
        assert row["hyperparameters"]["dense_units"] == 16
        assert row["runs"] == 1 and row["epochs_run"] == 1 and row["fit_seconds"] > 0
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)  # val_accuracy: best first
    # Searched values differ between trials; fixed ones never do.
    assert len({json.dumps(r["hyperparameters"], sort_keys=True) for r in rows}) == 3


def test_leaderboard_files_and_hparams_logs(rejected_sweep):
    folder, _, _, _ = rejected_sweep
    csv_lines = (folder / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,status,score") and len(csv_lines) == 4
    markdown = (folder / "leaderboard.md").read_text()
    assert "| rank | trial | status | val_accuracy |" in markdown
    for row in report.trials(folder):
        events = list((folder / "logs" / row["trial"]).rglob("events.out.tfevents.*"))
        assert events, f"no TensorBoard logs for trial {row['trial']}"


def test_min_score_refuses_the_export(rejected_sweep):
    folder, _, _, message = rejected_sweep
    champion = folder / "champion"
    assert "test_accuracy" in message
    assert (champion / "metrics.json").exists()
    assert files.read_json(champion / "run.json")["status"] == "rejected"
    assert not (champion / "export").exists()


def test_rerun_keeps_trials_and_exports_the_champion(rejected_sweep):
    folder, config, fixed, _ = rejected_sweep
    before = files.read_json(folder / "champion" / "metrics.json")
    search.tune(image_cnn, config, fixed, _sweep(), output_dir=folder.parents[2], verbose=0)
    rows = report.trials(folder)
    assert len(rows) == 3 and all(r["runs"] == 1 for r in rows)  # nothing re-ran
    champion = folder / "champion"
    assert files.read_json(champion / "metrics.json") == before  # not retrained either
    manifest = files.read_json(champion / "export" / "manifest.json")
    sweep = manifest["sweep"]
    assert sweep["best_trial"] == rows[0]["trial"]
    assert sweep["best_hyperparameters"] == rows[0]["hyperparameters"]
    assert sweep["refit"] == "train+validation" and sweep["refit_epochs"] == rows[0]["best_epoch"]
    assert manifest["config"]["dense_units"] == 16


def _refuse(constant):
    raise ValueError(f"{constant} is not strict JSON")


def test_champion_baseline_is_fitted_on_its_data_and_every_file_is_strict_json(rejected_sweep):
    folder = rejected_sweep[0]
    baseline = files.read_json(folder / "champion" / "metrics.json")["baseline"]
    # The champion trains on train+validation: so does its baseline (settings picked on val).
    assert baseline["settings"]["fitted_on"] == "train+validation"
    assert len(baseline["settings"]["tried"]) == 12
    paths = list(folder.rglob("*.json"))
    assert len(paths) > 10  # keras-tuner's trials and oracle, the champion's run files
    for path in paths:
        json.loads(path.read_text(), parse_constant=_refuse)


def test_rerun_with_other_settings_is_refused(rejected_sweep):
    folder, config, fixed, _ = rejected_sweep
    with pytest.raises(ValueError, match="other settings"):
        search.tune(
            image_cnn, config, fixed, _sweep(objective="val_loss"), output_dir=folder.parents[2]
        )


def test_report_command_prints_the_leaderboard(rejected_sweep, capsys):
    folder, _, _, _ = rejected_sweep
    assert cli.main(["report", str(folder)]) == 0
    assert capsys.readouterr().out.count("| COMPLETED |") == 3


def test_hyperband_needs_a_number_of_epochs(tmp_path):
    # image_cnn's epochs=auto is resolved per trial; hyperband needs its maximum up front.
    sweep = search.Sweep(template="image_cnn", tuner="hyperband")
    with pytest.raises(ValueError, match="add --max-epochs N"):
        search.tune(image_cnn, image_cnn.Config(), {}, sweep, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_report_of_a_non_sweep_folder(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def _nan_template():
    """image_cnn whose loss is NaN: every trial fails."""
    module = types.SimpleNamespace(**vars(image_cnn))

    def build_model(config, spec):
        model = image_cnn.build_model(config, spec)
        model.compile(
            optimizer="adam",
            loss=lambda y, p: keras.ops.mean(p) * np.nan,
            metrics=["accuracy"],
        )
        return model

    module.build_model = build_model
    return module


def test_nan_trials_are_recorded_as_failed_and_the_sweep_stops(tmp_path):
    config = dataclasses.replace(image_cnn.Config(), **TINY)
    sweep = _sweep(max_consecutive_failed_trials=2)
    with pytest.raises(ValueError, match="The sweep stopped"):
        search.tune(_nan_template(), config, {}, sweep, output_dir=tmp_path, verbose=0)
    folder = tmp_path / "image_cnn" / "sweeps" / "random"
    rows = report.trials(folder)
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    assert all("NaN" in r["message"][0] for r in rows)
    assert "Failed trials:" in (folder / "leaderboard.md").read_text()
    assert not (folder / "champion").exists()


def test_objective_direction_and_validation():
    assert search.objective_for(image_cnn, None).direction == "max"  # val_accuracy
    assert search.objective_for(image_cnn, "val_loss").direction == "min"
    assert search.objective_for(image_cnn, "val_auc:min").direction == "min"
    with pytest.raises(ValueError, match="not a validation metric"):
        search.objective_for(image_cnn, "accuracy")
    with pytest.raises(ValueError, match="min or max"):
        search.objective_for(image_cnn, "val_loss:up")


@pytest.mark.parametrize("tuner", search.TUNER_CLASSES)
def test_every_tuner_builds_over_the_search_space(tuner, tmp_path):
    config = dataclasses.replace(image_cnn.Config(), **TINY)
    made = search.make_tuner(
        image_cnn,
        config,
        search.Sweep(template="image_cnn", tuner=tuner, max_trials=2),
        tmp_path,
        strategy=None,
        fixed={"filters": 8},
        verbose=0,
    )
    space = {hp.name: type(hp).__name__ for hp in made.oracle.get_space().space}
    assert space["filters"] == "Fixed"
    assert set(search.searched_names(image_cnn)) <= set(space)


def test_unknown_tuner(tmp_path):
    with pytest.raises(ValueError, match="Unknown tuner 'optuna'"):
        search.make_tuner(
            image_cnn,
            image_cnn.Config(),
            search.Sweep("image_cnn", tuner="optuna"),
            tmp_path,
            None,
            {},
        )


def test_best_epochs_counts_hyperband_initial_epochs():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("tuner/initial_epoch", 4)
    trial = types.SimpleNamespace(hyperparameters=hp, best_step=2)
    assert search.best_epochs(trial) == 7


def test_tpu_batches_drop_the_remainder_but_the_test_split_keeps_every_example(monkeypatch):
    import tensorflow as tf

    from ktemplate import run

    config = dataclasses.replace(image_cnn.Config(), batch_size=100, **TINY)
    strategy = tf.distribute.get_strategy()
    monkeypatch.setattr(run, "_needs_static_batches", lambda s: True)  # stand in for a TPU
    data = run.load_data(image_cnn, config, strategy)
    assert {int(x.shape[0]) for x, _ in data.train} == {100}
    assert {int(x.shape[0]) for x, _ in data.val} == {100}
    test_sizes = [int(x.shape[0]) for x, _ in data.test]
    assert sum(test_sizes) == data.spec["sizes"]["test"]
