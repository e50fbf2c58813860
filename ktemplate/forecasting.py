"""Forecast metrics, the naive baselines and the forecast plot (rolling-origin evaluation).

A rolling-origin evaluation forecasts `horizon` steps from every origin `o` of the test tail
(the values before `o` are known). Errors are in the series' original units. MASE divides the
MAE by the in-sample seasonal-naive error of the train part, so MASE < 1 means the forecasts
beat "same as one season ago" on the data the model learned from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ktemplate import baselines, reports
from ktemplate.config import Resolver


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


def rolling_metrics(
    series: Any,
    spec: dict[str, Any],
    starts: np.ndarray,
    forecast: np.ndarray,
    actual: np.ndarray,
    plot: Path | None = None,
) -> dict[str, Any]:
    """The test metrics of forecasts from `starts` (original units, [origins, horizon]):
    MAE, RMSE and MASE beside naive and seasonal naive on the same origins, the data's
    missing values and gaps; the forecast plot to `plot` when given. `series` is the loaded
    series (`pipelines.timeseries.load_series`), `spec` the run's."""
    horizon, season = spec["horizon"], spec["season"]
    target_series = series.values[:, spec["target_index"]]
    scale = mase_scale(target_series[: spec["parts"]["train"][1]], season)
    references = {
        "naive": naive(target_series, starts, horizon),
        "seasonal_naive": seasonal_naive(target_series, starts, horizon, season),
    }
    model_errors = errors(forecast, actual, scale)
    reference_errors = {name: errors(f, actual, scale) for name, f in references.items()}
    metrics = {
        "test_mae": model_errors["mae"],
        "test_rmse": model_errors["rmse"],
        "test_mase": model_errors["mase"],
        "test_seasonal_naive_mae": reference_errors["seasonal_naive"]["mae"],
        "test_naive_mae": reference_errors["naive"]["mae"],
        "test_origins": int(len(starts)),
        "horizon": horizon,
        "mase_scale": round(scale, 5),
        "missing_interpolated": int(sum(spec["missing_interpolated"].values())),
        "time_gaps": int(spec["time_gaps"]["count"]),
        "test_mae_by_step": model_errors["mae_by_step"],
        "baselines": reference_errors,
        "missing_by_column": spec["missing_interpolated"],
    }
    if plot is not None:
        plot_forecasts(
            target_series,
            starts,
            forecast,
            references,
            plot,
            title=f"{spec['target']}: rolling-origin forecasts over the test tail "
            f"(MAE {model_errors['mae']:.3g}, MASE {model_errors['mase']:.3g})",
            time=series.time,
        )
    return metrics


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
    between the first two seasons' means as the trend, and as the season each slot's deviation
    from its season's mean averaged over the window's whole seasons: with the small seasonal
    smoothing statsmodels often fits, one season's noise would stay in every forecast; without
    a season, the window's least-squares line, or its mean without a trend: a trend started from
    the first difference, which a small fitted trend smoothing barely corrects, runs away on a
    noisy series), then the smoothing
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
        cycles = [y[i * m : (i + 1) * m] for i in range(window // m)]  # the whole seasons
        seasons = [np.mean([c[j] - c.mean(axis=0) for c in cycles], axis=0) for j in range(m)]
    elif window > 1:  # the least-squares line one step before the window (the mean: no trend)
        steps = np.arange(window, dtype="float64") - (window - 1) / 2
        trend = steps @ y / float(steps @ steps)
        level = y.mean(axis=0) - (window + 1) / 2 * trend * (beta is not None)
        seasons = [0 * level]
    else:
        level, trend, seasons = y[0], 0 * y[0], [0 * y[0]]
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


def holt_winters_base(target: np.ndarray, parts: dict[str, Any], config: Any) -> dict[str, Any]:
    """The `ets` forecast base: the smoothing coefficients of additive Holt-Winters fitted on
    the train part (statsmodels), for `holt_winters_weights`: a season when the part holds two
    of at most `MAX_SEASONAL_PERIOD` steps, and an additive trend or none, whichever forecasts
    the validation windows with the lower MAE (as the classical baseline picks its variant;
    `trend` records it). A trend started from one window's first steps and smoothed little can
    run away on a noisy series with no trend (yearly river flows). `config`: the run's window,
    horizon and season."""
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    window, horizon, season = config.window, config.horizon, config.season
    train = target[: parts["train"][1]]
    seasonal = 2 <= season <= MAX_SEASONAL_PERIOD and len(train) >= 2 * season + 2
    first = fit_start(len(train), season if seasonal else 1)
    val_x, val_t = window_blocks(target, parts["val"], window, horizon)
    best = None
    for trend in ("add", None):
        with warnings.catch_warnings():  # convergence chatter from the optimizer
            warnings.simplefilter("ignore")
            params = (
                ExponentialSmoothing(
                    train[first:],
                    trend=trend,
                    seasonal="add" if seasonal else None,
                    seasonal_periods=season if seasonal else None,
                )
                .fit()
                .params
            )
        found = {
            "alpha": float(params["smoothing_level"]),
            "beta": float(params["smoothing_trend"]) if trend else None,
            "gamma": float(params["smoothing_seasonal"]) if seasonal else None,
            "season": int(season) if seasonal else 1,
            "trend": trend or "none",
        }
        weights = holt_winters_weights(
            window, horizon, found["season"], found["alpha"], found["beta"], found["gamma"]
        )
        mae = float(np.mean(np.abs(val_x @ weights - val_t))) if len(val_x) else 0.0
        if best is None or mae < best[0]:
            best = (mae, found)
    return best[1]


def window_blocks(
    target: np.ndarray, part: tuple[int, int], window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The windows [n, window] and target blocks [n, horizon] (float64) of one part's forecast
    origins, for fitting a base that is a fixed linear map of the window."""
    from ktemplate.pipelines import timeseries

    starts = timeseries.origins(tuple(part), window, horizon)
    x, t = timeseries.window_arrays(target[:, None], 0, starts, window, horizon)
    return x[..., 0].astype("float64"), t.astype("float64")


def season_pays(train: np.ndarray, config: Any) -> bool:
    """Whether the seasonal naive forecast from the window (its last season, repeated) beats the
    window's last value, by MAE over the train part's windows. The `season` base is weighed
    only then: a seasonally adjusted or trend-only series has no season it could use."""
    window, horizon, season = config.window, config.horizon, config.season
    if not 2 <= season <= window:
        return False
    x, t = window_blocks(train, (0, len(train)), window, horizon)
    seasonal = x[:, window - season + np.arange(horizon) % season]
    return float(np.abs(seasonal - t).mean()) < float(np.abs(x[:, -1:] - t).mean())


LINEAR_RIDGE = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge penalties tried (share of the mean power)


def linear_base_weights(
    target: np.ndarray, parts: dict[str, Any], window: int, horizon: int
) -> dict[str, Any]:
    """A direct linear forecaster fitted on the train windows, as a [window, horizon] map W
    such that `window_values @ W` is the forecast (the `linear` forecast base).

    Each target block and window is taken relative to the window's last value, and a ridge
    regression maps one to the other (closed form, penalty chosen on the validation windows'
    MAE from `LINEAR_RIDGE`). The last value is folded back into W, so each column sums to 1
    and the map commutes with shifting and scaling the values, like `holt_winters_weights`.
    """

    def blocks(part):
        x, t = window_blocks(target, parts[part], window, horizon)
        return x - x[:, -1:], t - x[:, -1:]

    x, t = blocks("train")
    gram = x.T @ x
    power = max(float(np.trace(gram)) / window, 1e-12)
    val_x, val_t = blocks("val")
    best = None
    for ridge in LINEAR_RIDGE:
        w = np.linalg.solve(gram + ridge * power * np.eye(window), x.T @ t)
        mae = float(np.mean(np.abs(val_x @ w - val_t)))
        if best is None or mae < best[0]:
            best = (mae, ridge, w)
    _, ridge, w = best
    w[-1] += 1.0 - w.sum(axis=0)
    return {"weights": w.astype("float32").tolist(), "ridge": ridge}


THETA_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)  # level smoothing tried on train
THETA_COEFFICIENTS = (1.0, 2.0, 3.0)  # theta tried on train (2: Assimakopoulos-Nikolopoulos)


def theta_weights(
    window: int, horizon: int, season: int, alpha: float, theta: float, detrend: bool = True
) -> np.ndarray:
    """The Theta method over one window as a fixed linear map: [window, horizon] weights W such
    that `window_values @ W` is the forecast of the next `horizon` steps.

    After statsmodels' `ThetaModel` (Assimakopoulos and Nikolopoulos 2000; Hyndman and Billah
    2003), on the window alone: the season removed, simple exponential smoothing of the rest
    from its first value, plus `1 - 1/theta` of the rest's least-squares slope, `(1 - 1/theta)
    * slope * (h - 1 + 1/alpha - (1 - alpha)**window / alpha)` at h steps ahead, and the season
    put back. The season is each slot's mean over the window's whole seasons (counted back from
    its end) of the deviation from the window's least-squares line (`detrend`, as classical
    decomposition removes the trend first; without it the trend inside a season leaks into it)
    or from that season's mean. Additive, so multiplicative on a log target. Every step is
    linear in the window; each column sums to 1, so the map commutes with shifting and scaling
    the values (it runs on normalized values, like `holt_winters_weights`).
    """
    y = np.eye(window)  # row t: the window value at step t, as a coefficient vector
    m = season if 2 <= season <= window else 1
    steps = np.arange(window, dtype="float64") - (window - 1) / 2
    seasons = np.zeros((m, window))
    if m > 1:
        cycles = window // m
        first = window - cycles * m  # the whole seasons end with the window
        line = y.mean(axis=0) + np.outer(steps, steps @ y) / float(steps @ steps)
        for t in range(first, window):
            start = first + (t - first) // m * m
            reference = line[t] if detrend else y[start : start + m].mean(axis=0)
            seasons[t % m] += (y[t] - reference) / cycles
        seasons -= seasons.mean(axis=0)  # no level in the season
    rest = y - seasons[np.arange(window) % m]
    slope = steps @ rest / max(float(steps @ steps), 1e-12)
    level = rest[0]
    for t in range(window):
        level = alpha * rest[t] + (1 - alpha) * level
    drift = (1 - 1 / theta) * slope
    columns = [
        level
        + drift * (h - 1 + 1 / alpha - (1 - alpha) ** window / alpha)
        + seasons[(window + h - 1) % m]
        for h in range(1, horizon + 1)
    ]
    return np.stack(columns, axis=1)


def season_profile(train: np.ndarray, season: int) -> np.ndarray:
    """The seasonal profile of a train part by classical decomposition: each slot's mean
    deviation from the centred moving average over one season (a 2 x m average for an even
    season), less the slots' mean. Slot j holds the steps `t` with `t % season == j`."""
    kernel = np.r_[0.5, np.ones(season - 1), 0.5] if season % 2 == 0 else np.ones(season)
    trend = np.convolve(train, kernel / season, mode="valid")
    offset = (len(kernel) - 1) // 2
    deviation = train[offset : offset + len(trend)] - trend
    slots = (np.arange(len(trend)) + offset) % season
    profile = np.array([deviation[slots == j].mean() for j in range(season)])
    return profile - profile.mean()


def profile_at_phases(
    profile: np.ndarray, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The profile over a window and over the horizon after it, for a window whose first step
    is at slot k: S [m, window] and F [m, horizon], row k."""
    m = len(profile)
    inside = np.stack([profile[(k + np.arange(window)) % m] for k in range(m)])
    ahead = np.stack([profile[(k + window + np.arange(horizon)) % m] for k in range(m)])
    return inside, ahead


def profile_phases(profile: np.ndarray, window: int) -> np.ndarray:
    """[window, m] scores Q such that `argmax(window_values @ Q)` is the slot of the window's
    first step: the phase whose profile correlates best with the window less its least-squares
    line (so the scores ignore level and trend). Row t, column k: the profile at slot k + t."""
    steps = np.arange(window, dtype="float64") - (window - 1) / 2
    detrend = np.eye(window) - 1.0 / window - np.outer(steps, steps) / float(steps @ steps)
    inside, _ = profile_at_phases(profile, window, 0)
    return detrend @ inside.T


def profile_offsets(profile: np.ndarray, window: int, weights: np.ndarray) -> np.ndarray:
    """[m, horizon] offsets: for a window whose first step is at slot k, the forecast of a map W
    run on the window less the profile, plus the profile over the horizon: `window @ W +
    offsets[k]` is `(window - S_k) @ W + F_k` (`profile_at_phases`)."""
    inside, ahead = profile_at_phases(profile, window, weights.shape[1])
    return ahead - inside @ weights


def theta_base_weights(
    target: np.ndarray, parts: dict[str, Any], window: int, horizon: int, season: int
) -> dict[str, Any]:
    """The `theta` forecast base: `theta_weights` with the smoothing (`THETA_ALPHAS`) and theta
    (`THETA_COEFFICIENTS`) whose forecasts of the train windows have the lowest MAE, for each
    season estimate, and of those the one with the lower MAE on the validation windows (as
    `linear_base_weights` chooses its penalty).

    The season estimates: from the window (`detrend`: deviations from its line, or from each
    season's mean), or the train part's `season_profile` (`profile`, in `target`'s units), the
    window's phase found from its values (`profile_phases`): the season seen over the whole
    train part, not just the window's few seasons, at the cost of guessing the phase. With a
    profile the map runs on the window less the profile and the forecast adds the offsets of
    the phase (`profile_offsets`)."""
    blocks = {
        part: window_blocks(target, parts[part], window, horizon) for part in ("train", "val")
    }
    seasonal = 2 <= season <= window
    estimates: list[Any] = [True, False] if seasonal else [True]
    if seasonal and parts["train"][1] - parts["train"][0] >= 2 * season + 1:
        estimates.append(season_profile(target[slice(*parts["train"])], season))
    best = None
    for estimate in estimates:
        profile = None if isinstance(estimate, bool) else estimate
        phase = {}  # with a profile: each window's phase, by part
        if profile is not None:
            phases = profile_phases(profile, window)
            phase = {part: np.argmax(x @ phases, axis=1) for part, (x, _) in blocks.items()}

        def mae(w, part, profile=profile, phase=phase):
            x, t = blocks[part]
            forecast = x @ w
            if profile is not None:
                forecast = forecast + profile_offsets(profile, window, w)[phase[part]]
            return float(np.mean(np.abs(forecast - t)))

        fits = {
            (alpha, theta): theta_weights(
                window, horizon, season if profile is None else 1, alpha, theta, estimate is True
            )
            for alpha in THETA_ALPHAS
            for theta in THETA_COEFFICIENTS
        }
        (alpha, theta), w = min(fits.items(), key=lambda f: mae(f[1], "train"))
        if best is None or mae(w, "val") < best[0]:
            chosen = {"alpha": alpha, "theta": theta, "detrend": estimate is True}
            listed = None if profile is None else profile.tolist()
            best = (mae(w, "val"), {**chosen, "profile": listed}, w)
    _, chosen, w = best
    return {"weights": w.astype("float32").tolist(), **chosen}


RESIDUAL_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)  # residual_scale=auto: tried on validation


def residual_scale(
    base: np.ndarray, full: np.ndarray, actual: np.ndarray, to_units: Callable
) -> tuple[float, dict[float, float]]:
    """The scale s of `RESIDUAL_SCALES` whose forecasts `base + s * (full - base)` have the
    lowest MAE against `actual` (ties: the larger s), and every scale's MAE.

    `base` and `full` are the model's outputs [origins, horizon] without and with its
    correction (normalized units; `to_units` turns them into the target's units). Scale 0 is
    the classical base alone; 1 the model as trained.
    """
    found = {}
    for scale in RESIDUAL_SCALES:
        forecast = to_units(base + scale * (full - base))
        found[scale] = round(float(np.mean(np.abs(forecast - actual))), 6)
    best = min(found.values())
    return max(s for s, mae in found.items() if mae <= best), found


# ---------------------------------------------------------------------------------------------
# Seasons and target scale from the data
# ---------------------------------------------------------------------------------------------

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


def seasons_in(frequency: str, season: int, window: int) -> list[int]:
    """The seasons a window of `window` steps holds (2 steps or more): the frequency's natural
    ones (`FREQUENCY_DEFAULTS`) and the run's `season`, shortest first."""
    candidates, _, also_normal = FREQUENCY_DEFAULTS[frequency]
    return sorted({s for s in (*candidates, *also_normal, season) if 2 <= s <= window})


def season_candidates(frequency: str, n_train: int) -> list[int]:
    """The seasons worth trying for `frequency`: those the train part holds at least twice."""
    fitting = [s for s in FREQUENCY_DEFAULTS[frequency][0] if s >= 2 and 2 * s <= n_train]
    return fitting or [1]


def season_on_validation(series, candidates, why, n_train, n_val, horizon) -> tuple[int, str]:
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
        s: float(np.mean(np.abs(seasonal_naive(target, starts, horizon, s) - actual)))
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


def classical_baseline(
    target: np.ndarray,
    starts: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
    ends: tuple[int, int],
    horizon: int,
    season: int,
    periods: list[int],
    refit: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]], np.ndarray]:
    """The classical grid on the same origins: naive, seasonal naive at each of `periods` (and
    `season`), Holt-Winters with each trend/season variant, least to most flexible (a tie on
    validation MAE goes to the later one). Every method is fitted on the train part (`ends`:
    the train and validation parts' ends) and forecasts the "val" and "test" origins of
    `starts`; the best on validation is refitted on train+validation when `refit`.

    Returns the baseline block's `fitted` part (name, settings with every method's validation
    MAE, notes, seconds), each method's {"val", "test"} forecasts, and the best one's test
    forecast.
    """
    train_end, val_end = ends
    scale = mase_scale(target[:train_end], season)
    candidates = {"naive": lambda s, end: naive(target, s, horizon)}
    for p in sorted({*periods, season} - {1}):
        candidates[f"seasonal naive (season {p})"] = lambda s, end, p=p: seasonal_naive(
            target, s, horizon, p
        )
    kind = {"add": "additive", "mul": "multiplicative", None: "no"}
    for variant in holt_winters_candidates(target[:train_end], season):
        name = f"Holt-Winters ({kind[variant['trend']]} trend, {kind[variant['seasonal']]} season)"
        candidates[name] = lambda s, end, v=variant: holt_winters(
            target, end, s, horizon, season, **v
        )
    start = time.perf_counter()
    every = np.concatenate([starts["val"], starts["test"]])
    forecasts = {}
    for name, forecast in candidates.items():  # fitted on train: one call for both parts
        val, test = np.split(forecast(every, train_end), [len(starts["val"])])
        forecasts[name] = {"val": val, "test": test}
    tried = [
        {"method": name, "val_mae": errors(f["val"], actual["val"], scale)["mae"]}
        for name, f in forecasts.items()
    ]
    best = tried[baselines.pick(tried, "val_mae", higher_is_better=False)]["method"]
    test_forecast = forecasts[best]["test"]
    if refit and best.startswith("Holt-Winters"):
        test_forecast = candidates[best](starts["test"], val_end)
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
    if fit_start(train_end, season) > 0:
        fitted["notes"].append(
            f"Holt-Winters parameters fitted on the last {MAX_FIT_STEPS} steps "
            "(whole seasons) of the fitted part"
        )
    return fitted, forecasts, test_forecast


def resolve_season(auto: Resolver, series: Any) -> tuple[int, int, int]:
    """season and horizon from the series' frequency (`FREQUENCY_DEFAULTS`), recorded in `auto`
    (a Resolver over a config with season, horizon, val_fraction and test_fraction).

    season=auto: a frequency with two natural seasons (daily and weekly for sub-daily data,
    weekly and yearly for daily data) takes the one whose seasonal naive forecast has the lower
    validation MAE, among those the train part holds twice. horizon=auto is cut to fit the
    validation and test parts. Warns about a season the user set that contradicts the
    frequency. Returns (season, horizon, train part's steps).
    """
    config = auto.config
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
        season, reason = season_on_validation(series, candidates, why, n_train, n_val, horizon)
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
    return season, horizon, n_train


def compare(
    fitted: dict[str, Any],
    forecasts: dict[str, dict[str, np.ndarray]],
    test_forecast: np.ndarray,
    model_forecasts: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
    scale: float,
    horizon: int,
    config: Any,
    tries: list,
) -> dict[str, Any]:
    """The baseline block: `classical_baseline`'s pick against the model's forecasts
    (`model_forecasts` and `actual` by part, "val" and "test") on the same test origins, by
    MAE with a Diebold-Mariano test; with both validation MAEs, and a note when the classical
    method was as good on validation."""
    test = errors(test_forecast, actual["test"], scale)
    best = fitted["name"]
    model_val_mae = float(np.mean(np.abs(model_forecasts["val"] - actual["val"])))
    best_val_mae = min(t["val_mae"] for t in fitted["settings"]["tried"])
    model_errors = np.abs(model_forecasts["test"] - actual["test"]).mean(axis=1)  # per origin
    base_errors = np.abs(test_forecast - actual["test"]).mean(axis=1)
    block = baselines.compare(
        fitted,
        {
            "test_mae": test["mae"],
            "test_rmse": test["rmse"],
            "test_mase": test["mase"],
            "test_mae_by_name": {
                name: errors(f["test"], actual["test"], scale)["mae"]
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
        n=len(actual["test"]),
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
