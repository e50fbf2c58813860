"""What a run does, in order, and the `auto` choices that need a short fit per candidate.

The order of a run (`ktemplate.run.train`; a tune trial stops after its fit, the champion
refits on train+validation and goes on to the end):

    contract.bind(module)                 the hooks, checked before any data is loaded
    load_data(config, batch_size)         splits, the spec, `auto` fields resolved from train
    candidates(config, spec)  → choose    an `auto` choice between model variants, by short fits
    build_model(config, spec)             the model, compiled
    fit, then fine_tune(...)              phases of one model; × `members`, averaged
    calibrate(model, data)                constants the export needs
    evaluate(model, data, out_dir)        test metrics and plots
    baseline(model, data, config)         the classical method, compared (a paired test)
    serving_endpoints, manifest_extras    the SavedModel and its manifest (+ LiteRT/ONNX)

A template offers an `auto` choice between variants of itself with the optional hook
`candidates(config, spec) -> {name: {field: value}}` (or None when the config fixes them).
`choose` fits each variant briefly on the train split with the same seed, scores it on the
validation split by the template's `TUNE_OBJECTIVE`, records the choice and its reason in the
spec (`candidates`, and each field under `resolved`), and the run trains the winner. `ktemplate
tune` searches the same variants as one `hp.Choice("candidate", names)`.

A short fit is a noisy guess at how a variant ends (one that starts near the answer leads after
a few epochs and may end behind). A template whose variants differ in one field that changes
the model alone (timeseries_lstm's `forecast_base`) names it `ENSEMBLE_FIELD`; then the best
runner-up that differs from the winner in that field only, and scored within `PARTNER_MARGIN`
of it, is the winner's *partner*: the run trains both in full (`members/0` and `members/1`)
and keeps the winner, the partner or their average, whichever scores best on validation
(`ensemble.json`, and `ensemble` in the spec and metrics) — the M4 lesson that a combination of
different forecasters is hard to beat, kept only where validation says it pays.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

CANDIDATE_EPOCH_SHARE = 0.25  # a short fit runs this share of `epochs` ...
MIN_CANDIDATE_EPOCHS = 3  # ... and at least this many (never more than `epochs`)
PARTNER_MARGIN = 0.1  # a partner scores within 10% of the winner in the short fits (on CO2 the
# base that ended best was 7% behind after 10 of 40 epochs; benchmarks/RESULTS.md)


def candidate_epochs(config: Any) -> int:
    share = math.ceil(CANDIDATE_EPOCH_SHARE * config.epochs)
    return min(config.epochs, max(MIN_CANDIDATE_EPOCHS, share))


def variants(template, config: Any, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template's candidates for this config (empty when it has none or fixes them)."""
    if template.candidates is None:
        return {}
    found = template.candidates(config, spec) or {}
    for name, fields in found.items():
        unknown = [f for f in fields if not hasattr(config, f)]
        if unknown:
            raise ValueError(f"Candidate {name!r} sets {unknown}, which are not Config fields.")
    return found


def choose(template, config: Any, found: dict[str, dict[str, Any]], strategy=None):
    """Fits each candidate briefly and keeps the best on validation.

    Returns:
        (the chosen config, the record for the spec: choice, scores, metric, epochs, reason).
    """
    from ktemplate import contract
    from ktemplate.tuning import search

    template = contract.bind(template)  # a module passed as it is: its constants and hooks
    objective = search.objective_for(template, None)
    epochs = candidate_epochs(config)
    scores = {}
    start = time.perf_counter()
    logger = _tf_logger()  # each candidate is a new model: tf.function's retracing notes
    level = logger.level
    logger.setLevel("ERROR")
    try:
        for name, fields in found.items():
            scores[name] = _short_fit(template, config, fields, epochs, objective, strategy)
    finally:
        logger.setLevel(level)
    finite = {n: s for n, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise ValueError(f"Every candidate ({', '.join(found)}) failed to train (NaN losses).")
    pick = min if objective.direction == "min" else max
    choice = pick(finite, key=finite.get)
    shown = ", ".join(f"{n} {s:.4g}" for n, s in scores.items())
    reason = f"best {objective.name} after {epochs}-epoch fits of each candidate: {shown}"
    record = {
        "choice": choice,
        "scores": scores,
        "metric": objective.name,
        "epochs": epochs,
        "seconds": round(time.perf_counter() - start, 2),
        "reason": reason,
    }
    partner = _partner(template.ENSEMBLE_FIELD, found, finite, choice, objective.direction)
    if partner is not None:
        record["partner"] = {"name": partner, "fields": found[partner], "of": found[choice]}
    return dataclasses.replace(config, **found[choice]), record


def _partner(field, found, scores, choice, direction) -> str | None:
    """The best candidate that differs from `choice` in `field` alone, scored within
    `PARTNER_MARGIN` of it; None without one (or without an `ENSEMBLE_FIELD`)."""
    if field is None:
        return None
    rest = {k: v for k, v in found[choice].items() if k != field}
    alike = {
        n: s
        for n, s in scores.items()
        if n != choice
        and {k: v for k, v in found[n].items() if k != field} == rest
        and abs(s - scores[choice]) <= PARTNER_MARGIN * abs(scores[choice])
    }
    if not alike:
        return None
    return (min if direction == "min" else max)(alike, key=alike.get)


def pick_ensemble(template, models: dict[str, Any], val) -> tuple[str, Any, dict[str, float]]:
    """Scores each model of `models` ({name: compiled model}) and their average on `val` by the
    template's objective; returns the best one's name ("average" for the average), that model
    and every score."""
    from ktemplate import run
    from ktemplate.tuning import search

    objective = search.objective_for(template, None)
    first = next(iter(models.values()))
    average = run.average_models(list(models.values()))
    average.compile_from_config(first.get_compile_config())
    key = objective.name.removeprefix("val_")
    every = {**models, "average": average}
    scores = {}
    for name, model in every.items():
        found = model.evaluate(val, verbose=0, return_dict=True)[key]
        scores[name] = round(float(found), 6)
    kept = (min if objective.direction == "min" else max)(scores, key=scores.get)
    return kept, every[kept], scores


def _short_fit(template, config: Any, fields: dict, epochs: int, objective, strategy) -> float:
    """One candidate fitted `epochs` epochs on train: its best validation objective."""
    import keras

    from ktemplate import run, training

    trial = dataclasses.replace(config, **fields, epochs=epochs)
    training.set_global_options(trial)
    data = run.run_data(template, trial, strategy)
    trial = run.resolved_config(trial, data.spec)
    with (strategy or _default()).scope():
        model = template.build_model(trial, data.spec)
    history = model.fit(
        data.train,
        validation_data=data.val,
        epochs=epochs,
        shuffle=False,
        class_weight=data.class_weight,
        callbacks=training.callbacks(trial, None),
        verbose=0,
    ).history
    keras.backend.clear_session()
    values = [v for v in history.get(objective.name, []) if math.isfinite(v)]
    best = (min if objective.direction == "min" else max)(values) if values else math.nan
    return round(float(best), 6)


def _tf_logger():
    import tensorflow as tf

    return tf.get_logger()


def _default():
    import tensorflow as tf

    return tf.distribute.get_strategy()
