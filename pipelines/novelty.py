"""One-class data for anomaly detection: normal examples to learn from, labelled anomalies to
evaluate on.

Sources: scikit-learn's digits (one digit normal), its breast cancer features (benign normal),
`csv:PATH` (numeric feature columns, an optional label column) and `dir:PATH` (`normal/` and
`anomaly/` folders of images). Train holds normal examples only; validation and test hold
normal examples and the labelled anomalies (split 1:2), which only pick and judge the
classical baseline: training, early stopping and the threshold see the validation normals.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from ktemplate.pipelines import images, sources
from ktemplate.pipelines import splits as splits_lib

from ktemplate.config import Resolver

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test


@dataclasses.dataclass
class Examples:
    """Inputs in original units with anomaly labels (1 = anomaly), split into train/val/test;
    train holds normal examples only; val holds normal examples and, where the source has them,
    labelled anomalies, which only pick the classical baseline (training, early stopping and
    the threshold see the validation normals only)."""

    x: dict[str, np.ndarray]
    anomaly: dict[str, np.ndarray]
    kind: Literal["image", "features"]
    names: list[str]  # feature names, or ["pixels"]
    description: str
    auto: dict[str, Any] = dataclasses.field(default_factory=dict)  # Resolver.spec() of dir:


def _one_class(x: np.ndarray, normal: np.ndarray, index: dict[str, np.ndarray]) -> tuple:
    """Train keeps its normal examples; val and test keep every example of their split."""
    out_x, out_y = {}, {}
    for split, idx in index.items():
        if split == "train":
            idx = idx[normal[idx]]
        out_x[split], out_y[split] = x[idx], (~normal[idx]).astype("int64")
    return out_x, out_y


def load_examples(
    source: str, normal_class: str, label_column: str, image_size: int, auto: Resolver
) -> Examples:
    """`source` as `Examples`; `normal_class` names the normal digit or label value, `auto` the
    run's resolver (dir: picks `channels`). Raises ValueError with what to fix."""
    if source == "digits":
        pixels, labels = images.digits_arrays()
        if normal_class not in [str(d) for d in range(10)]:
            raise ValueError(
                f"Config key 'normal_class' is {normal_class!r}: the digits' classes are 0..9."
            )
        index = splits_lib.stratified_split(labels, SPLIT_FRACTIONS)
        x, y = _one_class(pixels, labels == int(normal_class), index)
        return Examples(x, y, "image", ["pixels"], f"digit {normal_class} is normal")
    if source == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        benign = data.target == list(data.target_names).index("benign")
        index = splits_lib.stratified_split(data.target, SPLIT_FRACTIONS)
        x, y = _one_class(data.data.astype("float32"), benign, index)
        names = [str(n) for n in data.feature_names]
        return Examples(x, y, "features", names, "benign tumours are normal, malignant anomalies")
    if source.startswith("csv:"):
        return _csv_examples(Path(source[4:]), normal_class, label_column)
    if source.startswith("dir:"):
        return _dir_examples(Path(source[4:]), image_size, auto)
    raise ValueError(
        f"Unknown dataset {source!r}: use digits, breast_cancer, dir:PATH (normal/ and anomaly/ "
        "folders of images) or csv:PATH (numeric feature columns)."
    )


def _normal_first_split(normal: np.ndarray) -> dict[str, np.ndarray]:
    """Normal examples split 70/10/20 (fixed seed); anomalies split between validation and
    test in the same 1:2 ratio (a third to validation, rounded down)."""
    rng = np.random.default_rng(splits_lib.SPLIT_SEED)
    idx = rng.permutation(np.flatnonzero(normal))
    n_val = max(1, round(SPLIT_FRACTIONS[1] * len(idx)))
    n_test = max(1, round(SPLIT_FRACTIONS[2] * len(idx)))
    anomalies = rng.permutation(np.flatnonzero(~normal))
    share = SPLIT_FRACTIONS[1] / (SPLIT_FRACTIONS[1] + SPLIT_FRACTIONS[2])
    n_val_anomalies = int(share * len(anomalies))
    return {
        "train": np.sort(idx[n_val + n_test :]),
        "val": np.sort(np.concatenate([idx[:n_val], anomalies[:n_val_anomalies]])),
        "test": np.sort(np.concatenate([idx[n_val : n_val + n_test], anomalies[n_val_anomalies:]])),
    }


def _csv_examples(path: Path, normal_class: str, label_column: str) -> Examples:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}.")
    frame = pd.read_csv(path)
    label = label_column if label_column in frame.columns else None
    if label_column and label is None and label_column != "label":
        raise ValueError(
            f"Column {label_column!r} (label_column) is not in {path}; its columns are "
            f"{', '.join(map(str, frame.columns))}. Set label_column to one of them, or to '' "
            "when the file has no labels."
        )
    features = frame.drop(columns=[label] if label else [])
    numeric = features.select_dtypes("number")
    if numeric.shape[1] != features.shape[1]:
        other = [c for c in features.columns if c not in numeric.columns]
        raise ValueError(
            f"{path}: columns {', '.join(map(str, other[:5]))} are not numeric. Encode them as "
            "numbers or drop them; only numeric feature columns (and the label) are allowed."
        )
    if numeric.isna().any().any():
        raise ValueError(f"{path} has empty cells: fill or drop them first.")
    sources.check_numbers(numeric.to_numpy("float64"), list(numeric.columns), str(path))
    normal = np.ones(len(frame), bool)
    if label:
        normal = frame[label].astype(str).to_numpy() == normal_class
        if not normal.any():
            raise ValueError(
                f"No row of {path} has {label} == {normal_class!r} (normal_class); its "
                f"values are {', '.join(map(str, sorted(frame[label].astype(str).unique())[:10]))}."
            )
    if normal.sum() < 10:
        raise ValueError(f"{path} has {normal.sum()} normal rows; at least 10 are needed.")
    index = _normal_first_split(normal)
    x, y = _one_class(numeric.to_numpy("float32"), normal, index)
    what = f"{label} == {normal_class!r} is normal" if label else "every row is normal"
    return Examples(x, y, "features", [str(c) for c in numeric.columns], what)


def _dir_examples(path: Path, image_size: int, auto: Resolver) -> Examples:
    from PIL import Image

    normal_dir, anomaly_dir = path / "normal", path / "anomaly"
    if not normal_dir.is_dir():
        raise FileNotFoundError(
            f"{normal_dir} is missing: dir: needs a normal/ folder of images (and, to evaluate, "
            "an anomaly/ folder)."
        )
    arrays, normal = [], []
    for folder, is_normal in ((normal_dir, True), (anomaly_dir, False)):
        files = sorted(
            p
            for p in (folder.rglob("*") if folder.is_dir() else [])
            if p.suffix.lower() in images.IMAGE_EXTENSIONS
        )
        for file in files:
            with Image.open(file) as image:
                rgba = image.convert("RGBA")  # alpha onto white, as the export decodes
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                rgb = Image.alpha_composite(white, rgba).convert("RGB")
                rgb = rgb.resize((image_size, image_size))
            arrays.append(np.asarray(rgb, dtype="uint8"))
            normal.append(is_normal)
    normal = np.asarray(normal, bool)
    if normal.sum() < 10:
        raise ValueError(f"{normal_dir} has {normal.sum()} images; at least 10 are needed.")
    pixels = np.stack(arrays)
    colour = bool((pixels[normal].max(axis=-1) != pixels[normal].min(axis=-1)).any())
    channels = auto.pick(
        "channels",
        3 if colour else 1,
        "the normal images have colour" if colour else "the normal images are gray",
    )
    if channels == 1 and colour:
        auto.warn(
            "channels=1 turns the colour normal images gray: an anomaly that shows only in "
            "colour is not seen. Use channels=3 (or auto) to keep colour."
        )
    if channels == 1:  # ITU-R 601-2 luma, as PIL's convert("L")
        luma = pixels.astype("float32") @ np.asarray([0.299, 0.587, 0.114], "float32")
        pixels = np.round(luma).astype("uint8")[..., None]
    index = _normal_first_split(normal)
    x, y = _one_class(pixels, normal, index)
    return Examples(x, y, "image", ["pixels"], f"{normal_dir.name}/ is normal", auto.spec())


def resolve_bottleneck(auto: Resolver, examples: Examples, default: int) -> int:
    """bottleneck=auto: `default` for images; for features at most half their number (a code
    narrower than the input), at most `default`. Warns when a set bottleneck is not narrower
    than the features (the autoencoder could copy its input)."""
    if examples.kind == "image":
        return auto.pick("bottleneck", default, "the default for images")
    width = len(examples.names)
    code = auto.pick(
        "bottleneck",
        min(default, max(1, width // 2)),
        f"at most half the {width} features (a code narrower than the input), at most {default}",
    )
    if code >= width:
        auto.warn(
            f"bottleneck={code} is not narrower than the {width} features: the autoencoder "
            "can copy its input and score anomalies as normal. Use bottleneck=auto."
        )
    return code


def train_scale(examples: Examples) -> tuple[list[float], list[float]]:
    """The normalization: pixels / 255 for images; features by the train split's mean and
    standard deviation (at least 1e-6)."""
    if examples.kind == "image":
        return [0.0], [255.0]
    train = examples.x["train"].astype("float32")
    return train.mean(axis=0).tolist(), np.maximum(train.std(axis=0), 1e-6).tolist()


def normal_pairs(
    examples: Examples, split: str, mean, std, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """(input, normalized input) batches of `split`'s normal examples, cached; shuffled each
    epoch with `seed` unless it is None."""
    x = examples.x[split][examples.anomaly[split] == 0].astype("float32")
    target = (x - np.asarray(mean, "float32")) / np.asarray(std, "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, target)).cache()
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def conformal_threshold(values: np.ndarray, target_fpr: float) -> dict:
    """The threshold: the validation normals' score of rank round((n + 1) * (1 - target_fpr)).

    A new normal example exceeds the score of rank r among n with probability (n + 1 - r) /
    (n + 1) (split conformal), so this rank flags the share of normals nearest to `target_fpr`
    that n of them allow (`expected_fpr`); a plain quantile of few scores lands far above it
    (0.09 for 0.05 with 18 normals). With too few normals the highest score is used, and a
    warning says what it flags."""
    values = np.sort(values)
    n = len(values)
    rank = int(np.clip(np.round((n + 1) * (1.0 - target_fpr)), 1, n))
    found = {"validation_normals": int(n), "threshold": float(values[rank - 1])}
    found["expected_fpr"] = round((n + 1 - rank) / (n + 1), 4)
    if found["expected_fpr"] > 1.25 * target_fpr:
        found["warnings"] = [
            f"{n} validation normals cannot set a threshold for target_fpr={target_fpr}: the "
            f"highest of their scores is used, which flags about {found['expected_fpr']:.3f} "
            f"of normal examples. Give at least {math.ceil(1 / target_fpr) * 10} normal "
            "examples (10% go to validation), or raise target_fpr."
        ]
    return found


def flat_arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """An unbatched (example, anomaly label) split as a [n, features] matrix (images
    flattened) and the labels."""
    xs, ys = zip(*ds.batch(4096).as_numpy_iterator(), strict=True)
    return np.concatenate(xs).reshape(sum(len(a) for a in xs), -1), np.concatenate(ys)


def ssim_filter_size(height: int, width: int) -> int:
    """SSIM's Gaussian window: 11 pixels (the usual), smaller for small images (5 for 8x8)."""
    return min(11, (min(height, width) // 2) | 1)


def reconstruction_scores(model, spec: dict[str, Any], x) -> tf.Tensor:
    """Anomaly scores [batch]: the mean squared reconstruction error on the normalized scale
    (`score=mse`), or 1 - SSIM of the image and its reconstruction (`score=ssim`, 0..2: local
    means, contrasts and structure compared in a Gaussian window)."""
    x = tf.cast(x, tf.float32)
    target = (x - tf.constant(spec["mean"], tf.float32)) / tf.constant(spec["std"], tf.float32)
    reconstruction = tf.cast(model(x, training=False), tf.float32)
    if spec.get("score", "mse") == "ssim":
        size = ssim_filter_size(*spec["input_shape"][:2])
        similarity = tf.image.ssim(
            target, reconstruction, max_val=1.0, filter_size=size, filter_sigma=1.5 * size / 11
        )
        return 1.0 - similarity
    error = tf.square(reconstruction - target)
    return tf.reduce_mean(tf.reshape(error, [tf.shape(x)[0], -1]), axis=1)
