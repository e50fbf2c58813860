import dataclasses
import importlib.util
import json
import re
import textwrap

import keras
import keras_tuner
import numpy as np
import pytest
from ktemplate.pipelines import timeseries
from ktemplate.templates import timeseries_lstm

from ktemplate import cli, convert, forecasting, run, serving, training
from ktemplate import files as files_lib
from ktemplate.layers import SeasonalLags
from tests.helpers.fresh import serve_in_fresh_process

FAST = dict(epochs=1, batch_size=64, early_stopping_patience=0, window=16, horizon=4, units=8)
FAST.update(forecast_base="last", target_transform="none")  # no candidates to fit first


def test_search_space_defaults_equal_config():
    config = timeseries_lstm.Config()
    assert timeseries_lstm.search_space(keras_tuner.HyperParameters(), config) == config
    custom = timeseries_lstm.Config(cell="gru", units=32, window=52)
    assert timeseries_lstm.search_space(keras_tuner.HyperParameters(), custom) == custom


def test_search_space_drives_the_config():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("cell", "gru")
    hp.Fixed("window_seasons", 3.0)
    hp.Fixed("layers", 3)
    config = timeseries_lstm.search_space(hp, timeseries_lstm.Config())
    assert (config.cell, config.window_seasons, config.layers) == ("gru", 3.0, 3)


SPEC = {
    "window": 12,
    "horizon": 3,
    "features": ["y", "x"],
    "target": "y",
    "target_index": 0,
    "mean": [100.0, 5.0],
    "std": [10.0, 2.0],
    "sizes": {"train": 100, "val": 10, "test": 10},
}


def test_model_shapes_and_level_free_forecasts():
    model = timeseries_lstm.build_model(timeseries_lstm.Config(units=8), SPEC)
    assert model.input_shape == (None, 12, 2)
    assert model.output_shape == (None, 3)
    assert isinstance(model.layers[1], keras.layers.Normalization)
    x = np.random.default_rng(0).normal(100, 10, (4, 12, 2)).astype("float32")
    shifted = x.copy()
    shifted[..., 0] += 30.0  # the whole target history 30 units higher
    # relative=True: the forecast moves by the same 30 units (3 std in normalized units).
    delta = model.predict(shifted, verbose=0) - model.predict(x, verbose=0)
    np.testing.assert_allclose(delta, 3.0, atol=1e-4)


def test_mixed_precision_keeps_float32_forecasts():
    config = timeseries_lstm.Config(units=8, mixed_precision="mixed_float16")
    training.set_global_options(config)
    model = timeseries_lstm.build_model(config, SPEC)
    assert model.get_layer(index=3).compute_dtype == "float16"  # the LSTM
    assert model.output.dtype == "float32"


def test_gru_stack_with_conv_front_end_and_dense_trains_a_step():
    config = timeseries_lstm.Config(
        cell="gru",
        layers=2,
        units=8,
        conv_filters=4,
        batch_norm=True,
        dense_units=8,
        recurrent_dropout=0.1,
        relative=False,
        loss="huber",
        l2=1e-4,
    )
    model = timeseries_lstm.build_model(config, SPEC)
    assert [type(layer).__name__ for layer in model.layers].count("GRU") == 2
    x = np.random.default_rng(0).normal(100, 10, (8, 12, 2)).astype("float32")
    history = model.fit(x, np.zeros((8, 3), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert "mae" in history.history


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny real training run on the CO2 series, shared by the export tests."""
    out = tmp_path_factory.mktemp("runs")
    return run.train(timeseries_lstm, timeseries_lstm.Config(**FAST), output_dir=out, verbose=0)


def test_run_folder_and_rolling_origin_metrics(trained_run):
    for name in (
        "forecasts.png",
        "metrics.json",
        "checkpoints/best.keras",
        "export/saved_model.pb",
    ):
        assert (trained_run / name).exists(), name
    metrics = files_lib.read_json(trained_run / "metrics.json")
    spec = files_lib.read_json(trained_run / "spec.json")
    test_start, test_end = spec["parts"]["test"]
    assert spec["parts"] == {"train": [0, 1598], "val": [1598, 1941], "test": [1941, 2284]}
    assert metrics["test_origins"] == test_end - test_start - 4 + 1  # every test origin
    assert metrics["missing_interpolated"] == 59
    assert len(metrics["test_mae_by_step"]) == 4
    assert set(metrics["baselines"]) == {"naive", "seasonal_naive"}
    assert metrics["test_seasonal_naive_mae"] == metrics["baselines"]["seasonal_naive"]["mae"]
    assert metrics["test_mase"] == pytest.approx(metrics["test_mae"] / metrics["mase_scale"], 1e-3)
    # The seasonal-naive baseline on the same origins, recomputed from the raw series.
    series = timeseries.load_series("co2")
    starts = np.arange(test_start, test_end - 4 + 1)
    actual = np.stack([series.values[o : o + 4, 0] for o in starts])
    forecast = np.stack([series.values[o - 52 : o - 48, 0] for o in starts])
    assert metrics["test_seasonal_naive_mae"] == pytest.approx(
        np.abs(forecast - actual).mean(), abs=1e-4
    )


def test_residual_scale_auto_is_chosen_on_validation_and_kept_in_the_checkpoint(trained_run):
    spec = files_lib.read_json(trained_run / "spec.json")
    record = spec["resolved"]["residual_scale"]
    assert spec["residual_scale"] == record["value"] in forecasting.RESIDUAL_SCALES
    scores = dict(
        (float(s), float(mae))
        for s, mae in re.findall(r"([\d.]+) ([\d.e+-]+)(?:,|$)", record["reason"])
    )
    assert sorted(scores) == list(forecasting.RESIDUAL_SCALES)
    assert scores[record["value"]] == min(scores.values())
    # The best checkpoint is the scaled model: its validation MAE is the chosen scale's.
    data = run.load_data(timeseries_lstm, run.recorded_config(timeseries_lstm, trained_run))
    model = run.load_best_model(trained_run)
    starts = timeseries.origins(tuple(spec["parts"]["val"]), spec["window"], spec["horizon"])
    forecast, actual = timeseries_lstm.forecast_at(model, data, starts)
    assert np.abs(forecast - actual).mean() == pytest.approx(scores[record["value"]], rel=1e-3)


def test_a_resumed_run_does_not_scale_the_correction_twice(tmp_path):
    config = timeseries_lstm.Config(**FAST, residual_scale=0.5)
    run_dir = run.train(timeseries_lstm, config, output_dir=tmp_path, verbose=0)
    assert files_lib.read_json(run_dir / "calibrated.json")["residual_scale"] == 0.5
    data = run.load_data(timeseries_lstm, run.recorded_config(timeseries_lstm, run_dir))
    model = run.load_best_model(run_dir)
    weights = model.get_layer("correction").get_weights()
    assert run._calibrate(timeseries_lstm, model, data, run_dir)["residual_scale"] == 0.5
    for before, after in zip(weights, model.get_layer("correction").get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # read back: not halved again
    (run_dir / "calibrated.json").unlink()  # without the record the weights would be halved
    run._calibrate(timeseries_lstm, model, data, run_dir)
    np.testing.assert_allclose(model.get_layer("correction").get_weights()[0], weights[0] / 2)


def test_residual_scale_zero_serves_the_classical_base_alone(tmp_path):
    config = timeseries_lstm.Config(**FAST, residual_scale=0.0)
    run_dir = run.train(timeseries_lstm, config, output_dir=tmp_path, verbose=0)
    metrics = files_lib.read_json(run_dir / "metrics.json")
    # The last-value base with no correction is the naive forecast, on every test origin.
    assert metrics["test_mae"] == pytest.approx(metrics["test_naive_mae"], rel=1e-5)
    kernel, bias = run.load_best_model(run_dir).get_layer("correction").get_weights()
    assert not kernel.any() and not bias.any()
    assert "residual_scale" not in files_lib.read_json(run_dir / "spec.json")["resolved"]
    with pytest.raises(ValueError, match="needs relative"):
        timeseries_lstm.Config(relative=False, residual_scale=0.5)


def test_manifest(trained_run):
    manifest = files_lib.read_json(trained_run / "export" / "manifest.json")
    assert manifest["template"] == "timeseries_lstm" and manifest["dataset"] == "co2"
    assert (manifest["window"], manifest["horizon"]) == (16, 4)
    assert manifest["features"] == ["co2"] and manifest["target"] == "co2"
    assert manifest["input"]["kind"] == "window"
    assert manifest["endpoints"]["serve"][0] == {
        "shape": [None, 16, 1],
        "dtype": "float32",
        "name": "window",
    }


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    # The project must not be needed to serve the export: make importing it fail.
    for name in ("ktemplate", "templates", "pipelines", "tuning"):
        sys.modules[name] = None
    import numpy as np
    import tensorflow as tf
    export_dir, windows_path = sys.argv[1:3]
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](window=tf.constant(np.load(windows_path)))
    print(json.dumps(out["forecast"].numpy().tolist()))
    """
)


def test_export_forecasts_in_original_units_in_a_fresh_process(trained_run, tmp_path):
    spec = files_lib.read_json(trained_run / "spec.json")
    series = timeseries.load_series("co2")
    starts = timeseries.origins(tuple(spec["parts"]["test"]), 16, 4)
    windows, actual = timeseries.window_arrays(series.values, 0, starts, 16, 4)
    np.save(tmp_path / "windows.npy", windows.astype("float32"))
    served = np.array(
        serve_in_fresh_process(
            FRESH_PROCESS, tmp_path, str(trained_run / "export"), str(tmp_path / "windows.npy")
        )
    )

    model = run.load_best_model(trained_run)
    normalized = model.predict(windows.astype("float32"), verbose=0).astype("float64")
    expected = timeseries_lstm.to_original_units(normalized, spec)  # log target or not
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-3)
    # The served forecasts reproduce the run's test MAE: the export is what was evaluated.
    metrics = files_lib.read_json(trained_run / "metrics.json")
    assert np.abs(served - actual).mean() == pytest.approx(metrics["test_mae"], abs=1e-3)


def test_cli_predict_npy_and_csv_windows(trained_run, tmp_path, capsys):
    series = timeseries.load_series("co2")
    np.save(tmp_path / "last.npy", series.values[-16:, 0])  # 1-D works for one feature
    recent = zip(series.time[-40:], series.values[-40:, 0], strict=True)
    lines = ["date,co2"] + [f"{t},{v}" for t, v in recent]
    (tmp_path / "last.csv").write_text("\n".join(lines) + "\n")  # longer: the last 16 rows
    export = str(trained_run / "export")
    assert (
        cli.main(["predict", export, str(tmp_path / "last.npy"), str(tmp_path / "last.csv")]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows[0]["forecast"]) == 4
    np.testing.assert_allclose(rows[0]["forecast"], rows[1]["forecast"], rtol=1e-6)
    assert abs(rows[0]["forecast"][0] - series.values[-1, 0]) < 10  # ppm, not normalized units
    # Numbers only, no header: the columns are the manifest's features.
    (tmp_path / "plain.csv").write_text("\n".join(str(v) for v in series.values[-16:, 0]))
    assert cli.main(["predict", export, str(tmp_path / "plain.csv")]) == 0
    (plain,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    np.testing.assert_allclose(plain["forecast"], rows[0]["forecast"], rtol=1e-6)

    np.save(tmp_path / "short.npy", series.values[-5:])
    (tmp_path / "other.csv").write_text("date,temp\n1,2\n")
    for name, message in [
        ("short.npy", "has 5 steps; the export needs the last 16"),
        ("other.csv", "no column(s) co2"),
    ]:
        assert cli.main(["predict", export, str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err


def write_sales(path, steps=160, shuffle_rows=False):
    t = np.arange(steps)
    rng = np.random.default_rng(0)
    price = 5 + np.sin(t / 5)
    sales = 50 + 0.1 * t + 10 * np.sin(2 * np.pi * t / 7) - 2 * price + rng.normal(0, 0.5, steps)
    dates = np.datetime64("2024-01-01") + t
    rows = [f"{d},{p:.3f},{s:.3f}" for d, p, s in zip(dates, price, sales, strict=True)]
    path.write_text("date,price,sales\n" + "\n".join(rows) + "\n")
    return path


def test_multivariate_csv_end_to_end(tmp_path, capsys):
    csv = write_sales(tmp_path / "sales.csv")
    args = ["train", "timeseries_lstm", "--dataset", f"csv:{csv}", "--output-dir", str(tmp_path)]
    for key, value in {
        **FAST,
        "window": 14,
        "season": 7,
        "time_column": "date",
        "target_column": "sales",
        "feature_columns": "price",
    }.items():
        args += ["--set", f"{key}={value}"]
    assert cli.main(args) == 0
    (run_dir,) = (tmp_path / "timeseries_lstm").iterdir()
    manifest = files_lib.read_json(run_dir / "export" / "manifest.json")
    assert manifest["features"] == ["sales", "price"] and manifest["target"] == "sales"
    assert manifest["endpoints"]["serve"][0]["shape"] == [None, 14, 2]
    capsys.readouterr()
    assert cli.main(["predict", str(run_dir / "export"), str(csv)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(row["forecast"]) == 4


BAD_INPUTS = {
    "series too short": ("short", {}, "too short for window=16 and horizon=4"),
    "non-numeric target": ("text", {}, "'sales' of .* is not numeric: data row 5 holds 'about 12'"),
    "missing column": ("good", {"feature_columns": "promo"}, "'promo'.* not found"),
    "unsorted time": ("unsorted", {}, "is not sorted"),
    "duplicated time": ("duplicated", {}, "duplicated time stamps"),
    "all-NaN column": ("empty_price", {}, "'price' .* no values at all"),
    "horizon <= 0": ("good", {"horizon": 0}, "'horizon' must be > 0, got 0"),
    "window <= 0": ("good", {"window": -3}, "'window' must be > 0, got -3"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_leaves_nothing(case, tmp_path, capsys):
    kind, overrides, message = BAD_INPUTS[case]
    csv = write_sales(tmp_path / "data.csv", steps=25 if kind == "short" else 160)
    lines = csv.read_text().splitlines()
    if kind == "text":
        lines[5] = lines[5].rsplit(",", 1)[0] + ",about 12"
    elif kind == "unsorted":
        lines[3], lines[4] = lines[4], lines[3]
    elif kind == "duplicated":
        lines[4] = lines[3]
    elif kind == "empty_price":
        lines = [lines[0]] + [f"{r.split(',')[0]},,{r.split(',')[2]}" for r in lines[1:]]
    csv.write_text("\n".join(lines) + "\n")
    settings = {
        **FAST,
        "time_column": "date",
        "target_column": "sales",
        "feature_columns": "price",
        "season": 7,
        **overrides,
    }
    args = ["train", "timeseries_lstm", "--dataset", f"csv:{csv}", "--output-dir", str(tmp_path)]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ktemplate: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "timeseries_lstm").exists()  # nothing half-written


def test_every_config_field_has_a_comment():
    from ktemplate.config import field_comments

    comments = field_comments(timeseries_lstm.Config)
    fields = dataclasses.fields(timeseries_lstm.Config)
    assert [f.name for f in fields if not comments.get(f.name)] == []


def write_elec_equip(path, rows=None):
    """statsmodels' bundled Euro-area electrical equipment orders: 257 real monthly values."""
    from statsmodels.datasets import elec_equip

    frame = elec_equip.load().data.iloc[:rows]
    lines = [f"{d:%Y-%m-%d},{v}" for d, v in zip(frame.index, frame.iloc[:, 0], strict=True)]
    path.write_text("date,orders\n" + "\n".join(lines) + "\n")
    return path


def monthly_config(csv, **overrides):
    settings = {"time_column": "date", "target_column": "orders", **overrides}
    return timeseries_lstm.Config(dataset=f"csv:{csv}", **settings)


def test_monthly_csv_resolves_season_horizon_window(tmp_path):
    data = timeseries_lstm.load_data(monthly_config(write_elec_equip(tmp_path / "m.csv")), 32)
    spec = data.spec
    assert (spec["season"], spec["horizon"], spec["window"]) == (12, 12, 24)
    assert spec["frequency"] == "monthly" and spec["warnings"] == []
    assert spec["resolved"]["season"]["reason"].startswith("monthly time stamps")
    assert "log-log slope" in spec["resolved"]["target_transform"]["reason"]
    # The weekly CO2 series keeps its recorded defaults.
    co2 = timeseries_lstm.load_data(timeseries_lstm.Config(), 32).spec
    assert (co2["season"], co2["horizon"], co2["window"]) == (52, 13, 104)


def test_a_set_season_that_contradicts_the_dates_warns(tmp_path):
    csv = write_elec_equip(tmp_path / "m.csv")
    spec = timeseries_lstm.load_data(monthly_config(csv, season=52), 32).spec
    assert spec["season"] == 52  # the user's value wins
    (warning,) = spec["warnings"]
    assert "season=52 was set" in warning and "monthly" in warning and "12 steps" in warning


def test_a_short_series_gets_shorter_windows_with_a_warning(tmp_path):
    csv = write_elec_equip(tmp_path / "short.csv", rows=60)
    spec = timeseries_lstm.load_data(monthly_config(csv), 32).spec
    assert spec["horizon"] == 9 and spec["window"] < 24
    assert spec["sizes"]["train"] >= timeseries_lstm.MIN_TRAIN_WINDOWS
    assert any("too short for window=24 and horizon=12" in w for w in spec["warnings"])
    assert spec["resolved"]["window"]["reason"] == "shortened to fit 60 steps"


def test_rows_without_dates_assume_no_season_and_say_so(tmp_path):
    csv = tmp_path / "plain.csv"
    csv.write_text("y\n" + "\n".join(str(50 + (i % 5) + 0.1 * i) for i in range(120)) + "\n")
    spec = timeseries_lstm.load_data(
        timeseries_lstm.Config(dataset=f"csv:{csv}", target_column="y"), 32
    ).spec
    assert spec["season"] == 1 and spec["frequency"] == "none"
    assert any("no season is assumed" in w for w in spec["warnings"])


def write_growing_swing(path, steps=168):
    """Monthly series whose seasonal swing grows with its level (multiplicative season)."""
    t = np.arange(steps)
    rng = np.random.default_rng(1)
    level = 100 * np.exp(0.012 * t)
    y = level * (1 + 0.25 * np.sin(2 * np.pi * t / 12)) * np.exp(rng.normal(0, 0.02, steps))
    dates = [f"{2000 + i // 12}-{i % 12 + 1:02d}-01" for i in t]
    rows = [f"{d},{v:.2f}" for d, v in zip(dates, y, strict=True)]
    path.write_text("month,passengers\n" + "\n".join(rows))
    return path


def swing_config(csv, **settings):
    """A Config for `write_growing_swing`'s CSV."""
    return timeseries_lstm.Config(
        dataset=f"csv:{csv}", time_column="month", target_column="passengers", **settings
    )


def test_log_transform_inside_the_model_serves_original_units(tmp_path, capsys):
    import tensorflow as tf

    csv = write_growing_swing(tmp_path / "p.csv")
    args = ["train", "timeseries_lstm", "--dataset", f"csv:{csv}", "--output-dir", str(tmp_path)]
    for key, value in {
        "epochs": 2,
        "units": 8,
        "time_column": "month",
        "target_column": "passengers",
        "target_transform": "log",
    }.items():
        args += ["--set", f"{key}={value}"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "auto: season=12 (monthly time stamps" in out
    # forecast_base=auto: every base with the set log target, by short fits on validation.
    assert "auto: forecast_base=" in out and "ets base, log target" in out
    (run_dir,) = (tmp_path / "timeseries_lstm").iterdir()
    spec = files_lib.read_json(run_dir / "spec.json")
    config = files_lib.read_json(run_dir / "config.json")
    assert config["target_transform"] == "log" and config["season"] == 12  # resolved values
    metrics = files_lib.read_json(run_dir / "metrics.json")
    series = timeseries.load_series(f"csv:{csv}", "month", "", "passengers")
    starts = timeseries.origins(tuple(spec["parts"]["test"]), spec["window"], spec["horizon"])
    windows, actual = timeseries.window_arrays(
        series.values, 0, starts, spec["window"], spec["horizon"]
    )
    loaded = tf.saved_model.load(str(run_dir / "export"))
    served = loaded.serve(tf.constant(windows, tf.float32))["forecast"].numpy()
    assert np.abs(served - actual).mean() == pytest.approx(metrics["test_mae"], rel=1e-3)
    assert served.min() > 50  # passengers, not log or normalized units
    # MASE and the baselines use the resolved monthly season.
    assert metrics["mase_scale"] == pytest.approx(
        forecasting.mase_scale(series.values[: spec["parts"]["train"][1], 0], 12), abs=1e-4
    )
    baseline = metrics["baseline"]
    assert baseline["settings"]["season"] == 12
    assert set(baseline["test_mae_by_name"]) >= {"naive", "seasonal naive (season 12)"}
    assert baseline["comparison"]["metric"] == "test_mae"
    assert baseline["comparison"]["model"] == pytest.approx(metrics["test_mae"], abs=1e-4)
    lines = out.strip().splitlines()  # the sentence, then (when it loses) what to try
    after = lines[lines.index(baseline["summary"]) + 1 :]
    if baseline.get("validation_note"):  # the classical method won on validation too
        assert after.pop(0) == baseline["validation_note"]
    assert all(line.startswith("Try: --set ") for line in after)
    assert "Try: --set target_transform=log " not in after  # log is in force: never suggested
    assert baseline["comparison"]["test"] == "Diebold-Mariano"
    assert baseline["comparison"]["n"] == metrics["test_origins"]


def test_seasonal_base_forecasts_differences_from_seasonal_naive():
    spec = {**SPEC, "window": 12, "horizon": 5, "season": 4}
    config = timeseries_lstm.Config(units=4, forecast_base="season", dropout=0.0)
    model = timeseries_lstm.build_model(config, spec)
    x = np.random.default_rng(0).normal(100, 10, (3, 12, 2)).astype("float32")
    for layer in model.layers:  # zero every weight: the changes are 0, the base remains
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    normalized = (x[:, :, 0] - spec["mean"][0]) / spec["std"][0]
    expected = normalized[:, [8, 9, 10, 11, 8]]  # one season back, repeated past a season
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)


def test_seasonal_base_needs_a_season_in_the_window(tmp_path):
    csv = write_elec_equip(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="forecast_base=season takes the seasonal-naive base"):
        timeseries_lstm.load_data(monthly_config(csv, forecast_base="season", window=6), 32)


def write_half_hourly(path, weeks=6, weekly=True):
    """Half-hourly demand: a daily cycle, and (when `weekly`) quieter weekends."""
    import pandas as pd

    steps = weeks * 336
    time = pd.date_range("2000-06-05", periods=steps, freq="30min")
    t = np.arange(steps)
    rng = np.random.default_rng(0)
    daily = 10 * np.sin(2 * np.pi * t / 48)
    weekend = np.where((t // 48) % 7 >= 5, -25.0, 0.0) if weekly else 0.0
    y = 100 + daily + weekend + rng.normal(0, 1, steps)
    rows = [f"{s:%Y-%m-%d %H:%M},{v:.3f}" for s, v in zip(time, y, strict=True)]
    path.write_text("time,demand\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("weekly, season", [(True, 336), (False, 48)])
def test_half_hourly_season_is_chosen_on_validation(tmp_path, weekly, season):
    csv = write_half_hourly(tmp_path / "demand.csv", weekly=weekly)
    config = timeseries_lstm.Config(
        dataset=f"csv:{csv}", time_column="time", target_column="demand"
    )
    spec = timeseries_lstm.load_data(config, 32).spec
    assert spec["frequency"] == "30-minute" and spec["horizon"] == 48
    assert spec["season"] == season
    reason = spec["resolved"]["season"]["reason"]
    assert "30-minute time stamps" in reason and "seasonal naive validation MAE" in reason
    assert "at 48 steps" in reason and "at 336 steps" in reason
    assert forecasting.season_candidates("30-minute", spec["parts"]["train"][1]) == [48, 336]


def test_seasonal_lags_take_each_season_back_from_the_window():
    window = np.arange(20, dtype="float32").reshape(2, 10, 1)
    lags = SeasonalLags(0, [2, 4], 3)(window).numpy()
    # season 2: steps 8, 9, 8; season 4: steps 6, 7, 8 (one season before each step ahead)
    np.testing.assert_array_equal(lags[0], [8, 9, 8, 6, 7, 8])
    np.testing.assert_array_equal(lags[1], lags[0] + 10)
    with pytest.raises(ValueError, match="a season of 12 steps needs a window holding one"):
        SeasonalLags(0, [12], 3)(window)


def test_sub_daily_recurrent_layers_read_two_days_and_the_head_sees_both_seasons(tmp_path):
    csv = write_half_hourly(tmp_path / "demand.csv")
    config = timeseries_lstm.Config(
        dataset=f"csv:{csv}", time_column="time", target_column="demand", units=4
    )
    data = run.load_data(timeseries_lstm, config)
    spec, config = data.spec, run.resolved_config(config, data.spec)
    assert (spec["season"], spec["window"], spec["lag_seasons"]) == (336, 672, [48, 336])
    assert config.recurrent_window == 96  # two days, not the window's two weeks
    assert "shortest season (48 steps)" in spec["resolved"]["recurrent_window"]["reason"]
    model = timeseries_lstm.build_model(config, spec)
    lstm = next(layer for layer in model.layers if isinstance(layer, keras.layers.LSTM))
    assert lstm.input.shape[1] == 96
    concat = next(layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate))
    assert concat.output.shape[-1] == 4 + 2 * 48  # the recurrent state and both seasons' lags
    # Without lags, and reading the whole window: the model before these options.
    plain = dataclasses.replace(config, seasonal_lags=False, recurrent_window=672)
    spec_plain = run.load_data(timeseries_lstm, plain).spec
    assert spec_plain["lag_seasons"] == []
    lstm = next(
        layer
        for layer in timeseries_lstm.build_model(plain, spec_plain).layers
        if isinstance(layer, keras.layers.LSTM)
    )
    assert lstm.input.shape[1] == 672
    with pytest.raises(ValueError, match="recurrent_window=700 is longer than the window"):
        run.load_data(timeseries_lstm, dataclasses.replace(config, recurrent_window=700))
    with pytest.raises(ValueError, match="recurrent_window=20 is longer than the window"):
        timeseries_lstm.Config(window=16, recurrent_window=20)  # before any data is read


def test_forecast_baseline_tries_seasonal_naive_at_every_season(tmp_path):
    csv = write_half_hourly(tmp_path / "demand.csv", weeks=5)
    config = timeseries_lstm.Config(
        dataset=f"csv:{csv}", time_column="time", target_column="demand", units=4
    )
    data = run.load_data(timeseries_lstm, config)
    config = run.resolved_config(config, data.spec)
    model = timeseries_lstm.build_model(config, data.spec)
    block = timeseries_lstm.baseline(model, data, config)
    methods = [t["method"] for t in block["settings"]["tried"]]
    assert methods[:3] == ["naive", "seasonal naive (season 48)", "seasonal naive (season 336)"]
    assert any(m.startswith("Holt-Winters") for m in methods)
    best = min(block["settings"]["tried"], key=lambda t: t["val_mae"])["val_mae"]
    assert block["settings"]["tried"][methods.index(block["name"])]["val_mae"] == best
    assert block["comparison"]["unit"] == "origins" and block["comparison"]["n"] > 10
    # An untrained model loses; what to try never repeats a value in force.
    assert block["comparison"]["verdict"] == "worse"
    assert not any("season=336" in line for line in block["suggestions"])


def test_holt_winters_base_forecasts_from_the_window_and_serves_it():
    spec = {**SPEC, "window": 24, "horizon": 5, "season": 12}
    spec["ets"] = {"alpha": 0.4, "beta": 0.1, "gamma": 0.3, "season": 12}
    config = timeseries_lstm.Config(units=4, forecast_base="ets", dropout=0.0)
    model = timeseries_lstm.build_model(config, spec)
    x = np.random.default_rng(0).normal(100, 10, (3, 24, 2)).astype("float32")
    for layer in model.layers:  # zero every weight: the changes are 0, the base remains
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    normalized = (x[:, :, 0] - spec["mean"][0]) / spec["std"][0]
    weights = forecasting.holt_winters_weights(24, 5, 12, 0.4, 0.1, 0.3)
    np.testing.assert_allclose(model.predict(x, verbose=0), normalized @ weights, atol=1e-4)


def test_linear_base_is_a_ridge_forecaster_fitted_on_train_and_kept_in_the_saved_model(
    tmp_path,
):
    csv = write_growing_swing(tmp_path / "p.csv")
    config = swing_config(csv, forecast_base="linear", target_transform="log", units=4)
    data = timeseries_lstm.load_data(config, 32)
    spec = data.spec
    weights = np.asarray(spec["linear"]["weights"])
    assert weights.shape == (spec["window"], spec["horizon"])
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-5)  # commutes with scaling
    assert spec["linear"]["ridge"] in forecasting.LINEAR_RIDGE
    model = timeseries_lstm.build_model(run.resolved_config(config, spec), spec)
    for weight in model.trainable_weights:  # the changes are 0: the base remains
        weight.assign(np.zeros(weight.shape, "float32"))
    x = data.series.values[None, : spec["window"]].astype("float32")
    logs = np.log(x[:, :, spec["target_index"]])
    t = spec["target_index"]
    base = ((logs - spec["mean"][t]) / spec["std"][t]) @ weights
    np.testing.assert_allclose(model.predict(x, verbose=0), base, atol=1e-4)
    # The base is a non-trainable weight, saved and loaded with the model.
    assert not any("base_weights" in w.path for w in model.trainable_weights)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), base, atol=1e-4)
    # On the train windows it does better than repeating the last value.
    target = np.log(data.series.values[:, t])
    ends = timeseries.origins(tuple(spec["parts"]["train"]), spec["window"], spec["horizon"])
    windows = np.stack([target[o - spec["window"] : o] for o in ends])
    actual = np.stack([target[o : o + spec["horizon"]] for o in ends])
    assert np.abs(windows @ weights - actual).mean() < np.abs(windows[:, -1:] - actual).mean()


def test_theta_base_is_fitted_on_train_and_served_from_the_raw_window(tmp_path):
    csv = write_growing_swing(tmp_path / "p.csv")
    config = swing_config(csv, forecast_base="theta", target_transform="log", units=4)
    spec = timeseries_lstm.load_data(config, 32).spec
    linear = spec["linear"]
    assert linear["alpha"] in forecasting.THETA_ALPHAS
    # A clean multiplicative season: the train part's profile (in normalized log units) beats
    # the window's few seasons on validation.
    assert linear["profile"] is not None and len(linear["profile"]) == spec["season"]
    weights = forecasting.theta_weights(
        spec["window"], spec["horizon"], 1, linear["alpha"], linear["theta"]
    )
    np.testing.assert_allclose(linear["weights"], weights, atol=1e-6)
    model = timeseries_lstm.build_model(run.resolved_config(config, spec), spec)
    for weight in model.trainable_weights:  # the changes are 0: the base remains
        weight.assign(np.zeros(weight.shape, "float32"))
    t = spec["target_index"]
    series = timeseries.load_series(f"csv:{csv}", "month", "", "passengers").values[:, t]
    starts = timeseries.origins(tuple(spec["parts"]["test"]), spec["window"], spec["horizon"])
    x = np.stack([series[o - spec["window"] : o] for o in starts])[..., None].astype("float32")
    normalized = (np.log(x[:, :, t]) - spec["mean"][t]) / spec["std"][t]
    profile = np.asarray(linear["profile"])
    phase = np.argmax(normalized @ forecasting.profile_phases(profile, spec["window"]), axis=1)
    np.testing.assert_array_equal(phase, (starts - spec["window"]) % 12)  # found, not given
    expected = (
        normalized @ weights + forecasting.profile_offsets(profile, spec["window"], weights)[phase]
    )
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)
    # Saved and served without the project: the profile travels in the layer's config.
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=1e-4)
    # The export serves it without the project, and LiteRT and ONNX take the phase's argmax
    # too (each checked in its runtime against the SavedModel).
    formats = ["saved_model"]
    if importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("ai_edge_litert"):
        formats += ["litert", "onnx"]
    serving.write_export(
        tmp_path / "export",
        model,
        timeseries_lstm.serving_endpoints(model, spec),
        {},
        convert=lambda folder: convert.write_formats(folder, timeseries_lstm, model, spec, formats),
    )
    np.save(tmp_path / "windows.npy", x)
    served = serve_in_fresh_process(
        FRESH_PROCESS, tmp_path, str(tmp_path / "export"), str(tmp_path / "windows.npy")
    )
    original = timeseries_lstm.to_original_units(expected, spec)
    np.testing.assert_allclose(served, original, rtol=1e-5)
    manifest = files_lib.read_json(tmp_path / "export" / "manifest.json")
    for fmt in formats[1:]:
        check = manifest["formats"][fmt]["check"]["forecast"]
        assert check["max_abs_diff"] <= check["tolerance"], fmt


def test_forecast_base_and_target_scale_are_candidates_chosen_on_validation(tmp_path):
    csv = write_growing_swing(tmp_path / "p.csv")
    config = swing_config(csv)
    spec = timeseries_lstm.load_data(config, 32).spec
    found = timeseries_lstm.candidates(run.resolved_config(config, spec), spec)
    assert sorted(found) == sorted(
        f"{b} base, {t} target" for b in ("last", "season", "ets", "theta") for t in ("none", "log")
    )
    fixed = swing_config(csv, forecast_base="ets", target_transform="none")
    spec = timeseries_lstm.load_data(fixed, 32).spec
    assert timeseries_lstm.candidates(fixed, spec) is None  # both set: nothing to choose
    assert spec["ets"]["season"] == 12 and 0 <= spec["ets"]["alpha"] <= 1
