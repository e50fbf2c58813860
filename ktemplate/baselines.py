"""Classical baselines fitted beside every run, and how the run compares with them.

Every `train` (and every tune champion) fits the classical method a careful engineer tries
first, on the data the deep model was fitted on, and evaluates it on the identical test split,
after the deep model is trained and evaluated, so it never changes the deep model's results.
A template's optional `baseline(model, data, config)` calls the fitters here and returns the
`baseline` block of `metrics.json`: the method's name, its settings (what was picked on the
validation split and why), its metrics under the same names as the template's, and the
comparison: the difference, a paired significance test on the test split and the verdict.
`summary` is the one sentence the run prints last.

Rules every baseline follows:
- Its grid is small and fixed, and it always runs whole: no clock decides which method or
  settings it is. Large data is subsampled to a bound (stated in `notes`), never the grid cut.
- Settings are picked on the validation split only. Ties go to the more flexible setting (each
  grid below is listed from the least to the most flexible), never to the first in a list.
- When the model was refitted on train+validation (a tune champion), the baseline's picked
  settings are refitted on train+validation too.
- The verdict rests on a paired test over the test examples (McNemar for classifiers,
  Diebold-Mariano over forecast origins, Wilcoxon signed-rank over images or examples, DeLong
  for ROC AUC): "better"/"worse" only when p < `SIGNIFICANCE`, else "level"; below a test size
  where the test cannot be trusted, "small test set". A baseline that fails gives no verdict.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

SIGNIFICANCE = 0.05  # p below this: one method is better on this data
# The fewest paired test units a verdict rests on, by test. Wilcoxon: a two-sided exact test
# cannot reach p < 0.05 with fewer than 6 pairs. McNemar needs a few dozen examples. Forecast
# origins overlap (each shares horizon - 1 steps with the next), so 10 is a floor. DeLong
# counts the rarer class (anomalies, or normals if fewer).
MIN_TEST = {
    "McNemar": 30,
    "paired t": 30,
    "Wilcoxon signed-rank": 6,
    "Diebold-Mariano": 10,
    "DeLong": 10,
}
MAX_TRAIN_IMAGES = 3000  # image classifiers: random subsample of a larger train split
MAX_VAL_IMAGES = 2000  # examples used to pick settings on the validation split
MAX_PIXEL_SIDE = 32  # larger images are resized (area) to this side for the pixel classifiers
MAX_TRAIN_TEXTS = 20_000  # text classifier: random subsample of a larger train split
MAX_TEXT_CHARS = 3_000  # text classifier: characters of each text it reads


@dataclasses.dataclass(frozen=True)
class Try:
    """A setting to try when the model loses: a Config field, a value and why."""

    field: str
    value: Any
    why: str

    def line(self) -> str:
        return f"--set {self.field}={self.value} ({self.why})"


def suggestions(config: Any, tries: Sequence[Try]) -> list[str]:
    """The `Try` lines worth printing for `config` (the run's resolved config): each names a
    field of the config and a value other than the one in force."""
    lines = []
    for t in tries:
        if not hasattr(config, t.field):
            raise ValueError(f"Try names {t.field!r}, which is not a field of the config.")
        if str(getattr(config, t.field)).lower() != str(t.value).lower():
            lines.append(t.line())
    return lines


# ---------------------------------------------------------------------------------------------
# Paired tests on the test split
# ---------------------------------------------------------------------------------------------


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test: the two-sided p-value that two classifiers err equally often.

    Paired on the same examples: only those exactly one of the two gets wrong count.
    """
    from scipy.stats import binomtest

    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((correct_b & ~correct_a).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired scores `a` and `b` (exact when small).

    A result whose ranks favour one side while the means favour the other gives 1.0: the
    verdict follows the reported means and never contradicts them.
    """
    from scipy.stats import wilcoxon

    difference = np.asarray(a, "float64") - np.asarray(b, "float64")
    if not np.any(difference):
        return 1.0
    result = wilcoxon(difference, zero_method="wilcox")
    ranks_favour = np.sum(np.sign(difference) * _ranks(np.abs(difference)))
    if np.sign(ranks_favour) != np.sign(difference.mean()):
        return 1.0
    return float(result.pvalue)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def diebold_mariano_p(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int) -> float:
    """Two-sided Diebold-Mariano p-value that two forecasters have equal mean loss.

    `loss_a` and `loss_b` are per-origin losses on the same origins (e.g. the mean absolute
    error over the horizon). Forecasts from consecutive origins overlap, so the variance of the
    mean loss difference counts autocovariances up to lag `horizon - 1`; the statistic takes
    Harvey, Leybourne and Newbold's (1997) small-sample correction and a t distribution. With
    `horizon=1` this is a paired t-test.
    """
    from scipy.stats import t as student_t

    d = np.asarray(loss_a, "float64") - np.asarray(loss_b, "float64")
    n = len(d)
    if n < 2 or not np.any(d - d.mean()):
        return 1.0 if not np.any(d) else 0.0
    centred = d - d.mean()
    lags = min(horizon, n) - 1
    gamma = [float(centred[k:] @ centred[: n - k]) / n for k in range(lags + 1)]
    variance = (gamma[0] + 2 * sum(gamma[1:])) / n
    if variance <= 0:  # the lag terms can make it negative on short series: drop them
        variance = gamma[0] / n
    correction = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    statistic = d.mean() / np.sqrt(variance) * np.sqrt(max(correction, 1.0 / n))
    return float(2 * student_t.sf(abs(statistic), df=n - 1))


def delong_p(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Two-sided DeLong test that two scores have the same ROC AUC on the same examples
    (DeLong, DeLong and Clarke-Pearson 1988; the fast form of Sun and Xu 2014)."""
    from scipy.stats import norm, rankdata

    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        scores = np.asarray(scores, "float64")
        pos, neg = scores[labels], scores[~labels]
        both = rankdata(np.concatenate([pos, neg]))
        rank_pos, rank_neg = rankdata(pos), rankdata(neg)
        aucs.append((both[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((both[:m] - rank_pos) / n)
        v01.append(1.0 - (both[m:] - rank_neg) / m)
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (
        s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]
    ) / n
    if variance <= 1e-18:
        return 1.0 if aucs[0] == aucs[1] else 0.0
    return float(2 * norm.sf(abs(aucs[0] - aucs[1]) / np.sqrt(variance)))


# ---------------------------------------------------------------------------------------------
# Picking settings on validation
# ---------------------------------------------------------------------------------------------


def pick(tried: list[dict[str, Any]], key: str, higher_is_better: bool = True) -> int:
    """Index of the best of `tried` on `key`; a tie goes to the later (more flexible) entry.

    Scores within 1e-12 of each other are ties, so float noise never breaks one.
    """
    values = np.array([t[key] for t in tried], "float64")
    best = values.max() if higher_is_better else values.min()
    return int(np.flatnonzero(np.abs(values - best) <= 1e-12)[-1])


def _subsample(x, y, limit: int, seed: int):
    if len(y) <= limit:
        return x, y, False
    index = np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False))
    return (x[index] if isinstance(x, np.ndarray) else [x[i] for i in index]), y[index], True


def choose_and_refit(
    candidates: list[tuple[str, dict[str, Any], Callable[[], Any]]],
    fit: Callable[[Any, str], Any],
    val_y: np.ndarray,
    predict_val: Callable[[Any], np.ndarray],
    refit: bool,
    regression: bool = False,
) -> tuple[Any, str, dict[str, Any], list[dict[str, Any]]]:
    """Fits every candidate on train, picks on validation accuracy (regression: MAE; ties: the
    later, more flexible one), then refits the pick on train+validation when `refit`. Returns
    the fitted estimator, its name and settings, and every candidate's validation score.

    The candidates are fitted in threads, one per CPU core (libsvm, liblinear and NumPy release
    the GIL), each on its own estimator: the same fits as one after another, sooner."""
    key = "val_mae" if regression else "val_accuracy"

    def fit_and_score(candidate):
        name, settings, make = candidate
        estimator = fit(make(), "train")
        predicted = predict_val(estimator)
        if regression:
            score = float(np.mean(np.abs(predicted - val_y)))
        else:
            score = float((predicted == val_y).mean())
        return {"method": name, **settings, key: round(score, 6)}, estimator

    with ThreadPoolExecutor(max(1, min(len(candidates), os.cpu_count() or 1))) as pool:
        tried, fitted = zip(*pool.map(fit_and_score, candidates), strict=True)
    tried = list(tried)
    best = pick(tried, key, higher_is_better=not regression)
    name, settings, make = candidates[best]
    estimator = fit(make(), "train+val") if refit else fitted[best]
    return estimator, name, settings, tried


# ---------------------------------------------------------------------------------------------
# Classification: images and texts
# ---------------------------------------------------------------------------------------------


def pixel_classifier(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    seed: int = 0,
    refit: bool = False,
    max_train: int = 0,
) -> dict[str, Any]:
    """Logistic regression and an RBF SVC on standardized pixels, C and gamma on validation.

    Images are uint8 [n, H, W, C]; pixels are scaled to 0..1 and standardized with the
    statistics of the data the classifier is fitted on. Every setting of the grid is fitted;
    the best on validation accuracy wins, ties going to the more flexible one (the SVC over
    logistic regression, then larger C, then larger gamma).

    Args:
        train, val: (images, labels) of the train and validation splits.
        test_x: the test images.
        seed: seeds the subsample of a train split larger than the bound.
        refit: refit the picked setting on train+validation (the model was fitted on both).
        max_train: most train images fitted (a random subsample above it); 0: the default
            bound, `MAX_TRAIN_IMAGES`.

    Returns:
        {"name", "settings", "notes", "predicted" (test labels), "seconds"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    start = time.perf_counter()
    (train_x, train_y), (val_x, val_y) = train, val
    side = max(train_x.shape[1:3])
    size = None
    if side > MAX_PIXEL_SIDE:
        scale = MAX_PIXEL_SIDE / side
        size = (max(1, round(train_x.shape[1] * scale)), max(1, round(train_x.shape[2] * scale)))
    n_train, n_val = len(train_y), len(val_y)
    limit = max_train or MAX_TRAIN_IMAGES
    train_x, train_y, sampled = _subsample(train_x, train_y, limit, seed)
    val_x, val_y, val_sampled = _subsample(val_x, val_y, MAX_VAL_IMAGES, seed)

    def features(images):
        if size is not None:
            import tensorflow as tf

            images = tf.image.resize(images, size, method="area").numpy()
        return images.reshape(len(images), -1).astype("float32") / 255.0

    raw = {"train": features(train_x), "val": features(val_x), "test": features(test_x)}
    raw["train+val"] = np.concatenate([raw["train"], raw["val"]])
    labels = {"train": train_y, "train+val": np.concatenate([train_y, val_y])}
    scalers, gamma_scale = {}, {}
    for part in ("train", "train+val") if refit else ("train",):
        scalers[part] = StandardScaler().fit(raw[part])
        scaled = scalers[part].transform(raw[part])
        gamma_scale[part] = 1.0 / (scaled.shape[1] * (float(scaled.var()) or 1.0))

    def candidate(c, g=None):
        if g is None:
            return lambda: LogisticRegression(C=c, max_iter=1000)
        return lambda: SVC(C=c, gamma=g, kernel="rbf")  # g: multiple of "scale", set in fit

    candidates = [("logistic regression", {"C": c}, candidate(c)) for c in (0.01, 0.1, 1.0)] + [
        ("SVC (RBF)", {"C": c, "gamma": f"{g}x scale"}, candidate(c, g))
        for c in (1.0, 10.0, 100.0)
        for g in (0.5, 1.0, 2.0)
    ]

    def fit(estimator, part):
        if isinstance(estimator, SVC):
            estimator.set_params(gamma=estimator.gamma * gamma_scale[part])
        estimator.fit(scalers[part].transform(raw[part]), labels[part])
        estimator.fitted_on_ = part
        return estimator

    def predict(estimator, x):
        return estimator.predict(scalers[estimator.fitted_on_].transform(x))

    estimator, name, settings, tried = choose_and_refit(
        candidates, fit, val_y, lambda e: predict(e, raw["val"]), refit
    )
    notes = ["pixels scaled to 0..1 and standardized with the fitted split's statistics"]
    if size is not None:
        notes.append(f"images resized (area) from {side} px to {size[0]}x{size[1]}")
    subsampled = (
        f"fitted on a random {len(train_y)} of the {n_train} train images" if sampled else ""
    )
    if val_sampled:
        notes.append(f"settings picked on a random {len(val_y)} of the {n_val} validation images")
    return {
        "name": f"{name} on raw pixels",
        "settings": {
            **settings,
            "picked_on": "validation accuracy; ties to the more flexible setting",
            "fitted_on": "train+validation" if refit else "train",
            "tried": tried,
        },
        "notes": notes,
        "subsampled": subsampled,
        "predicted": predict(estimator, raw["test"]),
        "seconds": round(time.perf_counter() - start, 2),
    }


TEXT_BASELINE = "TF-IDF word 1-2-grams + char 2-5-grams, logistic regression"


def text_features():
    """The text baseline's features: TF-IDF (sublinear tf) of word 1-2-grams and of character
    2-5-grams within word boundaries, side by side (scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        ]
    )


TEXT_C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
TEXT_RIDGE_ALPHA = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125)  # regression; most regularized first
TEXT_REGRESSION_BASELINE = "TF-IDF word 1-2-grams + char 2-5-grams, ridge"


def tfidf_logistic_regression(
    train: tuple[list[str], np.ndarray],
    val: tuple[list[str], np.ndarray],
    test_texts: list[str],
    seed: int = 0,
    refit: bool = False,
    max_train: int = 0,
    regression: bool = False,
) -> dict[str, Any]:
    """TF-IDF of word 1-2-grams and character 2-5-grams + logistic regression, C on validation
    (with `regression`: ridge regression, alpha on validation MAE).

    Every C of `TEXT_C_GRID` (alpha of `TEXT_RIDGE_ALPHA`) is fitted; ties go to the larger C
    (smaller alpha). Texts are cut to their first `MAX_TEXT_CHARS` characters, and a train split
    above `max_train` (default `MAX_TRAIN_TEXTS`) is subsampled.

    Returns:
        {"name", "settings", "notes", "predicted" (test labels or values), "seconds"}.
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    start = time.perf_counter()
    (train_texts, train_y), (val_texts, val_y) = train, val
    n_train = len(train_y)
    train_texts, train_y, sampled = _subsample(
        list(train_texts), np.asarray(train_y), max_train or MAX_TRAIN_TEXTS, seed
    )
    cut = lambda texts: [t[:MAX_TEXT_CHARS] for t in texts]  # noqa: E731
    texts = {"train": cut(train_texts), "val": cut(val_texts), "test": cut(test_texts)}
    texts["train+val"] = texts["train"] + texts["val"]
    labels = {"train": train_y, "train+val": np.concatenate([train_y, val_y])}
    parts = ["train", "train+val"] if refit else ["train"]
    vectorizers = {part: text_features().fit(texts[part]) for part in parts}
    matrix = {part: vectorizers[part].transform(texts[part]) for part in vectorizers}
    val_matrix = vectorizers["train"].transform(texts["val"])
    candidates = [
        ("logistic regression", {"C": c}, lambda c=c: LogisticRegression(C=c, max_iter=2000))
        for c in TEXT_C_GRID
    ]
    if regression:
        candidates = [("ridge", {"alpha": a}, lambda a=a: Ridge(alpha=a)) for a in TEXT_RIDGE_ALPHA]

    def fit(estimator, part):
        estimator.fit(matrix[part], labels[part])
        estimator.fitted_on_ = part
        return estimator

    estimator, _, settings, tried = choose_and_refit(
        candidates, fit, val_y, lambda e: e.predict(val_matrix), refit, regression
    )
    used = vectorizers[estimator.fitted_on_]
    size = sum(len(v.vocabulary_) for _, v in used.transformer_list)
    notes = [f"{size} word and character n-grams from the fitted split"]
    subsampled = (
        f"fitted on a random {len(train_y)} of the {n_train} train texts" if sampled else ""
    )
    if any(len(t) > MAX_TEXT_CHARS for t in list(train_texts) + list(val_texts) + test_texts):
        notes.append(f"each text read up to its first {MAX_TEXT_CHARS} characters")
    return {
        "name": TEXT_REGRESSION_BASELINE if regression else TEXT_BASELINE,
        "settings": {
            **settings,
            "picked_on": "validation MAE; ties to the smaller alpha"
            if regression
            else "validation accuracy; ties to the larger C",
            "fitted_on": "train+validation" if refit else "train",
            "tried": tried,
        },
        "notes": notes,
        "subsampled": subsampled,
        "predicted": estimator.predict(used.transform(texts["test"])),
        "seconds": round(time.perf_counter() - start, 2),
    }


# ---------------------------------------------------------------------------------------------
# Denoising
# ---------------------------------------------------------------------------------------------


def spread(total: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` of `total` items, spread evenly over them."""
    if total <= limit:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, limit).round().astype(int))


def estimated_sigma(noisy: np.ndarray) -> float:
    """The noise sigma of one float image [H, W, C] in 0..1 (scikit-image's wavelet estimate)."""
    from skimage.restoration import estimate_sigma

    gray = noisy.shape[-1] == 1
    x = (noisy[..., 0] if gray else noisy).astype("float64")
    return float(np.mean(estimate_sigma(x, channel_axis=None if gray else -1)))


def non_local_means(noisy: np.ndarray) -> np.ndarray:
    """scikit-image's non-local means on one noisy float image [H, W, C] in 0..1.

    The noise sigma is estimated from the image (`estimate_sigma`), h = 0.8 sigma, 5x5 patches
    searched within distance 6, fast mode: scikit-image's own example settings.
    """
    from skimage.restoration import denoise_nl_means

    gray = noisy.shape[-1] == 1
    x = (noisy[..., 0] if gray else noisy).astype("float64")
    sigma = estimated_sigma(noisy)
    result = denoise_nl_means(
        x,
        h=0.8 * sigma,
        sigma=sigma,
        fast_mode=True,
        patch_size=5,
        patch_distance=6,
        channel_axis=None if gray else -1,
    )
    return result[..., np.newaxis] if gray else result


def bm3d_available() -> str | None:
    """None when the `bm3d` package imports, else why not (said in the baseline's notes)."""
    try:
        import bm3d  # noqa: F401
    except Exception as e:  # ImportError, or its compiled library failing to load
        return (
            f"BM3D not tried: the bm3d package is not usable here ({type(e).__name__}); "
            "pip install bm3d (free for non-commercial use) adds it"
        )
    return None


def bm3d_denoise(noisy: np.ndarray) -> np.ndarray:
    """BM3D (the `bm3d` package, Mäkinen et al. 2020) on one noisy float image [H, W, C] in
    0..1, with the noise sigma estimated from the image; colour images use its RGB variant."""
    import bm3d

    sigma = max(estimated_sigma(noisy), 1e-4)
    x = noisy.astype("float64")
    if noisy.shape[-1] == 1:
        return np.asarray(bm3d.bm3d(x[..., 0], sigma_psd=sigma))[..., np.newaxis]
    return np.asarray(bm3d.bm3d_rgb(x, sigma_psd=sigma))


# ---------------------------------------------------------------------------------------------
# The comparison and the verdict
# ---------------------------------------------------------------------------------------------


def classical_denoiser(tiles: list, quality: Callable) -> tuple[dict[str, Any], Callable]:
    """Non-local means and, where the `bm3d` package works, BM3D (listed last: it wins a tie),
    each at the noise sigma estimated per image, scored by mean `quality(clean, denoised)[0]`
    (PSNR) over the (noisy, clean) validation `tiles`. Returns the baseline block's `fitted`
    part (the best one's name, settings with every method's score, notes) and its function."""
    methods = {"non-local means": non_local_means}
    notes = ["noise sigma estimated per image (skimage estimate_sigma)"]
    missing = bm3d_available()
    if missing is None:
        methods["BM3D"] = bm3d_denoise
    else:
        notes.append(missing)
    tried = [
        {
            "method": name,
            "val_psnr": round(float(np.mean([quality(c, method(n))[0] for n, c in tiles])), 6),
        }
        for name, method in methods.items()
    ]
    best = tried[pick(tried, "val_psnr")]["method"]
    settings = {
        "non-local means": "h = 0.8 x estimated sigma, 5x5 patches, distance 6, fast mode",
        "BM3D": "the bm3d package's defaults at the estimated sigma",
        "picked_on": f"validation PSNR over {len(tiles)} tiles; ties to BM3D",
        "tried": tried,
    }
    return {"name": best, "settings": settings, "notes": notes}, methods[best]


def verdict(difference: float, higher_is_better: bool, p_value: float, n: int, test: str) -> str:
    """better / worse (p < SIGNIFICANCE), level, or "small test set" below `MIN_TEST[test]`."""
    if n < MIN_TEST.get(test, 0):
        return "small test set"
    if p_value >= SIGNIFICANCE or difference == 0:
        return "level"
    return "better" if (difference > 0) == higher_is_better else "worse"


def compare(
    fitted: dict[str, Any],
    metrics: dict[str, Any],
    *,
    metric: str,
    label: str,
    model_value: float,
    base_value: float,
    higher_is_better: bool,
    test: str,
    p_value: float,
    n: int,
    unit: str,
    config: Any,
    tries: Sequence[Try] = (),
    number_format: str = ".3f",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The baseline block: the baseline's metrics, the comparison, the sentence, what to try.

    Args:
        fitted: a fitter's result ({"name", "settings", "notes", "seconds"}).
        metrics: the baseline's test metrics, under the template's metric names.
        metric, label: the compared metric's key and its words in the sentence.
        model_value, base_value: the two test figures.
        test, p_value: the paired test's name and its two-sided p-value.
        n, unit: how many paired test units the test rests on, and what they are.
        config: the run's resolved config (a `Try` never suggests a value in force).
        tries: settings to suggest when the model loses.
    """
    difference = model_value - base_value
    result = verdict(difference, higher_is_better, p_value, n, test)
    comparison = {
        "metric": metric,
        "model": round(model_value, 6),
        "baseline": round(base_value, 6),
        "difference": round(difference, 6),
        "test": test,
        "p_value": float(f"{p_value:.4g}"),
        "n": int(n),
        "unit": unit,
        "verdict": result,
        **(extra or {}),
    }
    ours = f"{label} {format(model_value, number_format)}"
    theirs = f"{fitted['name']} {format(base_value, number_format)}"
    evidence = f"{test} p={p_value:.2g}, {n} test {unit}"
    if result == "small test set":
        evidence = f"only {n} test {unit}: a verdict needs at least {MIN_TEST[test]}"
        summary = f"{ours} — {theirs}; no verdict ({evidence})"
    elif result == "worse":
        summary = f"{ours} — {theirs} is better on this data ({evidence})"
    elif result == "better":
        summary = f"{ours} — better than {theirs} on this data ({evidence})"
    else:
        summary = (
            f"{ours} — level with {theirs} on this data (no significant difference: {evidence})"
        )
    block = {
        "name": fitted["name"],
        "settings": fitted["settings"],
        "notes": fitted.get("notes", []),
        "seconds": fitted["seconds"],
        **({"subsampled": fitted["subsampled"]} if fitted.get("subsampled") else {}),
        **metrics,
        "comparison": comparison,
        "summary": summary,
    }
    if result == "worse":
        block["suggestions"] = suggestions(config, tries)
    return block


def compare_classification(
    fitted: dict[str, Any],
    labels: np.ndarray,
    model_predicted: np.ndarray,
    class_names: list[str],
    *,
    unit: str,
    config: Any,
    tries: Sequence[Try] = (),
) -> dict[str, Any]:
    """The baseline block for a classifier: accuracy, macro F1, McNemar on the test examples."""
    from sklearn.metrics import f1_score

    labels = np.asarray(labels)
    base_predicted = np.asarray(fitted["predicted"])
    model_correct, base_correct = model_predicted == labels, base_predicted == labels
    base_f1 = f1_score(
        labels,
        base_predicted,
        labels=list(range(len(class_names))),
        average="macro",
        zero_division=0,
    )
    return compare(
        fitted,
        {
            "test_accuracy": round(float(base_correct.mean()), 6),
            "test_macro_f1": round(float(base_f1), 6),
            "test_errors": int((~base_correct).sum()),
        },
        metric="test_accuracy",
        label="test accuracy",
        model_value=float(model_correct.mean()),
        base_value=float(base_correct.mean()),
        higher_is_better=True,
        test="McNemar",
        p_value=mcnemar_p(model_correct, base_correct),
        n=len(labels),
        unit=unit,
        config=config,
        tries=tries,
        extra={
            "only_model_correct": int((model_correct & ~base_correct).sum()),
            "only_baseline_correct": int((base_correct & ~model_correct).sum()),
        },
    )


def no_verdict(name: str, why: str) -> dict[str, Any]:
    """The baseline block when the test split cannot support a comparison (`why`)."""
    return {
        "name": name,
        "notes": [why],
        "comparison": {"verdict": "no verdict"},
        "summary": f"no verdict: {why}",
    }


def failed(name: str, error: BaseException) -> dict[str, Any]:
    """The baseline block when the baseline could not finish: no verdict."""
    reason = f"{type(error).__name__}: {str(error)[:300]}"
    return {
        "name": name,
        "failed": reason,
        "comparison": {"verdict": "no verdict"},
        "summary": f"no verdict: the baseline ({name}) did not finish ({reason})",
    }


def console_lines(block: dict[str, Any] | None) -> list[str]:
    """What a run prints last about its baseline: the sentence, then one line per `Try`."""
    if not block:
        return []
    lines = [block["summary"]]
    if block.get("validation_note"):
        lines.append(block["validation_note"])
    if block.get("subsampled"):
        lines.append(f"(the baseline was {block['subsampled']}: a large split is subsampled)")
    lines += [f"Try: {line}" for line in block.get("suggestions", [])]
    return lines


def roc_auc(labels: np.ndarray, values: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, values))


def novelty_detector(
    train: np.ndarray,
    val: np.ndarray,
    val_anomaly: np.ndarray,
    test: np.ndarray,
    test_anomaly: np.ndarray,
    seed: int,
    nu: float,
    max_train: int,
) -> tuple[dict[str, Any], np.ndarray, dict[str, Any]]:
    """The anomaly templates' classical baseline, on flat [examples, features] arrays.

    PCA reconstruction error (the components for 90% of the variance, fewer than features),
    IsolationForest, One-Class SVM (`nu`) and k-nearest-neighbour distance are fitted on the
    standardized train normals (a random `max_train` of them at most); the best on validation
    ROC AUC (validation normals against validation anomalies; ties to the more flexible method)
    scores the test split. Without labelled validation anomalies there is nothing to pick on,
    and IsolationForest, the usual first choice, is used.

    Returns:
        The fitted block for `compare`, the chosen detector's test scores, and the results
        (`test_roc_auc`, and every detector's test ROC AUC by name, for reading only).
    """
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors
    from sklearn.svm import OneClassSVM

    start = time.perf_counter()
    n_train = len(train)
    if n_train > max_train:
        keep = np.random.default_rng(seed).choice(n_train, max_train, replace=False)
        train = train[np.sort(keep)]
    mean, std = train.mean(axis=0), np.maximum(train.std(axis=0), 1e-6)
    fit_x = (train - mean) / std
    features = fit_x.shape[1]
    explained = np.cumsum(PCA(svd_solver="full").fit(fit_x).explained_variance_ratio_)
    components = max(1, min(int(np.searchsorted(explained, 0.9) + 1), features - 1))
    k = min(5, len(fit_x) - 1)

    def pca_error(fitted, x):
        return ((fitted.inverse_transform(fitted.transform(x)) - x) ** 2).mean(axis=1)

    def knn_distance(fitted, x):
        return fitted.kneighbors(x, n_neighbors=k)[0].mean(axis=1)

    detectors = {  # least to most flexible: a tie on validation goes to the later one
        "PCA reconstruction error": (
            PCA(n_components=components, svd_solver="full").fit(fit_x),
            pca_error,
            f"{components} of {features} components (90% of the variance, fewer than features)",
        ),
        "IsolationForest": (
            IsolationForest(n_estimators=200, random_state=seed).fit(fit_x),
            lambda f, x: -f.score_samples(x),
            "200 trees",
        ),
        "One-Class SVM": (
            OneClassSVM(kernel="rbf", gamma="scale", nu=nu).fit(fit_x),
            lambda f, x: -f.score_samples(x),
            f"RBF, gamma=scale, nu={nu}",
        ),
        f"{k}-nearest-neighbour distance": (
            NearestNeighbors().fit(fit_x),
            knn_distance,
            f"mean distance to the {k} nearest train normals",
        ),
    }
    tried = []
    if 0 < val_anomaly.sum() < len(val_anomaly):
        for name, (fitted, score, _) in detectors.items():
            auc = roc_auc(val_anomaly, score(fitted, (val - mean) / std))
            tried.append({"method": name, "val_roc_auc": round(auc, 6)})
        best = tried[pick(tried, "val_roc_auc")]["method"]
        picked_on = "validation ROC AUC (validation normals against validation anomalies)"
    else:
        best = "IsolationForest"
        picked_on = "no labelled validation anomalies to pick on: IsolationForest, the usual first"
    fitted, score, _ = detectors[best]
    test_scores = score(fitted, (test - mean) / std)
    block = {
        "name": best,
        "settings": {
            "methods": {name: description for name, (_, _, description) in detectors.items()},
            "picked_on": picked_on + "; ties to the more flexible method",
            "tried": tried,
            "fitted_on": "the standardized train normals",
        },
        "notes": [],
        "subsampled": f"fitted on a random {max_train} of the {n_train} train normals"
        if n_train > max_train
        else "",
        "seconds": round(time.perf_counter() - start, 2),
    }
    results = {
        "test_roc_auc": round(roc_auc(test_anomaly, test_scores), 6),
        "test_roc_auc_by_name": {  # for reading only: the pick was made on validation
            name: round(roc_auc(test_anomaly, method(detector, (test - mean) / std)), 6)
            for name, (detector, method, _) in detectors.items()
        },
    }
    return block, test_scores, results
