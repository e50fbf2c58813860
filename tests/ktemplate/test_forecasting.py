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
