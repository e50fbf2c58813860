"""Task kinds as a value: what changes between classification and regression, in one place.

A template holds its kind in one Config field (`task`) and passes it to these helpers, so a copy
changes the kind in one place: the split (stratified on classes, or on quantiles of a numeric
target), the head and loss (softmax and cross-entropy, or one linear unit and mean squared
error in the target's own units), the test metrics and plot, the export's outputs
(`probabilities`/`class_id`/`class_name`, or `prediction`) and the classical baselines with
their paired test.

    kind, reason = tasks.infer_kind(target)              # task=auto
    index = tasks.split(kind, target, (0.7, 0.1, 0.2))
    outputs = tasks.head(kind, features, classes, target_stats)
    tasks.compile_model(model, kind, config, train_size)
    metrics = tasks.test_metrics(kind, y_true, model_output, class_names)
    tasks.plot(kind, metrics, y_true, model_output, out_dir / "predictions.png", class_names)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ktemplate import baselines, reports, training
from ktemplate.config import TaskKind

Kind = TaskKind
KINDS = ("classification", "regression")
MAX_CLASSES_OF_NUMBERS = 20  # task=auto: integer targets with at most this many values are classes
REGRESSION_STRATA = 5  # a numeric target is split stratified on this many quantile bins


def infer_kind(target: np.ndarray) -> tuple[Kind, str]:
    """task=auto: classification for text targets and integers with few distinct values."""
    values = np.asarray(target)
    if values.dtype.kind not in "iufb":
        return "classification", "the target holds text: its values are classes"
    distinct = np.unique(values[~np.isnan(values.astype(float))])
    if len(distinct) <= MAX_CLASSES_OF_NUMBERS and np.all(distinct == np.round(distinct)):
        return "classification", (
            f"the target holds {len(distinct)} distinct whole numbers "
            f"(<= {MAX_CLASSES_OF_NUMBERS}): they are classes"
        )
    return "regression", f"the target holds {len(distinct)} distinct numbers: it is a quantity"


def split(
    kind: Kind, target: np.ndarray, fractions: tuple[float, float, float], seed: int = 0
) -> dict[str, np.ndarray]:
    """Fixed train/val/test indices: stratified on classes, or on quantile bins of a number."""
    from ktemplate.pipelines import splits

    if kind == "classification":
        return splits.stratified_split(np.asarray(target), fractions, seed=seed)
    edges = np.quantile(target, np.linspace(0, 1, REGRESSION_STRATA + 1)[1:-1])
    return splits.stratified_split(np.searchsorted(edges, target), fractions, seed=seed)


def head(kind: Kind, x, classes: int, target_mean: float = 0.0, target_std: float = 1.0):
    """The output layer: softmax over `classes`, or one unit in the target's units (it learns in
    standardized units and is rescaled inside the model, so the export returns real values)."""
    import keras

    if kind == "classification":
        return keras.layers.Dense(classes, activation="softmax", dtype="float32", name="output")(x)
    x = keras.layers.Dense(1, dtype="float32", name="standardized")(x)
    return to_target_units(x, target_mean, target_std)


def to_target_units(x, target_mean: float, target_std: float):
    """A regression head's standardized output in the target's own units (float32)."""
    import keras

    return keras.layers.Rescaling(target_std, offset=target_mean, dtype="float32", name="output")(x)


def target_stats(values: np.ndarray) -> dict[str, float]:
    """The train split's target mean and standard deviation (the regression head's scale)."""
    values = np.asarray(values, "float64")
    return {"target_mean": float(values.mean()), "target_std": float(values.std() or 1.0)}


def compile_model(model, kind: Kind, config: Any, train_size: int, target_std: float = 1.0):
    """Classification: sparse cross-entropy and accuracy. Regression: mean squared error of the
    standardized target (reported as `loss`) and MAE in the target's units."""
    import keras

    if kind == "classification":
        training.compile_classifier(model, config, train_size)
        return
    steps = training.steps_per_epoch(train_size, config.batch_size)
    scale = float(target_std) ** 2

    def standardized_mse(y_true, y_pred):
        y_true = keras.ops.reshape(keras.ops.cast(y_true, "float32"), (-1, 1))
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1) / scale

    model.compile(
        optimizer=training.make_optimizer(config, steps),
        loss=standardized_mse,
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
        jit_compile=config.jit_compile,
    )


def tune_objective(kind: Kind) -> str:
    return "val_accuracy" if kind == "classification" else "val_mae"


def test_metrics(
    kind: Kind, y_true: np.ndarray, output: np.ndarray, class_names: list[str] | None = None
) -> dict[str, Any]:
    """Classification: `reports.classification_metrics` (accuracy, log loss, macro F1, per
    class, confusion matrix). Regression: MAE, RMSE and R² in the target's units."""
    from sklearn.metrics import r2_score

    y_true = np.asarray(y_true)
    if kind == "classification":
        return reports.classification_metrics(y_true, np.asarray(output), class_names)
    predicted = np.asarray(output).reshape(-1)
    return {
        "test_mae": round(float(np.mean(np.abs(predicted - y_true))), 5),
        "test_rmse": round(float(np.sqrt(np.mean((predicted - y_true) ** 2))), 5),
        "test_r2": round(float(r2_score(y_true, predicted)), 4),
        "test_examples": int(len(y_true)),
    }


def plot(kind: Kind, metrics: dict[str, Any], y_true, output, path: Path, class_names=None):
    """The confusion matrix (classification) or predicted against actual values (regression)."""
    if kind == "classification":
        reports.plot_confusion_matrix(metrics["confusion_matrix"], class_names, path)
        return
    predicted = np.asarray(output).reshape(-1)
    fig, ax = reports.subplots(figsize=(5, 5))
    ax.scatter(y_true, predicted, s=10, alpha=0.6)
    ends = [min(np.min(y_true), predicted.min()), max(np.max(y_true), predicted.max())]
    ax.plot(ends, ends, color="black", lw=1, label="predicted = actual")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"test split: MAE {metrics['test_mae']:.4g}, R² {metrics['test_r2']:.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def serving_outputs(kind: Kind, output, class_names) -> dict[str, Any]:
    """The export's decoded outputs: probabilities/class_id/class_name, or `prediction`."""
    import tensorflow as tf

    from ktemplate import serving

    if kind == "classification":
        return serving.classification_outputs(output, tf.constant(class_names))
    return {"prediction": tf.reshape(tf.cast(output, tf.float32), [-1])}


def portable_outputs(kind: Kind, output) -> dict[str, Any]:
    """A LiteRT/ONNX function's outputs (no strings there): probabilities and class_id, or
    `prediction`."""
    import tensorflow as tf

    output = tf.cast(output, tf.float32)
    if kind == "classification":
        return {"probabilities": output, "class_id": tf.argmax(output, axis=-1)}
    return {"prediction": tf.reshape(output, [-1])}


PORTABLE_OUTPUTS = {  # the manifest's words for `portable_outputs`
    "classification": "probabilities float32 [batch, classes]; class_id int64 [batch] (the "
    "manifest's class_names[class_id] is its name)",
    "regression": "prediction float32 [batch]",
}


def describe_outputs(kind: Kind, class_names: list[str] | None, unit: str = "") -> dict[str, str]:
    """The manifest's words for `serving_outputs`."""
    if kind == "classification":
        return {
            "probabilities": f"float32 [batch, {len(class_names or [])}], in class_names order",
            "class_id": "int64 [batch], the most probable class",
            "class_name": "string [batch], its name",
        }
    return {"prediction": f"float32 [batch], the predicted target{f' ({unit})' if unit else ''}"}


# ---------------------------------------------------------------------------------------------
# Baselines on feature rows: a linear model and gradient boosting, picked on validation
# ---------------------------------------------------------------------------------------------

LINEAR_C = (0.01, 0.1, 1.0, 10.0, 100.0)  # logistic regression's C, least flexible first
RIDGE_ALPHA = (100.0, 10.0, 1.0, 0.1, 0.01)  # ridge's alpha, least flexible first
BOOSTING_RATE = (0.03, 0.1, 0.3)  # HistGradientBoosting's learning rate
MAX_TRAIN_ROWS = 50_000  # rows the baselines fit (a random subsample above)


def row_baselines(
    kind: Kind,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    seed: int = 0,
    refit: bool = False,
    max_train: int = 0,
) -> dict[str, Any]:
    """A linear model (logistic regression or ridge on standardized features) and scikit-learn's
    HistGradientBoosting, each over a small fixed grid, the best on validation (accuracy, or
    MAE); ties go to the more flexible (boosting, then larger C / smaller alpha / faster rate).

    Returns:
        {"name", "settings", "notes", "subsampled", "predicted" (test labels or values),
        "seconds"}.
    """
    import time

    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    (train_x, train_y), (val_x, val_y) = train, val
    n_train = len(train_y)
    limit = max_train or MAX_TRAIN_ROWS
    subsampled = ""
    if n_train > limit:
        keep = np.sort(np.random.default_rng(seed).choice(n_train, limit, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
        subsampled = f"fitted on a random {limit} of the {n_train} train rows"
    classify = kind == "classification"
    if classify:
        linear = [
            ("logistic regression", {"C": c}, lambda c=c: LogisticRegression(C=c, max_iter=2000))
            for c in LINEAR_C
        ]
        boosting = HistGradientBoostingClassifier
    else:
        linear = [("ridge", {"alpha": a}, lambda a=a: Ridge(alpha=a)) for a in RIDGE_ALPHA]
        boosting = HistGradientBoostingRegressor
    candidates = [
        (name, settings, lambda make=make: make_pipeline(StandardScaler(), make()))
        for name, settings, make in linear
    ] + [
        (
            "gradient boosting",
            {"learning_rate": rate},
            lambda rate=rate: boosting(learning_rate=rate, random_state=seed),
        )
        for rate in BOOSTING_RATE
    ]
    parts = {"train": (train_x, train_y)}
    if refit:
        parts["train+val"] = (np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y]))
    estimator, name, settings, tried = baselines.choose_and_refit(
        candidates,
        lambda estimator, part: estimator.fit(*parts[part]),
        val_y,
        lambda estimator: estimator.predict(val_x),
        refit,
        regression=not classify,
    )
    return {
        "name": name,
        "settings": {
            **settings,
            "picked_on": f"validation {'accuracy' if classify else 'MAE'}; ties to the more "
            "flexible",
            "fitted_on": "train+validation" if refit else "train",
            "tried": tried,
        },
        "notes": ["linear models on standardized features; boosting on the raw features"],
        "subsampled": subsampled,
        "predicted": estimator.predict(test_x),
        "seconds": round(time.perf_counter() - start, 2),
    }


def compare(
    kind: Kind,
    fitted: dict[str, Any],
    y_true: np.ndarray,
    model_output: np.ndarray,
    class_names: list[str] | None,
    config: Any,
    tries=(),
    unit: str = "rows",
) -> dict[str, Any]:
    """The baseline block: McNemar on the test rows (classification), or a paired t-test of the
    absolute errors (regression, `ktemplate.baselines.diebold_mariano_p` with horizon 1)."""
    y_true = np.asarray(y_true)
    if kind == "classification":
        return baselines.compare_classification(
            fitted,
            y_true,
            np.asarray(model_output).argmax(-1),
            class_names or [],
            unit=unit,
            config=config,
            tries=tries,
        )
    ours = np.abs(np.asarray(model_output).reshape(-1) - y_true)
    theirs = np.abs(np.asarray(fitted["predicted"]).reshape(-1) - y_true)
    return baselines.compare(
        fitted,
        {
            "test_mae": round(float(theirs.mean()), 5),
            "test_rmse": round(float(np.sqrt(np.mean(theirs**2))), 5),
        },
        metric="test_mae",
        label="test MAE",
        model_value=float(ours.mean()),
        base_value=float(theirs.mean()),
        higher_is_better=False,
        test="paired t",
        p_value=baselines.diebold_mariano_p(ours, theirs, 1),
        n=len(y_true),
        unit=unit,
        config=config,
        tries=tries,
        number_format=".4g",
    )
