"""`ktemplate check NAME`: every hook of a template on a few examples, through to a prediction
served from its export in a fresh process — in seconds, before a real training run.

What runs, in order: the contract (`contract.bind`: names, signatures, Config defaults), then
`search_space` on empty hyperparameters (it must give the Config back unchanged), then one
`ktemplate train` of one epoch and one model on a few batches of each split (`load_data`,
`build_model`, `fine_tune`, `calibrate`, `evaluate`, `baseline`, `serving_endpoints`,
`manifest_extras`), `portable_endpoint` and `portable_data` where the template has them, and
last the export loaded with `tf.saved_model.load` in a fresh Python process without the project
on its path, with one prediction from its default endpoint. A step that fails is reported as
"hook X failed" with the error, and nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ktemplate import contract

SMOKE_CONFIG = {"epochs": 1, "members": 1}  # one epoch of one model
SMOKE_BATCHES = 2  # train and validation batches used
SMOKE_TEST_EXAMPLES = 2  # test examples evaluated and compared with the baseline (whole images)
SMOKE_SPLIT_EXAMPLES = 32  # train examples the baseline sees (shuffled)
SMOKE_VAL_EXAMPLES = 8  # validation examples it picks its setting on (BM3D takes ~1 s each)


class CheckFailed(ValueError):
    """A hook of the template failed on the check's few examples."""


def smoke_data(data: contract.Data) -> contract.Data:
    """`data` cut to a few batches and examples (the spec is kept whole)."""
    splits = data.splits
    if splits is not None:  # the test examples stay those of `test`, in order
        splits = {
            name: ds.take(SMOKE_TEST_EXAMPLES)
            if name == "test"
            else ds.shuffle(4096, seed=0).take(
                SMOKE_VAL_EXAMPLES if name == "val" else SMOKE_SPLIT_EXAMPLES
            )
            for name, ds in splits.items()
        }
    return dataclasses.replace(
        data,
        train=data.train.take(SMOKE_BATCHES),
        val=None if data.val is None else data.val.take(SMOKE_BATCHES),
        test=data.test.unbatch().take(SMOKE_TEST_EXAMPLES).batch(1),
        splits=splits,
    )


# One prediction from the export's default endpoint, in a process that cannot import the
# project: inputs made from the signature (strings, or zeros with 32 for a free dimension).
SERVE = r"""
import json, sys
sys.modules["ktemplate"] = None
import numpy as np
import tensorflow as tf

folder = sys.argv[1]
default = json.load(open(f"{folder}/manifest.json"))["serving_default"]
signature = tf.saved_model.load(folder).signatures[default]
inputs = {}
for name, spec in signature.structured_input_signature[1].items():
    shape = [1] + [32 if d is None else d for d in spec.shape[1:]]
    if spec.dtype == tf.string:
        inputs[name] = tf.fill(shape, "an example")
    else:
        inputs[name] = tf.zeros(shape, spec.dtype)
outputs = signature(**inputs)
print(json.dumps({k: list(v.shape) for k, v in outputs.items()}))
"""


def check(template: Any, config: Any = None, workdir: str | Path | None = None) -> dict[str, Any]:
    """Runs the check; returns what each step found ({step: detail}) and the seconds it took.

    Raises:
        ContractError: the module breaks the contract.
        CheckFailed: a hook failed on the few examples (naming the hook), or the export did not
            serve in a fresh process.
    """
    import keras_tuner

    from ktemplate import run

    start = time.perf_counter()
    template = contract.bind(template)
    config = config if config is not None else template.Config()
    steps: dict[str, Any] = {"contract": f"{template.file} follows the contract"}
    defaults = template.Config()  # as `tune` declares the space: from the template's defaults
    searched = template.search_space(keras_tuner.HyperParameters(), defaults)
    changed = [  # an `auto` field may come back as the value the search space starts from
        f.name
        for f in dataclasses.fields(defaults)
        if getattr(searched, f.name) != getattr(defaults, f.name)
        and getattr(defaults, f.name) != "auto"
    ]
    if changed:
        raise CheckFailed(
            f"hook search_space changed {', '.join(changed)} with no hyperparameters set: its "
            "hp defaults must equal the config's values (default=config.FIELD)."
        )
    steps["search_space"] = "empty hyperparameters give the config back"
    config = dataclasses.replace(config, **SMOKE_CONFIG)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        run_dir = run.train(template, config, run_dir=Path(tmp) / "run", verbose=0, smoke=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        steps["train"] = (
            "load_data, build_model, fit, evaluate"
            + (", fine_tune" if template.fine_tune else "")
            + (", calibrate" if template.calibrate else "")
            + f": {len(metrics)} metrics"
        )
        if template.baseline is not None and config.baseline:
            steps["baseline"] = metrics["baseline"]["summary"]
        steps["export"] = "serving_endpoints, manifest_extras: SavedModel written"
        if template.portable_endpoint is not None:
            steps["portable"] = _portable(template, run_dir)
        result = subprocess.run(
            [sys.executable, "-I", "-c", SERVE, str(run_dir / "export")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise CheckFailed(
                "the export did not serve in a fresh process without the project: "
                + result.stderr.strip().splitlines()[-1][:500]
            )
        steps["serve"] = "outputs " + result.stdout.strip().splitlines()[-1]
    steps["seconds"] = round(time.perf_counter() - start, 1)
    return steps


def _portable(template: contract.Template, run_dir: Path) -> str:
    """portable_endpoint traced for each runtime, and portable_data's test examples."""
    from ktemplate import files, run

    model = run.load_best_model(run_dir)
    spec = files.read_json(run_dir / "spec.json")
    for runtime in ("litert", "onnx"):
        with run.hook("portable_endpoint", template):
            portable = template.portable_endpoint(model, spec, runtime)
            outputs = portable.fn(*[portable.sample[s.name] for s in portable.signature])
        if not isinstance(outputs, dict):
            raise CheckFailed(
                f"hook portable_endpoint ({runtime}): its fn returned {type(outputs).__name__}, "
                "not a dict of named outputs"
            )
    found = "portable_endpoint ran its sample for litert and onnx"
    if template.portable_data is not None:
        config = run.recorded_config(template, run_dir)
        data = smoke_data(run.load_data(template, config))
        with run.hook("portable_data", template):
            examples = template.portable_data(data, spec, "test", 4)
            rows = examples.rows(0, len(examples))
            outputs = portable.fn(*[rows[spec.name] for spec in portable.signature])
            score = examples.score({k: np.asarray(v) for k, v in outputs.items()})
        found += f"; portable_data: {len(examples)} test examples, {examples.metric} {score:.3g}"
    return found
