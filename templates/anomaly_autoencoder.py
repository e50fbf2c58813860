"""Anomaly detection with an autoencoder: learn what normal looks like, score the distance to it.

Task: flag examples unlike the ones seen in training (a defective part, a fraudulent
transaction, a failing machine's reading) when only normal examples are plentiful. The
autoencoder reconstructs normal examples through a narrow bottleneck; an example's anomaly
score is its reconstruction error (mean squared, on the train split's scale; for images
`score=ssim` uses 1 - SSIM), and the threshold is the score that `target_fpr` of the
validation normals exceed.

Data (labels are for evaluation only; training sees normal examples only):
- `digits` (default): scikit-learn's 8x8 handwritten digits, one-class protocol: train on digit
  `normal_class` (0), test on all ten digits, the other nine being anomalies.
- `breast_cancer`: scikit-learn's Wisconsin diagnostic set (30 features, 569 biopsies):
  benign tumours normal, malignant ones the anomalies.
- `dir:PATH`: images in `PATH/normal/` and, for evaluation, `PATH/anomaly/`, resized to
  `image_size`; in colour when the normal images have colour (`channels=auto`).
- `csv:PATH`: numeric columns; with `label_column`, rows whose label equals `normal_class` are
  normal and the others anomalies (test split only).

Model: images — strided Conv2D encoder, dense bottleneck, transposed-convolution decoder;
features — a dense encoder–decoder. Inputs are normalized inside the model.

Export: `serve` takes raw inputs (uint8 pixels [batch, H, W, C], resized; or float32 features
[batch, F] in original units) and returns `score`, `is_anomaly` and, for images, the uint8
`reconstruction`; images also get `serve_image_bytes` (encoded PNG/JPEG/BMP/GIF).

What runs, in order (`ktemplate/lifecycle.py`): load_data (resolves bottleneck, channels) →
build_model → fit on normals → calibrate (the threshold) → evaluate → baseline (PCA,
IsolationForest, One-Class SVM, k-NN, picked on validation ROC AUC) → export.

Adapt it: `ktemplate new my_detector --from anomaly_autoencoder`, then point `dataset` at your
normal examples and set `target_fpr` to the false alarms you can afford.

    ktemplate train anomaly_autoencoder
    ktemplate train anomaly_autoencoder --dataset breast_cancer
    ktemplate predict saved_models/anomaly_autoencoder/<run-id>/export part.png
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import images, novelty

from ktemplate import baselines, convert, reports, training
from ktemplate.config import (
    Auto,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Range,
    Resolver,
    TrainingConfig,
)
from ktemplate.contract import Data

NAME = "anomaly_autoencoder"
TUNE_OBJECTIVE = "val_loss"  # reconstruction loss of validation normals: anomalies stay unseen

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "digits"  # digits, breast_cancer (bundled, offline), dir:PATH or csv:PATH
    normal_class: str = "0"  # digits: the normal digit; csv: the label value that is normal
    label_column: str = "label"  # csv: the label column (evaluation only); "" for none
    image_size: Annotated[int, Range(8)] = 32  # dir: square size images are resized to (4k)
    channels: Literal[1, 3, "auto"] = "auto"  # dir: 1 gray, 3 RGB; auto: 3 if normals have colour
    score: Literal["mse", "ssim"] = "mse"  # images: mse of the pixels, or ssim: 1 - SSIM
    target_fpr: OpenFraction = 0.05  # threshold: this share of validation normals is flagged
    epochs: PositiveInt = 300  # maximum epochs; early stopping usually ends sooner
    batch_size: PositiveInt = 32  # per-replica batch size
    learning_rate: PositiveFloat = 1e-3  # peak learning rate (cosine decay)
    early_stopping_patience: NonNegativeInt = 20  # epochs without val_loss improvement
    l2: NonNegativeFloat = 0.0  # L2 penalty on kernels
    dropout: Fraction = 0.0  # dropout after each hidden layer of the encoder
    batch_norm: bool = False  # off: per-batch statistics blur the normal/anomaly contrast
    bottleneck: PositiveInt | Auto = "auto"  # code width; auto: 16, features: at most half
    hidden: PositiveInt = 64  # features: units of the first hidden layer (halved per further layer)
    hidden_layers: PositiveInt = 2  # features: encoder hidden layers (mirrored in the decoder)
    filters: PositiveInt = 16  # images: filters of the first strided convolution (doubled after)
    input_noise: NonNegativeFloat = 0.0  # train-time Gaussian noise on the normalized input

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % 4:
            raise ValueError(
                f"Config key 'image_size' must be a multiple of 4 and >= 8, got {self.image_size}."
            )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

DEFAULT_BOTTLENECK = 16  # bottleneck=auto (features: at most half their number)
SPLIT_FRACTIONS = novelty.SPLIT_FRACTIONS


def load_examples(config: Config) -> novelty.Examples:
    """The configured source as `novelty.Examples` (normal examples to learn from, labelled
    anomalies to evaluate on). Raises ValueError with what to fix."""
    return novelty.load_examples(
        config.dataset, config.normal_class, config.label_column, config.image_size,
        Resolver(config),
    )  # fmt: skip


def load_data(config: Config, batch_size: int) -> Data:
    """Train and val batches are (input, normalized target) of normal examples; test batches are
    (input, anomaly label) of all test examples."""
    examples = load_examples(config)
    if config.score == "ssim" and examples.kind != "image":
        raise ValueError(
            "score=ssim compares images; this data set has feature columns: use score=mse."
        )
    mean, std = novelty.train_scale(examples)
    auto = Resolver(config)
    novelty.resolve_bottleneck(auto, examples, DEFAULT_BOTTLENECK)
    found = examples.auto or {"resolved": {}, "warnings": []}
    spec = {
        "resolved": {**found["resolved"], **auto.resolved},
        "warnings": found["warnings"] + auto.warnings,
        "kind": examples.kind,
        "input_shape": list(examples.x["train"].shape[1:]),
        "features": examples.names,
        "mean": mean,
        "std": std,
        "target_fpr": config.target_fpr,
        "score": config.score,
        "normal": examples.description,
        "sizes": {
            "train": int(len(examples.x["train"])),
            "val": int((examples.anomaly["val"] == 0).sum()),  # the validation normals
            "test": int(len(examples.x["test"])),
        },
        "val_anomalies": int(examples.anomaly["val"].sum()),
        "test_anomalies": int(examples.anomaly["test"].sum()),
        "dataset": config.dataset,
    }

    splits = {  # (example, anomaly label), every example of each split
        split: tf.data.Dataset.from_tensor_slices((x.astype("float32"), examples.anomaly[split]))
        for split, x in examples.x.items()
    }
    return Data(  # train and val: normal examples only, shuffled train batches
        train=novelty.normal_pairs(examples, "train", mean, std, batch_size, config.seed),
        val=novelty.normal_pairs(examples, "val", mean, std, batch_size, None),
        test=splits["test"].batch(batch_size),
        spec=spec,
        splits=splits,
    )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Builds and compiles the autoencoder: raw input → reconstruction on the normalized scale
    (the training target is the normalized input)."""
    shape = tuple(spec["input_shape"])
    inputs = keras.Input(shape=shape, name="inputs")
    mean = np.asarray(spec["mean"], "float32")
    std = np.asarray(spec["std"], "float32")
    x = keras.layers.Normalization(mean=mean, variance=std**2, name="normalize")(inputs)
    if config.input_noise:
        x = keras.layers.GaussianNoise(config.input_noise, seed=config.seed)(x)
    reg = training.regularizer(config)
    if spec["kind"] == "image":
        height, width, channels = shape
        for level in range(2):
            x = keras.layers.Conv2D(
                config.filters * 2**level, 3, strides=2, padding="same", kernel_regularizer=reg
            )(x)
            if config.batch_norm:
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(config.activation)(x)
        inner = x.shape[1:]
        x = keras.layers.Flatten()(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout)(x)
        x = keras.layers.Dense(config.bottleneck, kernel_regularizer=reg, name="code")(x)
        x = keras.layers.Dense(int(np.prod(inner)), kernel_regularizer=reg)(x)
        x = keras.layers.Activation(config.activation)(x)
        x = keras.layers.Reshape(inner)(x)
        x = keras.layers.Conv2DTranspose(
            config.filters, 3, strides=2, padding="same", kernel_regularizer=reg
        )(x)
        x = keras.layers.Activation(config.activation)(x)
        x = keras.layers.Conv2DTranspose(channels, 3, strides=2, padding="same")(x)
        outputs = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)
    else:
        widths = [
            max(config.bottleneck, config.hidden // 2**i) for i in range(config.hidden_layers)
        ]
        for units in widths:
            x = keras.layers.Dense(units, kernel_regularizer=reg)(x)
            if config.batch_norm:
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(config.activation)(x)
            if config.dropout:
                x = keras.layers.Dropout(config.dropout)(x)
        x = keras.layers.Dense(config.bottleneck, kernel_regularizer=reg, name="code")(x)
        for units in reversed(widths):
            x = keras.layers.Dense(units, activation=config.activation, kernel_regularizer=reg)(x)
        outputs = keras.layers.Dense(shape[-1], dtype="float32", name="reconstruction")(x)
    model = keras.Model(inputs, outputs, name=NAME)
    steps = training.steps_per_epoch(spec["sizes"]["train"], config.batch_size)
    model.compile(
        optimizer=training.make_optimizer(config, steps),
        loss="mse",
        jit_compile=config.jit_compile,
    )
    return model


def scores(model: keras.Model, spec: dict[str, Any], x) -> tf.Tensor:
    """Anomaly scores [batch]: mean squared reconstruction error (`score=mse`) or 1 - SSIM
    (`score=ssim`); see `novelty.reconstruction_scores`."""
    return novelty.reconstruction_scores(model, spec, x)


def calibrate(model: keras.Model, data: Data) -> dict[str, Any]:
    """The threshold that flags `target_fpr` of new normal examples, from the validation
    normals' scores (split conformal; `novelty.conformal_threshold`). Goes into the spec."""
    values = np.concatenate([scores(model, data.spec, x).numpy() for x, _ in data.val])
    return novelty.conformal_threshold(values, data.spec["target_fpr"])


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------


def search_space(hp, config: Config) -> Config:
    """Maps keras-tuner hyperparameters onto `Config` fields; defaults equal `config`'s."""
    code = DEFAULT_BOTTLENECK if config.bottleneck == "auto" else config.bottleneck
    return dataclasses.replace(
        config,
        bottleneck=hp.Choice("bottleneck", sorted({4, 8, 16, 32, code}), default=code),
        hidden=hp.Choice("hidden", sorted({32, 64, 128, config.hidden}), default=config.hidden),
        filters=hp.Choice("filters", sorted({8, 16, 32, config.filters}), default=config.filters),
        input_noise=hp.Choice(
            "input_noise", sorted({0.0, 0.1, 0.3, config.input_noise}), default=config.input_noise
        ),
        learning_rate=hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=config.learning_rate
        ),
    )


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """Raw inputs → score, is_anomaly (score > the calibrated threshold) and, for images, the
    uint8 reconstruction."""
    threshold = tf.constant(spec["threshold"], tf.float32)
    mean = tf.constant(spec["mean"], tf.float32)
    std = tf.constant(spec["std"], tf.float32)

    def outputs(x):
        score = scores(model, spec, x)
        return {"score": score, "is_anomaly": score > threshold}

    if spec["kind"] == "features":
        features = len(spec["features"])
        return {
            "serve": (outputs, [tf.TensorSpec([None, features], tf.float32, name="features")]),
        }
    height, width, channels = spec["input_shape"]

    def serve(pixels):
        x = tf.image.resize(tf.cast(pixels, tf.float32), [height, width])
        result = outputs(x)
        reconstruction = tf.cast(model(x, training=False), tf.float32) * std + mean
        result["reconstruction"] = tf.cast(
            tf.round(tf.clip_by_value(reconstruction, 0.0, 255.0)), tf.uint8
        )
        return result

    def serve_image_bytes(image_bytes):  # alpha onto white, as the dir: loader reads them
        return serve(images.decode_images(image_bytes, channels, (height, width)))

    return {
        "serve": (serve, [tf.TensorSpec([None, None, None, channels], tf.uint8, name="pixels")]),
        "serve_image_bytes": (
            serve_image_bytes,
            [tf.TensorSpec([None], tf.string, name="image_bytes")],
        ),
    }


def portable_endpoint(model: keras.Model, spec: dict[str, Any], runtime: str) -> convert.Portable:
    """The LiteRT/ONNX function: features, or uint8 pixels at the training size (no resize) →
    score and is_anomaly (the reconstruction stays in the SavedModel)."""
    del runtime  # one function serves both
    threshold = tf.constant(spec["threshold"], tf.float32)
    rng = np.random.default_rng(0)
    if spec["kind"] == "features":
        shape, dtype, name = [len(spec["features"])], tf.float32, "features"
        sample = rng.normal(spec["mean"], spec["std"], (4, *shape)).astype("float32")
    else:
        shape, dtype, name = list(spec["input_shape"]), tf.uint8, "pixels"
        sample = rng.integers(0, 256, (4, *shape), dtype=np.uint8)

    def detect(x):
        score = scores(model, spec, tf.cast(x, tf.float32))
        return {"score": score, "is_anomaly": score > threshold}

    return convert.Portable(
        fn=detect,
        signature=[tf.TensorSpec([None, *shape], dtype, name=name)],
        sample={name: sample},
        reference="serve",
        notes={
            "input": f"{name}: {dtype.name} [batch, {', '.join(map(str, shape))}]"
            + (" in original units" if name == "features" else " (resize first)"),
            "outputs": "score float32 [batch]; is_anomaly bool [batch] (score > threshold)",
        },
    )


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    what = "1 - SSIM of the image and its reconstruction" if spec.get("score") == "ssim" else (
        "mean squared reconstruction error"
    )  # fmt: skip
    outputs = {
        "score": f"float32 [batch]: {what} (higher: more anomalous)",
        "is_anomaly": f"bool [batch]: score > threshold ({spec['threshold']:.6g})",
    }
    if spec["kind"] == "features":
        names = spec["features"]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        serve = f"float32 [batch, {len(names)}]: {shown} (in this order), original units"
        given = {"kind": "features", "features": names, "serve": serve}
    else:
        given = images.manifest_input(spec["input_shape"])
        outputs["reconstruction"] = f"uint8 [batch, {', '.join(map(str, spec['input_shape']))}]"
    return {
        "task": "anomaly_detection",
        "input": given,
        "outputs": outputs,
        **{key: spec[key] for key in ("threshold", "target_fpr", "normal")},
    }


# ---------------------------------------------------------------------------------------------
# Metrics and plots
# ---------------------------------------------------------------------------------------------


def _test_arrays(data: Data) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*data.test.as_numpy_iterator(), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def evaluate(model: keras.Model, data: Data, out_dir: str | Path | None) -> dict[str, Any]:
    """Detection metrics of the reconstruction error on the test split, at the calibrated
    threshold; writes scores.png and (images) most_anomalous.png."""
    spec = data.spec
    x, anomaly = _test_arrays(data)
    values = scores(model, spec, x).numpy()
    found = reports.detection_metrics(anomaly, values, spec["threshold"])
    metrics = {f"test_{k}": found[k] for k in ("roc_auc", "average_precision", "recall", "fpr")}
    metrics |= {
        "threshold": round(spec["threshold"], 6),
        "target_fpr": spec["target_fpr"],
        "test_examples": int(len(anomaly)),
        "test_anomalies": int(anomaly.sum()),
    }
    if out_dir is not None:
        score = spec.get("score", "mse")
        reports.plot_anomaly_scores(
            values, anomaly, spec["threshold"], score, Path(out_dir) / "scores.png"
        )
        if spec["kind"] == "image":
            worst = np.argsort(-values)[:8]
            reconstruction = model(x[worst], training=False).numpy() * spec["std"][0]
            reports.plot_reconstructions(
                x[worst], reconstruction, values[worst], anomaly[worst], out_dir
            )
    return metrics


BASELINE_MAX_TRAIN = 5000  # train normals the classical detectors fit (a random subsample above)


def baseline(model: keras.Model, data: Data, config: Config) -> dict[str, Any]:
    """PCA reconstruction error (fewer components than features), IsolationForest, One-Class
    SVM and k-nearest-neighbour distance on the same standardized train normals, the best on
    validation ROC AUC compared with the autoencoder on the test split (DeLong); see
    `ktemplate.baselines.novelty_detector`."""
    flat = {split: novelty.flat_arrays(ds) for split, ds in data.splits.items()}
    anomaly = flat["test"][1]
    if not 0 < anomaly.sum() < len(anomaly):
        return baselines.no_verdict(
            "classical novelty detector", "the test split needs normal and anomalous examples"
        )
    fitted, base_values, results = baselines.novelty_detector(
        flat["train"][0], *flat["val"], flat["test"][0], anomaly, seed=config.seed,
        nu=config.target_fpr, max_train=config.baseline_max_train or BASELINE_MAX_TRAIN,
    )  # fmt: skip
    model_values = scores(model, data.spec, _test_arrays(data)[0]).numpy()
    return baselines.compare(
        fitted,
        results,
        metric="test_roc_auc",
        label="test ROC AUC",
        model_value=baselines.roc_auc(anomaly, model_values),
        base_value=baselines.roc_auc(anomaly, base_values),
        higher_is_better=True,
        test="DeLong",
        p_value=baselines.delong_p(anomaly, model_values, base_values),
        n=int(min(anomaly.sum(), (anomaly == 0).sum())),
        unit="examples of the rarer class",
        config=config,
        tries=[
            baselines.Try("bottleneck", max(1, config.bottleneck // 2), "a narrower code"),
            baselines.Try("input_noise", 0.1, "a denoising autoencoder"),
        ],
        number_format=".4f",
    )


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train anomaly_autoencoder [options]`, run as
    `python -m ktemplate.templates.anomaly_autoencoder [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
