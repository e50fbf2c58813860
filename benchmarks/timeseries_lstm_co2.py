"""timeseries_lstm on the default CO2 data against seasonal naive and Holt-Winters.

Trains the default config (through the same code path as `ktemplate train timeseries_lstm`) for
each seed. In the same run, fits statsmodels' `ExponentialSmoothing` (additive trend and
seasonality; `ktemplate.forecasting.holt_winters`) on the train part and forecasts `horizon`
steps from every test origin with the fitted parameters, the same rolling-origin protocol as
the template's metrics. (Each run's own `baseline` block also picks between additive and
multiplicative seasonality on validation.) Prints a
Markdown table; the figures in benchmarks/RESULTS.md come from this script.

    python benchmarks/timeseries_lstm_co2.py --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from ktemplate.pipelines import timeseries  # noqa: E402
from ktemplate.templates import timeseries_lstm  # noqa: E402

from ktemplate import files, forecasting, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args()

    series = timeseries.load_series(timeseries_lstm.Config().dataset)
    config = timeseries_lstm.resolve_auto(timeseries_lstm.Config(), series).config
    target = series.values[:, series.target_index]
    parts = timeseries.chronological_split(
        len(target), config.window, config.horizon, config.val_fraction, config.test_fraction
    )
    starts = timeseries.origins(parts["test"], config.window, config.horizon)
    actual = np.stack([target[o : o + config.horizon] for o in starts])
    scale = forecasting.mase_scale(target[: parts["train"][1]], config.season)
    start = time.perf_counter()
    hw_forecast = forecasting.holt_winters(
        target, parts["train"][1], starts, config.horizon, config.season
    )
    hw_seconds = time.perf_counter() - start
    baselines = {
        "Holt-Winters (additive)": forecasting.errors(hw_forecast, actual, scale),
        "seasonal naive": forecasting.errors(
            forecasting.seasonal_naive(target, starts, config.horizon, config.season),
            actual,
            scale,
        ),
        "naive": forecasting.errors(
            forecasting.naive(target, starts, config.horizon), actual, scale
        ),
    }

    rows = []
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            start = time.perf_counter()
            run_dir = run.train(
                timeseries_lstm, timeseries_lstm.Config(seed=seed), output_dir=out, verbose=0
            )
            wall = time.perf_counter() - start
            metrics = files.read_json(run_dir / "metrics.json")
            # The template's own seasonal-naive figure must match this script's: same origins.
            assert (
                abs(metrics["test_seasonal_naive_mae"] - baselines["seasonal naive"]["mae"]) < 1e-4
            )
            correction = files.read_json(run_dir / "spec.json").get("residual_scale", 1)
            rows.append((seed, metrics, wall, correction))

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}"
    )
    print(
        f"series: {len(target)} weekly steps ({sum(series.missing.values())} interpolated); "
        f"train/val/test parts {parts['train']} {parts['val']} {parts['test']}; "
        f"window {config.window}, horizon {config.horizon}, season {config.season}; "
        f"{len(starts)} test origins; MASE scale {scale:.4f}\n"
    )
    hw, sn = baselines["Holt-Winters (additive)"], baselines["seasonal naive"]
    print(
        "| model | seed | MAE | RMSE | MASE | MAE / seasonal naive | MAE / Holt-Winters | epochs "
        "| kept (a partner base trained too) | correction scale | fit s | run s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed, m, wall, kept_scale in rows:
        kept = m.get("ensemble", {}).get("kept", "-")
        print(
            f"| LSTM | {seed} | {m['test_mae']:.4f} | {m['test_rmse']:.4f} | {m['test_mase']:.4f} "
            f"| {m['test_mae'] / sn['mae']:.3f} | {m['test_mae'] / hw['mae']:.3f} "
            f"| {m['epochs']['train']} | {kept} | {kept_scale:g} | {m['train_seconds']:.1f} "
            f"| {wall:.1f} |"
        )
    for name, e in baselines.items():
        fit = f"{hw_seconds:.1f}" if name.startswith("Holt") else "-"
        print(
            f"| {name} | - | {e['mae']:.4f} | {e['rmse']:.4f} | {e['mase']:.4f} "
            f"| {e['mae'] / sn['mae']:.3f} | {e['mae'] / hw['mae']:.3f} | - | - | - | {fit} | - |"
        )
    maes = np.array([m["test_mae"] for _, m, _, _ in rows])
    print(
        f"\nLSTM mean MAE {maes.mean():.4f} (max {maes.max():.4f}); MASE "
        f"{maes.mean() / scale:.4f}; MAE ratio to seasonal naive {maes.mean() / sn['mae']:.3f}, "
        f"to Holt-Winters {maes.mean() / hw['mae']:.3f}; max fit time "
        f"{max(m['train_seconds'] for _, m, _, _ in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
