"""Multi-step time series forecasting with an LSTM (or GRU), direct multi-output.

Task: from the last `window` steps of one or more series, forecast the next `horizon` values of
a target series at once (one output per step ahead).

Data: by default statsmodels' bundled Mauna Loa CO2 series (2,284 weekly observations,
1958-2001; the 59 missing weeks are interpolated and counted). Also `csv:PATH` with
`time_column`, `feature_columns` and `target_column`. Splits are chronological (train,
validation, test tail); statistics come from the train part only.

Model: normalization inside the model; the recurrent network forecasts changes from a base
taken from the raw window (`forecast_base`: the last value, a season back, Holt-Winters or Theta
fitted on train; when set, a ridge regression), chosen with the target's scale by short fits on
validation; a close runner-up may be kept or averaged in (`ENSEMBLE_FIELD`); optional causal Conv1D.
The recurrent layers read the window's last `recurrent_window` steps (two days of a two-week
window of hourly data); when shorter than the window, the head also sees the seasonal naive
forecast at each season the window holds (a day and a week); a dense head of size `horizon`.

Evaluation: rolling origin over the test tail; MAE, RMSE and MASE in original units beside
naive and seasonal naive on the same origins; `forecasts.png`.

Export: `serve` takes a raw window in original units, float32 [batch, window, features] (the
manifest's order), and returns `forecast`, float32 [batch, horizon], in original units.

What runs, in order (`ktemplate/lifecycle.py`): load_data (resolves season, horizon, window)
→ candidates (forecast_base × target_transform, short fits) → build_model → fit (+ a partner
base's) → calibrate (the network's correction to the base scaled by `residual_scale`, 0..1 on
validation) → evaluate (rolling origins) → baseline (naive, seasonal naive, Holt-Winters) → export.

Adapt it: `ktemplate new my_forecast --from timeseries_lstm`, then change `Config` defaults
(window, horizon, season), the data section (`load_data`) and `build_model`.

    ktemplate train timeseries_lstm
    ktemplate train timeseries_lstm --dataset csv:sales.csv --set time_column=date \
        --set target_column=sales --set feature_columns=price,promo --set season=7
"""

from __future__ import annotations

import dataclasses
import functools
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
from ktemplate.layers import (
    AddHoltWintersBase,
    AddLastValue,
    AddLinearBase,
    AddSeasonalBase,
    LogFeature,
    RelativeToLastStep,
    ScaledMeanAbsoluteError,
    SeasonalLags,
)

NAME = "timeseries_lstm"
TUNE_OBJECTIVE = "val_mae"  # what `ktemplate tune` optimizes by default (original units)
ENSEMBLE_FIELD = "forecast_base"  # a close runner-up base is trained too (`ktemplate.lifecycle`)

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
    recurrent_window: PositiveInt | Auto = "auto"  # the window's last steps the recurrent
    # layers read; auto: 2 of the shortest season (or 2 horizons), at most the window
    seasonal_lags: bool = True  # with a shorter recurrent_window than the window: the head
    # also sees the seasonal naive forecast at each season the window holds
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
    forecast_base: Literal["auto", "last", "season", "ets", "theta", "linear"] = "auto"  # auto: val
    loss: Literal["mse", "mae", "huber"] = "mse"  # training loss, in normalized units
    residual_scale: Annotated[float, Range(0, 1)] | Auto = "auto"  # the network's correction
    # to the base, scaled after training; auto: on validation (0: the classical base alone)

    def __post_init__(self):
        super().__post_init__()
        if (
            "auto" not in (self.window, self.recurrent_window)
            and self.recurrent_window > self.window
        ):
            raise ValueError(
                f"recurrent_window={self.recurrent_window} is longer than the window "
                f"({self.window} steps): set it to at most the window, or auto."
            )
        if self.forecast_base == "season" and self.season != "auto" and self.season < 2:
            raise ValueError(f"forecast_base=season needs season >= 2, got {self.season}.")
        if not self.relative and self.residual_scale not in ("auto", 1):
            raise ValueError(
                "residual_scale scales the correction to a base, which needs relative=true: set "
                "relative=true, or leave residual_scale at auto."
            )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ForecastData(Data):
    """`Data` plus the whole series, for the rolling-origin evaluation and its baselines."""

    series: timeseries.Series | None = None


MIN_TRAIN_WINDOWS = 16  # a window=auto is shortened so the train part has this many windows
MAX_AUTO_WINDOW = 720  # window=auto never exceeds this many steps (an LSTM's cost grows with it)


def resolve_auto(config: Config, series: timeseries.Series) -> Resolver:
    """Resolves season and horizon (`forecasting.resolve_season`), then window: window_seasons
    seasons, at least two horizons; `auto` values are shortened, with a warning, to fit a short
    series (rather than refusing it)."""
    auto = Resolver(config)
    season, horizon, n_train = forecasting.resolve_season(auto, series)
    frequency, steps = series.frequency, len(series.values)
    horizon_default = forecasting.FREQUENCY_DEFAULTS[frequency][1]
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
    seasons = forecasting.seasons_in(frequency, season, window)
    shortest = min(seasons, default=max(window, horizon))
    auto.pick(  # a set value longer than a resolved window fails in Config, via auto.config
        "recurrent_window",
        min(window, max(2 * shortest, 2 * horizon)),
        f"2 of the shortest season ({shortest} steps) or 2 horizons, at most the window",
    )
    return auto


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
        grows, reason = forecasting.swing_grows_with_level(train_target, config.season)
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
    ets = linear = None  # Holt-Winters coefficients, or a linear map (W), fitted on train
    values = model_values[:, target]
    if config.forecast_base == "ets":
        ets = forecasting.holt_winters_base(values, parts, config)
    elif config.forecast_base == "theta":  # fitted on normalized values, as the model runs it
        normalized = (values - mean[target]) / std[target]
        linear = forecasting.theta_base_weights(
            normalized, parts, config.window, config.horizon, config.season
        )
    elif config.forecast_base == "linear":
        linear = forecasting.linear_base_weights(values, parts, config.window, config.horizon)
    forecasting.mase_scale(train_target, config.season)
    spec = {
        "dataset": config.dataset,
        "window": config.window,
        "horizon": config.horizon,
        "season": config.season,
        "lag_seasons": (
            forecasting.seasons_in(series.frequency, config.season, config.window)
            if config.seasonal_lags and config.recurrent_window < config.window
            else []
        ),
        "frequency": series.frequency,
        "target_transform": transform,
        "target_positive": bool((series.values[:, target] > 0).all()),
        "seasonal": forecasting.season_pays(train_target, config),  # a `season` base candidate
        "residual_scale": config.residual_scale if config.relative else 1,  # see `calibrate`
        "ets": ets,
        "linear": linear,
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


RECURRENT = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
LOSSES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": "huber"}


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
    lags = None  # the seasonal naive forecasts (relative ones with `relative`) for the head
    if spec.get("lag_seasons"):
        lags = SeasonalLags(target, spec["lag_seasons"], spec["horizon"])(x)
    recurrent = config.recurrent_window  # the recurrent layers read the window's last steps
    if recurrent != "auto" and recurrent < spec["window"]:
        x = keras.layers.Cropping1D((spec["window"] - recurrent, 0))(x)
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
    if lags is not None:
        x = keras.layers.Concatenate()([x, lags])
    if config.dense_units:
        x = keras.layers.Dense(config.dense_units, kernel_regularizer=reg)(x)
        x = keras.layers.Activation(config.activation)(x)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(spec["horizon"], dtype="float32", name="correction")(x)
    base = config.forecast_base if config.forecast_base != "auto" else "last"  # no choice made
    if config.relative and base == "season":
        season = spec["season"]
        x = AddSeasonalBase(spec["target_index"], season, dtype="float32")([x, normalized])
    elif config.relative and base == "ets":
        smoothing = [spec["ets"][k] for k in ("season", "alpha", "beta", "gamma")]
        x = AddHoltWintersBase(
            target, spec["window"], spec["horizon"], *smoothing, dtype="float32"
        )([x, normalized])
    elif config.relative and base in ("linear", "theta"):  # a fixed linear map of the window
        weights, profile = spec["linear"]["weights"], spec["linear"].get("profile")
        x = AddLinearBase(
            target, spec["window"], spec["horizon"], weights, profile, dtype="float32"
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
    seasonal naive where it beats the last value on train; Holt-Winters; Theta) with each scale
    (log only for a positive target), chosen by short fits on validation MAE (`linear`: only
    when set; see benchmarks/RESULTS.md)."""
    bases = [config.forecast_base]
    if config.forecast_base == "auto":
        bases = ["last", *(["season"] if spec["seasonal"] else []), "ets", "theta"]
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


def calibrate(model: keras.Model, data: ForecastData) -> dict[str, Any]:
    """residual_scale: the head's output (`correction`, each member's), the network's change
    to the base, is scaled in place; auto: by the scale with the lowest validation MAE."""
    spec, setting = data.spec, data.spec.get("residual_scale", 1)
    heads = [layer for layer in model._flatten_layers() if layer.name == "correction"]
    if setting == 1 or not heads:
        return {}
    trained, found = [layer.get_weights() for layer in heads], {"weights_changed": True}
    if setting == "auto":
        windows, actual = timeseries.portable_windows(data.series.values, spec, "val")
        full = model.predict(windows, verbose=0).astype("float64")
        for layer, weights in zip(heads, trained, strict=True):
            layer.set_weights([w * 0 for w in weights])
        base = model.predict(windows, verbose=0).astype("float64")
        units = functools.partial(to_original_units, spec=spec)
        setting, scores = forecasting.residual_scale(base, full, actual, units)
        shown = ", ".join(f"{s:g} {mae:.4g}" for s, mae in scores.items())
        why = f"lowest validation MAE of the base + the scaled correction: {shown}"
        found["resolved"] = {
            **spec["resolved"],
            "residual_scale": {"value": setting, "reason": why},
        }
    for layer, weights in zip(heads, trained, strict=True):
        layer.set_weights([w * setting for w in weights])
    return {**found, "residual_scale": setting}


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
        model = convert.unrolled(model)
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


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s forecast origins as raw windows (float32, original units), scored by the MAE
    of the forecast (`timeseries.portable_windows`)."""
    inputs, actual = timeseries.portable_windows(data.series.values, spec, split, limit)
    return convert.PortableData(
        inputs={"window": inputs},
        metric=f"{split}_mae",
        score=lambda outputs: float(np.abs(outputs["forecast"] - actual).mean()),
    )


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    return timeseries.manifest_extras(spec)


# ---------------------------------------------------------------------------------------------
# Metrics and plots
# ---------------------------------------------------------------------------------------------


def evaluate(model: keras.Model, data: ForecastData, out_dir: str | Path | None) -> dict[str, Any]:
    """Rolling-origin test metrics in original units beside the naive baselines; writes
    forecasts.png to `out_dir` when given (`forecasting.rolling_metrics`)."""
    spec = data.spec
    starts = timeseries.origins(tuple(spec["parts"]["test"]), spec["window"], spec["horizon"])
    forecast, actual = forecast_at(model, data, starts)
    plot = Path(out_dir) / "forecasts.png" if out_dir is not None else None
    return forecasting.rolling_metrics(data.series, spec, starts, forecast, actual, plot)


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
    periods = forecasting.season_candidates(spec["frequency"], train_end)
    fitted, forecasts, test_forecast = forecasting.classical_baseline(
        target, starts, actual, (train_end, val_end), horizon, season, periods, refit
    )
    best = fitted["name"]
    tries = []
    if "naive (season" in best:
        tries.append(baselines.Try("season", int(best[:-1].split()[-1]), f"{best} did best"))
    if season >= 2:
        tries.append(baselines.Try("forecast_base", "season", "changes from seasonal naive"))
    if (target > 0).all():
        other = "none" if spec["target_transform"] == "log" else "log"
        tries.append(baselines.Try("target_transform", other, "the other target scale"))
    model_forecasts = {part: forecast_at(model, data, starts[part])[0] for part in starts}
    return forecasting.compare(
        fitted, forecasts, test_forecast, model_forecasts, actual, scale, horizon, config, tries
    )


def forecast_at(model: keras.Model, data: ForecastData, origins: np.ndarray):
    """The model's forecasts from `origins` in original units [origins, horizon], and the
    actual values there."""
    spec = data.spec
    windows, actual = timeseries.window_arrays(
        data.series.values, spec["target_index"], origins, spec["window"], spec["horizon"]
    )
    normalized = model.predict(windows.astype("float32"), verbose=0).astype("float64")
    return to_original_units(normalized, spec), actual


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train timeseries_lstm [options]`, run as
    `python -m ktemplate.templates.timeseries_lstm [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
