"""LiteRT (TFLite) and ONNX files beside the SavedModel, each checked in its own runtime.

A template that supports them defines `portable_endpoint(model, spec, runtime)`, returning a
`Portable`: a numeric function with the static shapes the converter needs (no string ops, no
shape-dependent branches), a fixed sample batch, and the SavedModel endpoint that takes the same
input. The converted file is then loaded by its runtime (`ai-edge-litert`'s interpreter,
`onnxruntime`) in a fresh Python process, without this project on the path, and its outputs on
the sample are compared with the SavedModel's. A file the runtime rejects, or whose outputs
differ by more than the stated tolerance, is an error: the export is not written.

The converters are optional dependencies: `pip install "ktemplate[export]"`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ktemplate import startup

FORMATS = ("saved_model", "litert", "onnx")
QUANTIZE = ("none", "dynamic", "float16", "int8")
FILES = {"litert": "model.tflite", "onnx": "model.onnx"}
PACKAGES = {"litert": ("ai_edge_litert", "ai-edge-litert"), "onnx": ("tf2onnx", "tf2onnx")}
RUNTIMES = {"litert": ("ai_edge_litert", "ai-edge-litert"), "onnx": ("onnxruntime", "onnxruntime")}
ONNX_OPSET = 17
# Largest difference from the SavedModel's outputs, as a fraction of the outputs' range (at
# least 1; 255 for uint8 pixels): float conversions agree to rounding, quantized ones less so.
# int8 quantizes activations too (their ranges from train-split examples), so it is compared
# on validation examples, inside those ranges, rather than on the random sample.
TOLERANCE = {"none": 1e-4, "dynamic": 0.1, "float16": 0.01, "int8": 0.15}
QUANTIZED_WARNING = 0.1  # warn when a quantized file's test metric moves by this fraction
CALIBRATION_EXAMPLES = 200  # train-split examples that set int8's activation ranges


@dataclasses.dataclass
class Portable:
    """What a template hands the converters.

    fn: tensors → dict of named numeric outputs, the same computation as a SavedModel endpoint.
    signature: its inputs, shapes static where the runtime needs them (batch may be None).
    sample: a fixed batch per input name, used to compare the runtimes' outputs.
    reference: the SavedModel endpoint that takes the same inputs (compared on the sample), or
        None when no SavedModel endpoint does (then `fn`'s outputs, computed here, are the
        reference).
    notes: what the manifest says about the file's inputs and outputs.
    assets: extra text files written beside the converted files (name → content).
    track: Keras layers/models `fn` uses (their variables go into the conversion).
    """

    fn: Callable[..., dict[str, Any]]
    signature: list[Any]
    sample: dict[str, np.ndarray]
    reference: str | None
    notes: dict[str, Any]
    assets: dict[str, str] = dataclasses.field(default_factory=dict)
    track: list[Any] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PortableData:
    """One split's examples in a `Portable` function's input format, and how to score them.

    inputs: per input name, the examples stacked along the first axis (raw units, as a caller
        of the converted file would pass them); it may hold more names than the signature
        (the text template adds the raw strings), which the converters ignore.
    metric: the name of the score (e.g. "test_accuracy"; as in metrics.json).
    score: the function's outputs on `inputs` (stacked the same way) → the metric.
    """

    inputs: dict[str, np.ndarray]
    metric: str
    score: Callable[[dict[str, np.ndarray]], float]

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: values[start:stop] for name, values in self.inputs.items()}


def unrolled(model):
    """A copy of `model` whose LSTM/GRU layers unroll over their (fixed) length, same weights:
    LiteRT needs a static batch for the loop's TensorList ops, and int8 calibration cannot
    quantize the loop at all."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def examples(ds, limit: int | None = None) -> tuple[list, np.ndarray]:
    """The (x, y) pairs of an unbatched split (at most `limit`): the xs as a list, the ys as an
    array (what a template's `portable_data` starts from)."""
    xs, ys = [], []
    for x, y in ds.take(-1 if limit is None else limit).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return xs, np.asarray(ys)


def scored(inputs: dict[str, np.ndarray], labels, split: str, kind: str = "classification"):
    """PortableData scored as the task kind's test metric: accuracy of `class_id`
    (classification) or the mean absolute error of `prediction` (regression)."""
    labels = np.asarray(labels)
    if kind == "regression":
        return PortableData(
            inputs, f"{split}_mae", lambda out: float(np.mean(np.abs(out["prediction"] - labels)))
        )
    return PortableData(
        inputs, f"{split}_accuracy", lambda out: float(np.mean(out["class_id"] == labels))
    )


def check_formats(formats: list[str], quantize: str, template: Any | None = None) -> list[str]:
    """Validates `--format`/`--quantize` before any work; returns the formats, deduplicated,
    saved_model first. Raises ValueError with what to do."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown export format {unknown[0]!r}: use {', '.join(FORMATS)}.")
    if quantize not in QUANTIZE:
        raise ValueError(f"Unknown --quantize {quantize!r}: use {', '.join(QUANTIZE)}.")
    extra = [f for f in dict.fromkeys(formats) if f != "saved_model"]
    if quantize != "none" and "litert" not in extra:
        raise ValueError("--quantize applies to LiteRT files: add --format litert.")
    if extra and template is not None and template.portable_endpoint is None:
        raise ValueError(
            f"Template {template.NAME} has no portable_endpoint(): it exports SavedModels only."
        )
    if quantize != "none" and template is not None and template.portable_data is None:
        raise ValueError(
            f"Template {template.NAME} has no portable_data(), which --quantize needs (int8's "
            "calibration examples and the quantized file's test metric): use --quantize none."
        )
    for fmt in extra:
        for module, package in (PACKAGES[fmt], RUNTIMES[fmt]):
            try:
                __import__(module)
            except ImportError as error:
                raise ValueError(
                    f"--format {fmt} needs the package {package}: pip install 'ktemplate[export]' "
                    f"(or pip install {package})."
                ) from error
    return ["saved_model", *extra]


def _archive(model: Any, portable: Portable, folder: Path) -> None:
    """A SavedModel holding only `portable.fn` (signature 'serve'), for the converters."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for extra in portable.track:
        archive.track(extra)
    archive.add_endpoint(name="serve", fn=portable.fn, input_signature=portable.signature)
    archive.write_out(str(folder), verbose=False)


def to_litert(
    model: Any,
    portable: Portable,
    path: Path,
    quantize: str = "none",
    calibration: PortableData | None = None,
) -> None:
    """Converts `portable.fn` to a LiteRT flatbuffer with built-in ops only (so the stock
    interpreter runs it, no Flex delegate). `quantize`: none, dynamic (int8 weights), float16
    (float16 weights) or int8 (int8 weights and activations, their ranges measured on
    `calibration`, train-split examples fed one at a time; ops without an int8 kernel stay
    float, and the inputs and outputs keep the signature's types).

    int8 converts in a child process: TensorFlow's calibrator can crash the process outright
    on some graphs (an LSTM's loop), which is then reported as an error here.
    """
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise ValueError("int8 quantization needs calibration examples from the train split.")
    with tempfile.TemporaryDirectory() as tmp:
        _archive(model, portable, Path(tmp) / "archive")
        if quantize != "int8":
            _convert_litert(str(Path(tmp) / "archive"), quantize, "-", str(path))
            return
        examples = Path(tmp) / "calibration.npz"
        np.savez(examples, **{s.name: calibration.inputs[s.name] for s in portable.signature})
        script = "import sys; from ktemplate import convert; convert._convert_litert(*sys.argv[1:])"
        args = [str(Path(tmp) / "archive"), quantize, str(examples), str(path)]
        result = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=1800
        )
    if result.returncode < 0 or (result.returncode and not result.stderr.strip()):
        path.unlink(missing_ok=True)
        raise ValueError(
            f"LiteRT int8 conversion crashed (exit {result.returncode}): TensorFlow's "
            "calibrator cannot quantize this model's graph. Use --quantize dynamic or float16."
        )
    if result.returncode:
        last = [line for line in result.stderr.strip().splitlines() if line.strip()][-1]
        raise ValueError(last.removeprefix("ValueError: ")[:600])


def _convert_litert(folder: str, quantize: str, calibration: str, output: str) -> None:
    """The conversion itself: SavedModel `folder` (signature 'serve') → `output`;
    `calibration` is an .npz of int8's calibration examples, or "-"."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        examples = dict(np.load(calibration))
        count = min(len(next(iter(examples.values()))), CALIBRATION_EXAMPLES)

        def representative():
            for i in range(count):
                yield {name: values[i : i + 1] for name, values in examples.items()}

        converter.representative_dataset = representative
    try:
        # The converter's C++ INFO/WARNING lines; int8 calibration runs TF's own (deprecated)
        # interpreter, which warns about itself.
        with startup.filtered_stderr(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "(?s).*tf.lite.Interpreter is deprecated")
            flatbuffer = converter.convert()
    except Exception as error:  # the converter's MLIR errors are long; keep the first line
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(f"LiteRT conversion failed: {first[:500]}") from error
    Path(output).write_bytes(flatbuffer)  # into the export being built (renamed when done)


def to_onnx(model: Any, portable: Portable, path: Path, opset: int = ONNX_OPSET) -> None:
    """Converts `portable.fn` to ONNX with tf2onnx.

    tf2onnx's `from_function` treats tensors the function captures (Keras' Normalization keeps
    its mean and variance as such) as graph inputs, so onnxruntime then asks for them; here only
    the signature's inputs are inputs and the captured tensors are frozen into constants.
    """
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import tf_loader

    del model  # the function's variables are frozen from the function itself
    try:  # tf2onnx 1.17 predates NumPy 2; Keras' own ONNX export patches it the same way
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # its np.object check
            patch_tf2onnx()
    except ImportError:
        pass
    concrete = tf.function(portable.fn, input_signature=portable.signature).get_concrete_function()
    inputs = [t.name for t in concrete.inputs[: len(portable.signature)]]
    outputs = [t.name for t in concrete.outputs]
    rename = tf2onnx.convert.tensor_names_from_structed(concrete, inputs, outputs)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # TF1-API deprecation notices from the freezing step
    try:  # grappler's INFO lines ("Starting new session") come from C++: filtered
        with startup.filtered_stderr(), tf.device("/cpu:0"):
            frozen = tf_loader.from_function(concrete, inputs, outputs)
            tf2onnx.convert.from_graph_def(
                frozen,
                input_names=inputs,
                output_names=outputs,
                tensors_to_rename=rename,
                opset=opset,
                output_path=str(path),
            )
    finally:
        logger.setLevel(level)


# The check runs in a fresh interpreter (`python -I`), so it sees only installed packages: the
# runtimes and TensorFlow (for the SavedModel's reference outputs), never this project.
_CHECK = r"""
import json, sys
import numpy as np

folder, sample_path, reference_path, formats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
sample = dict(np.load(sample_path))
if reference_path != "-":
    reference = dict(np.load(reference_path))
else:
    import tensorflow as tf
    endpoint = tf.saved_model.load(folder).signatures["__REFERENCE__"]
    outputs = endpoint(**{k: tf.constant(v) for k, v in sample.items()})
    reference = {k: v.numpy() for k, v in outputs.items()}
results = {}
for fmt in formats:
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=f"{folder}/__LITERT__")
        outputs = interpreter.get_signature_runner("serve")(**sample)
    else:
        import onnxruntime
        cpu = ["CPUExecutionProvider"]
        session = onnxruntime.InferenceSession(f"{folder}/__ONNX__", providers=cpu)
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, sample)))
    diffs = {}
    if not outputs:
        raise SystemExit(f"{fmt}: the file has no outputs")
    for name, got in outputs.items():
        if name not in reference:
            raise SystemExit(f"{fmt}: output {name!r} is not an output of the SavedModel endpoint")
        want, got = reference[name], np.asarray(got)
        if got.shape != want.shape:
            raise SystemExit(f"{fmt}: output {name!r} has shape {got.shape}, expected {want.shape}")
        if want.dtype.kind in "iu" and want.dtype != np.uint8:  # ids: the share that differ
            diffs[name] = {"mismatch": float((got != want).mean())}
            continue
        scale = 255.0 if want.dtype == np.uint8 else max(1.0, float(np.abs(want).max()))
        diff = float(np.abs(got.astype("float64") - want.astype("float64")).max())
        diffs[name] = {"max_abs_diff": diff, "scale": scale, "uint8": bool(want.dtype == np.uint8)}
    results[fmt] = diffs
print(json.dumps(results))
"""


def verify(folder: Path, portable: Portable, formats: list[str], quantize: str) -> dict:
    """Runs each converted file in its runtime in a fresh process on `portable.sample` and
    compares the outputs with the SavedModel's (or `portable.fn`'s); returns, per format and
    output, the largest difference and the tolerance. Raises ValueError when a runtime rejects
    the file or an output differs by more than the tolerance."""
    import tensorflow as tf

    script = (
        _CHECK.replace("__REFERENCE__", portable.reference or "")
        .replace("__LITERT__", FILES["litert"])
        .replace("__ONNX__", FILES["onnx"])
    )
    with tempfile.TemporaryDirectory() as tmp:
        sample_path = Path(tmp) / "sample.npz"
        np.savez(sample_path, **portable.sample)
        reference_path = "-"
        if portable.reference is None:
            outputs = tf.function(portable.fn, input_signature=portable.signature)(
                *[tf.constant(portable.sample[spec.name]) for spec in portable.signature]
            )
            reference_path = str(Path(tmp) / "reference.npz")
            np.savez(reference_path, **{k: v.numpy() for k, v in outputs.items()})
        result = subprocess.run(
            [sys.executable, "-I", "-c", script, str(folder), str(sample_path), reference_path]
            + formats,
            capture_output=True,
            text=True,
            timeout=600,
        )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise ValueError(
            f"The converted {' and '.join(formats)} file(s) failed in their runtime: "
            f"{lines[-1] if lines else 'no message'}"
        )
    checks = json.loads(result.stdout.strip().splitlines()[-1])
    for fmt, diffs in checks.items():
        tolerance = TOLERANCE[quantize if fmt == "litert" else "none"]
        for name, d in diffs.items():
            if "mismatch" in d:  # ids must agree unless quantization moved the scores
                if quantize == "none" and d["mismatch"] > 0:
                    raise ValueError(
                        f"The {fmt} file's output {name!r} differs from the SavedModel's on "
                        f"{d['mismatch']:.0%} of the sample: the conversion changed the model's "
                        "results, so it is not written."
                    )
                continue
            # uint8 outputs may differ by one step where a value rounds the other way.
            d["tolerance"] = max(tolerance * d["scale"], 1.0 if d.pop("uint8") else 0.0)
            if d["max_abs_diff"] > d["tolerance"]:
                raise ValueError(
                    f"The {fmt} file's output {name!r} differs from the SavedModel's by "
                    f"{d['max_abs_diff']:.4g} (tolerance {d['tolerance']:.4g}): the conversion "
                    "changed the model's results, so it is not written."
                    + (
                        " LiteRT's int8 kernels do not cover every op (ROUND and CAST on int8 "
                        "tensors, as in a uint8 image output, give wrong values): use --quantize "
                        "dynamic or float16."
                        if fmt == "litert" and quantize == "int8"
                        else ""
                    )
                )
    return checks


def _outputs(call: Callable[[dict[str, np.ndarray]], dict], data: PortableData, step: int):
    """`call` over `data` in chunks of `step` examples; the outputs stacked per name."""
    chunks = [call(data.rows(i, i + step)) for i in range(0, len(data), step)]
    return {name: np.concatenate([np.asarray(c[name]) for c in chunks]) for name in chunks[0]}


def quantized_metric(path: Path, portable: Portable, test: PortableData) -> dict[str, Any]:
    """The test metric of a quantized LiteRT file (run by its interpreter, one example per
    call) next to the float model's (`portable.fn` in TensorFlow) on the same examples."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from ktemplate import startup

    names = [spec.name for spec in portable.signature]
    with startup.filtered_stderr():  # the interpreter's XNNPACK note
        runner = Interpreter(model_path=str(path)).get_signature_runner("serve")
        quantized = test.score(
            _outputs(lambda rows: runner(**{n: rows[n] for n in names}), test, 1)
        )

    def reference(rows):
        outputs = portable.fn(*[tf.constant(rows[n]) for n in names])
        return {k: v.numpy() for k, v in outputs.items()}

    return {
        "name": test.metric,
        "litert": round(quantized, 4),
        "float": round(test.score(_outputs(reference, test, 256)), 4),
        "examples": len(test),
    }


def write_formats(
    folder: Path,
    template: Any,
    model: Any,
    spec: dict[str, Any],
    formats: list[str],
    quantize: str = "none",
    data: Any | None = None,
) -> dict[str, Any]:
    """Writes the LiteRT/ONNX files named in `formats` into `folder` (the export being built,
    which holds the SavedModel), checks each in its runtime, and returns the manifest's
    `formats` entry.

    A quantized LiteRT file needs `data` (the run's `Data`): int8 takes its activation ranges
    from train-split examples and is compared on validation examples, and every quantized file's
    test metric is measured through its interpreter and recorded beside the float model's.
    """
    entries: dict[str, Any] = {"saved_model": {"path": ".", "endpoints": "see 'endpoints'"}}
    extra = [f for f in formats if f != "saved_model"]
    if not extra:
        return entries
    for fmt in extra:
        portable = template.portable_endpoint(model, spec, fmt)
        quantized = fmt == "litert" and quantize != "none"
        if quantized and data is None:
            raise ValueError("A quantized LiteRT export needs the run's data (train and test).")
        if fmt == "litert":
            calibration = None
            if quantize == "int8":
                calibration = template.portable_data(data, spec, "train", CALIBRATION_EXAMPLES)
                # Compared on validation examples (inside the calibrated ranges), as many as
                # the sample holds (LiteRT's batch may be static).
                size = len(next(iter(portable.sample.values())))
                check = template.portable_data(data, spec, "val", size)
                if len(check) == size:
                    rows = check.rows(0, size)
                    sample = {s.name: rows[s.name] for s in portable.signature}
                    portable = dataclasses.replace(portable, sample=sample)
            to_litert(model, portable, folder / FILES["litert"], quantize, calibration)
        else:
            to_onnx(model, portable, folder / FILES["onnx"])
        for name, text in portable.assets.items():
            (folder / name).write_text(text, encoding="utf-8")
        checks = verify(folder, portable, [fmt], quantize)[fmt]
        entries[fmt] = {
            "path": FILES[fmt],
            "bytes": (folder / FILES[fmt]).stat().st_size,
            "inputs": [
                {"name": s.name, "shape": s.shape.as_list(), "dtype": s.dtype.name}
                for s in portable.signature
            ],
            **({"quantize": quantize} if fmt == "litert" else {"opset": ONNX_OPSET}),
            **({"signature": "serve"} if fmt == "litert" else {}),
            "compared_with": portable.reference or "the same function in TensorFlow",
            "check": checks,
            **portable.notes,
            **({"assets": sorted(portable.assets)} if portable.assets else {}),
        }
        if quantized:
            test = template.portable_data(data, spec, "test", None)
            metric = quantized_metric(folder / FILES["litert"], portable, test)
            entries[fmt]["test_metric"] = metric
            if abs(metric["litert"] - metric["float"]) > QUANTIZED_WARNING * abs(metric["float"]):
                warnings.warn(
                    f"The {quantize}-quantized LiteRT file's {metric['name']} is "
                    f"{metric['litert']:.4g}, the float model's {metric['float']:.4g} (test "
                    "split, in the manifest): inputs outside the train split's range lose the "
                    "most. Check it before shipping, or use a milder --quantize.",
                    stacklevel=2,
                )
    return entries
