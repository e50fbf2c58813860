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

What runs, in order (`ktemplate/lifecycle.py`): load_data (resolves season, horizon, window,
target_transform) → build_model → fit → evaluate (rolling origins) → baseline (naive,
seasonal naive, Holt-Winters) → export.

Adapt it: `ktemplate new my_forecast --from timeseries_lstm`, then change `Config` defaults
(window, horizon, season), the data section (`load_data`) and `build_model`.

    ktemplate train timeseries_lstm
    ktemplate train timeseries_lstm --dataset csv:sales.csv --set time_column=date \
        --set target_column=sales --set feature_columns=price,promo --set season=7
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import timeseries

from ktemplate import baselines, convert, forecasting, training
from ktemplate.config import (
    Auto,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Resolver,
    TrainingConfig,
)
from ktemplate.contract import Data

NAME = "timeseries_lstm"
TUNE_OBJECTIVE = "val_mae"  # what `ktemplate tune` optimizes by default (original units)

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


Share = Annotated[float, Range(0, 0.5, low_open=True, high_open=True)]  # of the series' steps


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "co2"  # co2 or csv:PATH
    time_column: str = ""  # CSV column of time stamps (numbers or dates); "" keeps row order
    feature_columns: str = ""  # comma-separated CSV input columns; the target is always one
    target_column: str = ""  # CSV column to forecast (co2: the co2 column)
    window: PositiveInt | Auto = "auto"  # past steps seen; auto: window_seasons seasons
    window_seasons: PositiveFloat = 2.0  # window=auto: seasons it spans (>= 2 horizons)
    horizon: PositiveInt | Auto = "auto"  # steps forecast at once; auto: by frequency
    season: PositiveInt | Auto = "auto"  # steps per season (MASE, baselines); auto: frequency
    target_transform: Literal["none", "log", "auto"] = "auto"  # auto: the better on validation
    val_fraction: Share = 0.15  # share of the steps in the validation part (after train)
    test_fraction: Share = 0.15  # share of the steps in the test tail (the last steps)
    epochs: PositiveInt = 40  # maximum epochs; early stopping may end training sooner
    batch_size: PositiveInt = 32  # per-replica batch size (windows)
    learning_rate: PositiveFloat = 3e-3  # peak learning rate (cosine decay to 1% of it)
    early_stopping_patience: NonNegativeInt = 10  # epochs without val_loss improvement
    l2: NonNegativeFloat = 0.0  # L2 penalty on kernels
    dropout: Fraction = 0.1  # dropout between recurrent layers and before the head
    batch_norm: bool = False  # batch normalization after the Conv1D front end
    cell: Literal["lstm", "gru"] = "lstm"  # recurrent cell type
    layers: PositiveInt = 1  # stacked recurrent layers
    units: PositiveInt = 64  # units per recurrent layer
    recurrent_dropout: Fraction = 0.0  # dropout on the recurrent state (slower when > 0)
    conv_filters: NonNegativeInt = 0  # filters of a causal Conv1D front end; 0 removes it
    conv_kernel: PositiveInt = 5  # kernel size of the Conv1D front end
    dense_units: NonNegativeInt = 0  # units of a hidden dense layer before the head; 0 removes it
    relative: bool = True  # forecast changes from a base taken from the window (suits trends)
    forecast_base: Literal["auto", "last", "season", "ets"] = "auto"  # auto: best on validation
    loss: Literal["mse", "mae", "huber"] = "mse"  # training loss, in normalized units

    def __post_init__(self):
        super().__post_init__()
        if self.forecast_base == "season" and self.season != "auto" and self.season < 2:
            raise ValueError(
                "forecast_base=season needs a season of at least 2 steps, got "
                f"season={self.season}."
            )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ForecastData(Data):
    """`Data` plus the whole series, for the rolling-origin evaluation and its baselines."""

    series: timeseries.Series | None = None


# By sampling frequency: the candidate seasons (in steps; season=auto takes the one whose
# seasonal naive forecast is best on validation), the horizon, and other seasons that are also
# normal for it (a season the user sets outside these gets a warning).
FREQUENCY_DEFAULTS = {
    "1-minute": ((1440, 10080), 60, ()),  # a day, a week; an hour ahead
    "5-minute": ((288, 2016), 24, ()),  # a day, a week; two hours ahead
    "10-minute": ((144, 1008), 12, ()),
    "15-minute": ((96, 672), 96, ()),  # a day, a week; a day ahead
    "30-minute": ((48, 336), 48, ()),
    "hourly": ((24, 168), 24, ()),
    "daily": ((7, 365), 14, (30,)),
    "weekly": ((52,), 13, ()),
    "monthly": ((12,), 12, ()),
    "quarterly": ((4,), 8, ()),
    "yearly": ((1,), 6, ()),
    "none": ((1,), 12, ()),
}
MIN_TRAIN_WINDOWS = 16  # a window=auto is shortened so the train part has this many windows
MAX_AUTO_WINDOW = 720  # window=auto never exceeds this many steps (an LSTM's cost grows with it)


def resolve_auto(config: Config, series: timeseries.Series) -> Resolver:
    """Resolves season, horizon and window from the series' frequency and length.

    season=auto: a frequency with two natural seasons (daily and weekly for sub-daily data,
    weekly and yearly for daily data) takes the one whose seasonal naive forecast has the lower
    validation MAE, among those the train part holds twice. Warns about a season the user set
    that contradicts the frequency, and about `auto` values shortened to fit a short series
    (rather than refusing it).
    """
    auto = Resolver(config)
    frequency, why = series.frequency, series.frequency_reason
    candidates, horizon_default, also_normal = FREQUENCY_DEFAULTS[frequency]
    steps = len(series.values)
    n_val = int(round(steps * config.val_fraction))
    n_test = int(round(steps * config.test_fraction))
    n_train = steps - n_val - n_test
    horizon = auto.pick("horizon", horizon_default, f"default for {frequency} data")
    if auto.is_auto("horizon") and horizon > min(n_val, n_test):
        horizon = max(1, min(n_val, n_test))  # shortened below, with a warning
    if auto.is_auto("season"):
        season, reason = _season_on_validation(series, candidates, why, n_train, n_val, horizon)
        auto.pick("season", season, reason)
        if season == 1 and any(s >= 2 for s in candidates):
            auto.warn(f"No season is assumed (season=1): {reason}.")
    else:
        season = config.season
    if not auto.is_auto("season") and season not in (1, *candidates, *also_normal):
        auto.warn(
            f"season={season} was set, but {why} suggest a season of "
            f"{' or '.join(map(str, candidates))} steps; MASE, seasonal naive and Holt-Winters "
            "use the season you set."
        )
    if frequency == "none" and auto.is_auto("season"):
        auto.warn(
            f"{why}, so no season is assumed (season=1). Set season=N (steps per season) "
            "if the series has one: MASE and the seasonal baselines depend on it."
        )
    window = auto.pick(
        "window",
        min(max(round(config.window_seasons * season), 2 * horizon), MAX_AUTO_WINDOW),
        f"{config.window_seasons:g} seasons of {season} steps, at least 2 horizons, at most "
        f"{MAX_AUTO_WINDOW} steps",
    )
    # A short series: shorten what was auto so every part keeps whole windows.
    wanted = (window, horizon_default if auto.is_auto("horizon") else horizon)
    if auto.is_auto("window") and n_train - window - horizon + 1 < MIN_TRAIN_WINDOWS:
        window = max(2, min(window, n_train - horizon + 1 - MIN_TRAIN_WINDOWS))
    if (window, horizon) != wanted:
        auto.warn(
            f"The series has {steps} steps, too short for window={wanted[0]} and "
            f"horizon={wanted[1]} ({frequency} defaults); using window={window}, "
            f"horizon={horizon}. Set window and horizon to choose others."
        )
        auto.pick("window", window, f"shortened to fit {steps} steps")
        auto.pick("horizon", horizon, f"shortened to fit {steps} steps")
    return auto


def season_candidates(frequency: str, n_train: int) -> list[int]:
    """The seasons worth trying for `frequency`: those the train part holds at least twice."""
    fitting = [s for s in FREQUENCY_DEFAULTS[frequency][0] if s >= 2 and 2 * s <= n_train]
    return fitting or [1]


def _season_on_validation(series, candidates, why, n_train, n_val, horizon) -> tuple[int, str]:
    """season=auto: the candidate season whose seasonal naive forecast is best on validation
    (every validation origin, `horizon` steps each), and the reason."""
    fitting = [s for s in candidates if s >= 2 and 2 * s <= n_train]
    if not fitting:
        if any(s >= 2 for s in candidates):
            return 1, f"{why}, but the train part ({n_train} steps) holds no season twice"
        return 1, f"{why}: no season" if series.frequency != "none" else why
    if len(fitting) == 1:
        return fitting[0], why
    target = series.values[:, series.target_index]
    starts = np.arange(n_train, n_train + n_val - horizon + 1)
    actual = np.stack([target[o : o + horizon] for o in starts])
    mae = {
        s: float(np.mean(np.abs(forecasting.seasonal_naive(target, starts, horizon, s) - actual)))
        for s in fitting
    }
    best = min(fitting, key=lambda s: (mae[s], s))
    scores = ", ".join(f"{mae[s]:.4g} at {s} steps" for s in fitting)
    return best, f"{why}; seasonal naive validation MAE {scores}"


def swing_grows_with_level(train: np.ndarray, season: int) -> tuple[bool, str]:
    """Whether a positive series' seasonal swing grows in proportion to its level.

    Per whole season of the train part: the level (mean) and the swing (max - min after
    removing the season's linear trend). The slope of log swing on log level is about 1 for
    a multiplicative season and about 0 for an additive one; log is chosen above 0.5.
    """
    if (train <= 0).any():
        return False, "the target has values <= 0"
    if season < 2 or len(train) < 3 * season:
        return False, "fewer than 3 whole seasons in the train part"
    cycles = train[: len(train) // season * season].reshape(-1, season)
    ramp = np.arange(season)
    detrended = cycles - np.array([np.polyval(np.polyfit(ramp, c, 1), ramp) for c in cycles])
    level, swing = cycles.mean(axis=1), np.ptp(detrended, axis=1)
    if level.max() / level.min() < 1.5 or (swing <= 0).any():
        return False, "the level changes less than 1.5x over the train part: too little to tell"
    slope = float(np.polyfit(np.log(level), np.log(swing), 1)[0])
    grows = slope > 0.5
    return grows, (
        f"seasonal swing {'grows' if grows else 'does not grow'} with the level "
        f"(log-log slope {slope:.2f} over {len(cycles)} seasons)"
    )


def load_data(config: Config, batch_size: int) -> ForecastData:
    """Loads the series, resolves the `auto` fields, splits it in time and builds the
    windowed train/val/test pipelines.

    Statistics come from the train part only; only train windows are shuffled.
    """
    series = timeseries.load_series(
        config.dataset, config.time_column, config.feature_columns, config.target_column
    )
    auto = resolve_auto(config, series)
    config = auto.config
    if config.forecast_base == "season" and not 2 <= config.season <= config.window:
        raise ValueError(
            f"forecast_base=season takes the seasonal-naive base from the window: it needs a "
            f"season of at least 2 steps (season={config.season}) and a window holding one "
            f"(window={config.window}). Set season and window, or forecast_base=last."
        )
    steps = len(series.values)
    parts = timeseries.chronological_split(
        steps, config.window, config.horizon, config.val_fraction, config.test_fraction
    )
    target = series.target_index
    train_target = series.values[: parts["train"][1], target]
    transform = config.target_transform
    if transform == "auto":
        grows, reason = swing_grows_with_level(train_target, config.season)
        transform = auto.pick("target_transform", "log" if grows else "none", reason)
    elif transform == "log" and (series.values[:, target] <= 0).any():
        raise ValueError(
            f"target_transform=log needs a positive target, but '{series.target}' has values "
            "<= 0. Use target_transform=none."
        )
    model_values = series.values.copy()  # the series as the model sees it (log target)
    if transform == "log":
        model_values[:, target] = np.log(model_values[:, target])
    mean, std = timeseries.train_stats(model_values, parts["train"][1])
    ets = None  # forecast_base=ets: Holt-Winters coefficients fitted on the train part
    if config.forecast_base == "ets":
        ets = forecasting.holt_winters_coefficients(
            model_values[: parts["train"][1], target], config.season
        )
    forecasting.mase_scale(train_target, config.season)
    spec = {
        "dataset": config.dataset,
        "window": config.window,
        "horizon": config.horizon,
        "season": config.season,
        "frequency": series.frequency,
        "target_transform": transform,
        "target_positive": bool((series.values[:, target] > 0).all()),
        "ets": ets,
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
        **auto.spec(),
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
            target=model_values[:, target],
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


@keras.saving.register_keras_serializable(package=NAME)
class AddSeasonalBase(keras.layers.Layer):
    """Adds the seasonal-naive forecast (the target one season before each step ahead, taken
    from the window) to a forecast of differences from it.

    Args:
        feature_index: the target feature (last axis of the window).
        season: steps per season; the window must hold at least one season.
    """

    def __init__(self, feature_index: int, season: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_index, int) or feature_index < 0:
            raise ValueError(f"AddSeasonalBase expects feature_index >= 0, got {feature_index!r}.")
        if not isinstance(season, int) or season < 2:
            raise ValueError(f"AddSeasonalBase expects season >= 2, got {season!r}.")
        self.feature_index, self.season = feature_index, season

    def call(self, inputs, training=False):
        changes, window = inputs
        last_season = window[:, -self.season :, self.feature_index]
        index = [h % self.season for h in range(changes.shape[-1])]
        base = keras.ops.take(last_season, index, axis=1)
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            base, self.compute_dtype
        )

    def get_config(self):
        return {**super().get_config(), "feature_index": self.feature_index, "season": self.season}


@keras.saving.register_keras_serializable(package=NAME)
class AddHoltWintersBase(keras.layers.Layer):
    """Adds the additive Holt-Winters forecast of the window's target to a forecast of changes
    from it: a fixed linear map of the window (`forecasting.holt_winters_weights`, with the
    coefficients fitted on the train part), so the export needs nothing but the weights.

    Args:
        feature_index: the target feature (last axis of the window).
        window, horizon: the input and forecast lengths.
        season: steps per season (1: no season); alpha, beta, gamma: smoothing coefficients
            (gamma None without a season).
    """

    def __init__(self, feature_index, window, horizon, season, alpha, beta, gamma, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"AddHoltWintersBase expects alpha in [0, 1], got {alpha!r}.")
        self.feature_index, self.window, self.horizon = feature_index, window, horizon
        self.season, self.alpha, self.beta, self.gamma = season, alpha, beta, gamma
        weights = forecasting.holt_winters_weights(window, horizon, season, alpha, beta, gamma)
        self.weights_matrix = keras.ops.convert_to_tensor(weights.astype("float32"))

    def call(self, inputs, training=False):
        changes, window = inputs
        base = keras.ops.matmul(
            keras.ops.cast(window[:, :, self.feature_index], "float32"), self.weights_matrix
        )
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            base, self.compute_dtype
        )

    def get_config(self):
        names = ("feature_index", "window", "horizon", "season", "alpha", "beta", "gamma")
        return {**super().get_config(), **{n: getattr(self, n) for n in names}}


RECURRENT = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
LOSSES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": "huber"}


@keras.saving.register_keras_serializable(package=NAME)
class LogFeature(keras.layers.Layer):
    """Takes the natural log of one feature of a window [B, T, F] (a positive target).

    Args:
        feature_index: the feature (last axis) to transform.
    """

    def __init__(self, feature_index: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_index, int) or feature_index < 0:
            raise ValueError(
                f"LogFeature expects feature_index >= 0 (an int), got {feature_index!r}."
            )
        self.feature_index = feature_index

    def call(self, inputs, training=False):
        features = keras.ops.shape(inputs)[-1]
        mask = keras.ops.cast(keras.ops.arange(features) == self.feature_index, inputs.dtype)
        safe = keras.ops.where(mask > 0, inputs, keras.ops.ones_like(inputs))
        return inputs * (1 - mask) + keras.ops.log(safe) * mask

    def get_config(self):
        return {**super().get_config(), "feature_index": self.feature_index}


@keras.saving.register_keras_serializable(package=NAME)
class ScaledMeanAbsoluteError(keras.metrics.Mean):
    """MAE in original units of forecasts in normalized units (times std, plus mean, and
    exp when the model forecasts the log of the target)."""

    def __init__(
        self, scale: float = 1.0, offset: float = 0.0, log: bool = False, name="mae", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if scale <= 0:
            raise ValueError(f"ScaledMeanAbsoluteError expects scale > 0, got {scale}.")
        self.scale, self.offset, self.log = float(scale), float(offset), bool(log)

    def _original(self, y):
        y = keras.ops.cast(y, "float32") * self.scale + self.offset
        return keras.ops.exp(y) if self.log else y

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = keras.ops.abs(self._original(y_true) - self._original(y_pred))
        return super().update_state(error, sample_weight=sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "offset": self.offset,
            "log": self.log,
        }


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Builds and compiles the forecaster.

    Input: raw windows, float32 [B, window, features]. Output: the next `horizon` target
    values in normalized units (of the log target with target_transform=log), float32
    [B, horizon]; `to_original_units` turns them back.
    """
    features, target = len(spec["features"]), spec["target_index"]
    log = spec.get("target_transform") == "log"
    inputs = keras.Input(shape=(spec["window"], features), name="window")
    std = np.asarray(spec["std"])
    x = LogFeature(target, name="log_target")(inputs) if log else inputs
    normalized = keras.layers.Normalization(mean=spec["mean"], variance=(std**2).tolist())(x)
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
    base = config.forecast_base if config.forecast_base != "auto" else "last"  # no choice made
    if config.relative and base == "season":
        season = spec["season"]
        x = AddSeasonalBase(spec["target_index"], season, dtype="float32")([x, normalized])
    elif config.relative and base == "ets":
        ets = spec["ets"]
        x = AddHoltWintersBase(
            spec["target_index"],
            spec["window"],
            spec["horizon"],
            ets["season"],
            ets["alpha"],
            ets["beta"],
            ets["gamma"],
            dtype="float32",
        )([x, normalized])
    elif config.relative:
        x = AddLastValue(spec["target_index"], dtype="float32")([x, normalized])
    outputs = keras.layers.Activation("linear", dtype="float32", name="forecast")(x)
    model = keras.Model(inputs, outputs, name=NAME)
    steps = training.steps_per_epoch(spec["sizes"]["train"], config.batch_size)
    model.compile(
        optimizer=training.make_optimizer(config, steps),
        loss=LOSSES[config.loss],
        metrics=[
            ScaledMeanAbsoluteError(scale=spec["std"][target], offset=spec["mean"][target], log=log)
        ],
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
        window_seasons=hp.Choice(
            "window_seasons", [1.0, 1.5, 2.0, 3.0], default=config.window_seasons
        ),
    )


def candidates(config: Config, spec: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """forecast_base=auto and target_transform=auto: each base the data allows (the last value;
    seasonal naive when the window holds a season; Holt-Winters) with each target scale (log
    only for a positive target), chosen by short fits on validation MAE (`ktemplate.lifecycle`).
    """
    bases = [config.forecast_base]
    if config.forecast_base == "auto":
        seasonal = 2 <= spec["season"] <= spec["window"]
        bases = ["last", *(["season"] if seasonal else []), "ets"]
    scales = [config.target_transform]
    if "target_transform" in spec.get("resolved", {}):  # it was auto
        scales = ["none", "log"] if spec["target_positive"] else ["none"]
    if len(bases) * len(scales) == 1:
        return None
    return {
        f"{base} base, {scale} target": {"forecast_base": base, "target_transform": scale}
        for base in bases
        for scale in scales
    }


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def to_original_units(normalized, spec: dict[str, Any]):
    """Model outputs (normalized, maybe log) → forecasts in the target's units (NumPy or TF)."""
    target = spec["target_index"]
    values = normalized * spec["std"][target] + spec["mean"][target]
    if spec.get("target_transform") != "log":
        return values
    return np.exp(values) if isinstance(values, np.ndarray) else tf.exp(values)


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """`serve`: a raw window in original units → the forecast in original units."""

    def serve(window):
        normalized = tf.cast(model(window, training=False), tf.float32)
        return {"forecast": to_original_units(normalized, spec)}

    signature = [tf.TensorSpec([None, spec["window"], len(spec["features"])], tf.float32, "window")]
    return {"serve": (serve, signature)}


def portable_endpoint(model: keras.Model, spec: dict[str, Any], runtime: str) -> convert.Portable:
    """The LiteRT/ONNX function: the `serve` endpoint's computation (raw window → forecast in
    original units), any batch. For LiteRT the recurrent layers run unrolled (the same weights):
    the loop's TensorList ops need a static batch there, and int8 calibration cannot quantize
    the loop at all."""
    features = len(spec["features"])
    track = []
    if runtime == "litert":
        model = unrolled(model)
        track = [model]

    def forecast(window):
        normalized = tf.cast(model(window, training=False), tf.float32)
        return {"forecast": to_original_units(normalized, spec)}

    rng = np.random.default_rng(0)
    mean = np.asarray(spec["mean"], dtype="float64").reshape(-1)
    std = np.asarray(spec["std"], dtype="float64").reshape(-1)
    sample = mean + std * rng.standard_normal((4, spec["window"], features))
    return convert.Portable(
        fn=forecast,
        signature=[tf.TensorSpec([None, spec["window"], features], tf.float32, name="window")],
        sample={"window": sample.astype("float32")},
        reference="serve",
        notes={
            "input": f"window: float32 [batch, {spec['window']}, {features}], the last "
            f"{spec['window']} steps of {', '.join(spec['features'])}, oldest first, in "
            "original units",
            "outputs": f"forecast float32 [batch, {spec['horizon']}], original units",
        },
        track=track,
    )


def unrolled(model: keras.Model) -> keras.Model:
    """A copy of `model` whose LSTM/GRU layers unroll over the (fixed) window, same weights."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, tuple(RECURRENT.values())):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s forecast origins as raw windows (float32, original units), scored by the MAE
    of the forecast; `limit` keeps that many origins spread evenly over the split (the first
    ones alone would cover only its start of a trending series)."""
    window, horizon = spec["window"], spec["horizon"]
    starts = timeseries.origins(tuple(spec["parts"][split]), window, horizon)
    if limit is not None and len(starts) > limit:
        starts = starts[np.linspace(0, len(starts) - 1, limit).round().astype(int)]
    if not len(starts):
        inputs = np.zeros((0, window, len(spec["features"])), np.float32)
        actual = np.zeros((0, horizon))
    else:
        inputs, actual = timeseries.window_arrays(
            data.series.values, spec["target_index"], starts, window, horizon
        )
    return convert.PortableData(
        inputs={"window": inputs.astype(np.float32)},
        metric=f"{split}_mae",
        score=lambda outputs: float(np.abs(outputs["forecast"] - actual).mean()),
    )


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
        "season": spec["season"],
        "frequency": spec.get("frequency", "none"),
        "target_transform": spec.get("target_transform", "none"),
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
    forecast = to_original_units(normalized, spec)
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


def baseline(model: keras.Model, data: ForecastData, config: Config) -> dict[str, Any]:
    """Naive, seasonal naive at each candidate season and Holt-Winters (additive or
    multiplicative season), the best on validation MAE, compared with the model on the
    identical test origins (Diebold-Mariano); see `ktemplate.baselines`."""
    spec, series = data.spec, data.series
    window, horizon, season = spec["window"], spec["horizon"], spec["season"]
    target = series.values[:, spec["target_index"]]
    train_end, val_end = spec["parts"]["train"][1], spec["parts"]["val"][1]
    refit = data.val is None  # a champion refitted on train+validation
    starts, actual = {}, {}
    for part in ("val", "test"):
        starts[part] = timeseries.origins(tuple(spec["parts"][part]), window, horizon)
        actual[part] = np.stack([target[o : o + horizon] for o in starts[part]])
    scale = forecasting.mase_scale(target[:train_end], season)
    periods = sorted({*season_candidates(spec["frequency"], train_end), season} - {1})
    # Least to most flexible: a tie on validation goes to the later one.
    candidates = {"naive": lambda s, end: forecasting.naive(target, s, horizon)}
    for p in periods:
        candidates[f"seasonal naive (season {p})"] = lambda s, end, p=p: forecasting.seasonal_naive(
            target, s, horizon, p
        )
    kind = {"add": "additive", "mul": "multiplicative", None: "no"}
    for variant in forecasting.holt_winters_candidates(target[:train_end], season):
        name = f"Holt-Winters ({kind[variant['trend']]} trend, {kind[variant['seasonal']]} season)"
        candidates[name] = lambda s, end, v=variant: forecasting.holt_winters(
            target, end, s, horizon, season, **v
        )
    start = time.perf_counter()
    every = np.concatenate([starts["val"], starts["test"]])
    forecasts = {}
    for name, forecast in candidates.items():  # fitted on train: one call for both parts
        val, test = np.split(forecast(every, train_end), [len(starts["val"])])
        forecasts[name] = {"val": val, "test": test}
    tried = [
        {"method": name, "val_mae": forecasting.errors(f["val"], actual["val"], scale)["mae"]}
        for name, f in forecasts.items()
    ]
    best = tried[baselines.pick(tried, "val_mae", higher_is_better=False)]["method"]
    test_forecast = forecasts[best]["test"]
    if refit and best.startswith("Holt-Winters"):
        test_forecast = candidates[best](starts["test"], val_end)
    test = forecasting.errors(test_forecast, actual["test"], scale)
    fitted = {
        "name": best,
        "settings": {
            "picked_on": "validation MAE; ties to the more flexible method",
            "tried": tried,
            "season": season,
            "fitted_on": ("train+validation" if refit else "train")
            + " (Holt-Winters parameters); every origin forecasts from the values before it",
        },
        "notes": [],
        "seconds": round(time.perf_counter() - start, 2),
    }
    if forecasting.fit_start(train_end, season) > 0:
        fitted["notes"].append(
            f"Holt-Winters parameters fitted on the last {forecasting.MAX_FIT_STEPS} steps "
            "(whole seasons) of the fitted part"
        )

    def model_forecast_at(origins):
        windows, _ = timeseries.window_arrays(
            series.values, spec["target_index"], origins, window, horizon
        )
        normalized = model.predict(windows.astype("float32"), verbose=0).astype("float64")
        return to_original_units(normalized, spec)

    model_forecast = model_forecast_at(starts["test"])
    model_val_mae = float(np.mean(np.abs(model_forecast_at(starts["val"]) - actual["val"])))
    best_val_mae = min(t["val_mae"] for t in tried)
    model_errors = np.abs(model_forecast - actual["test"]).mean(axis=1)  # per origin
    base_errors = np.abs(test_forecast - actual["test"]).mean(axis=1)
    tries = []
    if "naive (season" in best:
        tries.append(baselines.Try("season", int(best[:-1].split()[-1]), f"{best} did best"))
    if season >= 2:
        tries.append(baselines.Try("forecast_base", "season", "changes from seasonal naive"))
    if (target > 0).all():
        other = "none" if spec["target_transform"] == "log" else "log"
        tries.append(baselines.Try("target_transform", other, "the other target scale"))
    block = baselines.compare(
        fitted,
        {
            "test_mae": test["mae"],
            "test_rmse": test["rmse"],
            "test_mase": test["mase"],
            "test_mae_by_name": {
                name: forecasting.errors(f["test"], actual["test"], scale)["mae"]
                for name, f in forecasts.items()
            },
        },
        metric="test_mae",
        label="test MAE",
        model_value=float(model_errors.mean()),
        base_value=float(base_errors.mean()),
        higher_is_better=False,
        test="Diebold-Mariano",
        p_value=baselines.diebold_mariano_p(model_errors, base_errors, horizon),
        n=len(starts["test"]),
        unit="origins",
        config=config,
        tries=tries,
        number_format=".4g",
        extra={"ratio": round(float(model_errors.mean() / max(base_errors.mean(), 1e-12)), 4)},
    )
    block["validation"] = {"model_mae": round(model_val_mae, 6), "baseline_mae": best_val_mae}
    if best_val_mae <= model_val_mae:
        block["validation_note"] = (
            f"On validation {best} (MAE {best_val_mae:.4g}) is as good as or better than the "
            f"model (MAE {model_val_mae:.4g}): the classical method is the safer choice here."
        )
    return block


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train timeseries_lstm [options]`, run as
    `python -m ktemplate.templates.timeseries_lstm [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
