"""Parsing `dataset` config values and opening TensorFlow Datasets builders offline-safely."""

from __future__ import annotations

import os
import socket

# TFDS downloads retry with back-off for minutes when offline; one quick connection first
# turns that into an immediate, clear error. Override as HOST:PORT (tests use loopback).
NETWORK_PROBE = "storage.googleapis.com:443"


class DataUnavailableError(RuntimeError):
    """A named dataset exists but cannot be had on this machine (not prepared, offline)."""


def parse_source(dataset: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    """Splits a `dataset` value into (kind, argument).

    "digits" → ("digits", ""), "tfds:mnist" → ("tfds", "mnist"), "dir:/data" → ("dir", "/data").

    Raises:
        ValueError: the kind is not one of `allowed`, or the argument is missing.
    """
    kind, sep, arg = dataset.partition(":")
    named = [a for a in allowed if a not in ("tfds", "dir", "csv")]
    prefixed = [f"{a}:..." for a in allowed if a in ("tfds", "dir", "csv")]
    if (
        kind not in allowed
        or (kind in ("tfds", "dir", "csv") and not arg)
        or (kind not in ("tfds", "dir", "csv") and sep)
    ):
        examples = {
            "tfds": "tfds:mnist",
            "dir": "dir:path/to/folder",
            "csv": "csv:path/to/file.csv",
        }
        shown = " or ".join(examples[a] for a in allowed if a in examples)
        raise ValueError(
            f"Unknown dataset {dataset!r}. Use one of: {', '.join(named + prefixed)}"
            + (f" (e.g. {shown})." if shown else ".")
        )
    return kind, arg


def tfds_builder(name: str, data_dir: str | None = None):
    """Returns a prepared TFDS builder, downloading and preparing it when possible.

    Raises:
        ValueError: no TFDS dataset has this name.
        DataUnavailableError: the dataset is not prepared locally and cannot be downloaded,
            typically because this machine is offline.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"Unknown TFDS dataset '{name}'. Check the name in the TFDS catalog "
            "(tfds.list_builders()), e.g. tfds:mnist, tfds:cifar10 or tfds:imdb_reviews."
        ) from None
    if not builder.is_prepared():
        if not _network_reachable():
            raise DataUnavailableError(
                f"TFDS dataset '{name}' is not prepared in {builder.data_dir} and this machine "
                "cannot reach the internet to download it. Run `tfds build "
                f"{name}` on a machine with internet and copy its data folder here (or point "
                "TFDS_DATA_DIR at it)."
            )
        try:
            builder.download_and_prepare()
        except Exception as e:  # network errors come in many types (OSError, gRPC, HTTP ...)
            raise DataUnavailableError(
                f"TFDS dataset '{name}' is not prepared in {builder.data_dir} and downloading it "
                f"failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                "If this machine is offline, run `tfds build "
                f"{name}` on a machine with internet and copy its data folder here (or point "
                "TFDS_DATA_DIR at it)."
            ) from None
    return builder


def tfds_three_splits(builder) -> dict[str, str]:
    """Maps train/val/test onto the builder's splits, carving missing ones from train."""
    names = set(builder.info.splits.keys()) or {"train", "test"}
    if "train" not in names:
        raise ValueError(
            f"TFDS dataset '{builder.name}' has no 'train' split (it has {sorted(names)})."
        )
    has_val = "validation" in names
    has_test = "test" in names
    if has_val and has_test:
        return {"train": "train", "val": "validation", "test": "test"}
    if has_test:
        return {"train": "train[:90%]", "val": "train[90%:]", "test": "test"}
    if has_val:
        return {"train": "train[:80%]", "val": "validation", "test": "train[80%:]"}
    return {"train": "train[:70%]", "val": "train[70%:80%]", "test": "train[80%:]"}


def tfds_split_size(builder, split: str) -> int | None:
    """Number of examples in a split expression, or None when the info does not say."""
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError):
        return None


def _network_reachable(timeout: float = 3.0) -> bool:
    probe = os.environ.get("KTEMPLATE_NETWORK_PROBE", NETWORK_PROBE)
    host, _, port = probe.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


# Larger magnitudes overflow float32 arithmetic (a square above about 3.4e38): a loss or a
# variance of such a column is infinite, and training fails with misleading advice.
LARGEST_VALUE = 1e18


def check_numbers(values, names: list[str], source: str) -> None:
    """Raises ValueError naming the first row and column of `values` ([rows, columns], NaN
    allowed: missing) that is infinite or beyond `LARGEST_VALUE` in magnitude."""
    import numpy as np

    values = np.asarray(values, dtype="float64").reshape(len(values), -1)
    with np.errstate(invalid="ignore"):
        bad = np.isinf(values) | (np.abs(values) > LARGEST_VALUE)
    if not bad.any():
        return
    row, column = (int(i[0]) for i in np.nonzero(bad))
    count = int(bad.sum())
    raise ValueError(
        f"{source}: data row {row + 1}, column {names[column]!r} holds {values[row, column]:g} "
        f"({count} value(s) in all are infinite or beyond ±{LARGEST_VALUE:g}, which overflow "
        "float32 arithmetic). Fix or drop those rows, or rescale the column (e.g. to thousands "
        "or a log scale)."
    )
