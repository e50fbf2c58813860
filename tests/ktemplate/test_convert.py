"""LiteRT and ONNX exports: converted, checked in their runtimes, served without the project."""

import json

import numpy as np
import pytest
from ktemplate.templates import denoising_autoencoder, image_cnn, text_transformer, timeseries_lstm

from ktemplate import cli, convert, run
from ktemplate import files as files_lib
from tests.helpers.fresh import serve_in_fresh_process
from tests.helpers.text import make_csv

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

TINY = {
    "image_cnn": dict(epochs=1, conv_blocks=1, filters=8, members=1, baseline=False),
    "timeseries_lstm": dict(
        epochs=1,
        window=16,
        horizon=4,
        season=4,
        recurrent_window=8,  # the LSTM reads the last 8 steps; the head gets the seasonal lags
        units=8,
        baseline=False,
        forecast_base="linear",
        target_transform="log",
    ),
    "denoising_autoencoder": dict(
        epochs=1,
        batch_size=16,
        patches_per_epoch=32,
        patch_size=32,
        depth=1,
        filters=8,
        convs_per_level=1,
        baseline=False,
    ),  # fmt: skip
}
TEMPLATES = {
    "image_cnn": image_cnn,
    "timeseries_lstm": timeseries_lstm,
    "denoising_autoencoder": denoising_autoencoder,
}

# Serves the LiteRT and ONNX files beside the SavedModel, in a process without the project:
# the runtimes' outputs on one batch, and the SavedModel's on the same batch.
SERVE_ALL = """
import json, sys
sys.modules["ktemplate"] = None  # importing the project must fail here
import numpy as np
import onnxruntime
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

folder, inputs_path = sys.argv[1:3]
inputs = dict(np.load(inputs_path))
outputs = tf.saved_model.load(folder).signatures["serve"](
    **{k: tf.constant(v) for k, v in inputs.items()}
)
reference = {k: v.numpy() for k, v in outputs.items() if v.dtype != tf.string}
litert = Interpreter(model_path=f"{folder}/model.tflite").get_signature_runner("serve")(**inputs)
session = onnxruntime.InferenceSession(f"{folder}/model.onnx")
onnx = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
print(json.dumps({
    name: {k: np.asarray(v).tolist() for k, v in outputs.items()}
    for name, outputs in (("saved_model", reference), ("litert", litert), ("onnx", onnx))
}))
"""


def _inputs(name, spec, run_dir):
    """A real batch for the LiteRT signature (static shapes) of each template."""
    if name == "image_cnn":
        from ktemplate.pipelines import images

        pixels, _ = images.digits_arrays()
        return {"pixels": pixels[:5]}
    if name == "timeseries_lstm":
        from statsmodels.datasets import co2

        values = co2.load_pandas().data["co2"].interpolate().to_numpy("float32")
        return {"window": values[-spec["window"] :].reshape(1, spec["window"], 1)}
    from skimage import data

    size = spec["patch_size"]
    return {"pixels": data.camera()[:size, :size, None][None].astype("uint8")}


# image_cnn runs by default; the others, which take about a minute each, with `-m slow`.
@pytest.mark.parametrize(
    "name",
    [
        name if name == "image_cnn" else pytest.param(name, marks=pytest.mark.slow)
        for name in TEMPLATES
    ],
)
def test_litert_and_onnx_match_the_saved_model_in_a_fresh_process(name, tmp_path):
    template = TEMPLATES[name]
    run_dir = run.train(
        template,
        template.Config(**TINY[name]),
        output_dir=tmp_path / "runs",
        verbose=0,
        export_formats=["litert", "onnx"],
    )
    export = run_dir / "export"
    manifest = files_lib.read_json(export / "manifest.json")
    assert set(manifest["formats"]) == {"saved_model", "litert", "onnx"}
    for fmt in ("litert", "onnx"):
        entry = manifest["formats"][fmt]
        assert (export / entry["path"]).stat().st_size == entry["bytes"] > 0
        for check in entry["check"].values():  # the export's own check, in its runtime
            assert check.get("mismatch", 0) == 0
            assert check.get("max_abs_diff", 0) <= check.get("tolerance", 0)
    assert json.loads((run_dir / "run.json").read_text())["export"]["formats"] == [
        "saved_model", "litert", "onnx",
    ]  # fmt: skip

    spec = files_lib.read_json(run_dir / "spec.json")
    if name == "timeseries_lstm":  # the cropped recurrent input and the lags convert too
        assert spec["lag_seasons"] == [4]
    np.savez(tmp_path / "inputs.npz", **_inputs(name, spec, run_dir))
    served = serve_in_fresh_process(SERVE_ALL, tmp_path, export, tmp_path / "inputs.npz")
    for fmt in ("litert", "onnx"):
        for key, values in served[fmt].items():
            want = np.asarray(served["saved_model"][key], dtype="float64")
            got = np.asarray(values, dtype="float64")
            assert got.shape == want.shape, (fmt, key)
            atol = 1.0 if name == "denoising_autoencoder" else 1e-4 * max(1, np.abs(want).max())
            np.testing.assert_allclose(got, want, atol=atol, err_msg=f"{fmt} {key}")

    # int8: calibrated on train-split examples, with its test metric beside the float model's.
    if name == "denoising_autoencoder":  # uint8 pixels out: LiteRT's int8 ROUND/CAST are wrong
        with pytest.raises(ValueError, match="use --quantize dynamic or float16"):
            run.export(template, run_dir, output=tmp_path / "int8", formats=["litert"],
                       quantize="int8")  # fmt: skip
        assert not (tmp_path / "int8").exists()
        return
    int8 = run.export(template, run_dir, output=tmp_path / "int8", formats=["litert"],
                      quantize="int8")  # fmt: skip
    metric = files_lib.read_json(int8 / "manifest.json")["formats"]["litert"]["test_metric"]
    metrics = files_lib.read_json(run_dir / "metrics.json")
    if metric["name"] in metrics:  # the same figure the run measured (the denoiser's are tiles)
        assert metric["float"] == pytest.approx(metrics[metric["name"]], rel=1e-3, abs=1e-3)
    assert metric["examples"] > 0 and np.isfinite(metric["litert"])


# The manifest's vectorization recipe, in plain Python: what a user ships beside the file.
TOKENIZE = """
import json, re, string, sys
sys.modules["ktemplate"] = None
import numpy as np
import onnxruntime
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

folder, texts = sys.argv[1], json.loads(sys.argv[2])
manifest = json.load(open(f"{folder}/manifest.json"))
vocabulary = open(f"{folder}/vocabulary.txt", encoding="utf-8").read().split("\\n")[:-1]
ids = {token: i for i, token in enumerate(vocabulary) if i > 1}
length = manifest["formats"]["onnx"]["inputs"][0]["shape"][1]
punctuation = re.compile("[" + re.escape(string.punctuation) + "]")

def vectorize(text):
    words = punctuation.sub("", text.lower()).split()
    tokens = words + [" ".join(words[i : i + 2]) for i in range(len(words) - 1)]
    row = [ids.get(token, 1) for token in tokens][:length]
    return row + [0] * (length - len(row))

token_ids = np.array([vectorize(t) for t in texts], dtype="int64")
session = onnxruntime.InferenceSession(f"{folder}/model.onnx")
onnx = session.run(["probabilities"], {"token_ids": token_ids})[0]
runner = Interpreter(model_path=f"{folder}/model.tflite").get_signature_runner("serve")
litert = runner(token_ids=token_ids)["probabilities"]
saved = tf.saved_model.load(folder).signatures["serve"](text=tf.constant(texts))
print(json.dumps({"onnx": onnx.tolist(), "litert": litert.tolist(),
                  "saved_model": saved["probabilities"].numpy().tolist()}))
"""


@pytest.mark.slow
def test_text_token_id_files_and_the_vocabulary_recipe_match_the_saved_model(tmp_path):
    csv = make_csv(tmp_path / "reviews.csv", rows_per_class=12)
    config = text_transformer.Config(
        dataset=f"csv:{csv}", epochs=1, embed_dim=16, ff_dim=16, num_heads=1, baseline=False
    )
    run_dir = run.train(text_transformer, config, output_dir=tmp_path / "runs", verbose=0)
    export = tmp_path / "export"
    assert (
        cli.main(["export", str(run_dir), "--output", str(export), "--format", "litert", "onnx"])
        == 0
    )
    manifest = files_lib.read_json(export / "manifest.json")
    assert manifest["formats"]["onnx"]["vocabulary"] == "vocabulary.txt"
    assert "2-grams" in manifest["formats"]["onnx"]["vectorize"]
    texts = ["The film was GREAT, really superb!", "a dull, tedious plot", "unseen words only"]
    served = serve_in_fresh_process(TOKENIZE, tmp_path, export, json.dumps(texts))
    for fmt in ("onnx", "litert"):
        np.testing.assert_allclose(served[fmt], served["saved_model"], atol=1e-5, err_msg=fmt)


def test_bad_format_requests_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match="Unknown export format 'tflite'"):
        convert.check_formats(["tflite"], "none")
    with pytest.raises(ValueError, match="--quantize applies to LiteRT files"):
        convert.check_formats(["onnx"], "dynamic")
    assert convert.check_formats(["onnx", "saved_model", "onnx"], "none") == [
        "saved_model", "onnx",
    ]  # fmt: skip
    # train checks the formats before loading data or building anything.
    assert cli.main(["train", "image_cnn", "--output-dir", str(tmp_path), "--export-formats",
                     "tflite"]) == 2  # fmt: skip
    assert "Unknown export format 'tflite'" in capsys.readouterr().err
    assert not (tmp_path / "image_cnn").exists()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run.train(image_cnn, image_cnn.Config(**TINY["image_cnn"]), output_dir=out, verbose=0)


@pytest.mark.slow
def test_quantized_litert_is_smaller_and_close(image_run, tmp_path):
    sizes = {}
    metrics = files_lib.read_json(image_run / "metrics.json")
    for quantize in ("none", "dynamic", "float16", "int8"):
        export = run.export(
            image_cnn, image_run, output=tmp_path / quantize, formats=["litert"], quantize=quantize
        )
        entry = files_lib.read_json(export / "manifest.json")["formats"]["litert"]
        assert entry["quantize"] == quantize
        assert (
            entry["check"]["probabilities"]["max_abs_diff"]
            <= (entry["check"]["probabilities"]["tolerance"])
        )
        sizes[quantize] = entry["bytes"]
        if quantize == "none":
            assert "test_metric" not in entry
            continue
        # The quantized file's accuracy, through its interpreter, beside the float model's on
        # the same test images (the float one is the run's own test accuracy).
        metric = entry["test_metric"]
        assert metric["name"] == "test_accuracy"
        assert metric["examples"] == metrics["test_examples"]
        assert metric["float"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
        assert abs(metric["litert"] - metric["float"]) <= 0.25
    assert sizes["int8"] < sizes["float16"] < sizes["none"]
    assert sizes["dynamic"] < sizes["float16"]


def test_export_adds_the_formats_an_existing_export_lacks(image_run, capsys):
    export = image_run / "export"
    saved_model = (export / "saved_model.pb").read_bytes()
    # No new format: refused, with what to do.
    assert cli.main(["export", str(image_run)]) == 2
    assert "Add formats with --format litert onnx" in capsys.readouterr().err
    # A repeated --format appends; both files are added beside the SavedModel it had.
    assert cli.main(["export", str(image_run), "--format", "onnx", "--format", "litert"]) == 0
    out = capsys.readouterr().out
    assert "model.onnx: onnx" in out and "model.tflite: litert" in out and "max |diff|" in out
    manifest = json.loads((export / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"saved_model", "onnx", "litert"}
    assert (export / "saved_model.pb").read_bytes() == saved_model  # not re-exported
    assert (export / "model.onnx").is_file() and (export / "model.tflite").is_file()
    assert not [p for p in image_run.iterdir() if p.name.endswith(".tmp")]
    # Asked again: nothing to add.
    assert cli.main(["export", str(image_run), "--format", "onnx"]) == 2
    assert "already exists with onnx" in capsys.readouterr().err


def test_int8_calibrates_on_train_examples_and_checks_on_validation(image_run, monkeypatch):
    seen = {}
    real = convert.to_litert

    def spy(model, portable, path, quantize="none", calibration=None):
        seen["calibration"], seen["sample"] = calibration, portable.sample
        real(model, portable, path, quantize, calibration)

    monkeypatch.setattr(convert, "to_litert", spy)
    export = run.export(image_cnn, image_run, output=image_run / "int8", formats=["litert"],
                        quantize="int8")  # fmt: skip
    data = run.load_data(image_cnn, image_cnn.Config(**TINY["image_cnn"]))
    train = image_cnn.portable_data(data, json.loads((image_run / "spec.json").read_text()),
                                    "train", 5)  # fmt: skip
    np.testing.assert_array_equal(seen["calibration"].inputs["pixels"][:5], train.inputs["pixels"])
    assert seen["calibration"].inputs["pixels"].dtype == np.uint8
    assert export.exists()


def test_a_file_the_runtime_rejects_is_an_error_and_nothing_is_written(
    image_run, tmp_path, monkeypatch
):
    def broken(model, portable, path, opset=convert.ONNX_OPSET):
        path.write_bytes(b"not an onnx model")  # what tf2onnx can leave after a failed op

    monkeypatch.setattr(convert, "to_onnx", broken)
    with pytest.raises(ValueError, match="failed in their runtime"):
        run.export(image_cnn, image_run, output=tmp_path / "export", formats=["onnx"])
    assert not (tmp_path / "export").exists()


def test_a_result_that_changed_in_conversion_is_an_error(image_run, tmp_path, monkeypatch):
    real = convert.to_litert

    def shifted(model, portable, path, quantize="none", calibration=None):
        original = portable.fn
        portable.fn = lambda pixels: {
            k: (v + 0.5 if v.dtype.is_floating else v) for k, v in original(pixels).items()
        }
        real(model, portable, path, quantize, calibration)

    monkeypatch.setattr(convert, "to_litert", shifted)
    with pytest.raises(ValueError, match="differs from the SavedModel's by 0.5"):
        run.export(image_cnn, image_run, output=tmp_path / "export", formats=["litert"])
    assert not (tmp_path / "export").exists()


def test_a_backbone_text_model_says_it_exports_saved_models_only():
    with pytest.raises(ValueError, match="Export the SavedModel only"):
        text_transformer.portable_endpoint(None, {"backbone": "x", "sequence_length": 8}, "onnx")
