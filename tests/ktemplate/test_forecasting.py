import numpy as np
import pytest

from ktemplate import forecasting


def test_naive_and_seasonal_naive_use_only_the_past():
    series = np.arange(100.0)
    starts = np.array([20, 30])
    np.testing.assert_array_equal(forecasting.naive(series, starts, 3), [[19] * 3, [29] * 3])
    # Season 4, horizon 6: steps 1-4 ahead repeat the last season, steps 5-6 the one before.
    forecast = forecasting.seasonal_naive(series, starts, 6, 4)
    np.testing.assert_array_equal(forecast[0], [16, 17, 18, 19, 16, 17])
    assert (forecast < starts[:, np.newaxis]).all()


def test_mase_is_scaled_by_the_train_seasonal_naive_error():
    train = np.arange(20.0)  # seasonal difference is always 4 with season 4
    assert forecasting.mase_scale(train, 4) == 4.0
    result = forecasting.errors(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]), 4.0)
    assert result == {
        "mae": 1.5,
        "rmse": pytest.approx(np.sqrt(2.5), abs=1e-5),
        "mase": 0.375,
        "mae_by_step": [1.0, 2.0],
    }
    with pytest.raises(ValueError, match="season=20"):
        forecasting.mase_scale(train, 20)
    with pytest.raises(ValueError, match="MASE is undefined"):
        forecasting.mase_scale(np.ones(10), 2)


def test_holt_winters_weights_are_the_smoothing_as_one_linear_map():
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    rng = np.random.default_rng(0)
    t, m = np.arange(60), 12
    y = 10 + 0.3 * t + 3 * np.sin(2 * np.pi * t / m) + rng.normal(0, 0.5, 60)
    weights = forecasting.holt_winters_weights(60, 14, m, 0.3, 0.1, 0.2)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)  # shift and scale commute with it
    level = y[:m].mean()  # the window's own starting states
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ExponentialSmoothing(
            y,
            trend="add",
            seasonal="add",
            seasonal_periods=m,
            initialization_method="known",
            initial_level=level,
            initial_trend=(y[m : 2 * m].mean() - level) / m,
            # each slot's deviation from its season's mean, averaged over the 5 seasons
            initial_seasonal=(y.reshape(5, m) - y.reshape(5, m).mean(axis=1, keepdims=True)).mean(
                0
            ),
        ).fit(smoothing_level=0.3, smoothing_trend=0.1, smoothing_seasonal=0.2, optimized=False)
    ahead = np.arange(1, 15)
    expected = (
        fitted.level[-1]
        + ahead * fitted.trend[-1]
        + fitted.season[len(fitted.season) - m + (ahead - 1) % m]
    )
    np.testing.assert_allclose(y @ weights, expected, atol=1e-9)
    flat = forecasting.holt_winters_weights(30, 5, 1, 0.5, 0.2, None)  # no season
    np.testing.assert_allclose(np.full(30, 7.0) @ flat, 7.0)
    # No season: the trend starts from the window's least-squares line, not its first
    # difference (0 here), so even unsmoothed it carries on the line; with no trend, the mean.
    t = np.arange(30.0)
    zigzag = 5 + 2 * t + (-1) ** t
    frozen = forecasting.holt_winters_weights(30, 5, 1, 0.0, 0.0, None)
    np.testing.assert_allclose(zigzag @ frozen, 5 + 2 * np.arange(30, 35), atol=0.3)
    level_only = forecasting.holt_winters_weights(30, 5, 1, 0.0, None, None)
    np.testing.assert_allclose(zigzag @ level_only, zigzag.mean())


def test_theta_weights_are_the_theta_method_on_the_window_as_one_linear_map():
    rng = np.random.default_rng(1)
    t, m, window, horizon = np.arange(40), 12, 40, 15
    y = 50 + 0.4 * t + 5 * np.sin(2 * np.pi * t / m) + rng.normal(0, 1, 40)
    weights = forecasting.theta_weights(window, horizon, m, 0.3, 2.0, detrend=False)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)  # shift and scale commute with it
    # The same steps on the numbers: the 3 whole seasons that end with the window give each
    # slot's deviation; simple smoothing of the rest from its first value; half the slope.
    whole = y[window - 3 * m :].reshape(3, m)
    deviation = (whole - whole.mean(axis=1, keepdims=True)).mean(axis=0)  # slots 4..15 → % m
    seasons = np.empty(m)
    seasons[(np.arange(window - 3 * m, window - 2 * m)) % m] = deviation
    rest = y - seasons[t % m]
    level = rest[0]
    for value in rest:
        level = 0.3 * value + 0.7 * level
    slope = np.polyfit(t, rest, 1)[0]
    ahead = np.arange(1, horizon + 1)
    expected = (
        level
        + 0.5 * slope * (ahead - 1 + 1 / 0.3 - 0.7**window / 0.3)
        + seasons[(window + ahead - 1) % m]
    )
    np.testing.assert_allclose(y @ weights, expected, atol=1e-9)
    # theta=1 and alpha=1 with no season: the last value (naive); a season repeats exactly.
    naive = forecasting.theta_weights(20, 4, 1, 1.0, 1.0)
    np.testing.assert_allclose(np.arange(20.0) @ naive, 19.0, atol=1e-9)
    pattern = np.tile([3.0, -1.0, 4.0, 0.0], 6) + 10
    repeated = forecasting.theta_weights(24, 8, 4, 0.5, 2.0, detrend=False)
    np.testing.assert_allclose(pattern @ repeated, np.tile([13, 9, 14, 10.0], 2), atol=1e-9)
    detrended = forecasting.theta_weights(24, 8, 4, 0.5, 2.0, detrend=True)
    np.testing.assert_allclose(pattern @ detrended, np.tile([13, 9, 14, 10.0], 2), atol=0.05)
    # A trend inside each season leaks into the season unless the line is removed first.
    rising = 0.5 * np.arange(32.0) + np.tile([3.0, -1.0, 4.0, 0.0], 8)
    errors = [
        np.abs(rising[:24] @ forecasting.theta_weights(24, 8, 4, 1.0, 3.0, d) - rising[24:]).mean()
        for d in (True, False)
    ]
    assert errors[0] < 0.5 * errors[1]


def test_theta_base_fits_its_smoothing_on_the_train_windows():
    t = np.arange(120.0)
    target = 20 + 0.5 * t + 4 * np.sin(2 * np.pi * t / 12)
    target += np.random.default_rng(0).normal(0, 0.3, 120)
    parts = {"train": [0, 84], "val": [84, 102], "test": [102, 120]}
    fitted = forecasting.theta_base_weights(target, parts, 24, 6, 12)
    weights = np.asarray(fitted["weights"])
    assert weights.shape == (24, 6)
    profile = forecasting.season_profile(target[:84], 12)

    def forecast(w, first, last, with_profile):  # from the origins first..last
        windows = np.stack([target[o - 24 : o] for o in range(first, last + 1)])
        values = windows @ w
        if with_profile:  # the phase from each window, the profile's offsets added
            phase = np.argmax(windows @ forecasting.profile_phases(profile, 24), axis=1)
            values += forecasting.profile_offsets(profile, 24, w)[phase]
        return values

    def mae(w, first, last, with_profile=False):
        actual = np.stack([target[o : o + 6] for o in range(first, last + 1)])
        return np.abs(forecast(w, first, last, with_profile) - actual).mean()

    # Per season estimate (from the window's line, its seasons' means, or the train part's
    # profile), the grid's best on the train windows; of those, the best on the validation
    # windows; better on train than the last value.
    best = {}
    for estimate in ("line", "means", "profile"):
        grid = {
            (a, th): forecasting.theta_weights(
                24, 6, 1 if estimate == "profile" else 12, a, th, estimate == "line"
            )
            for a in forecasting.THETA_ALPHAS
            for th in forecasting.THETA_COEFFICIENTS
        }
        best[estimate] = min(
            grid.items(), key=lambda item: mae(item[1], 24, 78, estimate == "profile")
        )
    chosen = min(best, key=lambda e: mae(best[e][1], 84, 96, e == "profile"))
    found = "profile" if fitted["profile"] else "line" if fitted["detrend"] else "means"
    assert (found, fitted["alpha"], fitted["theta"]) == (chosen, *best[chosen][0])
    np.testing.assert_allclose(weights, best[chosen][1], atol=1e-6)
    if fitted["profile"]:
        np.testing.assert_allclose(fitted["profile"], profile)
    last_value = np.zeros((24, 6))
    last_value[-1] = 1.0
    assert mae(weights, 24, 78, chosen == "profile") < 0.5 * mae(last_value, 24, 78)
    # A series too short for a profile (two seasons and a step) weighs only the window's.
    short = forecasting.theta_base_weights(
        target[:60], {"train": [0, 24], "val": [24, 48]}, 12, 6, 12
    )
    assert short["profile"] is None


def test_season_profile_and_the_window_phase_come_from_the_values():
    rng = np.random.default_rng(3)
    shape = np.array([5.0, 3.0, -1.0, -4.0, -6.0, -2.0, 0.0, 1.0, 2.0, 4.0, -3.0, 1.0])
    shape -= shape.mean()
    t = np.arange(240)
    series = 100 + 0.8 * t + shape[t % 12] + rng.normal(0, 0.5, 240)
    profile = forecasting.season_profile(series, 12)
    np.testing.assert_allclose(profile.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(profile, shape, atol=0.3)  # the trend does not leak into it
    # Each window's first step's slot, found from its values alone (level and trend ignored).
    phases = forecasting.profile_phases(profile, 18)
    starts = np.arange(0, 200, 7)
    windows = np.stack([series[s : s + 18] for s in starts])
    np.testing.assert_array_equal(np.argmax(windows @ phases, axis=1), starts % 12)
    np.testing.assert_array_equal(np.argmax((3 * windows - 50) @ phases, axis=1), starts % 12)
    # Offsets: window @ W + offsets[k] is (window - profile) @ W + the profile ahead.
    w = forecasting.theta_weights(18, 5, 1, 0.4, 2.0)
    offsets = forecasting.profile_offsets(profile, 18, w)
    k = starts[3] % 12
    inside, ahead = profile[(k + np.arange(18)) % 12], profile[(k + 18 + np.arange(5)) % 12]
    np.testing.assert_allclose(
        windows[3] @ w + offsets[k], (windows[3] - inside) @ w + ahead, atol=1e-9
    )


def test_the_season_base_is_weighed_only_where_seasonal_naive_beats_the_last_value():
    from types import SimpleNamespace

    t = np.arange(120, dtype=float)
    noise = np.random.default_rng(0).normal(0, 0.3, 120)
    config = SimpleNamespace(window=24, horizon=12, season=12)
    seasonal = 10 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 12) + noise
    assert forecasting.season_pays(seasonal, config)
    trend = 10 + 0.5 * t + noise  # seasonally adjusted: a year back is further off than now
    assert not forecasting.season_pays(trend, config)
    assert not forecasting.season_pays(seasonal, SimpleNamespace(window=8, horizon=12, season=12))


def test_holt_winters_base_takes_a_trend_only_where_it_forecasts_validation_better():
    from types import SimpleNamespace

    rng = np.random.default_rng(5)
    parts = {"train": [0, 200], "val": [200, 260], "test": [260, 300]}
    config = SimpleNamespace(window=12, horizon=6, season=1)
    flat = 1000 + rng.normal(0, 120, 300)  # a noisy level (yearly river flows)
    rising = 50 + 3.0 * np.arange(300) + rng.normal(0, 2, 300)
    chosen = {}
    for name, series in (("flat", flat), ("rising", rising)):
        found = forecasting.holt_winters_base(series, parts, config)
        assert found["season"] == 1 and found["gamma"] is None
        assert (found["beta"] is None) == (found["trend"] == "none")
        chosen[name] = found["trend"]
        # The variant kept is the one with the lower validation MAE of the two fits.
        val_x, val_t = forecasting.window_blocks(series, parts["val"], 12, 6)
        kept = forecasting.holt_winters_weights(12, 6, 1, found["alpha"], found["beta"], None)
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        other_trend = None if found["trend"] == "add" else "add"
        params = ExponentialSmoothing(series[:200], trend=other_trend).fit().params
        other = forecasting.holt_winters_weights(
            12,
            6,
            1,
            params["smoothing_level"],
            params["smoothing_trend"] if other_trend else None,
            None,
        )
        assert np.abs(val_x @ kept - val_t).mean() <= np.abs(val_x @ other - val_t).mean() + 1e-9
    assert chosen == {"flat": "none", "rising": "add"}


def test_residual_scale_keeps_the_share_of_the_correction_that_forecasts_best():
    base, full = np.zeros((2, 3)), np.full((2, 3), np.log(4.0))
    # In the target's units (exp): scale 0.5 forecasts exp(0.5 * log 4) = 2, the actual value.
    scale, found = forecasting.residual_scale(base, full, np.full((2, 3), 2.0), np.exp)
    assert scale == 0.5 and found[0.5] == pytest.approx(0.0, abs=1e-9)
    assert list(found) == list(forecasting.RESIDUAL_SCALES)
    assert found[0.0] == pytest.approx(1.0) and found[1.0] == pytest.approx(2.0)
    actual = np.full((2, 3), 9.0)  # beyond the full correction: every step toward it pays
    assert forecasting.residual_scale(base, full, actual, np.exp)[0] == 1.0
    # No correction at all: every scale ties, and the model stays as trained.
    assert forecasting.residual_scale(base, base, np.ones((2, 3)), np.exp)[0] == 1.0
