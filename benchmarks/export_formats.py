"""SavedModel, LiteRT (float, dynamic-range int8, float16, int8) and ONNX: size, latency, metric.

Trains each template's default config on its default data (through `ktemplate.run.train`),
exports every format (`ktemplate.convert`: each file is checked in its runtime first), then per
format prints the file size, the median latency of one example (many calls, one thread, after a
warm-up) and the template's test metric computed through that runtime on the same test inputs:

    image_cnn               test accuracy (359 digits)
    timeseries_lstm         test MAE in ppm (the rolling-origin windows)
    text_transformer        test accuracy (2,113 sentences: strings into the SavedModel, token
                            ids from the vocabulary into LiteRT and ONNX)
    denoising_autoencoder   PSNR of the test images cut into patch_size tiles (LiteRT's input)

    python benchmarks/export_formats.py
    python benchmarks/export_formats.py --templates image_cnn --calls 500
    python benchmarks/export_formats.py --quick     # 2 epochs, one member: a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ktemplate import (  # noqa: E402
    files,
    run,
    templates,  # noqa: E402
)

VARIANTS = [  # (label, format, quantize)
    ("SavedModel", "saved_model", "none"),
    ("LiteRT float32", "litert", "none"),
    ("LiteRT dynamic int8", "litert", "dynamic"),
    ("LiteRT float16", "litert", "float16"),
    ("LiteRT int8", "litert", "int8"),
    ("ONNX", "onnx", "none"),
]


def test_inputs(template, run_dir):
    """(inputs, one dict per example, and a metric(outputs) → float): the test split as the
    template's `portable_data` gives it (the text template adds the raw strings, which the
    SavedModel takes, to the token ids)."""
    config = template.Config(**files.read_json(run_dir / "config.json"))
    data = run.load_data(template, config)
    test = template.portable_data(data, data.spec, "test")

    def metric(outputs):
        return test.score({k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]})

    return [test.rows(i, i + 1) for i in range(len(test))], metric


def runner(folder: Path, fmt: str):
    """A callable: inputs dict → outputs dict of numpy arrays, for one format's file."""
    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(folder))
        endpoint = loaded.signatures["serve"]
        names = list(endpoint.structured_input_signature[1])

        def call(inputs):
            outputs = endpoint(**{k: tf.constant(inputs[k]) for k in names})
            return {k: v.numpy() for k, v in outputs.items()}

        return call
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(folder / "model.tflite"), num_threads=1)
        signature = interpreter.get_signature_runner("serve")
        names = list(signature.get_input_details())
        return lambda inputs: signature(**{k: inputs[k] for k in names})
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    feeds = [i.name for i in session.get_inputs()]
    return lambda inputs: dict(
        zip(names, session.run(None, {k: inputs[k] for k in feeds}), strict=True)
    )


def median_latency(call, example, calls: int) -> float:
    for _ in range(10):
        call(example)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call(example)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def folder_bytes(folder: Path, fmt: str) -> int:
    if fmt == "litert":
        return (folder / "model.tflite").stat().st_size
    if fmt == "onnx":
        return (folder / "model.onnx").stat().st_size
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.suffix not in (".tflite", ".onnx", ".json", ".txt")
    )


def bench(name: str, out: Path, quick: bool, calls: int) -> list[tuple]:
    template = templates.load(name)
    config = template.Config()
    if quick:
        config = dataclasses.replace(config, epochs=2, members=1, baseline=False)
    tf.config.threading.set_intra_op_parallelism_threads(0)
    run_dir = run.train(template, config, output_dir=out, verbose=0)
    inputs, metric = test_inputs(template, run_dir)
    rows = []
    for label, fmt, quantize in VARIANTS:
        folder = out / f"{name}-{fmt}-{quantize}"
        formats = ["saved_model"] if fmt == "saved_model" else [fmt]
        start = time.perf_counter()
        try:
            run.export(template, run_dir, output=folder, formats=formats, quantize=quantize)
        except ValueError as error:  # the export's own check refused the file: say so
            print(f"  {name} {label}: refused ({str(error)[:160]})", flush=True)
            rows.append((name, label, None, None, None, None))
            continue
        export_s = time.perf_counter() - start
        call = runner(folder, fmt)
        latency = median_latency(call, inputs[0], calls)
        score = metric([call(x) for x in inputs])
        rows.append((name, label, folder_bytes(folder, fmt), latency, score, export_s))
        print(f"  {name} {label}: {rows[-1][2] / 1024:.0f} KiB, {latency * 1e3:.3f} ms, "
              f"metric {score:.4f}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--templates",
        nargs="+",
        default=["image_cnn", "timeseries_lstm", "text_transformer", "denoising_autoencoder"],
    )
    parser.add_argument("--calls", type=int, default=300, help="timed calls per format")
    parser.add_argument("--quick", action="store_true", help="2 epochs, one member, no baseline")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, python "
        f"{platform.python_version()}; {args.calls} timed calls of one example, one thread for "
        f"LiteRT/ONNX{'; --quick' if args.quick else ''}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.templates:
            rows += bench(name, Path(tmp), args.quick, args.calls)
    metric_names = {
        "image_cnn": "test accuracy",
        "timeseries_lstm": "test MAE (ppm)",
        "text_transformer": "test accuracy",
        "denoising_autoencoder": "test PSNR, tiles (dB)",
    }
    print("\n| template | format | size KiB | latency ms (median, 1 example) | metric | value |")
    print("|---|---|---|---|---|---|")
    for name, label, size, latency, score, _ in rows:
        if size is None:
            print(f"| {name} | {label} | refused by the export's check | | | |")
            continue
        print(
            f"| {name} | {label} | {size / 1024:,.0f} | {latency * 1e3:.3f} "
            f"| {metric_names[name]} | {score:.4f} |"
        )


if __name__ == "__main__":
    main()
