"""The templates: one module per task, each following the contract (`ktemplate/contract.py`).

`BUILTIN` is the explicit list of templates that ship with the project (`ktemplate.templates`,
the repository's `templates/` folder). Templates made with `ktemplate new` are files in the
project's templates folder — `./templates` under the current directory, or
`$KTEMPLATE_TEMPLATES_DIR` — and are found by name; nothing is registered at import time. In a
checkout of this repository that folder is the built-in one. Reading a template's summary
parses its source, so listing templates never imports TensorFlow.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import keyword
import os
import sys
from pathlib import Path
from types import ModuleType

BUILTIN = [
    "tabular_mlp",
    "image_cnn",
    "timeseries_lstm",
    "text_transformer",
    "denoising_autoencoder",
    "anomaly_autoencoder",
]

TEMPLATES_DIR = Path(__file__).resolve().parent  # the built-in templates
PROJECT_DIR_ENV = "KTEMPLATE_TEMPLATES_DIR"


def project_dir() -> Path:
    """Where `ktemplate new` writes and where user templates are found: $KTEMPLATE_TEMPLATES_DIR,
    else `templates/` under the current directory."""
    return Path(os.environ.get(PROJECT_DIR_ENV) or Path.cwd() / "templates")


def _is_template(path: Path) -> bool:
    """A module with a top-level `NAME = ...` and `class Config`: what `ktemplate new` writes
    (a project's `templates/` folder may hold other Python files, e.g. web templates' helpers)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return False
    assigned = {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
        if isinstance(t, ast.Name)
    }  # fmt: skip
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    return "NAME" in assigned and "Config" in classes


def _files(templates_dir: Path | None = None) -> dict[str, Path]:
    """Template name → source file: the built-ins, then the project folder's templates (or only
    `templates_dir`'s, when given)."""
    folders = [templates_dir] if templates_dir is not None else [TEMPLATES_DIR, project_dir()]
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if path.stem.startswith("_") or path.stem in found:
                continue
            if folder.resolve() == TEMPLATES_DIR or _is_template(path):
                found[path.stem] = path
    return found


def names(templates_dir: Path | None = None) -> list[str]:
    """Built-in templates first, then templates created with `ktemplate new`, sorted."""
    found = _files(templates_dir)
    return [n for n in BUILTIN if n in found] + sorted(n for n in found if n not in BUILTIN)


def describe(name: str, templates_dir: Path | None = None) -> dict[str, str]:
    """A template's summary line and default dataset, read from its source without importing."""
    tree = ast.parse(_files(templates_dir)[name].read_text(encoding="utf-8"))
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


# Modules a template's Config section may use that import no TensorFlow.
_LIGHT_MODULES = {"__future__", "dataclasses", "pathlib", "typing", "ktemplate.config", "math"}


def config_class(name: str) -> type | None:
    """A template's `Config` class, built from its source without importing the template (so
    without TensorFlow): the light imports, the module-level assignments its fields use and the
    class itself run in a module of their own. None when that is not enough (a Config that needs
    more of its module); then load the template.

    `ktemplate show`, `--help` and the config checks of `train`/`tune` use it, so a bad value or
    config file is reported before TensorFlow's import."""
    import types

    check_name(name)
    path = _files()[name]
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None

    def light(node: ast.stmt) -> bool:
        if isinstance(node, ast.ImportFrom):
            return node.module in _LIGHT_MODULES
        if isinstance(node, ast.Import):
            return all(alias.name in _LIGHT_MODULES for alias in node.names)
        # Assignments and classes run one by one below: one that needs more is skipped.
        return isinstance(node, ast.Assign | ast.AnnAssign | ast.ClassDef)

    keep = [node for node in tree.body if light(node)]
    module = types.ModuleType(f"_ktemplate_config_{name}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # dataclasses and inspect look classes up here
    for node in keep:
        code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
        try:
            exec(code, module.__dict__)
        except Exception:
            if isinstance(node, ast.ClassDef) and node.name == "Config":
                return None
    config = module.__dict__.get("Config")
    try:
        import typing

        typing.get_type_hints(config, include_extras=True)  # every annotation resolves
    except Exception:
        return None
    return config


def load(name: str):
    """Imports a template by name and binds it to the contract (`ktemplate.contract.bind`).

    Returns:
        The `ktemplate.contract.Template`: the module's hooks and constants.

    Raises:
        ValueError: no template has this name.
        ContractError: the module does not follow the contract (which hook, which file).
    """
    from ktemplate import contract

    return contract.bind(_import(name))


def _import(name: str) -> ModuleType:
    check_name(name)
    path = _files()[name]
    if path.parent == TEMPLATES_DIR:
        return importlib.import_module(f"{__name__}.{name}")
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    # A project template: imported from its file, under its own name (`new` refuses names that
    # would shadow an installed module), with its folder importable for modules beside it.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def check_name(name: str) -> None:
    """Raises ValueError when no template has this name (without importing any)."""
    available = names()
    if name not in available:
        raise ValueError(
            f"Unknown template '{name}'. Available templates: {', '.join(available)}. "
            "Run `ktemplate list` to see them."
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ktemplate")
    except PackageNotFoundError:
        return "unknown version"


def check_new_name(name: str, templates_dir: Path) -> None:
    """Raises ValueError unless `name` can be a new template module in `templates_dir`."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"Template name {name!r} is not a valid Python identifier: use lowercase letters, "
            "digits and underscores, starting with a letter (e.g. my_task)."
        )
    if name.startswith("_"):
        raise ValueError(f"Template name {name!r} must not start with an underscore.")
    if name in names() and not (templates_dir / f"{name}.py").exists():
        raise FileExistsError(
            f"A template named '{name}' already exists ({_files()[name]}). Choose another name; "
            "existing templates are never overwritten."
        )
    if not (templates_dir / f"{name}.py").exists() and (
        name in sys.modules or importlib.util.find_spec(name) is not None
    ):
        raise ValueError(
            f"Template name {name!r} is the name of an installed module; a template of that "
            "name would shadow it. Choose another name."
        )
    if (templates_dir / f"{name}.py").exists():
        raise FileExistsError(
            f"A template named '{name}' already exists ({templates_dir / f'{name}.py'}). "
            "Choose another name; existing templates are never overwritten."
        )


def copy_template(new_name: str, source: str, templates_dir: Path | None = None) -> Path:
    """Copies template `source` to `<templates_dir>/<new_name>.py` with its name replaced;
    `templates_dir` is the project folder (`project_dir()`) by default, created if missing.

    The new file appears complete or not at all (written to a temporary file, then linked
    into place, which fails rather than overwrite).

    Raises:
        ValueError: `source` is unknown or `new_name` is not a valid module name.
        FileExistsError: a template called `new_name` exists already.
    """
    import os
    import re
    import tempfile

    sources = {**_files(), **(_files(templates_dir) if templates_dir else {})}
    if source not in sources:
        raise ValueError(
            f"Unknown template '{source}' after --from. Available templates: {', '.join(sources)}."
        )
    templates_dir = Path(templates_dir or project_dir())
    check_new_name(new_name, templates_dir)
    templates_dir.mkdir(parents=True, exist_ok=True)
    text = sources[source].read_text(encoding="utf-8")
    word = re.compile(rf"\b{re.escape(source)}\b")
    summary = describe(source, sources[source].parent)["summary"]
    text = word.sub(new_name, text)
    # The description line (what `ktemplate list` shows) is marked for the user to write, and
    # a header line records what the copy was made from.
    text = text.replace(
        '"""' + word.sub(new_name, summary),
        f'"""TODO: say in this line what {new_name} does (a copy of {source}: {summary})',
        1,
    )
    version = _version()
    text = f"# Made with `ktemplate new {new_name} --from {source}` (ktemplate {version}).\n" + text
    target = templates_dir / f"{new_name}.py"
    # A built-in runs as `python -m ktemplate.templates.NAME`; a copy is a file of the project.
    try:
        shown = target.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = target.resolve()
    text = text.replace(f"python -m ktemplate.templates.{new_name}", f"python {shown}")
    fd, tmp = tempfile.mkstemp(prefix=f".{new_name}.", suffix=".tmp", dir=templates_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as any file the user makes (mkstemp gives 0600)
        try:
            os.link(tmp, target)
        except FileExistsError:
            check_new_name(new_name, templates_dir)  # raises the clear message
            raise
    finally:
        os.unlink(tmp)
    return target
