"""keras-hub presets for the text template's `backbone=`: loading, the tokenizer and packer,
and the token counts that `sequence_length=auto` reads.

keras_hub is imported on first use: it costs seconds and only backbones need it. A preset is a
name (downloaded from Kaggle or Hugging Face, which needs internet) or a local folder written
by `save_to_preset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from ktemplate.config import ConfigError


def keras_hub():
    """The keras_hub module, or a ConfigError saying how to install it."""
    try:
        import keras_hub
    except ImportError as e:
        raise ConfigError(
            f"backbone= needs the keras-hub package ({e}); install it with `pip install keras-hub`."
        ) from None
    return keras_hub


def from_preset(kind: str, preset: str, **kwargs):
    """`keras_hub.models.<kind>.from_preset(preset)`, or a ConfigError naming what to check."""
    hub = keras_hub()
    try:
        return getattr(hub.models, kind).from_preset(preset, **kwargs)
    except Exception as e:  # keras-hub raises many kinds for a missing or unreachable preset
        where = (
            "the local preset folder"
            if Path(preset).exists()
            else "the preset name (it downloads from Kaggle or Hugging Face, which needs "
            "internet: offline, give a local preset folder written by save_to_preset)"
        )
        raise ConfigError(
            f"backbone={preset}: keras-hub could not load its {kind} ({type(e).__name__}: "
            f"{str(e)[:300]}). Check {where}."
        ) from None


def preprocessor(preset: str, sequence_length: int | None):
    """The preset's TextClassifierPreprocessor (tokenizer + packer): strings → its inputs."""
    kwargs = {} if sequence_length is None else {"sequence_length": sequence_length}
    return from_preset("TextClassifierPreprocessor", preset, **kwargs)


def max_length(preset: str, default: int) -> int:
    """The longest sequence the preset's backbone takes (its position embeddings)."""
    backbone = from_preset("Backbone", preset, load_weights=False)
    return int(getattr(backbone, "max_sequence_length", default))


def token_counts(texts: tf.data.Dataset, preset: str, limit: int = 20_000) -> np.ndarray:
    """Tokens per text of (at most `limit` of) `texts`' (text, label) pairs, as the preset's
    tokenizer splits them, + the start and end tokens its packer adds."""
    tokenizer = preprocessor(preset, None).tokenizer
    counts = []
    for batch, _ in texts.take(limit).batch(1024).as_numpy_iterator():
        tokens = tokenizer(tf.constant(batch))
        if isinstance(tokens, tf.RaggedTensor):
            counts.append(tokens.row_lengths().numpy())
        else:  # a list of lists, or a dense tensor when all texts have one length
            counts.append(np.array([len(t) for t in tokens]))
    return np.concatenate(counts) + 2
