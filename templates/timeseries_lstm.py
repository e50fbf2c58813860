"""Multi-step time series forecasting with an LSTM (or GRU), direct multi-output.

Task: from the last `window` steps of one or more series, forecast the next `horizon` values of
a target series at once (one output per step ahead, no feeding forecasts back in).

Data: by default statsmodels' bundled Mauna Loa CO2 series (2,284 weekly observations,
1958-2001; the 59 missing weeks are interpolated and counted in the metrics). Also `csv:PATH`
with `time_column`, `feature_columns` and `target_column` (univariate or multivariate). Splits
are chronological: train, then validation, then the test tail; normalization statistics come
from the train part only.

Model: normalization with the train part's mean/std inside the model; by default the window is
made relative to its last step and the model forecasts changes from the last known value
(level-free, so a trending series does not leave the range seen in training); an optional
causal Conv1D front end; stacked LSTM or GRU layers with dropout and recurrent dropout; a dense
head of size `horizon`. The loss is in normalized units.

Evaluation: rolling origin over the test tail (every test origin forecasts `horizon` steps);
MAE, RMSE and MASE in original units, beside the naive and seasonal-naive baselines on the
identical origins; `forecasts.png` plots forecasts against actuals.

Export: `serve` takes a raw window in original units, float32 [batch, window, features] (the
features in the manifest's order), and returns `forecast`, float32 [batch, horizon], in
original units.

Adapt it: `ktemplate new my_forecast --from timeseries_lstm`, then change `Config` defaults
(window, horizon, season), the data section (`load_data`) and `build_model`.

    ktemplate train timeseries_lstm
    ktemplate train timeseries_lstm --dataset csv:sales.csv --set time_column=date \
        --set target_column=sales --set feature_columns=price,promo --set season=7
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from ktemplate import forecasting, training
from ktemplate.config import TrainingConfig
from ktemplate.run import Data
from pipelines import timeseries

NAME = "timeseries_lstm"
TUNE_OBJECTIVE = "val_mae"  # what `ktemplate tune` optimizes by default (original units)

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "co2"  # co2 or csv:PATH
    time_column: str = ""  # CSV column of time stamps (numbers or dates); "" keeps row order
    feature_columns: str = ""  # comma-separated CSV input columns; the target is always one
    target_column: str = ""  # CSV column to forecast (co2: the co2 column)
    window: int = 104  # past steps the model sees (104 weeks = 2 years)
    horizon: int = 13  # steps forecast at once (13 weeks = a quarter)
    season: int = 52  # steps per season, for the seasonal-naive baseline and MASE (52 weeks)
    val_fraction: float = 0.15  # share of the steps in the validation part (after train)
    test_fraction: float = 0.15  # share of the steps in the test tail (the last steps)
    epochs: int = 40  # maximum epochs; early stopping may end training sooner
    batch_size: int = 32  # per-replica batch size (windows)
    learning_rate: float = 3e-3  # peak learning rate (cosine decay to 1% of it)
    early_stopping_patience: int = 10  # epochs without val_loss improvement
    l2: float = 0.0  # L2 penalty on kernels
    dropout: float = 0.1  # dropout between recurrent layers and before the head
    batch_norm: bool = False  # batch normalization after the Conv1D front end
    cell: Literal["lstm", "gru"] = "lstm"  # recurrent cell type
    layers: int = 1  # stacked recurrent layers
    units: int = 64  # units per recurrent layer
    recurrent_dropout: float = 0.0  # dropout on the recurrent state (slower when > 0)
    conv_filters: int = 0  # filters of a causal Conv1D front end; 0 removes it
    conv_kernel: int = 5  # kernel size of the Conv1D front end
    dense_units: int = 0  # units of a hidden dense layer before the head; 0 removes it
    relative: bool = True  # forecast changes from the window's last value (suits trends)
    loss: Literal["mse", "mae", "huber"] = "mse"  # training loss, in normalized units

    def __post_init__(self):
        super().__post_init__()
        for name in ("window", "horizon", "season", "layers", "units", "conv_kernel"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Config key '{name}' must be > 0, got {getattr(self, name)}.")
        if self.conv_filters < 0 or self.dense_units < 0:
            raise ValueError("Config keys conv_filters and dense_units must be >= 0.")
        if not 0.0 <= self.recurrent_dropout < 1.0:
            raise ValueError(
                f"Config key 'recurrent_dropout' must be in [0, 1), got {self.recurrent_dropout}."
            )
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(
                    f"Config key '{name}' must be in (0, 0.5), got {getattr(self, name)}."
                )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ForecastData(Data):
    """`Data` plus the whole series, for the rolling-origin evaluation and its baselines."""

    series: timeseries.Series | None = None


def load_data(config: Config, batch_size: int) -> ForecastData:
    """Loads the series, splits it in time and builds the windowed train/val/test pipelines.

    Statistics come from the train part only; only train windows are shuffled.
    """
    series = timeseries.load_series(
        config.dataset, config.time_column, config.feature_columns, config.target_column
    )
    steps = len(series.values)
    parts = timeseries.chronological_split(
        steps, config.window, config.horizon, config.val_fraction, config.test_fraction
    )
    mean, std = timeseries.train_stats(series.values, parts["train"][1])
    target = series.target_index
    forecasting.mase_scale(series.values[: parts["train"][1], target], config.season)
    spec = {
        "dataset": config.dataset,
        "window": config.window,
        "horizon": config.horizon,
        "season": config.season,
        "features": series.features,
        "target": series.target,
        "target_index": target,
        "mean": mean,
        "std": std,
        "steps": steps,
        "parts": {name: list(bounds) for name, bounds in parts.items()},
        "sizes": {
            name: len(timeseries.origins(bounds, config.window, config.horizon))
            for name, bounds in parts.items()
        },
        "time_span": [series.time[0], series.time[-1]] if series.time else None,
        "missing_interpolated": series.missing,
        "time_gaps": series.gaps,
    }

    def part(name: str, shuffle: bool) -> tf.data.Dataset:
        ds = timeseries.windows(
            series.values,
            target,
            parts[name],
            config.window,
            config.horizon,
            mean[target],
            std[target],
        )
        return timeseries.prepare(ds, batch_size, shuffle, seed=config.seed)

    return ForecastData(
        train=part("train", True),
        val=part("val", False),
        test=part("test", False),
        spec=spec,
        series=series,
    )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=NAME)
class RelativeToLastStep(keras.layers.Layer):
    """Subtracts each window's last step from every step: [B, T, F] → [B, T, F]."""

    def call(self, inputs, training=False):
        return inputs - inputs[:, -1:, :]


@keras.saving.register_keras_serializable(package=NAME)
class AddLastValue(keras.layers.Layer):
    """Adds the last step of one input feature to a forecast of changes.

    Args:
        feature_index: the feature (last axis of the window) whose last value is the base.
    """

    def __init__(self, feature_index: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_index, int) or feature_index < 0:
            raise ValueError(
                f"AddLastValue expects feature_index >= 0 (an int), got {feature_index!r}."
            )
        self.feature_index = feature_index

    def call(self, inputs, training=False):
        changes, window = inputs
        last = window[:, -1, self.feature_index : self.feature_index + 1]
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            last, self.compute_dtype
        )

    def get_config(self):
        return {**super().get_config(), "feature_index": self.feature_index}


RECURRENT = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
LOSSES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": "huber"}


@keras.saving.register_keras_serializable(package=NAME)
class ScaledMeanAbsoluteError(keras.metrics.Mean):
    """MAE of normalized forecasts times the target's std: the MAE in original units."""

    def __init__(self, scale: float = 1.0, name: str = "mae", **kwargs):
        super().__init__(name=name, **kwargs)
        if scale <= 0:
            raise ValueError(f"ScaledMeanAbsoluteError expects scale > 0, got {scale}.")
        self.scale = float(scale)

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = keras.ops.abs(keras.ops.cast(y_true, "float32") - keras.ops.cast(y_pred, "float32"))
        return super().update_state(error * self.scale, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Builds and compiles the forecaster.

    Input: raw windows, float32 [B, window, features]. Output: the next `horizon` target
    values in normalized units, float32 [B, horizon].
    """
    features = len(spec["features"])
    inputs = keras.Input(shape=(spec["window"], features), name="window")
    std = np.asarray(spec["std"])
    normalized = keras.layers.Normalization(mean=spec["mean"], variance=(std**2).tolist())(inputs)
    x = RelativeToLastStep()(normalized) if config.relative else normalized
    reg = training.regularizer(config)
    if config.conv_filters:
        x = keras.layers.Conv1D(
            config.conv_filters,
            config.conv_kernel,
            padding="causal",
            use_bias=not config.batch_norm,
            kernel_regularizer=reg,
        )(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(config.activation)(x)
    for layer in range(config.layers):
        last = layer == config.layers - 1
        x = RECURRENT[config.cell](
            config.units,
            return_sequences=not last,
            recurrent_dropout=config.recurrent_dropout,
            kernel_regularizer=reg,
        )(x)
        if not last:
            x = keras.layers.Dropout(config.dropout)(x)
    if config.dense_units:
        x = keras.layers.Dense(config.dense_units, kernel_regularizer=reg)(x)
        x = keras.layers.Activation(config.activation)(x)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(spec["horizon"], dtype="float32")(x)
    if config.relative:
        x = AddLastValue(spec["target_index"], dtype="float32")([x, normalized])
    outputs = keras.layers.Activation("linear", dtype="float32", name="forecast")(x)
    model = keras.Model(inputs, outputs, name=NAME)
    steps = training.steps_per_epoch(spec["sizes"]["train"], config.batch_size)
    model.compile(
        optimizer=training.make_optimizer(config, steps),
        loss=LOSSES[config.loss],
        metrics=[ScaledMeanAbsoluteError(scale=spec["std"][spec["target_index"]])],
        jit_compile=config.jit_compile,
    )
    return model


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------


def search_space(hp, config: Config) -> Config:
    """Maps keras-tuner hyperparameters onto `Config` fields; defaults equal `config`'s."""
    return dataclasses.replace(
        config,
        cell=hp.Choice("cell", ["lstm", "gru"], default=config.cell),
        layers=hp.Int("layers", 1, 3, default=config.layers),
        units=hp.Choice("units", [32, 64, 128], default=config.units),
        dropout=hp.Float("dropout", 0.0, 0.4, step=0.1, default=config.dropout),
        learning_rate=hp.Float(
            "learning_rate", 3e-4, 1e-2, sampling="log", default=config.learning_rate
        ),
        window=hp.Choice("window", [52, 78, 104, 156], default=config.window),
    )


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """`serve`: a raw window in original units → the forecast in original units."""
    target = spec["target_index"]
    mean = tf.constant(spec["mean"][target], tf.float32)
    std = tf.constant(spec["std"][target], tf.float32)

    def serve(window):
        normalized = tf.cast(model(window, training=False), tf.float32)
        return {"forecast": normalized * std + mean}

    signature = [tf.TensorSpec([None, spec["window"], len(spec["features"])], tf.float32, "window")]
    return {"serve": (serve, signature)}


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": "time_series_forecasting",
        "input": {
            "kind": "window",
            "window": spec["window"],
            "features": spec["features"],
            "serve": f"float32 [batch, {spec['window']}, {len(spec['features'])}]: the last "
            f"{spec['window']} steps of {', '.join(spec['features'])} (in this order), oldest "
            "first, in original units",
        },
        "outputs": {
            "forecast": f"float32 [batch, {spec['horizon']}]: the next steps of "
            f"{spec['target']}, in original units"
        },
        "window": spec["window"],
        "horizon": spec["horizon"],
        "features": spec["features"],
        "target": spec["target"],
        "time_span": spec["time_span"],
    }


# ---------------------------------------------------------------------------------------------
# Metrics and plots
# ---------------------------------------------------------------------------------------------


def evaluate(model: keras.Model, data: ForecastData, out_dir: str | Path | None) -> dict[str, Any]:
    """Rolling-origin test metrics in original units beside the naive baselines; writes
    forecasts.png to `out_dir` when given."""
    spec, series = data.spec, data.series
    window, horizon, target = spec["window"], spec["horizon"], spec["target_index"]
    starts = timeseries.origins(tuple(spec["parts"]["test"]), window, horizon)
    inputs, actual = timeseries.window_arrays(series.values, target, starts, window, horizon)
    normalized = model.predict(inputs.astype("float32"), verbose=0).astype("float64")
    forecast = normalized * spec["std"][target] + spec["mean"][target]
    target_series = series.values[:, target]
    scale = forecasting.mase_scale(target_series[: spec["parts"]["train"][1]], spec["season"])
    baselines = {
        "naive": forecasting.naive(target_series, starts, horizon),
        "seasonal_naive": forecasting.seasonal_naive(
            target_series, starts, horizon, spec["season"]
        ),
    }
    model_errors = forecasting.errors(forecast, actual, scale)
    baseline_errors = {
        name: forecasting.errors(values, actual, scale) for name, values in baselines.items()
    }
    metrics = {
        "test_mae": model_errors["mae"],
        "test_rmse": model_errors["rmse"],
        "test_mase": model_errors["mase"],
        "test_seasonal_naive_mae": baseline_errors["seasonal_naive"]["mae"],
        "test_naive_mae": baseline_errors["naive"]["mae"],
        "test_origins": int(len(starts)),
        "horizon": horizon,
        "mase_scale": round(scale, 5),
        "missing_interpolated": int(sum(spec["missing_interpolated"].values())),
        "time_gaps": int(spec["time_gaps"]["count"]),
        "test_mae_by_step": model_errors["mae_by_step"],
        "baselines": baseline_errors,
        "missing_by_column": spec["missing_interpolated"],
    }
    if out_dir is not None:
        forecasting.plot_forecasts(
            target_series,
            starts,
            forecast,
            baselines,
            Path(out_dir) / "forecasts.png",
            title=f"{spec['target']}: rolling-origin forecasts over the test tail "
            f"(MAE {model_errors['mae']:.3g}, MASE {model_errors['mase']:.3g})",
            time=series.time,
        )
    return metrics


def main(argv: list[str] | None = None) -> int:
    """`python -m templates.timeseries_lstm [train options]`, the same as
    `ktemplate train timeseries_lstm`."""
    from ktemplate import cli

    return cli.main(["train", NAME, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
