import dataclasses
import json
import textwrap

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from ktemplate.templates import denoising_autoencoder as dae

from ktemplate import cli, run, training
from ktemplate import files as files_lib
from tests.helpers.fresh import serve_in_fresh_process
from tests.helpers.images import write_png

FAST = dict(
    epochs=1,
    batch_size=16,
    patches_per_epoch=32,
    patch_size=32,
    early_stopping_patience=0,
    depth=1,
    filters=8,
    convs_per_level=1,
)
SPEC = {"channels": 1}


def test_search_space_defaults_equal_config():
    config = dae.Config()
    assert dae.search_space(keras_tuner.HyperParameters(), config) == config
    custom = dae.Config(filters=40, residual=False, loss="ssim")
    assert dae.search_space(keras_tuner.HyperParameters(), custom) == custom


def test_search_space_drives_the_model():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("depth", 3)
    hp.Fixed("filters", 16)
    hp.Fixed("residual", False)
    config = dae.search_space(hp, dae.Config())
    assert (config.depth, config.filters, config.residual) == (3, 16, False)
    model = dae.build_model(config, SPEC)
    assert "subtract_noise" not in [layer.name for layer in model.layers]


@pytest.mark.parametrize("shape", [(2, 37, 53, 1), (1, 5, 3, 1), (1, 64, 64, 1)])
def test_model_denoises_any_size(shape):
    model = dae.build_model(dae.Config(**{**FAST, "depth": 3}), SPEC)
    out = model(np.random.default_rng(0).uniform(size=shape).astype("float32"))
    assert out.shape == shape


def test_dncnn_is_a_plain_stack_of_full_resolution_convolutions():
    config = dae.Config(**{**FAST, "architecture": "dncnn", "dncnn_layers": 5, "filters": 8})
    model = dae.build_model(config, SPEC)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 5 and convs[-1].name == "head"
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    x = np.random.default_rng(0).uniform(size=(2, 13, 9, 1)).astype("float32")
    assert model(x).shape == x.shape
    model.fit(tf.data.Dataset.from_tensors((x, x)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="architecture is 'dncnn', not 'unet'"):
        dae.Config(architecture="dncnn", pretrained="builtin")
    assert dae.search_space(keras_tuner.HyperParameters(), config) == config


def test_residual_model_starts_from_the_input():
    model = dae.build_model(dae.Config(**FAST), SPEC)
    head = model.get_layer("head")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    x = np.random.default_rng(0).uniform(size=(1, 21, 19, 1)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), x, atol=1e-6)


@pytest.mark.parametrize("loss", ["mse", "mae", "ssim"])
def test_every_loss_trains_a_step(loss):
    config = dae.Config(loss=loss, batch_norm=False, activation="gelu", **FAST)
    model = dae.build_model(config, SPEC)
    clean = np.random.default_rng(0).uniform(size=(4, 32, 32, 1)).astype("float32")
    history = model.fit(clean + 0.05, clean, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "psnr" in history.history


def test_mixed_precision_keeps_float32_output():
    config = dae.Config(mixed_precision="mixed_bfloat16", **FAST)
    training.set_global_options(config)
    model = dae.build_model(config, SPEC)
    assert model.output.dtype == "float32"


@pytest.mark.parametrize(
    "override, match",
    [
        ({"noise_sigma": 1.5}, "noise_sigma"),
        ({"noise_sigma": 0.0}, "noise_sigma"),
        ({"noise_sigma": 0.2, "noise_sigma_max": 0.1}, "noise_sigma_max"),
        ({"noise_amount": 1.0}, "noise_amount"),
        ({"patch_size": 8}, "patch_size"),
    ],
)
def test_config_rejects_out_of_range_values(override, match):
    with pytest.raises(ValueError, match=match):
        dae.Config(**override)


def test_cli_rejects_noise_sigma_out_of_range(capsys):
    code = cli.main(["train", "denoising_autoencoder", "--set", "noise_sigma=25"])
    assert code == 2
    assert "noise_sigma must be in (0, 1]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny real training run on the default scikit-image data (its baseline is tested on
    small images below: BM3D on six 512-pixel photographs takes a minute)."""
    out = tmp_path_factory.mktemp("runs")
    return run.train(dae, dae.Config(**FAST, baseline=False), output_dir=out, verbose=0)


def test_run_folder_and_metrics(trained_run):
    for name in ("metrics.json", "denoising.png", "checkpoints/best.keras", "export/manifest.json"):
        assert (trained_run / name).exists(), name
    metrics = files_lib.read_json(trained_run / "metrics.json")
    test_names = list(dae.denoising.SKIMAGE_SPLITS["test"])
    assert [r["image"] for r in metrics["per_image"]] == test_names
    assert metrics["test_images"] == len(test_names)
    # Fixed test noise: the noisy input's PSNR is the same in every run (sigma 0.1 ≈ 20 dB).
    assert 19.5 < metrics["test_noisy_psnr"] < 21.0
    assert 0 < metrics["test_ssim"] <= 1 and np.isfinite(metrics["test_psnr"])
    spec = files_lib.read_json(trained_run / "spec.json")
    assert spec["sizes"]["test"] == len(test_names) and spec["validation_tiles"] > 0
    manifest = files_lib.read_json(trained_run / "export" / "manifest.json")
    assert manifest["input"]["kind"] == "noisy_image" and manifest["input"]["channels"] == 1
    assert manifest["serving_default"] == "serve"


def test_run_compares_with_non_local_means_and_bm3d_on_the_same_noisy_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(16):  # smooth ramps with texture: something to denoise
        ramp = np.linspace(0, 255, 48)[None, :] * np.ones((48, 1))
        image = np.clip(ramp + rng.normal(0, 10, (48, 48)), 0, 255).astype("uint8")[..., None]
        write_png(tmp_path / "clean" / f"{i}.png", image)
    config = dae.Config(dataset=f"dir:{tmp_path / 'clean'}", **FAST)
    run_dir = run.train(dae, config, output_dir=tmp_path / "runs", verbose=0)
    metrics = files_lib.read_json(run_dir / "metrics.json")
    baseline = metrics["baseline"]
    tried = baseline["settings"]["tried"]
    assert [t["method"] for t in tried] == ["non-local means", "BM3D"]  # bm3d: a test extra
    assert baseline["name"] == max(tried, key=lambda t: (t["val_psnr"], t["method"]))["method"]
    # The baseline clearly denoises the fixed-noise test images.
    assert baseline["test_psnr"] > metrics["test_noisy_psnr"] + 5
    assert baseline["test_images"] == metrics["test_images"]  # every test image
    assert baseline["comparison"]["test"] == "Wilcoxon signed-rank"
    comparison = baseline["comparison"]
    assert comparison["model"] == pytest.approx(metrics["test_psnr"], abs=1e-3)
    assert comparison["difference"] == pytest.approx(
        metrics["test_psnr"] - baseline["test_psnr"], abs=1e-3
    )
    assert comparison["verdict"] in ("better", "level", "worse", "small test set")


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    # The project must not be needed to serve the export: make importing it fail.
    for name in ("ktemplate", "templates", "pipelines", "tuning"):
        sys.modules[name] = None
    import numpy as np
    import tensorflow as tf
    export_dir, pixels_path = sys.argv[1:3]
    loaded = tf.saved_model.load(export_dir)
    pixels = np.load(pixels_path)
    as_uint8 = loaded.signatures["serving_default"](pixels=tf.constant(pixels))["denoised"]
    as_float = loaded.serve_float(tf.constant(pixels.astype("float32") / 255.0))["denoised"]
    print(json.dumps({
        "uint8": as_uint8.numpy().tolist(), "uint8_dtype": as_uint8.dtype.name,
        "float": as_float.numpy().tolist(), "float_dtype": as_float.dtype.name,
    }))
    """
)


def test_export_matches_in_memory_model_in_a_fresh_process(trained_run, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 37, 45, 1), dtype="uint8")
    np.save(tmp_path / "pixels.npy", pixels)
    served = serve_in_fresh_process(
        FRESH_PROCESS, tmp_path, str(trained_run / "export"), str(tmp_path / "pixels.npy")
    )
    assert (served["uint8_dtype"], served["float_dtype"]) == ("uint8", "float32")

    model = run.load_best_model(trained_run)
    spec = files_lib.read_json(trained_run / "spec.json")
    expected = dae.denoised(model, pixels.astype("float32") / 255.0, spec).numpy()
    np.testing.assert_allclose(served["float"], expected, atol=1e-5)
    np.testing.assert_allclose(served["uint8"], np.round(expected * 255), atol=1)
    assert np.asarray(served["uint8"]).shape == pixels.shape


def test_cli_predict_writes_denoised_images_and_refuses_bad_input(trained_run, tmp_path, capsys):
    noisy = np.random.default_rng(1).integers(0, 256, (30, 41, 1), dtype="uint8")
    write_png(tmp_path / "noisy.png", noisy)
    assert cli.main(["predict", str(trained_run / "export"), str(tmp_path / "noisy.png")]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["output"] == str(tmp_path / "noisy.denoised.png")
    denoised = tf.io.decode_png((tmp_path / "noisy.denoised.png").read_bytes()).numpy()
    assert denoised.shape == noisy.shape and denoised.dtype == np.uint8

    export = str(trained_run / "export")
    rgb = np.stack([noisy[..., 0]] * 3, axis=-1)  # the same picture in RGB
    write_png(tmp_path / "rgb.png", rgb)
    assert cli.main(["predict", export, str(tmp_path / "rgb.png"), "--convert", "none"]) == 2
    assert "has 3 channel(s) but this model denoises grayscale" in capsys.readouterr().err
    assert not (tmp_path / "rgb.denoised.png").exists()
    assert cli.main(["predict", export, str(tmp_path / "rgb.png")]) == 0  # converted, with a note
    captured = capsys.readouterr()
    assert "converted to grayscale for this model" in captured.err
    converted = tf.io.decode_png((tmp_path / "rgb.denoised.png").read_bytes()).numpy()
    np.testing.assert_allclose(converted.astype(int), denoised.astype(int), atol=1)
    # An existing result is never replaced silently.
    assert cli.main(["predict", export, str(tmp_path / "rgb.png"), "--convert", "gray"]) == 2
    assert "rgb.denoised.png exists: pass --force" in capsys.readouterr().err
    argv = ["predict", export, str(tmp_path / "rgb.png"), "--convert", "gray", "--force"]
    assert cli.main(argv) == 0
    assert "converted" not in capsys.readouterr().err  # asked for: no notice
    assert cli.main(["predict", export, str(tmp_path / "rgb.png"), "--convert", "rgb"]) == 2
    assert "does not match this model" in capsys.readouterr().err

    (tmp_path / "bad.png").write_bytes(b"garbage")
    assert cli.main(["predict", str(trained_run / "export"), str(tmp_path / "bad.png")]) == 2
    assert "Could not decode" in capsys.readouterr().err


def test_directory_dataset_counts_skipped_files(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        write_png(tmp_path / "data" / f"{i}.png", rng.integers(0, 256, (40, 36, 3), dtype="uint8"))
    (tmp_path / "data" / "corrupt.png").write_bytes(b"\x89PNG broken")
    config = dae.Config(dataset=f"dir:{tmp_path / 'data'}", channels=3, **FAST)
    with pytest.warns(UserWarning, match="Skipped 1"):
        data = dae.load_data(config, 16)
    assert data.spec["skipped_files"] == [str(tmp_path / "data" / "corrupt.png")]
    assert data.spec["sizes"] == {"train": 3, "val": 1, "test": 1}
    noisy, clean = next(iter(data.train))
    assert noisy.shape == (16, 32, 32, 3)


def test_tfds_end_to_end_with_mock_data(tmp_path, online):
    import tensorflow_datasets as tfds

    config = dae.Config(dataset="tfds:mnist", max_images=20, **{**FAST, "patch_size": 16})
    with tfds.testing.mock_data(num_examples=20):
        run_dir = run.train(dae, config, output_dir=tmp_path, verbose=0)
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert metrics["test_images"] == 20


def test_every_config_field_has_a_comment():
    from ktemplate.config import field_comments

    comments = field_comments(dae.Config)
    assert [f.name for f in dataclasses.fields(dae.Config) if not comments.get(f.name)] == []


def test_custom_layers_round_trip(tmp_path):
    model = dae.build_model(dae.Config(loss="ssim", **FAST), SPEC)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    x = np.random.default_rng(0).uniform(size=(1, 13, 11, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


def test_patch_size_auto_fits_small_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):  # 25x25, like scikit-image's LFW faces: smaller than the default 64
        write_png(tmp_path / f"{i}.png", rng.integers(0, 256, (25, 25, 1), dtype="uint8"))
    data = dae.load_data(dae.Config(dataset=f"dir:{tmp_path}", batch_size=8), 8)
    resolved = data.spec["resolved"]["patch_size"]
    assert resolved["value"] == data.spec["patch_size"] == 24  # a multiple of 2**depth = 8
    assert "25 px" in resolved["reason"]
    noisy, clean = next(iter(data.train))
    assert noisy.shape[1:] == (24, 24, 1)
    dncnn = dae.load_data(dae.Config(dataset=f"dir:{tmp_path}", architecture="dncnn"), 8)
    assert dncnn.spec["patch_size"] == 25  # no pooling: any size fits
    # A patch_size the user sets is checked as before.
    with pytest.raises(ValueError, match="smaller than patch_size 32.*Set patch_size=24"):
        dae.load_data(dae.Config(dataset=f"dir:{tmp_path}", patch_size=32), 8)
    # ... and the advice is never the value already in force.
    for i in range(12):
        write_png(tmp_path / "tiny" / f"{i}.png", rng.integers(0, 256, (14, 14, 1), dtype="uint8"))
    with pytest.raises(ValueError, match="smaller than patch_size 16.*Remove those images"):
        dae.load_data(dae.Config(dataset=f"dir:{tmp_path / 'tiny'}", patch_size=16), 8)


def test_pretrained_auto_starts_the_default_unet_from_the_builtin_weights(tmp_path):
    write_png(tmp_path / "a.png", np.random.default_rng(0).integers(0, 256, (40, 40, 1), np.uint8))
    for name in "bcde":
        write_png(tmp_path / f"{name}.png", np.full((40, 40, 1), 90, np.uint8))
    data = dae.load_data(dae.Config(dataset=f"dir:{tmp_path}", batch_size=8), 8)
    assert data.spec["pretrained"] == "builtin"
    assert data.spec["resolved"]["pretrained"]["value"] == "builtin"
    small = dae.load_data(dae.Config(dataset=f"dir:{tmp_path}", **{**FAST, "batch_size": 8}), 8)
    assert "pretrained" not in small.spec  # depth 1: from scratch, and the reason is recorded
    assert small.spec["resolved"]["pretrained"] == {"value": "none", "reason": "depth is 1, not 3"}
    noisy = dae.load_data(dae.Config(dataset=f"dir:{tmp_path}", noise="poisson"), 8)
    assert noisy.spec["resolved"]["pretrained"]["value"] == "none"
    # epochs=auto: a fine-tune of the weights is short, a model from scratch trains longer
    assert data.spec["resolved"]["epochs"]["value"] == 6
    assert noisy.spec["resolved"]["epochs"] == {"value": 20, "reason": "training from scratch"}


@pytest.mark.parametrize("channels", [1, 3])
def test_builtin_weights_ship_with_the_package_and_denoise(channels):
    config = dae.Config(pretrained="builtin")
    model = dae.build_model(config, {"channels": channels})
    scratch = dae.build_model(
        dataclasses.replace(config, pretrained="none"), {"channels": channels}
    )
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.8, 48, dtype="float32"), (48, 1))[None, ..., None]
    clean = np.repeat(clean, channels, axis=-1)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype("float32")
    error = float(np.mean((model(noisy).numpy() - clean) ** 2))
    assert error < 0.25 * float(np.mean((noisy - clean) ** 2))  # it removes most of the noise
    assert float(np.mean((scratch(noisy).numpy() - clean) ** 2)) > error


@pytest.mark.parametrize(
    "override, match",
    [
        (dict(pretrained="builtin", filters=8), "filters is 8, not 16.*pretrained=none"),
        (dict(pretrained="builtin", residual=False), "residual is False"),
        (dict(pretrained="no/such.weights.h5"), "existing .weights.h5 file"),
        (dict(pretrained="weights.keras"), "existing .weights.h5 file"),
    ],
)
def test_pretrained_rejects_what_cannot_start_the_model(override, match):
    with pytest.raises(ValueError, match=match):
        dae.Config(**override)


def test_pretrained_path_of_another_architecture_is_a_clear_error(tmp_path):
    path = str(tmp_path / "other.weights.h5")
    dae.build_model(dae.Config(**{**FAST, "filters": 4}), SPEC).save_weights(path)
    with pytest.raises(ValueError, match="does not fit this model"):
        dae.build_model(dae.Config(**FAST, pretrained=path), SPEC)


def test_tuning_a_pretrained_model_keeps_its_architecture():
    hp = keras_tuner.HyperParameters()
    config = dae.search_space(hp, dae.Config(pretrained="builtin"))
    assert set(hp.values) == {"learning_rate", "loss"}
    assert (config.depth, config.filters) == (3, 16)


def _starting_run(tmp_path, weights, learning_rate):
    config = dae.Config(
        **{**FAST, "epochs": 2, "patches_per_epoch": 256},
        dataset=f"dir:{tmp_path / 'clean'}",
        pretrained=weights,
        learning_rate=learning_rate,
        baseline=False,
    )
    return run.train(dae, config, output_dir=tmp_path / "runs", verbose=0)


def test_a_run_keeps_its_starting_weights_unless_training_beats_them(tmp_path):
    """Weights that denoise are kept when training only makes them worse (a learning rate
    that wrecks them); weights that do not are replaced by the trained ones."""
    ramps = [
        np.clip(np.add.outer(np.arange(48) * a, np.arange(48) * b) + 60, 0, 255)[..., None]
        for a, b in [(1, 2), (2, 1), (3, 0), (0, 3), (1, 1), (2, 2)]
    ]
    for i, ramp in enumerate(ramps):
        write_png(tmp_path / "clean" / f"{i}.png", ramp.astype(np.uint8))
    model = dae.build_model(dae.Config(**FAST, learning_rate=3e-3), SPEC)
    noise = dae.noise_settings(dae.Config())
    patches = dae.denoising.train_patches(
        [r.astype(np.uint8) for r in ramps], 32, 512, 16, noise, 0
    )
    model.fit(patches, epochs=3, verbose=0)
    model.save_weights(tmp_path / "good.weights.h5")
    kept = _starting_run(tmp_path, str(tmp_path / "good.weights.h5"), 5.0)
    assert files_lib.read_json(kept / "metrics.json")["starting_weights"]["kept"] is True
    best = keras.models.load_model(kept / "checkpoints" / "best.keras", compile=False)
    for ours, theirs in zip(best.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    dae.build_model(dae.Config(**FAST, seed=3), SPEC).save_weights(tmp_path / "raw.weights.h5")
    trained = _starting_run(tmp_path, str(tmp_path / "raw.weights.h5"), 3e-3)
    assert files_lib.read_json(trained / "metrics.json")["starting_weights"]["kept"] is False


def test_self_ensemble_averages_the_eight_rotations_and_flips():
    model = dae.build_model(dae.Config(**FAST), SPEC)
    images = np.random.default_rng(0).random((2, 24, 40, 1), dtype="float32")
    eight = []
    for flip in (False, True):
        x = images[:, :, ::-1] if flip else images
        for k in range(4):
            y = np.rot90(model.predict(np.rot90(x, k, axes=(1, 2)).copy(), verbose=0), -k, (1, 2))
            eight.append(y[:, :, ::-1] if flip else y)
    want = np.clip(np.mean(eight, axis=0), 0, 1)
    got = dae.denoised(model, images, {"self_ensemble": True}).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = dae.denoised(model, images, {"self_ensemble": False}).numpy()
    np.testing.assert_allclose(plain, np.clip(model.predict(images, verbose=0), 0, 1), atol=1e-6)


def test_self_ensemble_auto_is_decided_on_validation(trained_run):
    spec = files_lib.read_json(trained_run / "spec.json")
    scores = spec["self_ensemble_val_psnr"]
    assert spec["self_ensemble"] is (scores["on"] > scores["off"])
    manifest = files_lib.read_json(trained_run / "export" / "manifest.json")
    assert manifest["self_ensemble"] is spec["self_ensemble"]
