"""One strict config system: a template's `Config` dataclass is the single source of truth.

Command-line overrides (`--set key=value`) and config files (`--config FILE`, JSON, TOML or
YAML) are checked against the dataclass fields and their type hints. An unknown key or a value of
the wrong type stops the run with a message naming the key and what is allowed. `Literal[...]`
hints double as the list of allowed choices.

This module must not import TensorFlow: the CLI uses it before deciding to train.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A config key or value a user supplied is not valid."""


def _field_hints(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def describe_type(hint: Any) -> str:
    """A short human name for a type hint, used in error messages and `--help`."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(c) for c in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(describe_type(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "none"
    return getattr(hint, "__name__", str(hint))


def _coerce(key: str, value: Any, hint: Any, from_text: bool) -> Any:
    """Returns `value` converted to `hint`, or raises ConfigError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        errors = []
        args = typing.get_args(hint)
        # Try None first so that "none" maps to None rather than to the string "none".
        for arg in sorted(args, key=lambda a: a is not type(None)):
            try:
                return _coerce(key, value, arg, from_text)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            f"Config key '{key}' expects {describe_type(hint)}, got {value!r}."
        ) from None
    if origin is Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            try:
                if _coerce(key, value, type(choice), from_text) == choice:
                    return choice
            except ConfigError:
                continue
        raise ConfigError(
            f"Config key '{key}' must be one of {', '.join(repr(c) for c in choices)}; "
            f"got {value!r}."
        )
    if hint is type(None):
        if value is None or (from_text and str(value).lower() in ("none", "null")):
            return None
        raise ConfigError(f"Config key '{key}' expects none, got {value!r}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if from_text and str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"Config key '{key}' expects a boolean (true/false), got {value!r}.")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"Config key '{key}' expects an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        if from_text:
            try:
                return int(str(value))
            except ValueError:
                pass
        raise ConfigError(f"Config key '{key}' expects an integer, got {value!r}.")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"Config key '{key}' expects a number, got {value!r}.")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif from_text:
            with contextlib.suppress(ValueError):
                number = float(str(value))
        if number is None:
            raise ConfigError(f"Config key '{key}' expects a number, got {value!r}.")
        if not math.isfinite(number):
            raise ConfigError(f"Config key '{key}' must be a finite number, got {value!r}.")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"Config key '{key}' expects a string, got {value!r}.")
    raise TypeError(f"Config key '{key}' has an unsupported type hint {hint!r}.")


def apply_overrides(config: Any, overrides: dict[str, Any], from_text: bool = False) -> Any:
    """Returns a copy of `config` with `overrides` applied, each checked against the field type.

    Args:
        config: a dataclass instance (a template's `Config`).
        overrides: key → value. Values are strings when `from_text` (command line), or already
            typed values (config files).
        from_text: whether to parse values from their text form.

    Raises:
        ConfigError: for an unknown key or a value of the wrong type.
    """
    hints = _field_hints(type(config))
    changes = {}
    for key, value in overrides.items():
        if key not in hints:
            raise ConfigError(
                f"Unknown config key '{key}' for {type(config).__module__}.Config. "
                f"Allowed keys: {', '.join(sorted(hints))}."
            )
        changes[key] = _coerce(key, value, hints[key], from_text)
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as e:  # __post_init__ range checks
        raise ConfigError(str(e)) from None


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """Parses `["epochs=3", "filters=32"]` into a dict, rejecting items without `=`."""
    result = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Expected KEY=VALUE after --set, got {item!r} (e.g. --set epochs=3)."
            )
        result[key.strip()] = value.strip()
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a flat mapping of config values from a JSON, TOML or YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Config file not found: {path}. Pass an existing JSON/TOML/YAML file."
        )
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ConfigError(
                f"Config file {path} has suffix '{suffix}'; use .json, .toml, .yaml or .yml."
            )
    except ConfigError:
        raise
    except Exception as e:  # the parsers raise several unrelated exception types
        raise ConfigError(f"Could not parse config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of key: value pairs.")
    return data


def resolve_config(
    config_cls: type,
    config_file: str | Path | None = None,
    assignments: list[str] | None = None,
) -> Any:
    """Builds a config: dataclass defaults, then the config file, then `--set` assignments."""
    config = config_cls()
    if config_file is not None:
        config = apply_overrides(config, load_config_file(config_file))
    if assignments:
        config = apply_overrides(config, parse_assignments(assignments), from_text=True)
    return config


def field_comments(config_cls: type) -> dict[str, str]:
    """Maps each field to the `# comment` at the end of its line in the class source.

    The comment is the field's documentation: one place, read by people and by `--help`.
    """
    comments: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            match = _FIELD_LINE.match(line)
            if match:
                comments[match["name"]] = match["comment"].strip()
    return comments


_FIELD_LINE = re.compile(r"^\s+(?P<name>\w+)\s*:[^#]*=[^#]*#(?P<comment>.*)$")


def config_help(config_cls: type) -> str:
    """One line per field: name, type, default and the field's comment."""
    lines = []
    hints = _field_hints(config_cls)
    comments = field_comments(config_cls)
    for f in dataclasses.fields(config_cls):
        lines.append(
            f"  {f.name} = {f.default!r}  ({describe_type(hints[f.name])})"
            f"\n      {comments.get(f.name, '')}"
        )
    return "\n".join(lines)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


Optimizer = Literal["adam", "adamw", "sgd", "rmsprop", "adagrad"]
Schedule = Literal["constant", "cosine", "plateau"]
Activation = Literal["relu", "gelu", "swish", "elu", "tanh", "sigmoid"]
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Training options every template shares; a template's `Config` extends it."""

    dataset: str = ""  # data source; the template's default, "tfds:NAME" or "dir:PATH"
    epochs: int = 20  # maximum epochs; early stopping may end training sooner
    batch_size: int = 64  # per-replica batch; the global batch is this times the replicas
    optimizer: Optimizer = "adam"  # adam, adamw, sgd (with momentum), rmsprop or adagrad
    learning_rate: float = 1e-3  # peak learning rate
    lr_schedule: Schedule = "cosine"  # constant, cosine decay over all steps, or plateau
    momentum: float = 0.9  # momentum for sgd and rmsprop
    weight_decay: float = 1e-4  # decoupled weight decay, used by adamw only
    clipnorm: float = 0.0  # clip each gradient to this norm; 0 turns clipping off
    l1: float = 0.0  # L1 penalty on kernels
    l2: float = 1e-4  # L2 penalty on kernels
    dropout: float = 0.2  # dropout rate before the head
    batch_norm: bool = True  # batch normalization after each convolution/dense block
    activation: Activation = "relu"  # hidden-layer activation
    mixed_precision: Precision = "float32"  # compute dtype policy; outputs stay float32
    jit_compile: bool = False  # compile train/predict steps with XLA
    early_stopping_patience: int = 8  # epochs without val_loss improvement; 0 turns it off
    seed: int = 42  # seeds Python, NumPy and TensorFlow: initialization, shuffling, augmentation
    deterministic: bool = True  # op determinism: the same seed on the same machine, same result
    members: int = 1  # models trained independently (seeds seed, seed+1, ...); outputs averaged
    max_params: int = 0  # refuse to build a model with more parameters; 0: memory is the limit
    baseline: bool = True  # fit a classical baseline on the same splits and compare (metrics.json)
    baseline_max_train: int = 0  # most train examples the baseline fits; 0: the template's bound

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"Config key '{f.name}' must be a finite number, got {value}.")
        if self.max_params < 0:
            raise ValueError(
                f"Config key 'max_params' must be >= 0 (0: no limit), got {self.max_params}."
            )
        if self.seed < 0:
            raise ValueError(f"Config key 'seed' must be >= 0, got {self.seed}.")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "members": self.members}
        for name, value in positive.items():
            if value != AUTO and value <= 0:
                raise ValueError(f"Config key '{name}' must be > 0, got {value}.")
        if self.learning_rate <= 0:
            raise ValueError(f"Config key 'learning_rate' must be > 0, got {self.learning_rate}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Config key 'dropout' must be in [0, 1), got {self.dropout}.")
        for name in ("l1", "l2", "clipnorm", "weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"Config key '{name}' must be >= 0, got {getattr(self, name)}.")
        if self.baseline_max_train < 0:
            raise ValueError(
                "Config key 'baseline_max_train' must be >= 0 (0: the template's bound), got "
                f"{self.baseline_max_train}."
            )
        if self.early_stopping_patience != "auto" and self.early_stopping_patience < 0:
            raise ValueError(
                "Config key 'early_stopping_patience' must be >= 0, "
                f"got {self.early_stopping_patience}."
            )


AUTO = "auto"


def with_resolved(config: Any, resolved: dict[str, dict[str, Any]]) -> Any:
    """`config` with each field of `resolved` (field → {"value", "reason"}) set to its value."""
    values = {name: r["value"] for name, r in resolved.items()}
    return dataclasses.replace(config, **values) if values else config


class Resolver:
    """Resolves a config's `auto` fields from the data, recording the value and the reason.

    A template's `load_data` calls `pick` for each field that may be `auto`; a value the user
    set is returned unchanged (and `warn` records where it contradicts the data). `resolved`
    and `warnings` go into the run's spec; the run prints them once and replaces the `auto`
    fields of its config with the resolved values (see `ktemplate.run.resolved_config`).
    """

    def __init__(self, config: Any):
        self._config = config
        self.resolved: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []

    def is_auto(self, name: str) -> bool:
        return getattr(self._config, name) == AUTO

    def pick(self, name: str, value: Any, reason: str) -> Any:
        """`value` (recorded with `reason`) when field `name` is `auto`, else the user's value."""
        if not self.is_auto(name):
            return getattr(self._config, name)
        self.resolved[name] = {"value": value, "reason": reason}
        return value

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def config(self) -> Any:
        """The config with every resolved field set to its value."""
        return with_resolved(self._config, self.resolved)

    def spec(self) -> dict[str, Any]:
        return {"resolved": self.resolved, "warnings": self.warnings}
