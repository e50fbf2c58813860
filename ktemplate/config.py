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
from typing import Annotated, Any, Literal, Union


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
    ranges = field_ranges(config_cls)
    for f in dataclasses.fields(config_cls):
        allowed = f", {ranges[f.name].describe()}" if f.name in ranges else ""
        lines.append(
            f"  {f.name} = {f.default!r}  ({describe_type(hints[f.name])}{allowed})"
            f"\n      {comments.get(f.name, '')}"
        )
    return "\n".join(lines)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric field's allowed range, declared on its type:
    `filters: Annotated[int, Range(1)] = 32`. `TrainingConfig.__post_init__` checks every such
    field (an `auto` value is not checked) and `ktemplate show` prints the range."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `> low` rather than `>= low`
    high_open: bool = False  # `< high` rather than `<= high`

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Range(0, low_open=True)  # > 0
NON_NEGATIVE = Range(0)  # >= 0
# The usual ranged types: `units: PositiveInt = 64`, `dropout: Fraction = 0.1`; `| Auto` for
# a field whose default is resolved from the data.
Auto = Literal["auto"]
TaskKind = Literal["classification", "regression"]  # the task kinds of `ktemplate.tasks`
PositiveInt = Annotated[int, POSITIVE]
NonNegativeInt = Annotated[int, NON_NEGATIVE]
PositiveFloat = Annotated[float, POSITIVE]
NonNegativeFloat = Annotated[float, NON_NEGATIVE]
Fraction = Annotated[float, Range(0, 1, high_open=True)]  # a rate or share in [0, 1)
OpenFraction = Annotated[float, Range(0, 1, low_open=True, high_open=True)]  # in (0, 1)


def field_ranges(config_cls: type) -> dict[str, Range]:
    """Field → the `Range` declared on its type (fields without one are left out)."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    ranges = {}
    for f in dataclasses.fields(config_cls):
        hint = hints[f.name]
        for part in (hint, *typing.get_args(hint)):  # `PositiveInt | Literal["auto"]` too
            for meta in getattr(part, "__metadata__", ()):
                if isinstance(meta, Range):
                    ranges[f.name] = meta
    return ranges


def check_ranges(config: Any) -> None:
    """Raises ValueError naming the first field outside its declared range."""
    for name, allowed in field_ranges(type(config)).items():
        value = getattr(config, name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and not allowed.contains(value):
            raise ValueError(f"Config key '{name}' must be {allowed.describe()}, got {value}.")


Optimizer = Literal["adam", "adamw", "sgd", "rmsprop", "adagrad"]
Schedule = Literal["constant", "cosine", "plateau"]
Activation = Literal["relu", "gelu", "swish", "elu", "tanh", "sigmoid"]
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Training options every template shares; a template's `Config` extends it."""

    dataset: str = ""  # data source; the template's default, "tfds:NAME" or "dir:PATH"
    epochs: PositiveInt = 20  # maximum epochs; early stopping may end training sooner
    batch_size: PositiveInt = 64  # per-replica batch; the global batch is this x the replicas
    optimizer: Optimizer = "adam"  # adam, adamw, sgd (with momentum), rmsprop or adagrad
    learning_rate: PositiveFloat = 1e-3  # peak learning rate
    lr_schedule: Schedule = "cosine"  # constant, cosine decay over all steps, or plateau
    momentum: NonNegativeFloat = 0.9  # momentum for sgd and rmsprop
    weight_decay: NonNegativeFloat = 1e-4  # decoupled weight decay, used by adamw only
    clipnorm: NonNegativeFloat = 0.0  # clip each gradient to this norm; 0 turns clipping off
    l1: NonNegativeFloat = 0.0  # L1 penalty on kernels
    l2: NonNegativeFloat = 1e-4  # L2 penalty on kernels
    dropout: Fraction = 0.2  # dropout rate before the head
    batch_norm: bool = True  # batch normalization after each convolution/dense block
    activation: Activation = "relu"  # hidden-layer activation
    mixed_precision: Precision = "float32"  # compute dtype policy; outputs stay float32
    jit_compile: bool = False  # compile train/predict steps with XLA
    early_stopping_patience: NonNegativeInt = 8  # epochs without val_loss improvement; 0: off
    seed: NonNegativeInt = 42  # seeds Python, NumPy, TensorFlow: initialization, shuffling, ...
    deterministic: bool = True  # op determinism: the same seed on the same machine, same result
    members: PositiveInt = 1  # models trained alone (seeds seed, seed+1, ...); outputs averaged
    max_params: NonNegativeInt = 0  # refuse a model with more parameters; 0: memory is the limit
    baseline: bool = True  # fit a classical baseline on the same splits and compare (metrics.json)
    baseline_max_train: NonNegativeInt = 0  # most train examples the baseline fits; 0: its bound

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"Config key '{f.name}' must be a finite number, got {value}.")
        check_ranges(self)


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
