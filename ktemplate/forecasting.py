"""Forecast metrics, the naive baselines and the forecast plot (rolling-origin evaluation).

A rolling-origin evaluation forecasts `horizon` steps from every origin `o` of the test tail
(the values before `o` are known). Errors are in the series' original units. MASE divides the
MAE by the in-sample seasonal-naive error of the train part, so MASE < 1 means the forecasts
beat "same as one season ago" on the data the model learned from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ktemplate import reports


def naive(series: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """[origins, horizon]: the last known value, repeated."""
    return np.repeat(series[starts - 1][:, np.newaxis], horizon, axis=1)


def seasonal_naive(series: np.ndarray, starts: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """[origins, horizon]: the value one season (or whole seasons) before each target step.

    Step `h` (1-based) ahead of origin `o` takes `series[o + h - 1 - season * k]` with the
    smallest `k` for which that value is known (before `o`).
    """
    ahead = np.arange(1, horizon + 1)
    back = season * ((ahead - 1) // season + 1)
    return series[starts[:, np.newaxis] + ahead - 1 - back]


def mase_scale(train: np.ndarray, season: int) -> float:
    """Mean absolute seasonal difference over the train part (the MASE denominator).

    Raises:
        ValueError: the train part is not longer than one season, or the seasonal
            differences are all zero.
    """
    if len(train) <= season:
        raise ValueError(
            f"The train part has {len(train)} steps, not more than season={season}; MASE "
            "needs at least one full season of training data. Set a smaller season (e.g. "
            "--set season=1 for a non-seasonal series)."
        )
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    if scale == 0.0:
        raise ValueError(
            "The train part's target does not change over a season (all seasonal differences "
            "are 0), so MASE is undefined. Check the target column."
        )
    return scale


def errors(forecast: np.ndarray, actual: np.ndarray, scale: float) -> dict[str, Any]:
    """MAE, RMSE, MASE over all origins and steps, and the MAE of each step ahead."""
    error = forecast - actual
    mae = float(np.mean(np.abs(error)))
    return {
        "mae": round(mae, 5),
        "rmse": round(float(np.sqrt(np.mean(error**2))), 5),
        "mase": round(mae / scale, 5),
        "mae_by_step": [round(float(v), 5) for v in np.mean(np.abs(error), axis=0)],
    }


def plot_forecasts(
    actual_series: np.ndarray,
    starts: np.ndarray,
    forecast: np.ndarray,
    baselines: dict[str, np.ndarray],
    path: Path,
    title: str,
    time: list[str] | None = None,
) -> None:
    """Actuals over the test tail against the 1-step and last-step forecasts, and a few whole
    forecast paths; below, the MAE of each step ahead for the model and the baselines."""
    horizon = forecast.shape[1]
    first, last = int(starts[0]), int(starts[-1]) + horizon
    steps = np.arange(first, last)
    fig, (top, bottom) = reports.subplots(
        2, 1, figsize=(11, 7.5), gridspec_kw={"height_ratios": [2.2, 1]}
    )
    top.plot(steps, actual_series[first:last], color="black", lw=1.2, label="actual")
    top.plot(starts, forecast[:, 0], color="tab:blue", lw=1, label="forecast, 1 step ahead")
    if horizon > 1:
        top.plot(
            starts + horizon - 1,
            forecast[:, -1],
            color="tab:orange",
            lw=1,
            label=f"forecast, {horizon} steps ahead",
        )
    for i in np.linspace(0, len(starts) - 1, min(6, len(starts))).astype(int):
        o = int(starts[i])
        top.plot(np.arange(o, o + horizon), forecast[i], color="tab:red", lw=1.6, alpha=0.8)
    top.plot([], [], color="tab:red", lw=1.6, label="whole forecast from a few origins")
    if time is not None:
        ticks = np.linspace(first, last - 1, 6).astype(int)
        top.set_xticks(ticks, [time[t][:10] for t in ticks])
    else:
        top.set_xlabel("step")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    ahead = np.arange(1, horizon + 1)
    actual = np.stack([actual_series[o : o + horizon] for o in starts])
    bottom.plot(ahead, np.mean(np.abs(forecast - actual), axis=0), "o-", label="model")
    for name, values in baselines.items():
        bottom.plot(ahead, np.mean(np.abs(values - actual), axis=0), ".--", label=name)
    bottom.set_xlabel("steps ahead")
    bottom.set_ylabel("MAE (original units)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


MAX_FIT_STEPS = 20_000  # Holt-Winters fits its parameters on at most the last this many steps


def fit_start(train_end: int, season: int) -> int:
    """Where a Holt-Winters fit on `series[:train_end]` starts: the last `MAX_FIT_STEPS` steps,
    rounded down to whole seasons (so the seasonal states keep their phase)."""
    if train_end <= MAX_FIT_STEPS:
        return 0
    period = max(season, 1)
    return (train_end - MAX_FIT_STEPS) // period * period + (period if period > 1 else 0)


def holt_winters(
    series: np.ndarray,
    train_end: int,
    starts: np.ndarray,
    horizon: int,
    season: int,
    trend: str | None = "add",
    seasonal: str | None = "add",
) -> np.ndarray:
    """Rolling-origin Holt-Winters forecasts [origins, horizon] (statsmodels ExponentialSmoothing).

    The smoothing parameters and initial states are fitted on the fit part only (the last
    `MAX_FIT_STEPS` steps before `train_end` at most); the model is then run with those
    parameters over the rest of the series, and each origin `o` forecasts from its state after
    step `o - 1` (only values before `o`), exactly as refitting the fixed model on `series[:o]`
    would. The forecast is the textbook one (Hyndman and Athanasopoulos, FPP3 section 8.3):
    season s[t + h - m(k + 1)] with k = (h - 1) // m; statsmodels' own `forecast()` takes the
    season one cycle further back at h = m.

    Args:
        series: the target, [steps].
        train_end: the end of the fit part (the fit sees `series[:train_end]`).
        starts: forecast origins, each after the fit part's start.
        horizon: steps forecast from each origin.
        season: steps per season (`seasonal` must be None when < 2).
        trend: "add" or None.
        seasonal: "add", "mul" (a positive series only) or None.
    """
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    periods = season if seasonal else None
    first = fit_start(train_end, season if seasonal else 1)
    series, train_end, starts = series[first:], train_end - first, np.asarray(starts) - first
    with warnings.catch_warnings():  # convergence chatter from the optimizer
        warnings.simplefilter("ignore")
        fitted = ExponentialSmoothing(
            series[:train_end], trend=trend, seasonal=seasonal, seasonal_periods=periods
        ).fit()
        params = fitted.params
        known = {"initial_level": params["initial_level"]}
        smoothing = {"smoothing_level": params["smoothing_level"]}
        if trend:
            known["initial_trend"] = params["initial_trend"]
            smoothing["smoothing_trend"] = params["smoothing_trend"]
        if seasonal:
            known["initial_seasonal"] = params["initial_seasons"]
            smoothing["smoothing_seasonal"] = params["smoothing_seasonal"]
        full = ExponentialSmoothing(
            series,
            trend=trend,
            seasonal=seasonal,
            seasonal_periods=periods,
            initialization_method="known",
            **known,
        ).fit(**smoothing, optimized=False)
    state = np.asarray(starts) - 1
    ahead = np.arange(1, horizon + 1)
    level = full.level[state, np.newaxis]
    base = level + ahead * full.trend[state, np.newaxis] if trend else level + 0 * ahead
    if not seasonal:
        return base
    seasons = full.season[state[:, np.newaxis] - season + 1 + (ahead - 1) % season]
    return base * seasons if seasonal == "mul" else base + seasons


MAX_SEASONAL_PERIOD = 1008  # longer seasons (a week of 5-minute steps) get no seasonal states


def holt_winters_candidates(train: np.ndarray, season: int) -> list[dict[str, str | None]]:
    """The Holt-Winters variants worth trying on this train part, least flexible first: a
    seasonal model (additive, then multiplicative for a positive series) when the train part
    holds two seasons of at most `MAX_SEASONAL_PERIOD` steps, else trend-only and level-only."""
    if 2 <= season <= MAX_SEASONAL_PERIOD and len(train) >= 2 * season + 2:
        variants = [{"trend": "add", "seasonal": "add"}]
        if (train > 0).all():
            variants.append({"trend": "add", "seasonal": "mul"})
        return variants
    return [{"trend": None, "seasonal": None}, {"trend": "add", "seasonal": None}]


def holt_winters_weights(
    window: int,
    horizon: int,
    season: int,
    alpha: float,
    beta: float | None,
    gamma: float | None,
) -> np.ndarray:
    """Additive Holt-Winters over one window as a fixed linear map: [window, horizon] weights W
    such that `window_values @ W` is the forecast of the next `horizon` steps.

    The states start from the window itself (the first season's mean as the level, the change
    between the first two seasons' means as the trend, the first season's deviations as the
    season; without a season, the first value and the first difference), then the smoothing
    runs over the window with the given coefficients (statsmodels' parameterization: `beta`
    on the level's change, `gamma` on the season's error; None leaves the trend or the season
    out). Everything is linear in the window, so the map is exact; each column sums to 1, so it
    commutes with shifting and scaling the values (it can run on normalized values).
    """
    y = np.eye(window)  # row t: the window value at step t, as a coefficient vector
    seasonal = gamma is not None and 2 <= season <= window
    m = season if seasonal else 1
    if seasonal:
        level = y[:m].mean(axis=0)
        trend = (y[m : 2 * m].mean(axis=0) - level) / m if window >= 2 * m else 0 * level
        seasons = [y[j] - level for j in range(m)]
    else:
        level = y[0]
        trend = y[1] - y[0] if window > 1 else 0 * level
        seasons = [0 * level]
    if beta is None:
        trend = 0 * level
    for t in range(window):
        previous_level, previous_trend = level, trend
        s = seasons[t % m] if seasonal else 0
        level = alpha * (y[t] - s) + (1 - alpha) * (previous_level + previous_trend)
        if beta is not None:
            trend = beta * (level - previous_level) + (1 - beta) * previous_trend
        if seasonal:
            seasons[t % m] = gamma * (y[t] - previous_level - previous_trend) + (1 - gamma) * s
    ahead = np.arange(1, horizon + 1)
    columns = []
    for h in ahead:
        forecast = level + h * trend
        if seasonal:
            forecast = forecast + seasons[(window + h - 1) % m]  # the slot of step t + h
        columns.append(forecast)
    return np.stack(columns, axis=1)


def holt_winters_coefficients(train: np.ndarray, season: int) -> dict[str, Any]:
    """The smoothing coefficients of additive Holt-Winters fitted on a train part (statsmodels),
    for `holt_winters_weights`: a season when the part holds two of at most
    `MAX_SEASONAL_PERIOD` steps, else the trend alone."""
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = 2 <= season <= MAX_SEASONAL_PERIOD and len(train) >= 2 * season + 2
    first = fit_start(len(train), season if seasonal else 1)
    with warnings.catch_warnings():  # convergence chatter from the optimizer
        warnings.simplefilter("ignore")
        params = (
            ExponentialSmoothing(
                train[first:],
                trend="add",
                seasonal="add" if seasonal else None,
                seasonal_periods=season if seasonal else None,
            )
            .fit()
            .params
        )
    return {
        "alpha": float(params["smoothing_level"]),
        "beta": float(params["smoothing_trend"]),
        "gamma": float(params["smoothing_seasonal"]) if seasonal else None,
        "season": int(season) if seasonal else 1,
    }
