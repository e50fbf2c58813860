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
from pathlib import Path
from typing import Any, Literal

import numpy as np
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
