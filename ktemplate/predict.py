"""Runs an exported SavedModel on input files, the way a serving client would.

Only TensorFlow and the export folder are used: no template code is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ktemplate.export import read_manifest


def _rows(outputs: dict[str, tf.Tensor], inputs: list[str]) -> list[dict[str, Any]]:
    values = {k: v.numpy() for k, v in outputs.items()}
    rows = []
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
        rows.append(row)
    return rows


def predict(export_dir: Path, inputs: list[str]) -> list[dict[str, Any]]:
    """Predicts one row of outputs per input file.

    Raises:
        FileNotFoundError: the export or an input file is missing.
        ValueError: an input cannot be read as the export expects.
    """
    manifest = read_manifest(export_dir)
    kind = manifest.get("input", {}).get("kind")
    for name in inputs:
        if not Path(name).is_file():
            raise FileNotFoundError(f"Input file not found: {name}.")
    loaded = tf.saved_model.load(str(export_dir))
    if kind == "image":
        rows = []
        for name in inputs:
            try:
                outputs = loaded.serve_image_bytes(tf.constant([Path(name).read_bytes()]))
            except tf.errors.InvalidArgumentError:
                raise ValueError(
                    f"Could not decode {name} as an image (PNG, JPEG, BMP or GIF expected)."
                ) from None
            rows += _rows(outputs, [name])
        return rows
    raise ValueError(f"This version of ktemplate cannot feed inputs of kind {kind!r} from files.")
