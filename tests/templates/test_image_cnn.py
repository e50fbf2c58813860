import dataclasses
import json
import shutil
import textwrap

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from ktemplate.pipelines import images
from ktemplate.templates import image_cnn

from ktemplate import baselines, cli, run, training
from ktemplate import files as files_lib
from ktemplate.config import Resolver
from tests.helpers.fresh import serve_in_fresh_process
from tests.helpers.images import make_image_folder, write_png

FAST = dict(epochs=2, batch_size=64, early_stopping_patience=0, conv_blocks=1, filters=8, members=1)


def test_search_space_defaults_equal_config():
    config = image_cnn.Config()
    assert image_cnn.search_space(keras_tuner.HyperParameters(), config) == config
    custom = image_cnn.Config(filters=16, dropout=0.3)
    assert image_cnn.search_space(keras_tuner.HyperParameters(), custom) == custom


def test_search_space_drives_the_model():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("filters", 64)
    hp.Fixed("conv_blocks", 3)
    config = image_cnn.search_space(hp, image_cnn.Config())
    assert (config.filters, config.conv_blocks) == (64, 3)


SPEC = {
    "input_shape": [8, 8, 1],
    "class_names": [str(i) for i in range(10)],
    "mean": [100.0],
    "variance": [400.0],
    "sizes": {"train": 100, "val": 10, "test": 10},
}


def test_default_model_shape_and_normalization_inside():
    with pytest.raises(ValueError, match="epochs is 'auto'.*resolved_config"):
        image_cnn.build_model(image_cnn.Config(), SPEC)  # epochs=auto: resolved from the data
    model = image_cnn.build_model(image_cnn.Config(epochs=60), SPEC)
    assert model.input_shape == (None, 8, 8, 1)
    assert model.output_shape == (None, 10)
    assert isinstance(model.layers[1], keras.layers.Normalization)
    probabilities = model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_output(policy):
    config = image_cnn.Config(mixed_precision=policy, epochs=1)
    training.set_global_options(config)
    model = image_cnn.build_model(config, SPEC)
    assert model.layers[2].compute_dtype == policy.split("_")[1]
    assert model.output.dtype == "float32"


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop", "adagrad"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_every_optimizer_and_schedule_trains_a_step(optimizer, schedule):
    config = image_cnn.Config(
        optimizer=optimizer,
        lr_schedule=schedule,
        clipnorm=1.0,
        l1=1e-5,
        activation="gelu",
        batch_norm=False,
        **{**FAST, "epochs": 1},
    )
    model = image_cnn.build_model(config, SPEC)
    x = np.random.default_rng(0).uniform(0, 255, (16, 8, 8, 1)).astype("float32")
    y = np.arange(16) % 10
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny real training run on the digits, shared by the export tests."""
    out = tmp_path_factory.mktemp("runs")
    config = image_cnn.Config(**FAST)
    run_dir = run.train(image_cnn, config, output_dir=out, verbose=0)
    return run_dir


def test_run_folder_contents(trained_run):
    for name in (
        "config.json",
        "spec.json",
        "metrics.json",
        "run.json",
        "history_train.csv",
        "confusion_matrix.png",
        "predictions.png",
        "checkpoints/best.keras",
        "export/saved_model.pb",
        "export/manifest.json",
    ):
        assert (trained_run / name).exists(), name
    assert list((trained_run / "logs" / "train").iterdir())
    assert not (trained_run / "backup").exists()
    for path in trained_run.rglob("*.json"):  # strict JSON: no NaN or Infinity anywhere
        json.loads(path.read_text(), parse_constant=pytest.fail)
    metrics = files_lib.read_json(trained_run / "metrics.json")
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_examples"] == 359
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert np.asarray(metrics["confusion_matrix"]).sum() == 359
    assert metrics["epochs"] == {"train": 2}
    config = files_lib.read_json(trained_run / "config.json")
    assert config["epochs"] == 2 and config["dataset"] == "digits"


def test_run_compares_with_pixel_baselines_on_the_same_test_split(trained_run):
    metrics = files_lib.read_json(trained_run / "metrics.json")
    baseline = metrics["baseline"]
    assert baseline["name"] in ("SVC (RBF) on raw pixels", "logistic regression on raw pixels")
    tried = baseline["settings"]["tried"]
    assert {t["method"] for t in tried} == {"SVC (RBF)", "logistic regression"}
    assert len(tried) == 12  # the whole grid, whatever the clock
    best = tried[baselines.pick(tried, "val_accuracy")]  # ties go to the more flexible
    assert baseline["settings"]["C"] == best["C"]  # picked on validation, not on test
    comparison = baseline["comparison"]
    assert comparison["model"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert comparison["baseline"] == baseline["test_accuracy"] > 0.9  # the SVC on digits
    assert comparison["difference"] == pytest.approx(
        metrics["test_accuracy"] - baseline["test_accuracy"], abs=1e-4
    )
    # Disagreements are counted on the identical 359 test images.
    assert comparison["only_model_correct"] - comparison["only_baseline_correct"] == (
        baseline["test_errors"] - metrics["test_errors"]
    )
    assert comparison["test"] == "McNemar" and 0 <= comparison["p_value"] <= 1
    assert comparison["n"] == 359 and comparison["unit"] == "images"
    assert "359 test images" in baseline["summary"]
    assert baseline["summary"].startswith(f"test accuracy {metrics['test_accuracy']:.3f} — ")
    spec = files_lib.read_json(trained_run / "spec.json")
    assert spec["resolved"]["augment"]["value"] is False  # off unless set
    assert "early_stopping_patience" not in spec["resolved"]  # set by the test: it wins
    assert (
        image_cnn.resolve_auto(image_cnn.Config(), 1257, (8, 8, 1)).config.early_stopping_patience
        == 30
    )
    assert (
        image_cnn.resolve_auto(
            image_cnn.Config(), 60_000, (28, 28, 1)
        ).config.early_stopping_patience
        == 4
    )
    assert "class_weight" not in spec["resolved"]  # none by default: not resolved
    # members=auto: two models on a small train split, one on a large one; a set value wins.
    assert image_cnn.resolve_auto(image_cnn.Config(), 1257, (8, 8, 1)).config.members == 2
    assert image_cnn.resolve_auto(image_cnn.Config(), 60_000, (28, 28, 1)).config.members == 1
    assert image_cnn.resolve_auto(image_cnn.Config(members=3), 1257, (8, 8, 1)).config.members == 3


def test_batch_norm_is_off_when_an_epoch_is_a_few_steps():
    few = image_cnn.resolve_auto(image_cnn.Config(), 211, (8, 8, 1))  # 7 steps of 32
    assert few.config.batch_norm is False and "7 steps of 32 per epoch < 10" in str(few.spec())
    assert image_cnn.resolve_auto(image_cnn.Config(), 536, (32, 32, 3)).config.batch_norm is True
    # The global batch counts: 1,257 images in batches of 256 are 5 steps.
    assert image_cnn.resolve_auto(image_cnn.Config(), 1257, (8, 8, 1)).config.batch_norm is True
    assert (
        image_cnn.resolve_auto(image_cnn.Config(), 1257, (8, 8, 1), 256).config.batch_norm is False
    )
    kept = image_cnn.resolve_auto(image_cnn.Config(batch_norm=True), 211, (8, 8, 1))
    assert kept.config.batch_norm is True
    assert any("batch_norm=true with 7 train steps" in w for w in kept.warnings)


def test_epochs_auto_fits_a_compute_budget():
    # The default model on 32x32 colour images: two 3x3 convs of 32 at 32x32 (the first on 3
    # channels), two of 64 at 16x16, a 128-unit layer on 8x8x64 features.
    macs = 32 * 32 * 9 * (3 * 32 + 32 * 32) + 16 * 16 * 9 * (32 * 64 + 64 * 64) + 8 * 8 * 64 * 128
    assert image_cnn.forward_macs(image_cnn.Config(), (32, 32, 3)) == macs
    # 819 train images (a 1,169-image folder), two members: as many epochs as the budget holds.
    icons = image_cnn.resolve_auto(image_cnn.Config(), 819, (32, 32, 3))
    assert icons.config.epochs == int(image_cnn.EPOCHS_BUDGET_MACS // (2 * 819 * macs)) == 24
    assert "24 epochs fit the budget" in icons.resolved["epochs"]["reason"]
    least, most = image_cnn.AUTO_EPOCHS
    digits = image_cnn.resolve_auto(image_cnn.Config(), 1257, (8, 8, 1))  # cheap: the most
    assert digits.config.epochs == most
    large = image_cnn.resolve_auto(image_cnn.Config(), 40_000, (32, 32, 3))  # one member
    assert large.config.members == 1 and large.config.epochs == least
    # A set value wins; a backbone's cost is not counted: the most epochs.
    assert image_cnn.resolve_auto(image_cnn.Config(epochs=7), 819, (32, 32, 3)).config.epochs == 7
    backbone = image_cnn.Config(backbone="mobilenet_v3_small")
    assert image_cnn.resolve_auto(backbone, 819, (32, 32, 3)).config.epochs == most


@pytest.mark.parametrize(
    "fields, shape",
    [
        ({}, (32, 32, 3)),
        ({"conv_blocks": 3, "filters": 16, "kernel_size": 5, "dense_units": 0}, (25, 25, 1)),
        ({"convs_per_block": 1, "pooling": "avg", "dense_units": 64}, (9, 14, 3)),
    ],
)
def test_forward_macs_counts_the_built_model(fields, shape):
    # forward_macs mirrors _conv_blocks by hand: count the built model's Conv2D and hidden Dense
    # layers (kernel size x output positions) so that the two cannot drift apart.
    spec = {**SPEC, "input_shape": list(shape), "mean": [0.0] * shape[2]}
    spec["variance"] = [1.0] * shape[2]
    config = image_cnn.Config(**fields, epochs=1)
    model = image_cnn.build_model(config, spec)
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    layers = [layer for layer in model.layers if isinstance(layer, kinds)]
    counted = sum(
        int(np.prod(x.kernel.shape)) * int(np.prod(x.output.shape[1:-1])) for x in layers[:-1]
    )
    assert image_cnn.forward_macs(config, shape) == counted  # the output layer left out


def test_baseline_can_be_turned_off_and_unbalanced_folders_are_weighted(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_class=5, size=(16, 16))
    for i in range(5, 20):  # 20 cats, 5 dogs
        write_png(root / "cat" / f"{i}.png", np.full((16, 16, 1), 40, "uint8"))
    args = ["train", "image_cnn", "--dataset", f"dir:{root}", "--output-dir", str(tmp_path)]
    # class_weight=none by default (on validation accuracy and log loss, an unbalanced folder
    # did better unweighted); auto balances unbalanced classes.
    assert image_cnn.Config().class_weight == "none"
    for key, value in {**FAST, "epochs": 1, "baseline": "false", "class_weight": "auto"}.items():
        args += ["--set", f"{key}={value}"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "auto: class_weight=balanced (train classes unbalanced" in out
    assert "auto: augment=False (off: the folders tried did better on validation" in out
    (run_dir,) = (tmp_path / "image_cnn").iterdir()
    assert "baseline" not in files_lib.read_json(run_dir / "metrics.json")
    assert out.strip().splitlines()[-1].startswith("TensorBoard: tensorboard --logdir ")


def test_manifest(trained_run):
    manifest = files_lib.read_json(trained_run / "export" / "manifest.json")
    assert manifest["template"] == "image_cnn"
    assert manifest["dataset"] == "digits"
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["input"]["kind"] == "image"
    assert manifest["endpoints"]["serve"][0] == {
        "shape": [None, None, None, 1],
        "dtype": "uint8",
        "name": "pixels",
    }
    assert manifest["endpoints"]["serve_image_bytes"][0]["dtype"] == "string"
    assert manifest["serving_default"] == "serve"
    assert (
        manifest["metrics"]["test_accuracy"]
        == files_lib.read_json(trained_run / "metrics.json")["test_accuracy"]
    )
    for package in ("tensorflow", "keras", "python"):
        assert manifest["versions"][package]
    assert manifest["created"]


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    # The project must not be needed to serve the export: make importing it fail.
    for name in ("ktemplate", "templates", "pipelines", "tuning"):
        sys.modules[name] = None
    import numpy as np
    import tensorflow as tf
    export_dir, pixels_path, png_path = sys.argv[1:4]
    loaded = tf.saved_model.load(export_dir)
    pixels = np.load(pixels_path)
    out = loaded.signatures["serving_default"](pixels=tf.constant(pixels))
    by_bytes = loaded.serve_image_bytes(tf.constant([open(png_path, "rb").read()]))
    print(json.dumps({
        "probabilities": out["probabilities"].numpy().tolist(),
        "class_id": out["class_id"].numpy().tolist(),
        "class_name": [s.decode() for s in out["class_name"].numpy()],
        "png_probabilities": by_bytes["probabilities"].numpy().tolist(),
    }))
    """
)


def test_export_matches_in_memory_model_in_a_fresh_process(trained_run, tmp_path):
    splits = images.load_digits()
    pixels = np.stack([x for x, _ in splits.test.take(12).as_numpy_iterator()])
    np.save(tmp_path / "pixels.npy", pixels)
    write_png(tmp_path / "digit.png", pixels[0])
    served = serve_in_fresh_process(
        FRESH_PROCESS,
        tmp_path,
        str(trained_run / "export"),
        str(tmp_path / "pixels.npy"),
        str(tmp_path / "digit.png"),
    )

    model = run.load_best_model(trained_run)
    expected = model.predict(pixels.astype("float32"), verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert served["class_id"] == expected.argmax(axis=1).tolist()
    assert served["class_name"] == [str(i) for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(served["png_probabilities"][0], expected[0], rtol=1e-5, atol=1e-6)


def test_serving_resizes_other_sizes(trained_run):
    loaded = tf.saved_model.load(str(trained_run / "export"))
    big = np.zeros((3, 16, 16, 1), "uint8")
    out = loaded.serve(tf.constant(big))
    assert out["probabilities"].shape == (3, 10)


def test_cli_predict_export_and_refusals(trained_run, tmp_path, capsys):
    splits = images.load_digits()
    for i, (x, _) in enumerate(splits.test.take(2).as_numpy_iterator()):
        write_png(tmp_path / f"{i}.png", x)
    assert (
        cli.main(
            [
                "predict",
                str(trained_run / "export"),
                str(tmp_path / "0.png"),
                str(tmp_path / "1.png"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["input"] for r in rows] == [str(tmp_path / "0.png"), str(tmp_path / "1.png")]
    assert all(r["class_name"] in [str(d) for d in range(10)] for r in rows)

    (tmp_path / "bad.png").write_bytes(b"garbage")
    assert cli.main(["predict", str(trained_run / "export"), str(tmp_path / "bad.png")]) == 2
    assert "Could not decode" in capsys.readouterr().err
    # One bad or missing input among good ones: the good ones still get their rows, each
    # failure its own line naming the input, and the exit status says something failed.
    inputs = [tmp_path / "0.png", tmp_path / "bad.png", tmp_path / "gone.png", tmp_path / "1.png"]
    assert cli.main(["predict", str(trained_run / "export"), *map(str, inputs)]) == 2
    captured = capsys.readouterr()
    assert [json.loads(line)["input"] for line in captured.out.splitlines()] == [
        str(inputs[0]), str(inputs[3])
    ]  # fmt: skip
    errors = [line for line in captured.err.splitlines() if line.startswith("ktemplate: error:")]
    assert len(errors) == 2 and "bad.png" in errors[0] and "gone.png" in errors[1]
    assert "2 of 4 input(s) failed" in captured.err

    # A damaged export is one line naming what is wrong.
    damaged = tmp_path / "damaged"
    shutil.copytree(trained_run / "export", damaged)
    (damaged / "saved_model.pb").write_bytes((damaged / "saved_model.pb").read_bytes()[:100])
    assert cli.main(["predict", str(damaged), str(inputs[0])]) == 2
    assert "could not be loaded as a SavedModel" in capsys.readouterr().err
    shutil.rmtree(damaged / "variables")
    assert cli.main(["predict", str(damaged), str(inputs[0])]) == 2
    assert "variables.index is missing" in capsys.readouterr().err
    (damaged / "manifest.json").write_text("{not json")
    assert cli.main(["predict", str(damaged), str(inputs[0])]) == 2
    assert "manifest.json is not valid JSON" in capsys.readouterr().err

    # An existing export is never replaced silently.
    before = (trained_run / "export" / "manifest.json").read_text()
    assert cli.main(["export", str(trained_run)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (trained_run / "export" / "manifest.json").read_text() == before
    assert cli.main(["export", str(trained_run), "--output", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "saved_model.pb").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # TF Serving's layout: each export is the base path's next version folder.
    base = tmp_path / "models" / "digits"
    for version in ("1", "2"):
        argv = ["export", str(trained_run), "--output", str(base), "--serving-layout"]
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert f"Exported to {base / version}" in out and f"--model_base_path={base}" in out
        assert (base / version / "saved_model.pb").is_file()
        assert (base / version / "manifest.json").is_file()
    # The version folders, and the lock an export takes while it picks one (TF Serving reads
    # only the numbered folders).
    assert sorted(p.name for p in base.iterdir()) == [".lock", "1", "2"]
    # predict takes the base path and serves the highest version, as TF Serving does.
    assert cli.main(["predict", str(base), str(tmp_path / "0.png")]) == 0
    assert json.loads(capsys.readouterr().out)["class_name"] == rows[0]["class_name"]
    # TF Serving's REST API decodes {"b64": ...} only for inputs whose name ends in "_bytes".
    manifest = files_lib.read_json(base / "2" / "manifest.json")
    assert manifest["endpoints"]["serve_image_bytes"][0]["name"] == "image_bytes"


class InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class FailAfter(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("disk full")


def test_a_failed_run_says_so_in_run_json(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", per_class=8)
    config = image_cnn.Config(dataset=f"dir:{tmp_path / 'data'}", **FAST)
    real_callbacks = training.callbacks
    monkeypatch.setattr(
        training, "callbacks", lambda *a, **k: real_callbacks(*a, **k) + [FailAfter()]
    )
    with pytest.raises(RuntimeError, match="disk full"):
        run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
    (run_dir,) = (tmp_path / "runs" / "image_cnn").iterdir()
    info = files_lib.read_json(run_dir / "run.json")
    assert info["status"] == "failed" and info["reason"] == "RuntimeError: disk full"


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", per_class=8)
    config = image_cnn.Config(dataset=f"dir:{tmp_path / 'data'}", **{**FAST, "epochs": 4})
    real_callbacks = training.callbacks
    monkeypatch.setattr(
        training, "callbacks", lambda *a, **k: real_callbacks(*a, **k) + [InterruptAfter(1)]
    )
    with pytest.raises(KeyboardInterrupt):
        run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
    (run_dir,) = (tmp_path / "runs" / "image_cnn").iterdir()
    assert (run_dir / "backup").exists() and not (run_dir / "metrics.json").exists()
    assert files_lib.read_json(run_dir / "run.json")["status"] == "interrupted"

    monkeypatch.setattr(training, "callbacks", real_callbacks)
    assert run.train(image_cnn, None, resume=run_dir, verbose=0) == run_dir
    epochs = [
        line.split(",")[0] for line in (run_dir / "history_train.csv").read_text().splitlines()[1:]
    ]
    assert epochs == ["0", "1", "2", "3"]  # resumed at epoch 2; no epoch ran twice
    assert files_lib.read_json(run_dir / "run.json")["status"] == "finished"
    with pytest.raises(ValueError, match="already finished"):
        run.train(image_cnn, None, resume=run_dir, verbose=0)


def test_run_interrupted_while_fine_tuning_resumes_without_retraining(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", per_class=8)
    config = image_cnn.Config(dataset=f"dir:{tmp_path / 'data'}", **FAST)
    monkeypatch.setattr(image_cnn, "fine_tune", lambda model, config, spec: (model, 3))
    real_callbacks = training.callbacks

    def interrupt_fine_tuning(*args, phase="train", **kwargs):
        extra = [InterruptAfter(3)] if phase == "fine_tune" else []
        return real_callbacks(*args, phase=phase, **kwargs) + extra

    monkeypatch.setattr(training, "callbacks", interrupt_fine_tuning)
    with pytest.raises(KeyboardInterrupt):
        run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
    (run_dir,) = (tmp_path / "runs" / "image_cnn").iterdir()
    monkeypatch.setattr(training, "callbacks", real_callbacks)
    run.train(image_cnn, None, resume=run_dir, verbose=0)

    def epochs(phase):
        lines = (run_dir / f"history_{phase}.csv").read_text().splitlines()[1:]
        return [line.split(",")[0] for line in lines]

    assert epochs("train") == ["0", "1"]  # the first phase did not run again
    assert epochs("fine_tune") == ["2", "3", "4"]
    assert files_lib.read_json(run_dir / "metrics.json")["epochs"] == {"train": 2, "fine_tune": 3}


def test_members_train_independently_resume_and_average(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", per_class=8)
    config = image_cnn.Config(**{**FAST, "dataset": f"dir:{tmp_path / 'data'}", "members": 3})
    real_callbacks = training.callbacks
    member_dirs = []

    def interrupt_second_member(config, run_dir, *args, **kwargs):
        member_dirs.append(run_dir)
        extra = [InterruptAfter(0)] if len(member_dirs) == 2 else []
        return real_callbacks(config, run_dir, *args, **kwargs) + extra

    monkeypatch.setattr(training, "callbacks", interrupt_second_member)
    with pytest.raises(KeyboardInterrupt):
        run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
    (run_dir,) = (tmp_path / "runs" / "image_cnn").iterdir()
    assert (run_dir / "members" / "0" / "member.json").exists()
    assert not (run_dir / "members" / "1" / "member.json").exists()

    monkeypatch.setattr(training, "callbacks", real_callbacks)
    run.train(image_cnn, None, resume=run_dir, verbose=0)

    def epochs(member):
        lines = (run_dir / "members" / str(member) / "history_train.csv").read_text()
        return [line.split(",")[0] for line in lines.splitlines()[1:]]

    assert [epochs(i) for i in range(3)] == [["0", "1"]] * 3  # no member's epoch ran twice
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert metrics["members"] == 3 and metrics["epochs"] == {"train": [2, 2, 2]}
    assert not any((run_dir / "members").glob("*/backup"))

    members = [
        keras.models.load_model(run_dir / "members" / str(i) / "checkpoints" / "best.keras")
        for i in range(3)
    ]
    images = np.random.default_rng(0).uniform(0, 255, (4, 12, 10, 1)).astype("float32")
    each = [m.predict(images, verbose=0) for m in members]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # different seeds, different models
    ensemble = run.load_best_model(run_dir)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), np.mean(each, 0), atol=1e-5)
    assert (run_dir / "export" / "manifest.json").exists()


def test_members_must_be_positive():
    with pytest.raises(ValueError, match="'members' must be > 0"):
        image_cnn.Config(members=0)


@pytest.mark.slow
def test_transfer_learning_with_local_weights_file(tmp_path):
    weights = tmp_path / "mobilenet.weights.h5"
    source = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg"
    )
    source.save_weights(weights)
    make_image_folder(tmp_path / "data", per_class=6, size=(20, 20), channels=3)
    config = image_cnn.Config(
        dataset=f"dir:{tmp_path / 'data'}",
        channels=3,
        backbone="mobilenet_v3_small",
        backbone_weights=str(weights),
        backbone_size=32,
        fine_tune_epochs=1,
        **{**FAST, "epochs": 1},
    )
    data = image_cnn.load_data(config, 16)
    model = image_cnn.build_model(config, data.spec)
    backbone = model.get_layer("backbone")
    assert not backbone.trainable
    for loaded, saved in zip(backbone.weights, source.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())

    run_dir = run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert metrics["epochs"] == {"train": 1, "fine_tune": 1}
    assert (run_dir / "history_fine_tune.csv").exists()


def test_backbone_weights_path_must_exist(tmp_path):
    with pytest.raises(ValueError, match="backbone_weights"):
        image_cnn.Config(backbone="mobilenet_v3_small", backbone_weights=str(tmp_path / "no.h5"))


def test_tfds_end_to_end_with_mock_data(tmp_path, online):
    import tensorflow_datasets as tfds

    config = image_cnn.Config(dataset="tfds:mnist", **{**FAST, "epochs": 1})
    with tfds.testing.mock_data(num_examples=40):
        run_dir = run.train(image_cnn, config, output_dir=tmp_path, verbose=0)
    manifest = files_lib.read_json(run_dir / "export" / "manifest.json")
    assert manifest["input"]["height"] == 28 and manifest["dataset"] == "tfds:mnist"


def test_every_config_field_has_a_comment():
    from ktemplate.config import field_comments

    comments = field_comments(image_cnn.Config)
    assert [f.name for f in dataclasses.fields(image_cnn.Config) if not comments.get(f.name)] == []


def test_config_dataclass_is_complete():
    fields = {f.name for f in dataclasses.fields(image_cnn.Config)}
    assert {
        "optimizer",
        "lr_schedule",
        "clipnorm",
        "l1",
        "l2",
        "dropout",
        "batch_norm",
        "activation",
        "mixed_precision",
        "jit_compile",
        "seed",
        "backbone",
    } <= fields


def test_cache_is_in_memory_unless_the_decoded_images_are_large():
    def resolve_cache(config, sizes, shape):
        return images.resolve_cache(Resolver(config), sizes, shape, image_cnn.MEMORY_CACHE_BYTES)

    small = resolve_cache(image_cnn.Config(), {"train": 1000, "val": 100, "test": 200}, (8, 8, 1))
    assert small.config.cache == "memory"
    huge = resolve_cache(
        image_cnn.Config(), {"train": 700_000, "val": 100_000, "test": 200_000}, (64, 64, 3)
    )
    assert huge.config.cache == "none" and "> 2 GiB" in huge.resolved["cache"]["reason"]
    kept = resolve_cache(image_cnn.Config(cache="memory"), {"train": 10**7}, (64, 64, 3))
    assert kept.config.cache == "memory"
