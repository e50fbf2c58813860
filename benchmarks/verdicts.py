"""Are the runs' verdicts true? Each in-run baseline against an independent whole-grid fit.

For every data set of the generalization suite (benchmarks/generalization.py), plus a resumed
run, a run with a CPU-hog process beside it, a 200-image folder (20 validation images) and a
half-hourly series (and breast_cancer for the anomaly template), this script trains the
template with its defaults (`ktemplate train`, only the data source and columns set), then fits
the same classical method again here, independently, straight from scikit-learn, statsmodels,
scikit-image and bm3d, with its whole grid on the same split, and recomputes the paired test:

- the in-run baseline's test metric must equal the independent one (to 1e-6; BM3D, whose
  library sums in threads, to 1e-4 dB), and its grid must be whole;
- the run's verdict must equal the verdict of the independent paired test (McNemar from
  statsmodels, Wilcoxon from SciPy; Diebold-Mariano and DeLong from `ktemplate.baselines`,
  which the tests check against a bootstrap and a naive t-test);
- a false verdict is a run that says better or worse where the independent test does not.

    python benchmarks/verdicts.py                  # every case (about 1.5 hours on 2 cores)
    python benchmarks/verdicts.py --only taylor digits_200

Needs the PyPI package `rdata` and Debian's archive for the half-hourly series (see
`debian_data.py`). Prints a Markdown table; benchmarks/RESULTS.md records it. Its plain runs
are generalization.py's runs (same data, defaults and seed), so it prints that table too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import debian_data  # noqa: E402  (benchmarks/, beside this script)
import generalization  # noqa: E402
import numpy as np  # noqa: E402

from ktemplate import baselines, files, reports, run, templates  # noqa: E402
from ktemplate import config as config_lib  # noqa: E402

SIGNIFICANCE = baselines.SIGNIFICANCE


# ---------------------------------------------------------------------------------------------
# The extra cases
# ---------------------------------------------------------------------------------------------


def digits_200(folder: Path) -> dict:
    """200 of scikit-learn's digits in class folders: 20 validation images, where every
    setting of the image baseline can tie."""
    from ktemplate.pipelines import images

    pixels, labels = images.digits_arrays()
    keep = np.random.default_rng(1).permutation(len(labels))[:200]
    for i in keep:
        generalization._write_png(folder / str(labels[i]) / f"{i}.png", pixels[i])
    return {"dataset": f"dir:{folder}"}


def taylor(folder: Path) -> dict:
    """Half-hourly electricity demand in England and Wales, 12 weeks of summer 2000 (R forecast's
    `taylor`, from Debian's r-cran-forecast): a daily and a weekly season."""
    stamps, values = debian_data.r_forecast_series("taylor")
    rows = zip(stamps, values, strict=True)
    csv = generalization._csv(folder / "taylor.csv", "time,demand", rows)
    return {"dataset": f"csv:{csv}", "time_column": "time", "target_column": "demand"}


def breast_cancer(folder: Path) -> dict:
    """scikit-learn's breast cancer features: benign tumours normal, malignant anomalies."""
    return {"dataset": "breast_cancer"}


CASES: dict[str, tuple[str, object, str]] = {
    **{name: (t, build, "plain") for name, (t, build) in generalization.DATASETS.items()},
    "fortunes_5 resumed": ("text_transformer", generalization.fortunes, "resume"),
    "digits_300 beside a CPU hog": ("image_cnn", generalization.digits_few, "hog"),
    "digits_200": ("image_cnn", digits_200, "plain"),
    "taylor": ("timeseries_lstm", taylor, "plain"),
    "breast_cancer": ("anomaly_autoencoder", breast_cancer, "plain"),
}


# ---------------------------------------------------------------------------------------------
# Training as a user would: plain, interrupted and resumed, beside a CPU hog
# ---------------------------------------------------------------------------------------------


def train(template, overrides: dict, scenario: str, out: Path) -> Path:
    with contextlib.redirect_stdout(sys.stderr):  # the run's own lines stay out of the table
        return _train(template, overrides, scenario, out)


def _train(template, overrides: dict, scenario: str, out: Path) -> Path:
    config = config_lib.apply_overrides(template.Config(), overrides, from_text=True)
    if scenario == "plain":
        return run.train(template, config, output_dir=out, verbose=0)
    if scenario == "hog":
        hogs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)
        ]
        try:
            return run.train(template, config, output_dir=out, verbose=0)
        finally:
            for hog in hogs:
                hog.kill()
    # resume: interrupted (Ctrl-C) after the (first member's) second epoch, then resumed.
    run_dir = out / template.NAME / "resumed"
    command = [sys.executable, "-m", "ktemplate", "train", template.NAME, "--run-dir", str(run_dir)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    log = out / "interrupted.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as sink:
        # Ctrl-C's SIGINT back to its default first: a benchmark started in the background
        # (`nohup ... &`) inherits it ignored, and Python then never raises KeyboardInterrupt.
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        # member 0's history in an ensemble, the run's own for one model (`members=auto`)
        histories = [run_dir / "members" / "0" / "history_train.csv", run_dir / "history_train.csv"]
        while not any(h.exists() and len(h.read_text().splitlines()) >= 3 for h in histories):
            if process.poll() is not None:
                raise RuntimeError(f"training ended before the interruption: see {log}")
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=600)
    status = files.read_json(run_dir / "run.json")["status"]
    if status != "interrupted":
        raise RuntimeError(f"the run is {status}, not interrupted: {log.read_text()[-2000:]}")
    return run.train(template, None, resume=run_dir, verbose=0)


# ---------------------------------------------------------------------------------------------
# Independent fits, straight from the libraries, with the whole grid
# ---------------------------------------------------------------------------------------------


def best_on_validation(scores: list[float], higher: bool = True) -> int:
    """The documented rule: the best validation score; a tie goes to the later (more flexible)."""
    values = np.asarray(scores)
    best = values.max() if higher else values.min()
    return int(np.flatnonzero(np.abs(values - best) <= 1e-12)[-1])


def image_cnn(template, data, config, model) -> dict:
    from ktemplate.pipelines import images
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    sizes = data.spec["sizes"]
    arrays = {
        name: images.arrays(images.spread_sample(ds, sizes[name], template.BASELINE_IMAGES[name]))
        for name, ds in data.splits.items()
    }
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        arrays["train"],
        arrays["val"],
        arrays["test"],
    )
    assert len(train_y) <= baselines.MAX_TRAIN_IMAGES and len(val_y) <= baselines.MAX_VAL_IMAGES

    def flat(x):
        side = max(x.shape[1:3])
        if side > baselines.MAX_PIXEL_SIDE:
            import tensorflow as tf

            scale = baselines.MAX_PIXEL_SIDE / side
            size = (max(1, round(x.shape[1] * scale)), max(1, round(x.shape[2] * scale)))
            x = tf.image.resize(x, size, method="area").numpy()
        return x.reshape(len(x), -1).astype("float32") / 255.0

    scaler = StandardScaler().fit(flat(train_x))
    xs = {k: scaler.transform(flat(v)) for k, v in (("train", train_x), ("val", val_x))}
    gamma = 1.0 / (xs["train"].shape[1] * xs["train"].var())
    grid = [LogisticRegression(C=c, max_iter=1000) for c in (0.01, 0.1, 1.0)] + [
        SVC(C=c, gamma=g * gamma) for c in (1.0, 10.0, 100.0) for g in (0.5, 1.0, 2.0)
    ]
    scores = [(m.fit(xs["train"], train_y).predict(xs["val"]) == val_y).mean() for m in grid]
    best = grid[best_on_validation(scores)]
    base_correct = best.predict(scaler.transform(flat(test_x))) == test_y
    model_correct = model.predict(test_x.astype("float32"), verbose=0).argmax(-1) == test_y
    return classification(base_correct, model_correct, type(best).__name__, len(grid))


def text_transformer(template, data, config, model) -> dict:
    import tensorflow as tf
    from ktemplate.pipelines import text
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion

    (train_t, train_y), (val_t, val_y), (test_t, test_y) = (
        text.arrays(data.splits[s]) for s in ("train", "val", "test")
    )
    assert len(train_y) <= baselines.MAX_TRAIN_TEXTS
    cut = lambda ts: [t[: baselines.MAX_TEXT_CHARS] for t in ts]  # noqa: E731
    features = FeatureUnion(
        [
            ("w", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("c", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        ]
    ).fit(cut(train_t))
    x_train, x_val = features.transform(cut(train_t)), features.transform(cut(val_t))
    grid = [LogisticRegression(C=c, max_iter=2000) for c in baselines.TEXT_C_GRID]
    scores = [(m.fit(x_train, train_y).predict(x_val) == val_y).mean() for m in grid]
    best = grid[best_on_validation(scores)]
    base_correct = best.predict(features.transform(cut(test_t))) == test_y
    probabilities = template.text_model(model, data.spec).predict(tf.constant(test_t), verbose=0)
    return classification(base_correct, probabilities.argmax(-1) == test_y, f"C={best.C}", 8)


def classification(base_correct, model_correct, picked: str, grid: int) -> dict:
    from statsmodels.stats.contingency_tables import mcnemar

    table = [
        [int((base_correct & model_correct).sum()), int((model_correct & ~base_correct).sum())],
        [int((base_correct & ~model_correct).sum()), int((~base_correct & ~model_correct).sum())],
    ]
    p_value = float(mcnemar(table, exact=True).pvalue)
    return {
        "baseline": float(base_correct.mean()),
        "model": float(model_correct.mean()),
        "p": p_value,
        "n": len(base_correct),
        "test": "McNemar",
        "higher": True,
        "picked": picked,
        "grid": grid,
    }


def timeseries_lstm(template, data, config, model) -> dict:
    import warnings

    from ktemplate.pipelines import timeseries
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    from ktemplate import forecasting

    spec = data.spec
    window, horizon, season = spec["window"], spec["horizon"], spec["season"]
    y = data.series.values[:, spec["target_index"]]
    train_end = spec["parts"]["train"][1]
    parts = spec["parts"]
    starts = {p: timeseries.origins(tuple(parts[p]), window, horizon) for p in ("val", "test")}
    actual = {p: np.stack([y[o : o + horizon] for o in s]) for p, s in starts.items()}
    ahead = np.arange(1, horizon + 1)

    def seasonal(origins, period):  # the same step one (or more) whole seasons back
        return np.stack([y[o + ahead - 1 - period * ((ahead - 1) // period + 1)] for o in origins])

    methods = {"naive": lambda origins: np.repeat(y[origins - 1][:, None], horizon, axis=1)}
    periods = sorted({*forecasting.season_candidates(spec["frequency"], train_end), season} - {1})
    for p in periods:
        methods[f"seasonal naive (season {p})"] = lambda origins, p=p: seasonal(origins, p)
    for variant in forecasting.holt_winters_candidates(y[:train_end], season):
        methods[f"Holt-Winters {variant}"] = lambda origins, v=variant: holt_winters_refit(
            ExponentialSmoothing, warnings, y, train_end, origins, horizon, season, v
        )
    val_mae = [float(np.abs(m(starts["val"]) - actual["val"]).mean()) for m in methods.values()]
    name = list(methods)[best_on_validation(val_mae, higher=False)]
    base = np.abs(methods[name](starts["test"]) - actual["test"]).mean(axis=1)
    windows = np.stack([data.series.values[o - window : o] for o in starts["test"]])
    normalized = model.predict(windows.astype("float32"), verbose=0).astype("float64")
    forecast = template.to_original_units(normalized, spec)
    ours = np.abs(forecast - actual["test"]).mean(axis=1)
    return {
        "baseline": float(base.mean()),
        "model": float(ours.mean()),
        "p": baselines.diebold_mariano_p(ours, base, horizon),
        "n": len(base),
        "test": "Diebold-Mariano",
        "higher": False,
        "picked": name,
        "grid": len(methods),
    }


def holt_winters_refit(es, warnings, y, train_end, origins, horizon, season, variant):
    """Holt-Winters fitted on the train part, then re-run from its fitted start at every origin
    on the values before it (a refit of the fixed model per origin, as a user would do), each
    forecasting from its last states."""
    from ktemplate import forecasting

    first = forecasting.fit_start(train_end, season if variant["seasonal"] else 1)
    periods = season if variant["seasonal"] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = es(y[first:train_end], seasonal_periods=periods, **variant).fit().params
        known = {"initial_level": p["initial_level"]}
        fixed = {"smoothing_level": p["smoothing_level"]}
        if variant["trend"]:
            known["initial_trend"] = p["initial_trend"]
            fixed["smoothing_trend"] = p["smoothing_trend"]
        if variant["seasonal"]:
            known["initial_seasonal"] = p["initial_seasons"]
            fixed["smoothing_seasonal"] = p["smoothing_seasonal"]
        rows = []
        ahead = np.arange(1, horizon + 1)
        for o in origins:
            model = es(
                y[first:o],
                seasonal_periods=periods,
                initialization_method="known",
                **variant,
                **known,
            ).fit(**fixed, optimized=False)
            # The textbook forecast from the last states (Hyndman and Athanasopoulos, FPP3
            # 8.3): level + h trend, with the season s[t + h - m(k + 1)], k = (h - 1) // m.
            # statsmodels' own forecast() takes the season one cycle further back at h = m.
            base = model.level[-1] + (ahead * model.trend[-1] if variant["trend"] else 0)
            if not variant["seasonal"]:
                rows.append(base + 0 * ahead)
                continue
            seasons = model.season[len(model.season) - season + (ahead - 1) % season]
            rows.append(base * seasons if variant["seasonal"] == "mul" else base + seasons)
    return np.asarray(rows)


def denoising_autoencoder(template, data, config, model) -> dict:
    import bm3d
    from scipy.stats import wilcoxon
    from skimage.restoration import denoise_nl_means, estimate_sigma

    def sigma(x):
        gray = x.shape[-1] == 1
        z = (x[..., 0] if gray else x).astype("float64")
        return float(np.mean(estimate_sigma(z, channel_axis=None if gray else -1)))

    def nlm(x):
        gray, s = x.shape[-1] == 1, sigma(x)
        z = (x[..., 0] if gray else x).astype("float64")
        out = denoise_nl_means(
            z,
            h=0.8 * s,
            sigma=s,
            fast_mode=True,
            patch_size=5,
            patch_distance=6,
            channel_axis=None if gray else -1,
        )
        return out[..., None] if gray else out

    def bm(x):
        s = max(sigma(x), 1e-4)
        if x.shape[-1] == 1:
            return np.asarray(bm3d.bm3d(x[..., 0].astype("float64"), sigma_psd=s))[..., None]
        return np.asarray(bm3d.bm3d_rgb(x.astype("float64"), sigma_psd=s))

    tiles = list(data.splits["val"].as_numpy_iterator())
    tiles = [tiles[i] for i in baselines.spread(len(tiles), template.BASELINE_VAL_TILES)]
    methods = {"non-local means": nlm, "BM3D": bm}
    quality = reports.image_quality
    val = [np.mean([quality(c, m(n))[0] for n, c in tiles]) for m in methods.values()]
    name = list(methods)[best_on_validation(val)]
    ours, base = [], []
    for noisy, clean in data.test.as_numpy_iterator():
        denoised = np.clip(model(noisy, training=False).numpy(), 0.0, 1.0)
        for i in range(len(noisy)):
            base.append(quality(clean[i], methods[name](noisy[i]))[0])
            ours.append(quality(clean[i], denoised[i])[0])
    ours, base = np.array(ours), np.array(base)
    difference = ours - base
    p_value = 1.0 if not difference.any() else float(wilcoxon(difference).pvalue)
    return {
        "baseline": float(base.mean()),
        "model": float(ours.mean()),
        "p": p_value,
        "n": len(base),
        "test": "Wilcoxon signed-rank",
        "higher": True,
        "picked": name,
        "grid": len(methods),
    }


def anomaly_autoencoder(template, data, config, model) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors
    from sklearn.svm import OneClassSVM

    flat = {}
    for split, ds in data.splits.items():
        x, y = zip(*ds.batch(4096).as_numpy_iterator(), strict=True)
        x = np.concatenate(x)
        flat[split] = (x.reshape(len(x), -1), np.concatenate(y))
    train = flat["train"][0]
    mean, std = train.mean(0), np.maximum(train.std(0), 1e-6)
    z = (train - mean) / std
    ratio = np.cumsum(PCA(svd_solver="full").fit(z).explained_variance_ratio_)
    components = max(1, min(int(np.searchsorted(ratio, 0.9) + 1), z.shape[1] - 1))
    pca = PCA(n_components=components, svd_solver="full").fit(z)
    forest = IsolationForest(n_estimators=200, random_state=config.seed).fit(z)
    svm = OneClassSVM(gamma="scale", nu=config.target_fpr).fit(z)
    knn = NearestNeighbors().fit(z)
    detectors = {
        "PCA": lambda x: ((pca.inverse_transform(pca.transform(x)) - x) ** 2).mean(1),
        "IsolationForest": lambda x: -forest.score_samples(x),
        "One-Class SVM": lambda x: -svm.score_samples(x),
        "kNN": lambda x: knn.kneighbors(x, n_neighbors=5)[0].mean(1),
    }
    val_x, val_y = flat["val"]
    val = [roc_auc_score(val_y, d((val_x - mean) / std)) for d in detectors.values()]
    name = list(detectors)[best_on_validation(val)]
    test_x, test_y = flat["test"]
    base_scores = detectors[name]((test_x - mean) / std)
    x = np.concatenate([a for a, _ in data.test.as_numpy_iterator()])
    ours = template.scores(model, data.spec, x).numpy()
    return {
        "baseline": float(roc_auc_score(test_y, base_scores)),
        "model": float(roc_auc_score(test_y, ours)),
        "p": baselines.delong_p(test_y, ours, base_scores),
        "n": int(min(test_y.sum(), (test_y == 0).sum())),
        "test": "DeLong",
        "higher": True,
        "picked": name,
        "grid": len(detectors),
    }


INDEPENDENT = {
    "image_cnn": image_cnn,
    "text_transformer": text_transformer,
    "timeseries_lstm": timeseries_lstm,
    "denoising_autoencoder": denoising_autoencoder,
    "anomaly_autoencoder": anomaly_autoencoder,
}


def independent_verdict(found: dict) -> str:
    difference = found["model"] - found["baseline"]
    return baselines.verdict(difference, found["higher"], found["p"], found["n"], found["test"])


def check(template, run_dir: Path) -> dict:
    """The independent fit and test for a finished run folder."""
    config = config_lib.apply_overrides(template.Config(), files.read_json(run_dir / "config.json"))
    data = run.load_data(template, config)
    model = run.load_best_model(run_dir)
    return INDEPENDENT[template.NAME](template.module, data, config, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="case or template names")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    chosen = [
        name
        for name, (template, _, _) in CASES.items()
        if not args.only or name in args.only or template in args.only
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}; seed {args.seed}\n"
    )
    print(
        "| case | template | test size | in-run baseline (grid) | its test figure | independent "
        "whole grid | model | test, p in-run / independent | verdict in-run | independent "
        "verdict | true? |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    false, mismatched, plain = 0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            template_name, build, scenario = CASES[name]
            template = templates.load(template_name)
            overrides = {**build(Path(tmp) / "data" / name), "seed": str(args.seed)}
            run_dir = train(template, overrides, scenario, Path(tmp) / "runs" / name)
            metrics = files.read_json(run_dir / "metrics.json")
            block = metrics["baseline"]
            if scenario == "plain":  # generalization.py's row for the same run
                spec = files.read_json(run_dir / "spec.json")
                row = generalization.table_row(name, template_name, args.seed, metrics, spec)
                plain.append(row)  # on stderr now too, in case a later case fails
                print(f"generalization row: {row}", file=sys.stderr, flush=True)
            comparison = block["comparison"]
            found = check(template, run_dir)
            theirs = independent_verdict(found)
            # BM3D's library sums in threads, so its figures move in the 5th decimal from one
            # process to another; every other method here is deterministic.
            tolerance = 1e-4 if block["name"] == "BM3D" else 1e-6
            same_figure = abs(comparison["baseline"] - found["baseline"]) <= tolerance
            same_model = abs(comparison["model"] - found["model"]) <= 1e-6
            grid = len(block["settings"]["tried"]) or 1
            whole = block["settings"]["tried"] == [] or grid == found["grid"]
            ok = comparison["verdict"] == theirs
            if comparison["verdict"] in ("better", "worse") and not ok:
                false += 1
            if not (same_figure and same_model and whole):
                mismatched += 1
            print(
                f"| {name} | {template_name} | {comparison['n']} {comparison['unit']} "
                f"| {block['name']} ({grid} of {found['grid']}) | {comparison['baseline']:.6g} "
                f"| {found['baseline']:.6g} ({found['picked']}) | {comparison['model']:.6g} "
                f"| {comparison['test']} {comparison['p_value']:.3g} / {found['p']:.3g} "
                f"| {comparison['verdict']} | {theirs} "
                f"| {'yes' if ok and same_figure and same_model and whole else 'NO'} |",
                flush=True,
            )
    print(f"\nfalse verdicts: {false}; baselines unlike the independent fit: {mismatched}")
    if plain:  # the plain runs are generalization.py's runs: its table, without a second run
        print(f"\n{generalization.TABLE_HEADER}")
        print("\n".join(plain))


if __name__ == "__main__":
    main()
