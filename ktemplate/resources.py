"""Will the model fit? A size estimate before the model is built, and one line when it does not.

`check` builds the template's model once without allocating its weights (Keras'
`StatelessScope` defers variable initialization, so only shapes exist), counts the parameters
and one batch's activations, and stops with `TooLarge` when training would need more memory
than the machine has free, or more parameters than `max_params`. The message names the largest
layer and the config fields set above their defaults, which are the ones to shrink.

`out_of_memory_message` turns a `ResourceExhaustedError` (or `MemoryError`) met later, while
training, into the same kind of one-line error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common import global_state  # the list of deferred variables

from ktemplate import training

# Bytes per parameter while training with Adam: the weight, its gradient and two moments.
BYTES_PER_PARAMETER = 16
# Bytes per activation value: kept for the backward pass, and its gradient.
BYTES_PER_ACTIVATION = 8
MEMORY_SHARE = 0.9  # of the memory free now, what a run may plan to use


class TooLarge(ValueError):
    """The configured model does not fit this machine (or the `max_params` guard)."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    parameters: int
    activations: int  # values in one batch's forward pass
    largest_layer: str
    largest_layer_parameters: int

    def training_bytes(self) -> int:
        return self.parameters * BYTES_PER_PARAMETER + self.activations * BYTES_PER_ACTIVATION


def available_memory() -> int | None:
    """Bytes of memory free for a new process now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(shape) -> int:
    return math.prod(int(d) for d in shape if d is not None)


@contextlib.contextmanager
def _shapes_only() -> Iterator[None]:
    """Variables created inside get shapes but no memory; `compile` and the shared
    `training.make_optimizer` do nothing (an optimizer needs real variables)."""
    compile_, make_optimizer = keras.Model.compile, training.make_optimizer
    keras.Model.compile = lambda self, *args, **kwargs: None
    training.make_optimizer = lambda *args, **kwargs: None
    # Layers draw their default seeds from Python's and NumPy's generators when they are made:
    # the real build must see the same draws as it would without this one.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        keras.Model.compile, training.make_optimizer = compile_, make_optimizer
        global_state.set_global_attribute("uninitialized_variables", [])
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def estimate(build: Any, batch_size: int) -> Estimate | None:
    """Sizes the model `build()` returns without allocating it; None if it cannot be built
    that way (e.g. it loads pretrained weights while it is built)."""
    try:
        with _shapes_only():
            model = build()
    except Exception:  # the real build reports its own errors
        return None
    largest, largest_name, activations = 0, "", 0
    for layer in _layers(model):
        count = sum(_size(w.shape) for w in layer.weights)
        if count > largest:
            largest, largest_name = count, layer.name
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            outputs = tf.nest.flatten(layer.output)
            activations += sum(_size(t.shape[1:]) for t in outputs) * batch_size
    parameters = sum(_size(w.shape) for w in model.weights)
    return Estimate(parameters, activations, largest_name, largest)


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers, nested models' layers included (their own outputs are not counted
    twice: a nested model contributes its layers)."""
    result = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.layers:
            result.extend(_layers(layer))
        else:
            result.append(layer)
    return result


def _shrink_hint(config: Any) -> str:
    """ " Fields set above their defaults: filters=100000000 (default 32)." or "" if none."""
    grown = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and isinstance(f.default, int)
            and value > f.default
        ):
            grown.append(f"{f.name}={value} (default {f.default})")
    return f" Fields set above their defaults: {', '.join(grown)}." if grown else ""


def _human(n: float, unit: str = "") -> str:
    if abs(n) >= 1e15:
        return f"{n:.2g} {unit}".rstrip()
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def check(build: Any, config: Any, batch_size: int) -> Estimate | None:
    """Raises `TooLarge` when the model `build()` makes cannot be trained here."""
    sized = estimate(build, batch_size)
    if sized is None:
        return None
    limit = getattr(config, "max_params", 0)
    free = available_memory()
    need = sized.training_bytes()
    problem = None
    if limit and sized.parameters > limit:
        problem = (
            f"The model has {_human(sized.parameters)} parameters, more than max_params={limit}."
        )
    elif free is not None and need > MEMORY_SHARE * free:
        problem = (
            f"Training this model needs about {_human(need, 'B')} of memory "
            f"({_human(sized.parameters)} parameters, {_human(sized.activations)} activation "
            f"values per batch of {batch_size}); this machine has {_human(free, 'B')} free."
        )
    if problem is None:
        return sized
    raise TooLarge(
        f"{problem} The largest layer is '{sized.largest_layer}' "
        f"({_human(sized.largest_layer_parameters)} parameters).{_shrink_hint(config)} "
        "Shrink the model's width or depth fields (or batch_size for activations) and run again."
    )


def out_of_memory_message(error: BaseException, config: Any) -> str:
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return (
        f"Out of memory while training ({first}).{_shrink_hint(config)} Lower batch_size or "
        "the model's width or depth fields and run again."
    )
