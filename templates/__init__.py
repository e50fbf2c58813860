"""The templates: one module per task, each following the contract in README.

`BUILTIN` is the explicit list of templates that ship with the project. Templates created with
`ktemplate new` are files in this folder too and are found by name; nothing is registered at
import time. Reading a template's summary parses its source, so listing templates never
imports TensorFlow.
"""

from __future__ import annotations

import ast
import importlib
import keyword
from pathlib import Path
from types import ModuleType

BUILTIN = ["image_cnn", "timeseries_lstm", "text_transformer", "denoising_autoencoder"]

TEMPLATES_DIR = Path(__file__).resolve().parent


def names(templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Built-in templates first, then templates created with `ktemplate new`, sorted."""
    found = sorted(p.stem for p in templates_dir.glob("*.py") if not p.stem.startswith("_"))
    return [n for n in BUILTIN if n in found] + [n for n in found if n not in BUILTIN]


def describe(name: str, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """A template's summary line and default dataset, read from its source without importing."""
    tree = ast.parse((templates_dir / f"{name}.py").read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree) or ""
    dataset = ""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Config":
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and item.target.id == "dataset"
                    and isinstance(item.value, ast.Constant)
                ):
                    dataset = item.value.value
    return {
        "name": name,
        "summary": docstring.splitlines()[0] if docstring else "",
        "dataset": dataset,
    }


def load(name: str) -> ModuleType:
    """Imports a template module by name.

    Raises:
        ValueError: no template has this name.
    """
    check_name(name)
    return importlib.import_module(f"templates.{name}")


def check_name(name: str) -> None:
    """Raises ValueError when no template has this name (without importing any)."""
    available = names()
    if name not in available:
        raise ValueError(
            f"Unknown template '{name}'. Available templates: {', '.join(available)}. "
            "Run `ktemplate list` to see them."
        )


def check_new_name(name: str, templates_dir: Path = TEMPLATES_DIR) -> None:
    """Raises ValueError unless `name` can be a new template module."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"Template name {name!r} is not a valid Python identifier: use lowercase letters, "
            "digits and underscores, starting with a letter (e.g. my_task)."
        )
    if name.startswith("_"):
        raise ValueError(f"Template name {name!r} must not start with an underscore.")
    if (templates_dir / f"{name}.py").exists():
        raise FileExistsError(
            f"A template named '{name}' already exists ({templates_dir / f'{name}.py'}). "
            "Choose another name; existing templates are never overwritten."
        )


def copy_template(new_name: str, source: str, templates_dir: Path = TEMPLATES_DIR) -> Path:
    """Copies template `source` to `<templates_dir>/<new_name>.py` with its name replaced.

    The new file appears complete or not at all (written to a temporary file, then linked
    into place, which fails rather than overwrite).

    Raises:
        ValueError: `source` is unknown or `new_name` is not a valid module name.
        FileExistsError: a template called `new_name` exists already.
    """
    import os
    import re
    import tempfile

    available = names(templates_dir)
    if source not in available:
        raise ValueError(
            f"Unknown template '{source}' after --from. Available templates: "
            f"{', '.join(available)}."
        )
    check_new_name(new_name, templates_dir)
    text = (templates_dir / f"{source}.py").read_text(encoding="utf-8")
    text = re.sub(rf"\b{re.escape(source)}\b", new_name, text)
    target = templates_dir / f"{new_name}.py"
    fd, tmp = tempfile.mkstemp(prefix=f".{new_name}.", suffix=".tmp", dir=templates_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            os.link(tmp, target)
        except FileExistsError:
            check_new_name(new_name, templates_dir)  # raises the clear message
            raise
    finally:
        os.unlink(tmp)
    return target
