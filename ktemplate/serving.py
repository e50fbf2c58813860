"""Self-contained SavedModel export with a `manifest.json` beside it.

The SavedModel's endpoints take raw inputs and return decoded outputs; serving it needs
TensorFlow only, never this project. The template supplies the endpoints (its serving
signature); this module writes them, atomically, with the manifest.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ktemplate import files

# An endpoint: a function of tensors and the input signature it is traced with.
Endpoint = tuple[Callable[..., dict[str, tf.Tensor]], list[tf.TensorSpec]]

MANIFEST = "manifest.json"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("ktemplate", "tensorflow", "keras", "keras-tuner", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def classification_outputs(
    probabilities: tf.Tensor, class_names: tf.Tensor
) -> dict[str, tf.Tensor]:
    """A classifier endpoint's decoded outputs: float32 `probabilities` [batch, classes], the
    arg-max `class_id` [batch] and its `class_name` [batch] looked up in `class_names`."""
    probabilities = tf.cast(probabilities, tf.float32)
    class_id = tf.argmax(probabilities, axis=-1)
    return {
        "probabilities": probabilities,
        "class_id": class_id,
        "class_name": tf.gather(class_names, class_id),
    }


def describe_endpoints(endpoints: dict[str, Endpoint]) -> dict[str, Any]:
    """The inputs of each endpoint, as the manifest records them."""
    return {
        name: [
            {"shape": spec.shape.as_list(), "dtype": spec.dtype.name, "name": spec.name}
            for spec in signature
        ]
        for name, (_, signature) in endpoints.items()
    }


def write_export(
    export_dir: str | Path,
    model: keras.Model,
    endpoints: dict[str, Endpoint],
    manifest: dict[str, Any],
    overwrite: bool = False,
    convert: Callable[[Path], dict[str, Any]] | None = None,
) -> Path:
    """Writes a SavedModel with `endpoints` and `manifest.json` to `export_dir`, atomically.

    The first endpoint is also the `serving_default` signature.

    Args:
        export_dir: the folder to create.
        model: the trained model; its variables are tracked by the SavedModel.
        endpoints: endpoint name → (function, input signature).
        manifest: template-specific facts (template, dataset, input kind, class names, metrics,
            config); versions, endpoints and the creation time are added here.
        overwrite: replace an existing `export_dir`; otherwise refuse.
        convert: called with the folder being written, after the SavedModel, to add other
            formats (`ktemplate.convert.write_formats`); what it returns is the manifest's
            `formats`. When it raises, nothing is written.

    Returns:
        The export folder.

    Raises:
        FileExistsError: when `export_dir` exists and `overwrite` is False.
    """
    export_dir = Path(export_dir)
    manifest = {
        **manifest,
        "endpoints": describe_endpoints(endpoints),
        "serving_default": next(iter(endpoints)),
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    with files.atomic_directory(export_dir, overwrite=overwrite) as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, (fn, signature) in endpoints.items():
            for extra in getattr(fn, "track", []):  # layers the endpoint uses beside `model`
                archive.track(extra)
            archive.add_endpoint(name=name, fn=fn, input_signature=signature)
        archive.write_out(str(tmp), verbose=False)
        if convert is not None:
            manifest["formats"] = convert(tmp)
        files.write_json(tmp / MANIFEST, manifest)
    return export_dir


def add_formats(export_dir: str | Path, convert: Callable[[Path], dict[str, Any]]) -> Path:
    """Adds converted files to an existing export, atomically: `convert` is called with a copy
    of the export (its SavedModel is what the new files are checked against), and the entries
    it returns join the manifest's `formats`. When it raises, the export is left as it was."""
    import shutil

    export_dir = Path(export_dir)
    manifest = files.read_json(export_dir / MANIFEST)
    with files.atomic_directory(export_dir, overwrite=True) as tmp:
        shutil.copytree(export_dir, tmp, dirs_exist_ok=True)
        manifest["formats"] = {**manifest.get("formats", {}), **convert(tmp)}
        files.write_json(tmp / MANIFEST, manifest)
    return export_dir


def missing_formats(export_dir: str | Path, formats: list[str], quantize: str) -> list[str]:
    """Of `formats`, those an existing export lacks (a LiteRT file quantized otherwise counts
    as missing); [] when it has them all."""
    have = files.read_json(Path(export_dir) / MANIFEST).get("formats", {})
    return [
        fmt
        for fmt in formats
        if fmt != "saved_model"
        and (fmt not in have or (fmt == "litert" and have[fmt].get("quantize") != quantize))
    ]


def versions(base: str | Path) -> list[int]:
    """The version folders of a TF Serving model base path (`base/<integer>/`), ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(base: str | Path) -> Path:
    """`base/<n>` for the next version number n (1 for a new base path): TF Serving serves the
    highest version it finds, so each export adds one."""
    existing = versions(base)
    return Path(base) / str(existing[-1] + 1 if existing else 1)


def resolve_export_dir(export_dir: str | Path) -> Path:
    """An export folder, or a TF Serving base path: then its highest version folder."""
    export_dir = Path(export_dir)
    if not (export_dir / MANIFEST).is_file() and versions(export_dir):
        return export_dir / str(versions(export_dir)[-1])
    return export_dir


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """Reads an export's manifest, with a clear error when the folder is not an export."""
    path = resolve_export_dir(export_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{export_dir} is not a ktemplate export: {MANIFEST} is missing. "
            "Pass the 'export' folder of a run (saved_models/<template>/<run-id>/export)."
        )
    try:
        return files.read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}): the export is damaged. Export the run again "
            "(ktemplate export RUN_DIR --force)."
        ) from None
