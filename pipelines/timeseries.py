"""Time series data: sources, chronological splits, train-part statistics and windowing.

Every source returns a `Series`: a float64 array [steps, features] in time order with the
target among the features, missing values interpolated (and counted), and the time stamps
when the source has them. The pipeline then cuts it into windows of `window` past steps and
the next `horizon` target values, per part of a chronological train / validation / test split.

Sources (the `dataset` config value):
    co2         statsmodels' bundled Mauna Loa CO2 series: 2,284 weekly observations
                (1958-03-29 to 2001-12-29), 59 of them missing.
    csv:PATH    a CSV file with a header row; `time_column` (optional), `feature_columns` and
                `target_column` name the columns. Rows must already be sorted by time.

Split: the first `1 - val_fraction - test_fraction` of the steps are the train part, then the
validation part, then the test tail. A window belongs to the part its *targets* fall in; its
inputs may reach back into earlier parts (the past is known at forecast time), never forward.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from ktemplate.pipelines.sources import check_numbers, parse_source

CO2_COLUMNS = ("date", "co2")


@dataclasses.dataclass
class Series:
    values: np.ndarray  # float64 [steps, features], time order, no NaN
    features: list[str]  # column names of `values`
    target: str  # the forecast column, one of `features`
    time: list[str] | None  # time stamps as text, one per step; None without a time column
    missing: dict[str, int]  # per feature: values that were missing and are interpolated
    gaps: dict[str, Any]  # irregular time steps: count, largest step, first positions
    frequency: str = "none"  # 1/5/10/15/30-minute, hourly, daily, ..., yearly or none
    frequency_reason: str = "no time column"  # what the frequency was inferred from

    @property
    def target_index(self) -> int:
        return self.features.index(self.target)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _co2_frame():
    import pandas as pd
    from statsmodels.datasets import co2

    data = co2.load_pandas().data
    return pd.DataFrame({"date": data.index.strftime("%Y-%m-%d"), "co2": data["co2"].to_numpy()})


def _csv_frame(path: str):
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"CSV file not found: {file}. Pass csv:PATH, a CSV file with a header row."
        )
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(
            f"Could not read {file} as CSV ({str(e).splitlines()[0] if str(e) else e}). "
            "Expected a comma-separated file with a header row."
        ) from None
    if frame.empty:
        raise ValueError(f"{file} has a header but no data rows.")
    return frame


def _split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _check_columns(frame, names: list[str], source: str) -> None:
    available = [str(c) for c in frame.columns]
    missing = [name for name in names if name not in available]
    if missing:
        raise ValueError(
            f"Column(s) {', '.join(repr(m) for m in missing)} not found in {source}. "
            f"Its columns are: {', '.join(available)}. Set time_column, feature_columns and "
            "target_column to names from this list."
        )


def _numeric_column(frame, name: str, source: str) -> np.ndarray:
    """The column as float64; empty cells become NaN, any other text is an error."""
    import pandas as pd

    raw = frame[name]
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64")
    bad = np.flatnonzero(np.isnan(numbers) & raw.notna().to_numpy())
    if len(bad):
        raise ValueError(
            f"Column '{name}' of {source} is not numeric: data row {int(bad[0]) + 1} holds "
            f"'{raw.iloc[bad[0]]}' ({len(bad)} non-numeric value(s) in all). Forecasting needs "
            "numbers; clean the column or pick another one."
        )
    if np.isnan(numbers).all():
        raise ValueError(
            f"Column '{name}' of {source} has no values at all (every cell is empty or NaN)."
        )
    check_numbers(numbers, [name], source)
    return numbers


def _time_axis(frame, name: str, source: str) -> tuple[np.ndarray, list[str], bool]:
    """Time as float positions for checks and interpolation (ns for dates), as text for
    reports, and whether the column holds dates."""
    import pandas as pd

    raw = frame[name]
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0]) + 1
        raise ValueError(f"Time column '{name}' of {source} is empty in data row {row}.")
    numbers = pd.to_numeric(raw, errors="coerce")
    dated = not numbers.notna().all()
    if not dated:
        position = numbers.to_numpy(dtype="float64")
    else:
        try:
            with warnings.catch_warnings():  # "could not infer format": parsing goes on
                warnings.simplefilter("ignore", UserWarning)
                stamps = pd.to_datetime(raw, errors="raise")
        except (ValueError, TypeError):
            raise ValueError(
                f"Time column '{name}' of {source} holds values that are neither numbers nor "
                f"dates (e.g. '{raw.iloc[int(numbers.isna().to_numpy().argmax())]}')."
            ) from None
        position = stamps.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
    steps = np.diff(position)
    if (steps == 0).any():
        row = int(np.flatnonzero(steps == 0)[0]) + 2
        raise ValueError(
            f"Time column '{name}' of {source} has duplicated time stamps: data row {row} repeats "
            f"'{raw.iloc[row - 1]}' ({int((steps == 0).sum())} duplicate(s) in all). Keep one "
            "row per time stamp (e.g. average the duplicates)."
        )
    if (steps < 0).any():
        row = int(np.flatnonzero(steps < 0)[0]) + 2
        raise ValueError(
            f"Time column '{name}' of {source} is not sorted: data row {row} "
            f"('{raw.iloc[row - 1]}') comes before data row {row - 1} ('{raw.iloc[row - 2]}'). "
            "Sort the file by time."
        )
    return position, [str(v) for v in raw], dated


# Sampling frequencies recognised from dated time stamps: name → (low, high) median step in days.
FREQUENCIES = {
    "1-minute": (0.9 / 1440, 1.1 / 1440),
    "5-minute": (4.5 / 1440, 5.5 / 1440),
    "10-minute": (9.0 / 1440, 11.0 / 1440),
    "15-minute": (13.5 / 1440, 16.5 / 1440),
    "30-minute": (27.0 / 1440, 33.0 / 1440),
    "hourly": (0.9 / 24, 1.1 / 24),
    "daily": (0.9, 1.1),
    "weekly": (6.5, 7.5),
    "monthly": (28.0, 31.0),
    "quarterly": (89.0, 92.0),
    "yearly": (364.0, 367.0),
}
DAY_NS = 86_400e9


def infer_frequency(position: np.ndarray | None, dated: bool) -> tuple[str, str]:
    """The sampling frequency of dated time stamps (`position` in ns), and why.

    The median step decides; at least 90% of the steps must be within its frequency's range
    (or whole multiples of it: rows missing from the file). Numbers, no time column and
    irregular steps give "none".
    """
    if position is None:
        return "none", "no time column: rows are steps"
    if not dated:
        return "none", "the time column holds numbers, not dates"
    if len(position) < 3:
        return "none", "fewer than 3 time stamps"
    steps = np.diff(position) / DAY_NS
    median = float(np.median(steps))
    for name, (low, high) in FREQUENCIES.items():
        if low <= median <= high:
            multiples = np.maximum(np.round(steps / median), 1)
            regular = (steps >= 0.97 * low * multiples) & (steps <= 1.03 * high * multiples)
            share = float(regular.mean())
            if share >= 0.9:
                return name, f"{name} time stamps (median step {_days(median)})"
            return "none", (
                f"irregular time stamps: median step {_days(median)} but only {share:.0%} of "
                "the steps are whole multiples of it"
            )
    return "none", f"time stamps {_days(median)} apart match no known frequency"


def _days(days: float) -> str:
    if days < 1 / 24:
        return f"{days * 1440:.3g} minutes"
    return f"{days * 24:.3g} hours" if days < 1 else f"{days:.3g} days"


def time_gaps(position: np.ndarray) -> dict[str, Any]:
    """Steps longer than 1.5x the median step: where rows are missing from the file."""
    if len(position) < 3:
        return {"count": 0}
    steps = np.diff(position)
    typical = float(np.median(steps))
    long = np.flatnonzero(steps > 1.5 * typical)
    return {
        "count": int(len(long)),
        "largest_in_steps": round(float(steps.max() / typical), 2),
        "after_rows": [int(i) + 1 for i in long[:10]],
    }


def interpolate_missing(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Linear interpolation of NaN along `position`; the ends take the nearest value.

    Missing steps are filled in place, so no value moves in time.
    """
    filled = values.copy()
    for column in range(values.shape[1]):
        known = ~np.isnan(values[:, column])
        filled[~known, column] = np.interp(position[~known], position[known], values[known, column])
    return filled


def load_series(
    dataset: str,
    time_column: str = "",
    feature_columns: str = "",
    target_column: str = "",
) -> Series:
    """Loads a source, checks its columns and interpolates missing values.

    Args:
        dataset: "co2" or "csv:PATH".
        time_column: the column holding time stamps (numbers or dates); "" uses row order.
        feature_columns: comma-separated input columns; the target is always an input too.
        target_column: the column to forecast ("" means "co2" for the co2 dataset).

    Raises:
        FileNotFoundError: the CSV file does not exist.
        ValueError: a missing, non-numeric or empty column; an unsorted or duplicated time
            column; no target column named for a CSV file.
    """
    kind, arg = parse_source(dataset, allowed=("co2", "csv"))
    if kind == "co2":
        frame, source = _co2_frame(), "the co2 dataset"
        time_column = time_column or "date"
        target_column = target_column or "co2"
    else:
        frame, source = _csv_frame(arg), arg
        if not target_column:
            raise ValueError(
                f"Set target_column to the column of {source} to forecast (its columns are: "
                f"{', '.join(str(c) for c in frame.columns)}), e.g. --set target_column=sales."
            )
    features = _split_names(feature_columns)
    if target_column not in features:
        features.insert(0, target_column)
    _check_columns(frame, features + ([time_column] if time_column else []), source)
    if time_column in features:
        raise ValueError(f"Column '{time_column}' is the time column; it cannot be a feature.")
    values = np.stack([_numeric_column(frame, name, source) for name in features], axis=1)
    if time_column:
        position, stamps, dated = _time_axis(frame, time_column, source)
        gaps = time_gaps(position)
        frequency, reason = infer_frequency(position, dated)
    else:
        position, stamps, gaps = np.arange(len(frame), dtype="float64"), None, {"count": 0}
        frequency, reason = infer_frequency(None, False)
    missing = {name: int(np.isnan(values[:, i]).sum()) for i, name in enumerate(features)}
    return Series(
        values=interpolate_missing(values, position),
        features=features,
        target=target_column,
        time=stamps,
        missing=missing,
        gaps=gaps,
        frequency=frequency,
        frequency_reason=reason,
    )


# ---------------------------------------------------------------------------------------------
# Splits and statistics
# ---------------------------------------------------------------------------------------------


def chronological_split(
    steps: int, window: int, horizon: int, val_fraction: float, test_fraction: float
) -> dict[str, tuple[int, int]]:
    """Half-open step ranges of the train, validation and test parts, in time order.

    Raises:
        ValueError: the series is too short for one window in every part.
    """
    n_val = int(round(steps * val_fraction))
    n_test = int(round(steps * test_fraction))
    n_train = steps - n_val - n_test
    if n_train < window + horizon or n_val < horizon or n_test < horizon:
        needed = steps
        while True:
            needed += 1
            v, t = int(round(needed * val_fraction)), int(round(needed * test_fraction))
            if needed - v - t >= window + horizon and v >= horizon and t >= horizon:
                break
        raise ValueError(
            f"The series has {steps} steps, too short for window={window} and horizon={horizon} "
            f"with val_fraction={val_fraction} and test_fraction={test_fraction}: the train "
            f"part needs >= window + horizon steps ({window + horizon}, has {n_train}) and the "
            f"validation and test parts >= horizon each (have {n_val} and {n_test}). Use at "
            f"least {needed} steps, or a smaller window/horizon."
        )
    return {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, steps),
    }


def train_stats(values: np.ndarray, train_end: int) -> tuple[list[float], list[float]]:
    """Per-feature mean and standard deviation of the train part only."""
    train = values[:train_end]
    std = train.std(axis=0)
    # A constant feature would divide by zero; it carries no information either way.
    return train.mean(axis=0).tolist(), np.where(std > 1e-12, std, 1.0).tolist()


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------


def origins(part: tuple[int, int], window: int, horizon: int) -> np.ndarray:
    """Forecast origins whose `horizon` targets all lie in `part` and whose window exists.

    An origin `o` has inputs `values[o - window : o]` and targets `target[o : o + horizon]`.
    """
    start, end = part
    return np.arange(max(start, window), end - horizon + 1)


def window_arrays(
    values: np.ndarray, target_index: int, starts: np.ndarray, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Input windows [n, window, features] and target blocks [n, horizon] for `starts`."""
    inputs = np.stack([values[o - window : o] for o in starts])
    targets = np.stack([values[o : o + horizon, target_index] for o in starts])
    return inputs, targets


def windows(
    values: np.ndarray,
    target_index: int,
    part: tuple[int, int],
    window: int,
    horizon: int,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    target: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Unbatched (raw float32 window [window, features], normalized float32 targets [horizon]).

    Inputs stay in original units (the model normalizes them itself, as its export does);
    targets are normalized with the train part's statistics so the loss is scale-free.
    `target` replaces `values[:, target_index]` as the series the targets come from (the
    target in the model's units, e.g. its log).
    """
    starts = origins(part, window, horizon)
    series = tf.constant(values, tf.float32)
    target = values[:, target_index] if target is None else target
    targets = tf.constant((target - target_mean) / target_std, tf.float32)

    def cut(origin):
        return series[origin - window : origin], targets[origin : origin + horizon]

    return tf.data.Dataset.from_tensor_slices(starts).map(cut, num_parallel_calls=tf.data.AUTOTUNE)


def prepare(
    ds: tf.data.Dataset,
    batch_size: int,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = 10_000,
) -> tf.data.Dataset:
    """cache → shuffle windows (train only) → batch → prefetch.

    Shuffling reorders whole windows of the train part; it never mixes steps across parts.
    """
    ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def portable_windows(
    values: np.ndarray, spec: dict[str, Any], split: str, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`split`'s forecast origins as raw windows, float32 [origins, window, features], and the
    actual values after each [origins, horizon]; `limit` keeps that many origins spread evenly
    over the split (the first ones alone would cover only its start of a trending series)."""
    window, horizon = spec["window"], spec["horizon"]
    starts = origins(tuple(spec["parts"][split]), window, horizon)
    if limit is not None and len(starts) > limit:
        starts = starts[np.linspace(0, len(starts) - 1, limit).round().astype(int)]
    if not len(starts):
        return np.zeros((0, window, len(spec["features"])), np.float32), np.zeros((0, horizon))
    inputs, actual = window_arrays(values, spec["target_index"], starts, window, horizon)
    return inputs.astype(np.float32), actual


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    """The export manifest's entries for a forecaster's spec."""
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
