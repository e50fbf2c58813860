"""The template contract, as code: what a template module defines, checked when it is loaded.

A template is one Python module. `bind(module)` checks it against `HOOKS` and `CONSTANTS` and
returns a `Template`: the module's hooks and constants, with `None` for an optional hook it
leaves out (the engine then uses that hook's documented default). Every way of loading a
template (`ktemplate.templates.load`, `run.train(module, ...)`, `ktemplate check`) binds it
first, so a missing hook, a hook with the wrong parameters or a near-miss name (`baselines`
for `baseline`) is an error naming the hook and the file before any data is loaded.

Required (what `ktemplate train NAME` needs):

    NAME                              the template's name (its module's name)
    Config                            a frozen dataclass extending `TrainingConfig`; every
                                      field has a default
    load_data(config, batch_size)     → Data: batched train/val/test datasets and a JSON spec
    build_model(config, spec)         → a compiled keras.Model
    search_space(hp, config)          → the Config with its searched fields taken from `hp`
    serving_endpoints(model, spec)    → {name: (tf.function, input_signature)} of the export
    manifest_extras(spec)             → JSON facts about the export's inputs and outputs
    evaluate(model, data, out_dir)    → test metrics; writes plots to out_dir when given

Optional (each with the default the engine uses when it is left out):

    TUNE_OBJECTIVE                    what `ktemplate tune` optimizes; default "val_loss"
    ENSEMBLE_FIELD                    a Config field whose `candidates` differ in the model
                                      alone (the data, targets and output units stay): the run
                                      also trains the runner-up that differs from the winner in
                                      that field only, and keeps the winner, the runner-up or
                                      their average by validation (`ktemplate.lifecycle`);
                                      default None: the winner alone
    fine_tune(model, config, spec)    → (recompiled model, epochs) of a second phase, or None;
                                      default: no second phase
    calibrate(model, data)            → constants the export needs from the trained model
                                      (into the spec); default: none. It may set weights in
                                      place and say so (`weights_changed`: the run saves them
                                      back). A template with it keeps its validation split out
                                      of a champion's refit
    baseline(model, data, config)     → the `baseline` block of metrics.json (a classical method
                                      on the same splits, compared; `ktemplate.baselines`);
                                      default: no baseline
    portable_endpoint(model, spec, runtime)
                                      → (fn, input_signature) with static shapes for LiteRT and
                                      ONNX; default: no LiteRT/ONNX export
    portable_data(data, spec, split, limit)
                                      → (inputs in the portable format, labels, metric) for
                                      int8 calibration; default: no quantized LiteRT
    candidates(config, spec)          → {name: {field: value}}: the variants an `auto` field
                                      chooses between by short fits on validation
                                      (`ktemplate.lifecycle`), or None when the config fixes
                                      them; default: no such choice
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ktemplate.config import TrainingConfig


class ContractError(ValueError):
    """A template module does not follow the contract (raised when it is loaded)."""


@dataclasses.dataclass
class Data:
    """What a template's `load_data` returns."""

    train: Any  # tf.data.Dataset: batched, shuffled and augmented, ready for fit
    val: Any  # batched, no augmentation; None when refitting on train+val
    test: Any  # batched, no augmentation
    spec: dict[str, Any]  # JSON-serializable facts the model and export need; a "pretrained"
    # entry (the weights' name) makes the run keep the built weights unless training beats them
    # Unbatched, unaugmented train/val/test examples for the classical baseline (kept when
    # refitting on train+validation, so the baseline still picks its settings on validation).
    splits: dict[str, Any] | None = None
    class_weight: dict[int, float] | None = None  # per-class loss weights for fit, or None


@dataclasses.dataclass(frozen=True)
class Hook:
    name: str
    params: tuple[str, ...]
    required: bool
    returns: str


HOOKS = (
    Hook("load_data", ("config", "batch_size"), True, "Data"),
    Hook("build_model", ("config", "spec"), True, "a compiled keras.Model"),
    Hook("search_space", ("hp", "config"), True, "Config"),
    Hook("serving_endpoints", ("model", "spec"), True, "{name: (fn, input_signature)}"),
    Hook("manifest_extras", ("spec",), True, "dict"),
    Hook("evaluate", ("model", "data", "out_dir"), True, "dict of test metrics"),
    Hook("fine_tune", ("model", "config", "spec"), False, "(model, epochs) or None"),
    Hook("calibrate", ("model", "data"), False, "dict merged into the spec"),
    Hook("baseline", ("model", "data", "config"), False, "the baseline block"),
    Hook("portable_endpoint", ("model", "spec", "runtime"), False, "(fn, input_signature)"),
    Hook("portable_data", ("data", "spec", "split", "limit"), False, "(inputs, labels, metric)"),
    Hook("candidates", ("config", "spec"), False, "{name: {field: value}} or None"),
)
HOOK_NAMES = tuple(h.name for h in HOOKS)
CONSTANTS = ("NAME", "Config", "TUNE_OBJECTIVE", "ENSEMBLE_FIELD")


@dataclasses.dataclass(frozen=True)
class Template:
    """A template module bound to the contract: its constants and hooks (None: left out)."""

    module: ModuleType
    file: str
    NAME: str
    Config: type
    TUNE_OBJECTIVE: str
    ENSEMBLE_FIELD: str | None
    load_data: Callable
    build_model: Callable
    search_space: Callable
    serving_endpoints: Callable
    manifest_extras: Callable
    evaluate: Callable
    fine_tune: Callable | None = None
    calibrate: Callable | None = None
    baseline: Callable | None = None
    portable_endpoint: Callable | None = None
    portable_data: Callable | None = None
    candidates: Callable | None = None


def bind(module: ModuleType | Template) -> Template:
    """Checks `module` against the contract and returns its `Template`.

    Raises:
        ContractError: naming the file and every hook or constant that is missing, has the
            wrong parameters, or is a near miss of a hook's name.
    """
    if isinstance(module, Template):
        return module
    file = getattr(module, "__file__", None) or module.__name__
    where = Path(file).name if file else module.__name__
    found, problems = {}, []
    namespace = vars(module)
    name = namespace.get("NAME")
    if not isinstance(name, str) or not name:
        problems.append('NAME is missing: set NAME = "<template name>" (its file\'s name)')
    config = namespace.get("Config")
    problems += _config_problems(config)
    objective = namespace.get("TUNE_OBJECTIVE", "val_loss")
    if not isinstance(objective, str) or not objective.startswith("val_"):
        problems.append(f"TUNE_OBJECTIVE is {objective!r}: use a validation metric, e.g. val_loss")
    ensemble = namespace.get("ENSEMBLE_FIELD")
    dataclass = isinstance(config, type) and dataclasses.is_dataclass(config)
    if dataclass and ensemble is not None and ensemble not in _field_names(config):
        problems.append(f"ENSEMBLE_FIELD is {ensemble!r}, which is not a Config field")
    for hook in HOOKS:
        fn = namespace.get(hook.name)
        if fn is None:
            if hook.required:
                problems.append(
                    f"hook {hook.name}({', '.join(hook.params)}) -> {hook.returns} is missing"
                )
            continue
        problem = _signature_problem(hook, fn)
        if problem:
            problems.append(problem)
        found[hook.name] = fn
    for defined in _functions(module):
        if defined in HOOK_NAMES:
            continue
        close = difflib.get_close_matches(defined, HOOK_NAMES, n=1, cutoff=0.8)
        if close and close[0] not in found:
            problems.append(
                f"{defined}() looks like the hook {close[0]}() misspelled: rename it to "
                f"{close[0]} (or to _{defined} if it is a helper)"
            )
    if problems:
        raise ContractError(
            f"Template {where} does not follow the contract (ktemplate/contract.py):\n  - "
            + "\n  - ".join(problems)
        )
    return Template(
        module=module,
        file=str(file),
        NAME=name,
        Config=config,
        TUNE_OBJECTIVE=objective,
        ENSEMBLE_FIELD=ensemble,
        **found,
    )


def _functions(module: ModuleType) -> list[str]:
    """Public functions defined in the module itself (not imported)."""
    return [
        n
        for n, v in vars(module).items()
        if inspect.isfunction(v) and v.__module__ == module.__name__ and not n.startswith("_")
    ]


def _signature_problem(hook: Hook, fn: Any) -> str | None:
    if not callable(fn):
        return f"{hook.name} is not a function"
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) <= len(hook.params) <= len(positional) or any(
        p.kind == p.VAR_POSITIONAL for p in parameters
    ):
        return None
    got = ", ".join(p.name for p in positional)
    return (
        f"hook {hook.name} takes ({got}); the engine calls it as "
        f"{hook.name}({', '.join(hook.params)}) -> {hook.returns}"
    )


def _field_names(config: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]


def _config_problems(config: Any) -> list[str]:
    if config is None:
        return ["class Config is missing: a frozen dataclass extending TrainingConfig"]
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return ["Config is not a dataclass: decorate it with @dataclasses.dataclass(frozen=True)"]
    if not issubclass(config, TrainingConfig):
        return ["Config does not extend ktemplate.config.TrainingConfig"]
    try:
        config()
    except Exception as e:  # a default that fails its own range check
        return [f"Config() fails with its defaults: {e}"]
    return []
