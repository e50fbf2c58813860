"""Classical baselines fitted beside every run, and how the run compares with them.

Every `train` (and every tune champion) fits one cheap classical method on the identical train
split and evaluates it on the identical test split, after the deep model is trained and
evaluated, so it never changes the deep model's results. A template's optional
`baseline(model, data, config, budget)` calls the fitters here and returns the `baseline` block
of `metrics.json`: the method's name, its settings (what was picked on the validation split and
why), its metrics under the same names as the template's, and the comparison: the difference
and, for classification, an exact McNemar p-value on the test split. `summary` is the one
sentence the run prints last.

The fitters are bounded in time: each checks a deadline between fits (and skips what is left of
its grid once it has passed) and subsamples large train splits, saying so in `settings`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_BUDGET_SECONDS = 20.0  # a baseline always gets at least this long
BUDGET_FRACTION = 0.25  # by default, this share of the deep model's training time
MAX_TRAIN_EXAMPLES = 3000  # image classifiers: random subsample of a larger train split
MAX_VAL_EXAMPLES = 2000  # examples used to pick settings on the validation split
MAX_PIXEL_SIDE = 32  # larger images are resized (area) to this side for the pixel classifiers
SIGNIFICANCE = 0.05  # McNemar p below this: one classifier is better on this data


def budget_seconds(configured: float, train_seconds: float) -> float:
    """`configured` when > 0, else a share of the deep model's training time (with a floor)."""
    if configured > 0:
        return float(configured)
    return max(MIN_BUDGET_SECONDS, BUDGET_FRACTION * float(train_seconds))


@dataclass
class Deadline:
    """Wall-clock budget of one baseline fit."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def passed(self) -> bool:
        return self.elapsed() > self.seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


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


# ---------------------------------------------------------------------------------------------
# Classification: images and texts
# ---------------------------------------------------------------------------------------------


def _subsample(x, y, limit: int, seed: int):
    if len(y) <= limit:
        return x, y, False
    index = np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False))
    return (x[index] if isinstance(x, np.ndarray) else [x[i] for i in index]), y[index], True


def _pick_on_validation(candidates, fit_predict, val_y, deadline: Deadline):
    """Fits each (name, settings, estimator) in order until the deadline; returns the best on
    validation accuracy, the validation scores of all tried and how many were skipped."""
    best, tried = None, []
    for i, (name, settings, estimator) in enumerate(candidates):
        if deadline.passed() and best is not None:
            return best, tried, len(candidates) - i
        accuracy = float((fit_predict(estimator) == val_y).mean())
        tried.append({"method": name, **settings, "val_accuracy": round(accuracy, 4)})
        if best is None or accuracy > best[0]:
            best = (accuracy, name, settings, estimator)
    return best, tried, 0


def pixel_classifier(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    deadline: Deadline,
    seed: int = 0,
) -> dict[str, Any]:
    """Logistic regression and an RBF SVC on raw pixels; the better one on validation wins.

    Images are uint8 [n, H, W, C]; pixels are scaled to 0..1 and standardized with the train
    split's statistics. C (and the SVC's gamma, in multiples of scikit-learn's "scale") come
    from a small grid, scored on the validation split.

    Returns:
        {"name", "settings", "predicted" (test labels), "seconds"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    (train_x, train_y), (val_x, val_y) = train, val
    side = max(train_x.shape[1:3])
    size = None
    if side > MAX_PIXEL_SIDE:
        scale = MAX_PIXEL_SIDE / side
        size = (max(1, round(train_x.shape[1] * scale)), max(1, round(train_x.shape[2] * scale)))
    n_train = len(train_y)
    train_x, train_y, sampled = _subsample(train_x, train_y, MAX_TRAIN_EXAMPLES, seed)
    val_x, val_y, _ = _subsample(val_x, val_y, MAX_VAL_EXAMPLES, seed)

    def features(images):
        if size is not None:
            import tensorflow as tf

            images = tf.image.resize(images, size, method="area").numpy()
        return images.reshape(len(images), -1).astype("float32") / 255.0

    scaler = StandardScaler().fit(features(train_x))
    xs = {k: scaler.transform(features(v)) for k, v in (("train", train_x), ("val", val_x))}
    variance = float(xs["train"].var()) or 1.0
    gamma_scale = 1.0 / (xs["train"].shape[1] * variance)
    candidates = [
        ("logistic regression", {"C": c}, LogisticRegression(C=c, max_iter=1000))
        for c in (0.01, 0.1, 1.0)
    ] + [
        (
            "SVC (RBF)",
            {"C": c, "gamma": f"{g}x scale"},
            SVC(C=c, gamma=g * gamma_scale, kernel="rbf"),
        )
        for c in (1.0, 10.0, 100.0)
        for g in (0.5, 1.0, 2.0)
    ]

    def fit_predict(estimator):
        return estimator.fit(xs["train"], train_y).predict(xs["val"])

    (_, name, settings, estimator), tried, skipped = _pick_on_validation(
        candidates, fit_predict, val_y, deadline
    )
    predicted = estimator.predict(scaler.transform(features(test_x)))
    notes = ["raw pixels scaled to 0..1 and standardized with train statistics"]
    if size is not None:
        notes.append(f"images resized (area) from {side} px to {size[0]}x{size[1]}")
    if sampled:
        notes.append(f"fitted on a random {len(train_y)} of the {n_train} train images")
    if skipped:
        notes.append(f"time budget reached: {skipped} of {len(candidates)} settings not tried")
    return {
        "name": f"{name} on raw pixels",
        "settings": {**settings, "picked_on": "validation accuracy", "tried": tried},
        "notes": notes,
        "predicted": predicted,
        "seconds": round(deadline.elapsed(), 2),
    }


def tfidf_logistic_regression(
    train: tuple[list[str], np.ndarray],
    val: tuple[list[str], np.ndarray],
    test_texts: list[str],
    deadline: Deadline,
) -> dict[str, Any]:
    """TF-IDF of word 1-2-grams (sublinear tf) + logistic regression, C picked on validation.

    Returns:
        {"name", "settings", "predicted" (test labels), "seconds"}.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    (train_texts, train_y), (val_texts, val_y) = train, val
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_features = vectorizer.fit_transform(train_texts)
    val_features = vectorizer.transform(val_texts)
    candidates = [
        ("TF-IDF 1-2-grams + logistic regression", {"C": c}, LogisticRegression(C=c, max_iter=2000))
        for c in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    ]

    def fit_predict(estimator):
        return estimator.fit(train_features, train_y).predict(val_features)

    (_, name, settings, estimator), tried, skipped = _pick_on_validation(
        candidates, fit_predict, val_y, deadline
    )
    notes = [f"vocabulary of {len(vectorizer.vocabulary_)} words and word pairs from train"]
    if skipped:
        notes.append(f"time budget reached: {skipped} of {len(candidates)} settings not tried")
    return {
        "name": name,
        "settings": {**settings, "picked_on": "validation accuracy", "tried": tried},
        "notes": notes,
        "predicted": estimator.predict(vectorizer.transform(test_texts)),
        "seconds": round(deadline.elapsed(), 2),
    }


def non_local_means(noisy: np.ndarray) -> np.ndarray:
    """scikit-image's non-local means on one noisy float image [H, W, C] in 0..1.

    The noise sigma is estimated from the image (`estimate_sigma`), h = 0.8 sigma, 5x5 patches
    searched within distance 6, fast mode: scikit-image's own example settings.
    """
    from skimage.restoration import denoise_nl_means, estimate_sigma

    gray = noisy.shape[-1] == 1
    x = (noisy[..., 0] if gray else noisy).astype("float64")
    axis = None if gray else -1  # scikit-image takes grayscale as [H, W]
    sigma = float(np.mean(estimate_sigma(x, channel_axis=axis)))
    result = denoise_nl_means(
        x,
        h=0.8 * sigma,
        sigma=sigma,
        fast_mode=True,
        patch_size=5,
        patch_distance=6,
        channel_axis=axis,
    )
    return result[..., np.newaxis] if gray else result


def compare_classification(
    fitted: dict[str, Any],
    labels: np.ndarray,
    model_predicted: np.ndarray,
    class_names: list[str],
    suggestion: str,
) -> dict[str, Any]:
    """The baseline block for a classifier: its metrics, the difference, McNemar, a sentence."""
    from sklearn.metrics import f1_score

    labels = np.asarray(labels)
    base_predicted = np.asarray(fitted["predicted"])
    model_correct, base_correct = model_predicted == labels, base_predicted == labels
    model_accuracy, base_accuracy = float(model_correct.mean()), float(base_correct.mean())
    p_value = mcnemar_p(model_correct, base_correct)
    all_classes = list(range(len(class_names)))
    base_f1 = f1_score(labels, base_predicted, labels=all_classes, average="macro", zero_division=0)
    if p_value >= SIGNIFICANCE:
        verdict = "level"
    else:
        verdict = "better" if model_accuracy > base_accuracy else "worse"
    detail = f"McNemar p={p_value:.2g}"
    if verdict == "level":
        detail = f"no significant difference, {detail}"
    summary = _sentence(
        "test accuracy", model_accuracy, fitted["name"], base_accuracy, verdict, detail, ".3f"
    )
    return _block(
        fitted,
        metrics={
            "test_accuracy": round(base_accuracy, 4),
            "test_macro_f1": round(float(base_f1), 4),
            "test_errors": int((~base_correct).sum()),
        },
        comparison={
            "metric": "test_accuracy",
            "model": round(model_accuracy, 4),
            "baseline": round(base_accuracy, 4),
            "difference": round(model_accuracy - base_accuracy, 4),
            "mcnemar_p": round(p_value, 4),
            "only_model_correct": int((model_correct & ~base_correct).sum()),
            "only_baseline_correct": int((base_correct & ~model_correct).sum()),
            "verdict": verdict,
        },
        summary=summary,
        suggestion=suggestion,
    )


def compare_scores(
    fitted: dict[str, Any],
    metrics: dict[str, Any],
    metric: str,
    label: str,
    model_value: float,
    base_value: float,
    higher_is_better: bool,
    tolerance: float,
    relative: bool,
    suggestion: str,
    number_format: str = ".3f",
) -> dict[str, Any]:
    """The baseline block for a score without a paired test (forecast errors, PSNR).

    The two are `level` when they differ by at most `tolerance` (a fraction of the baseline's
    value when `relative`, else in the metric's units).
    """
    difference = model_value - base_value
    margin = abs(difference) / abs(base_value) if relative and base_value else abs(difference)
    if margin <= tolerance:
        verdict = "level"
    else:
        verdict = "better" if (difference > 0) == higher_is_better else "worse"
    limit = f"{tolerance:.0%}" if relative else f"{tolerance:g}"
    if verdict == "level":
        detail = f"within {limit}{' of it' if relative else ''}"
    elif relative and base_value:
        detail = f"ratio {model_value / base_value:.2f}"
    else:
        detail = f"difference {difference:+.3g}"
    comparison = {
        "metric": metric,
        "model": round(model_value, 5),
        "baseline": round(base_value, 5),
        "difference": round(difference, 5),
        "verdict": verdict,
        "level_tolerance": f"{limit} {'of the baseline' if relative else ''}".strip(),
    }
    if relative and base_value:
        comparison["ratio"] = round(model_value / base_value, 4)
    summary = _sentence(
        label, model_value, fitted["name"], base_value, verdict, detail, number_format
    )
    return _block(fitted, metrics, comparison, summary, suggestion)


def _sentence(label, model_value, name, base_value, verdict, detail, number_format) -> str:
    model_text, base_text = format(model_value, number_format), format(base_value, number_format)
    if verdict == "worse":
        return f"{label} {model_text} — {name} {base_text} is better on this data ({detail})"
    if verdict == "better":
        return f"{label} {model_text} — better than {name} {base_text} on this data ({detail})"
    return f"{label} {model_text} — level with {name} {base_text} on this data ({detail})"


def _block(fitted, metrics, comparison, summary, suggestion) -> dict[str, Any]:
    block = {
        "name": fitted["name"],
        "settings": fitted["settings"],
        "notes": fitted.get("notes", []),
        "seconds": fitted["seconds"],
        **metrics,
        "comparison": comparison,
        "summary": summary,
    }
    if comparison["verdict"] == "worse":
        block["suggestion"] = suggestion
    return block


def skipped(reason: str) -> dict[str, Any]:
    """The baseline block when no baseline could be fitted (the reason is printed)."""
    return {"name": None, "skipped": reason, "summary": f"no classical baseline: {reason}"}


def console_lines(block: dict[str, Any] | None) -> list[str]:
    """What a run prints last about its baseline."""
    if not block:
        return []
    lines = [block["summary"]]
    if block.get("suggestion"):
        lines.append(f"Try: {block['suggestion']}")
    return lines
