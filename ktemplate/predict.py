"""Runs an exported SavedModel on inputs, the way a serving client would.

Only TensorFlow and the export folder are used: no template code is imported. The manifest's
`input.kind` picks a reader that turns the command-line inputs into calls of the export's
endpoints; each template's kind has one reader in `READERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ktemplate import files
from ktemplate.serving import read_manifest, resolve_export_dir


def rows(outputs: dict[str, tf.Tensor], inputs: list[str]) -> list[dict[str, Any]]:
    """Turns a batch of endpoint outputs into one JSON-ready dict per input."""
    values = {k: v.numpy() for k, v in outputs.items()}
    result = []
    for i, name in enumerate(inputs):
        row: dict[str, Any] = {"input": name}
        for key, value in values.items():
            item = value[i]
            if isinstance(item, bytes):
                item = item.decode("utf-8")
            elif isinstance(item, np.ndarray):
                item = [round(float(v), 6) for v in item.ravel()]
            elif isinstance(item, np.generic):
                item = item.item()
            row[key] = item
        result.append(row)
    return result


def _existing_files(inputs: list[str]) -> list[Path]:
    for name in inputs:
        if not Path(name).is_file():
            raise FileNotFoundError(f"Input file not found: {name}.")
    return [Path(name) for name in inputs]


def _predict_images(loaded, inputs: list[str], manifest: dict, **_) -> list[dict[str, Any]]:
    result = []
    for path in _existing_files(inputs):
        try:
            outputs = loaded.serve_image_bytes(tf.constant([path.read_bytes()]))
        except tf.errors.InvalidArgumentError:
            raise ValueError(
                f"Could not decode {path} as an image (PNG, JPEG, BMP or GIF expected)."
            ) from None
        result += rows(outputs, [str(path)])
    return result


def _read_window(path: Path, features: list[str]) -> np.ndarray:
    """A [steps, features] float array from a .npy file or a CSV file (header optional)."""
    if path.suffix.lower() == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"Could not read {path} as a NumPy .npy array ({e}).") from None
        if values.ndim == 1 and len(features) == 1:
            values = values[:, np.newaxis]
    else:
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            table = [row for row in csv.reader(f) if row]
        if table and not _is_number(table[0][0]):
            header, table = [name.strip() for name in table[0]], table[1:]
            missing = [name for name in features if name not in header]
            if missing:
                raise ValueError(
                    f"{path} has no column(s) {', '.join(missing)}; the export expects the "
                    f"columns {', '.join(features)} (header found: {', '.join(header)})."
                )
            table = [[row[header.index(name)] for name in features] for row in table]
        try:
            values = np.array(table, dtype="float64")
        except ValueError:
            raise ValueError(
                f"{path} holds values that are not numbers; expected one row per time step "
                f"with the columns {', '.join(features)}."
            ) from None
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _predict_windows(loaded, inputs: list[str], manifest: dict, **_) -> list[dict[str, Any]]:
    """Each input is a .npy or .csv file of [steps, features] in original units, oldest first;
    a longer file uses its last `window` steps."""
    window, features = manifest["input"]["window"], manifest["input"]["features"]
    result = []
    for path in _existing_files(inputs):
        values = _read_window(path, features)
        if values.ndim != 2 or values.shape[1] != len(features):
            raise ValueError(
                f"{path} has shape {list(values.shape)}; expected [steps, {len(features)}] "
                f"(the columns {', '.join(features)})."
            )
        if values.shape[0] < window:
            raise ValueError(
                f"{path} has {values.shape[0]} steps; the export needs the last {window} steps."
            )
        values = values[-window:]
        if not np.isfinite(values).all():
            raise ValueError(f"{path} has missing or infinite values; fill them first.")
        outputs = loaded.serve(tf.constant(values[np.newaxis], tf.float32))
        result += rows(outputs, [str(path)])
    return result


def _predict_texts(
    loaded, inputs: list[str], manifest: dict, per_line: bool = False, **_
) -> list[dict[str, Any]]:
    """Each input is a text, or an existing .txt file (UTF-8): one text per file, as `dir:`
    folders are read for training, or one text per line with `per_line`."""
    texts, names = [], []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() == ".txt" and path.is_file():
            try:
                content = path.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path} is not valid UTF-8 (offset {e.start}); re-save it as UTF-8."
                ) from None
            if per_line:
                lines = content.splitlines()
                texts += lines
                names += [f"{path}:{n}" for n in range(1, len(lines) + 1)]
            else:
                texts.append(content)
                names.append(str(path))
        elif path.suffix.lower() == ".txt" and not any(c.isspace() for c in item):
            raise FileNotFoundError(
                f"Input file not found: {item}. Pass an existing .txt file (one text per line) "
                "or the text itself."
            )
        else:
            texts.append(item)
            names.append(item)
    if not texts:
        return []
    return rows(loaded.serve(tf.constant(texts, tf.string)), names)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """A uint8 [H, W, C] image with `channels` (1 gray, 3 RGB): luminance, gray copied to
    RGB, alpha dropped."""
    if image.shape[-1] in (2, 4):  # gray+alpha, RGBA
        image = image[..., : image.shape[-1] - 1]
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
    return tf.image.grayscale_to_rgb(image)


COLOR_NAMES = {1: "grayscale", 3: "RGB"}


def _denoise_images(
    loaded, inputs: list[str], manifest: dict, convert: str = "auto", force: bool = False, **_
) -> list[dict[str, Any]]:
    """Denoises each image file; writes `<name>.denoised.png` next to it (an existing one only
    with `force`).

    An image whose channel count differs from the model's is converted to the model's (with a
    notice on stderr); `convert` "gray"/"rgb" states the conversion (it must match the
    model), "none" refuses such images.
    """
    import sys

    channels = manifest["input"]["channels"]
    wanted = {"gray": 1, "rgb": 3}.get(convert)
    if wanted is not None and wanted != channels:
        raise ValueError(
            f"--convert {convert} does not match this model, which denoises "
            f"{COLOR_NAMES[channels]} images; use --convert {'gray' if channels == 1 else 'rgb'}."
        )
    result = []
    for path in _existing_files(inputs):
        output = path.with_name(f"{path.stem}.denoised.png")
        if output.exists() and not force:
            raise FileExistsError(f"{output} exists: pass --force to replace it.")
        try:
            image = tf.io.decode_image(path.read_bytes(), dtype=tf.uint8, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            raise ValueError(
                f"Could not decode {path} as an image (PNG, JPEG, BMP or GIF expected)."
            ) from None
        found = image.shape[-1]
        if found != channels:
            if convert == "none":
                raise ValueError(
                    f"{path} has {found} channel(s) but this model denoises "
                    f"{COLOR_NAMES[channels]} images. Convert it (--convert "
                    f"{'gray' if channels == 1 else 'rgb'}), or use a model trained with a "
                    "matching `channels`."
                )
            image = to_channels(image, channels)
            if wanted is None:
                print(
                    f"ktemplate: note: {path} has {found} channel(s); converted to "
                    f"{COLOR_NAMES[channels]} for this model (the output is "
                    f"{COLOR_NAMES[channels]}).",
                    file=sys.stderr,
                )
        denoised = loaded.serve(image[tf.newaxis])["denoised"][0]
        files.write_bytes(output, tf.io.encode_png(denoised).numpy())
        height, width = image.shape[:2]
        result.append({"input": str(path), "output": str(output), "height": height, "width": width})
    return result


def _predict_features(loaded, inputs: list[str], manifest: dict, **_) -> list[dict[str, Any]]:
    """CSV files with a header naming the manifest's features (other columns are ignored):
    one output row per CSV row."""
    import pandas as pd

    names = manifest["input"]["features"]
    result = []
    for path in _existing_files(inputs):
        frame = pd.read_csv(path)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ValueError(
                f"{path} lacks the feature column(s) {', '.join(missing[:5])}: its header must "
                f"name the model's {len(names)} features ({', '.join(names[:5])}, ...)."
            )
        values = frame[names].to_numpy("float32")
        if np.isnan(values).any():
            raise ValueError(f"{path} has empty feature cells: fill or drop them first.")
        outputs = loaded.serve(tf.constant(values))
        result += rows(outputs, [f"{path}:{i + 1}" for i in range(len(values))])
    return result


# input kind → reader(loaded SavedModel, command-line inputs, manifest, **options) → rows;
# a reader ignores the options that are not its own.
READERS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "image": _predict_images,
    "window": _predict_windows,
    "text": _predict_texts,
    "noisy_image": _denoise_images,
    "features": _predict_features,
}


def predict(export_dir: Path, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
    """Predicts one row of outputs per input.

    Options: `per_line` (texts: a .txt file holds one text per line), `convert` (denoising:
    "auto", "gray", "rgb" or "none"), `force` (denoising: replace existing outputs).

    Raises:
        FileNotFoundError: the export or an input file is missing.
        ValueError: an input cannot be read as the export expects.
    """
    rows, failures = predict_each(export_dir, inputs, **options)
    if failures:
        raise failures[0][1]
    return rows


INPUT_ERRORS = (FileNotFoundError, FileExistsError, ValueError, OSError, tf.errors.OpError)


def predict_each(
    export_dir: Path, inputs: list[str], **options: Any
) -> tuple[list[dict[str, Any]], list[tuple[str, Exception]]]:
    """`predict` input by input: the rows of every input that could be read, and (input,
    error) for each that could not; every error names its input."""
    loaded, manifest = _load(export_dir)
    reader = READERS[manifest["input"]["kind"]]
    rows, failures = [], []
    for item in inputs:
        try:
            rows += reader(loaded, [item], manifest, **options)
        except INPUT_ERRORS as e:
            text = e.message if isinstance(e, tf.errors.OpError) else str(e)
            message = text if item in text else f"{item}: {text}"
            kind = next(
                (k for k in (FileNotFoundError, FileExistsError) if isinstance(e, k)), ValueError
            )
            failures.append((item, kind(message)))
    return rows, failures


def _load(export_dir: Path):
    export_dir = resolve_export_dir(export_dir)  # a serving base path: its newest version
    manifest = read_manifest(export_dir)
    kind = manifest.get("input", {}).get("kind")
    if kind not in READERS:
        raise ValueError(
            f"This version of ktemplate cannot feed inputs of kind {kind!r}; "
            f"known kinds: {', '.join(sorted(READERS))}."
        )
    for needed in ("saved_model.pb", "variables/variables.index"):
        if not (export_dir / needed).is_file():
            raise FileNotFoundError(
                f"{export_dir / needed} is missing: the export is incomplete. Export the run "
                "again (ktemplate export RUN_DIR --force)."
            )
    try:
        return tf.saved_model.load(str(export_dir)), manifest
    except (tf.errors.OpError, OSError, ValueError) as e:
        first = (getattr(e, "message", None) or str(e)).strip().splitlines()
        raise ValueError(
            f"{export_dir} could not be loaded as a SavedModel ({first[0] if first else e}): "
            "saved_model.pb or its variables are damaged. Export the run again "
            "(ktemplate export RUN_DIR --force)."
        ) from None
