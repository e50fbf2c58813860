import numpy as np
import pytest
from ktemplate.pipelines import timeseries


def ramp(steps=200, features=1):
    """Column f holds 1000 * f + t at step t: every value names its own step."""
    return np.stack([1000.0 * f + np.arange(steps) for f in range(features)], axis=1)


def test_each_window_targets_exactly_the_next_horizon_values():
    values = ramp(120, features=2)
    window, horizon = 10, 4
    parts = timeseries.chronological_split(120, window, horizon, 0.2, 0.2)
    for part in parts.values():
        for x, y in timeseries.windows(values, 0, part, window, horizon).as_numpy_iterator():
            origin = int(y[0])
            np.testing.assert_array_equal(x[:, 0], np.arange(origin - window, origin))
            np.testing.assert_array_equal(x[:, 1], 1000 + np.arange(origin - window, origin))
            np.testing.assert_array_equal(y, np.arange(origin, origin + horizon))


def test_windows_stay_in_their_part_and_every_origin_is_used():
    window, horizon = 10, 4
    parts = timeseries.chronological_split(120, window, horizon, 0.2, 0.2)
    assert parts == {"train": (0, 72), "val": (72, 96), "test": (96, 120)}
    values = ramp(120)
    targets = {}
    for name, part in parts.items():
        ys = [
            y for _, y in timeseries.windows(values, 0, part, window, horizon).as_numpy_iterator()
        ]
        targets[name] = np.stack(ys)
        assert targets[name].min() >= part[0] and targets[name].max() < part[1]
        assert len(ys) == part[1] - max(part[0], window) - horizon + 1
    # No test (or validation) window forecasts a step the model was trained to forecast.
    assert not set(targets["test"].ravel()) & set(targets["train"].ravel())
    assert not set(targets["val"].ravel()) & set(targets["train"].ravel())
    # The test origins run from the first test step to the last one with a full horizon.
    np.testing.assert_array_equal(targets["test"][:, 0], np.arange(96, 120 - horizon + 1))


def test_targets_are_normalized_and_inputs_stay_raw():
    values = ramp(60)
    ds = timeseries.windows(values, 0, (0, 60), 5, 2, target_mean=10.0, target_std=2.0)
    x, y = next(ds.as_numpy_iterator())
    np.testing.assert_array_equal(x[:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(y, [(5 - 10) / 2, (6 - 10) / 2])


def test_only_train_windows_are_shuffled():
    values = ramp(100)
    ds = timeseries.windows(values, 0, (0, 100), 5, 1)
    ordered = np.concatenate([y for _, y in timeseries.prepare(ds, 8, False).as_numpy_iterator()])
    shuffled = np.concatenate(
        [y for _, y in timeseries.prepare(ds, 8, True, seed=1).as_numpy_iterator()]
    )
    np.testing.assert_array_equal(ordered[:, 0], np.arange(5, 100))
    assert not np.array_equal(shuffled, ordered)
    np.testing.assert_array_equal(np.sort(shuffled[:, 0]), ordered[:, 0])


def test_statistics_come_from_the_train_part_only():
    values = ramp(100)
    values[80:] += 1e6  # a level shift after the train part must not leak into the statistics
    mean, std = timeseries.train_stats(values, 70)
    assert mean == pytest.approx([34.5])
    assert std == pytest.approx([np.arange(70).std()])
    # A constant feature gets std 1, not a division by zero.
    assert timeseries.train_stats(np.ones((10, 1)), 5)[1] == [1.0]


def test_too_short_series_says_how_long_it_must_be():
    with pytest.raises(ValueError, match=r"has 50 steps.*at least \d+ steps") as info:
        timeseries.chronological_split(50, 40, 5, 0.15, 0.15)
    needed = int(str(info.value).split("at least ")[1].split()[0])
    timeseries.chronological_split(needed, 40, 5, 0.15, 0.15)  # enough
    with pytest.raises(ValueError):
        timeseries.chronological_split(needed - 1, 40, 5, 0.15, 0.15)


def test_missing_values_are_interpolated_in_place():
    values = np.array([[1.0], [np.nan], [3.0], [np.nan], [np.nan], [9.0], [np.nan]])
    position = np.arange(7, dtype="float64")
    filled = timeseries.interpolate_missing(values, position)
    np.testing.assert_allclose(filled[:, 0], [1, 2, 3, 5, 7, 9, 9])


def test_co2_default_data():
    series = timeseries.load_series("co2")
    assert series.values.shape == (2284, 1)
    assert series.features == ["co2"] and series.target == "co2"
    assert series.missing == {"co2": 59}
    assert not np.isnan(series.values).any()
    assert (series.time[0], series.time[-1]) == ("1958-03-29", "2001-12-29")
    assert series.gaps["count"] == 0


def write_csv(path, text):
    path.write_text(text.strip() + "\n")
    return f"csv:{path}"


def test_csv_multivariate_with_missing_values_and_gaps(tmp_path):
    dataset = write_csv(
        tmp_path / "sales.csv",
        """
date,price,sales,promo
2024-01-01,1.0,10,0
2024-01-02,1.5,,1
2024-01-03,2.0,14,0
2024-01-05,2.5,18,1
2024-01-06,,20,0
""",
    )
    series = timeseries.load_series(dataset, "date", "price,promo", "sales")
    assert series.features == ["sales", "price", "promo"]  # the target leads when not listed
    assert series.missing == {"sales": 1, "price": 1, "promo": 0}
    np.testing.assert_allclose(series.values[:, 0], [10, 12, 14, 18, 20])
    # The NaN price on 01-06 takes the nearest known value (it is the last row).
    np.testing.assert_allclose(series.values[:, 1], [1.0, 1.5, 2.0, 2.5, 2.5])
    assert series.gaps == {"count": 1, "largest_in_steps": 2.0, "after_rows": [3]}

    listed = timeseries.load_series(dataset, "date", "price,sales", "sales")
    assert listed.features == ["price", "sales"] and listed.target_index == 1
    plain = timeseries.load_series(dataset, "", "", "sales")
    assert plain.time is None and plain.features == ["sales"]


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("t,y\n1,1\n2,abc\n3,3", ("t", "", "y"), r"'y' .* not numeric: data row 2 holds 'abc'"),
        ("t,y\n1,1\n2,2", ("t", "", "sales"), r"'sales'.* not found.*columns are: t, y"),
        ("t,y\n1,1\n2,2", ("t", "x", "y"), r"'x'.* not found"),
        (
            "t,y\n1,1\n3,2\n2,3",
            ("t", "", "y"),
            r"not sorted: data row 3 \('2'\) comes before data row 2 \('3'\)",
        ),
        (
            "t,y\n2024-01-01,1\n2024-01-01,2",
            ("t", "", "y"),
            r"duplicated time stamps: data row 2 repeats",
        ),
        ("t,y,z\n1,1,\n2,2,\n3,3,", ("t", "z", "y"), r"'z' .* no values at all"),
        ("t,y\n1,\n2,\n3,", ("t", "", "y"), r"'y' .* no values at all"),
        ("t,y\nmon,1\ntue,2", ("t", "", "y"), r"neither numbers nor dates"),
        ("t,y\n1,1\n2,2", ("t", "", ""), r"Set target_column"),
        ("t,y\n1,1\n2,inf\n3,3", ("t", "", "y"), r"data row 2, column 'y' holds inf"),
        ("t,y\n1,1e308\n2,2\n3,3", ("t", "", "y"), r"row 1, column 'y' holds 1e\+308"),
    ],
)
def test_bad_csv_columns(tmp_path, text, options, message):
    dataset = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=message):
        timeseries.load_series(dataset, *options)


def test_missing_csv_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        timeseries.load_series(f"csv:{tmp_path / 'none.csv'}", "", "", "y")
    with pytest.raises(ValueError, match="Unknown dataset"):
        timeseries.load_series("airline")


@pytest.mark.parametrize(
    "freq, expected",
    [
        ("min", "1-minute"),
        ("5min", "5-minute"),
        ("10min", "10-minute"),
        ("15min", "15-minute"),
        ("30min", "30-minute"),
        ("h", "hourly"),
        ("D", "daily"),
        ("W-SUN", "weekly"),
        ("MS", "monthly"),
        ("ME", "monthly"),
        ("QS", "quarterly"),
        ("YS", "yearly"),
    ],
)
def test_frequency_is_inferred_from_dates(freq, expected):
    import pandas as pd

    stamps = pd.date_range("2001-01-01", periods=60, freq=freq)
    position = stamps.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
    assert timeseries.infer_frequency(position, dated=True)[0] == expected
    # A few rows missing from the file do not change the frequency.
    kept = np.delete(position, [10, 11, 30])
    assert timeseries.infer_frequency(kept, dated=True)[0] == expected


def test_numbers_missing_and_irregular_time_have_no_frequency():
    assert timeseries.infer_frequency(np.arange(50.0), dated=False)[0] == "none"
    assert timeseries.infer_frequency(None, dated=False)[0] == "none"
    rng = np.random.default_rng(0)
    irregular = np.cumsum(rng.uniform(0.2, 3.0, 80)) * timeseries.DAY_NS
    frequency, reason = timeseries.infer_frequency(irregular, dated=True)
    assert frequency == "none" and reason
