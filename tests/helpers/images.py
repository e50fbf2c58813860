"""Small image folders written by tests."""

import numpy as np
import tensorflow as tf


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def make_image_folder(root, classes=("cat", "dog"), per_class=5, size=(12, 10), channels=1):
    """Writes `per_class` noisy PNGs per class; classes differ in brightness, so learnable."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        for i in range(per_class):
            base = 40 + 150 * c
            array = np.clip(rng.normal(base, 20, (*size, channels)), 0, 255).astype("uint8")
            write_png(root / name / f"{i}.png", array)
    return root
