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
