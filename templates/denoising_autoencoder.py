"""Image denoising with a fully convolutional encoder–decoder (a small U-Net).

Task: remove noise from images (microscope, scan or camera pictures), learning noisy → clean
from clean images with synthetic noise added during training.

Data: by default the real photographs, scans and micrographs bundled with scikit-image
(`pipelines.denoising.SKIMAGE_SPLITS`), grayscale, split by image: the test images (camera,
coins, page, cell, chelsea, immunohistochemistry) are never seen in training. Also `dir:PATH`
(clean images of any sizes) and `tfds:NAME`. Training sees random `patch_size` crops, flipped
and rotated, with new noise every epoch: Gaussian (fixed sigma, or a range for blind
denoising), salt-and-pepper or Poisson. Validation and test noise is fixed by a seed.

Model: an encoder–decoder with skip connections (a U-Net), or with `architecture=dncnn` a plain
stack of full-resolution convolutions (DnCNN); with `residual` it predicts the noise and
subtracts it. Fully convolutional: the U-Net pads any image size (reflect) to a multiple of
2**depth inside the model and crops back. The default U-Net starts from weights shipped in
the package (`pretrained`: a blind Gaussian denoiser trained on real photographs, grey and
colour; `benchmarks/build_denoiser.py` rebuilds them), and the run keeps them as they are
unless training on your images beats them on validation. `self_ensemble` averages the outputs
over the 8 rotations and flips of an image where that pays on validation.

Export: `serve` takes uint8 pixels [batch, H, W, C] (any H, W) and returns uint8 `denoised`;
`serve_float` takes float32 in 0..1 and returns float32 in 0..1.

What runs, in order (`ktemplate/lifecycle.py`): load_data (resolves patch_size, pretrained) →
build_model (loads the weights) → fit on random noisy crops → calibrate (self_ensemble) →
evaluate on whole test images → baseline (non-local means, BM3D) → export.

Adapt it: `ktemplate new my_denoiser --from denoising_autoencoder`, then change the noise in
`Config` to match your images (or your data in `load_data`); the rest is shared.

    ktemplate train denoising_autoencoder
    ktemplate train denoising_autoencoder --dataset dir:path/to/clean --set noise_sigma_max=0.2
    ktemplate predict saved_models/denoising_autoencoder/<run-id>/export noisy.png
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import denoising

from ktemplate import baselines, convert, reports, training
from ktemplate.config import (
    Auto,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Resolver,
    TrainingConfig,
)
from ktemplate.contract import Data
from ktemplate.layers import CropLike, PadToMultiple, SSIMLoss, psnr

NAME = "denoising_autoencoder"
TUNE_OBJECTIVE = "val_psnr"  # what `ktemplate tune` optimizes by default

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "skimage"  # skimage (bundled real images, offline), tfds:NAME or dir:PATH
    channels: Literal[1, 3] = 1  # 1 grayscale, 3 RGB (skimage: colour images only)
    max_images: PositiveInt = 2000  # most images per split taken from a tfds: dataset
    patch_size: Annotated[int, Range(16)] | Auto = "auto"  # crops/tiles side; auto: 64 or less
    patches_per_epoch: PositiveInt = 2048  # random crops per training epoch
    epochs: PositiveInt | Auto = "auto"  # at most; auto: 20, or 6 to fine-tune pretrained weights
    batch_size: PositiveInt = 32  # per-replica batch size
    learning_rate: PositiveFloat = 1e-3  # peak learning rate (cosine decay to 1% of it)
    l2: NonNegativeFloat = 0.0  # L2 penalty on kernels (off: denoisers rarely overfit random crops)
    dropout: Fraction = 0.0  # spatial dropout at the bottleneck
    batch_norm: bool = False  # off: moving statistics from short training hurt whole images
    early_stopping_patience: NonNegativeInt = 8  # epochs without val_loss improvement; 0: off
    noise: Literal["gaussian", "salt_pepper", "poisson"] = "gaussian"  # synthetic noise kind
    noise_sigma: float = 0.1  # gaussian sigma on a 0..1 scale (the lower end of a range)
    noise_sigma_max: float = 0.0  # > noise_sigma: blind, sigma drawn in [noise_sigma, this]
    noise_amount: float = 0.05  # salt_pepper: fraction of pixels set to black or white
    noise_peak: float = 30.0  # poisson: photon count of a white pixel (lower is noisier)
    architecture: Literal["unet", "dncnn"] = "unet"  # dncnn: a plain stack of full-size convs
    dncnn_layers: Annotated[int, Range(2)] = 17  # dncnn: Conv2D layers, the output layer included
    depth: PositiveInt = 3  # downsampling steps (2x each); inputs padded to a multiple of 2**depth
    filters: PositiveInt = 16  # filters at full resolution, doubled at each deeper level
    convs_per_level: PositiveInt = 2  # Conv2D layers per level, in the encoder and the decoder
    kernel_size: PositiveInt = 3  # convolution kernel size
    residual: bool = True  # predict the noise and subtract it (residual learning)
    loss: Literal["mse", "mae", "ssim"] = "mse"  # ssim: ssim_weight*(1-SSIM) + rest*MAE
    ssim_weight: Annotated[float, Range(0, 1)] = 0.84  # weight of 1-SSIM in the ssim loss
    pretrained: str = "auto"  # builtin, none, or PATH (.weights.h5); auto: builtin where it fits
    self_ensemble: bool | Auto = "auto"  # mean over 8 rotations/flips; auto: if it pays on val

    def __post_init__(self):
        super().__post_init__()
        denoising.check_pretrained(self, BUILTIN_ARCHITECTURE)
        if self.patches_per_epoch < self.batch_size:
            raise ValueError(
                f"Config key 'patches_per_epoch' ({self.patches_per_epoch}) must be at least "
                f"batch_size ({self.batch_size})."
            )
        try:
            noise_settings(self)
        except ValueError as e:
            raise ValueError(f"Config: {e}") from None


# pretrained=builtin: the default U-Net trained as a blind Gaussian denoiser on real photographs
# (`benchmarks/build_denoiser.py` rebuilds the files and records how they were made).
BUILTIN_ARCHITECTURE = {
    "architecture": "unet", "depth": 3, "filters": 16, "convs_per_level": 2, "kernel_size": 3,
    "residual": True, "batch_norm": False, "activation": "relu",
}  # fmt: skip


def noise_settings(config: Config) -> denoising.Noise:
    """The config's noise fields as a `pipelines.denoising.Noise` (which checks their ranges)."""
    fields = ("noise", "noise_sigma", "noise_sigma_max", "noise_amount", "noise_peak")
    return denoising.Noise(*(getattr(config, f) for f in fields))


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_data(config: Config, batch_size: int) -> Data:
    """Clean images split by image; train patches with fresh noise, fixed-noise val/test."""
    requested = denoising.DEFAULT_PATCH_SIZE if config.patch_size == "auto" else config.patch_size
    clean = denoising.load_clean_images(
        config.dataset, config.channels, requested, config.max_images, check_size=False
    )
    multiple = 2**config.depth if config.architecture == "unet" else 1  # what the model pads to
    auto = Resolver(config)
    if auto.is_auto("patch_size"):
        auto.pick("patch_size", *denoising.auto_patch_size(clean, multiple))
    if auto.is_auto("pretrained"):
        auto.pick("pretrained", *denoising.auto_pretrained(config, BUILTIN_ARCHITECTURE))
    if auto.is_auto("epochs"):
        auto.pick("epochs", *denoising.auto_epochs(auto.config.pretrained))
    config = auto.config
    denoising.check_patch_size(
        clean, config.patch_size, config.dataset, multiple, denoising.MIN_PATCH_SIZE
    )
    noise = noise_settings(config)
    val = denoising.validation_tiles(clean.val, config.patch_size, batch_size, noise)
    spec = {
        "channels": clean.channels,
        "patch_size": config.patch_size,
        "noise": dataclasses.asdict(noise),
        "noise_description": noise.describe(),
        "sizes": {split: len(getattr(clean, split)) for split in ("train", "val", "test")},
        "validation_tiles": int(val.unbatch().reduce(0, lambda n, _: n + 1)),
        "names": clean.names,
        "skipped_files": clean.skipped,
        "dataset": config.dataset,
        **({"pretrained": config.pretrained} if config.pretrained != "none" else {}),
        "self_ensemble": config.self_ensemble,  # auto: `calibrate` decides on validation
        **auto.spec(),
    }
    return Data(
        train=denoising.train_patches(
            clean.train, config.patch_size, config.patches_per_epoch, batch_size, noise, config.seed
        ),
        val=val,
        test=denoising.whole_images(clean.test, batch_size, noise),
        spec=spec,
        splits={"val": val.unbatch()},  # kept for the baseline when a champion merges val
    )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def _conv_block(x, filters: int, config: Config, convs: int | None = None):
    for _ in range(convs or config.convs_per_level):
        x = keras.layers.Conv2D(
            filters,
            config.kernel_size,
            padding="same",
            use_bias=not config.batch_norm,
            kernel_regularizer=training.regularizer(config),
        )(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(config.activation)(x)
    return x


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Builds and compiles the denoiser: float32 noisy [B, H, W, C] in 0..1 → denoised."""
    channels = spec["channels"]
    config = denoising.with_epochs(config, channels, BUILTIN_ARCHITECTURE)
    inputs = keras.Input(shape=(None, None, channels), name="noisy")
    unet = config.architecture == "unet"
    padded = PadToMultiple(2**config.depth if unet else 1, dtype="float32", name="pad")(inputs)
    x = padded
    if not unet:  # Zhang et al. 2017: no pooling, the noise at the end
        x = _conv_block(x, config.filters, config, convs=config.dncnn_layers - 1)
    skips = []
    for level in range(config.depth if unet else 0):
        x = _conv_block(x, config.filters * 2**level, config)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    if skips:
        x = _conv_block(x, config.filters * 2**config.depth, config)
    if config.dropout:
        x = keras.layers.SpatialDropout2D(config.dropout)(x)
    for level in reversed(range(len(skips))):
        x = keras.layers.Conv2DTranspose(config.filters * 2**level, 2, strides=2)(x)
        x = keras.layers.Concatenate()([x, skips[level]])
        x = _conv_block(x, config.filters * 2**level, config)
    # float32 output: exact residual arithmetic under mixed precision.
    x = keras.layers.Conv2D(channels, 1, dtype="float32", name="head")(x)
    if config.residual:
        x = keras.layers.Subtract(dtype="float32", name="subtract_noise")([padded, x])
    outputs = CropLike(dtype="float32", name="denoised")([x, inputs])
    model = keras.Model(inputs, outputs, name=NAME)
    denoising.load_pretrained(model, config, BUILTIN_ARCHITECTURE)
    steps = training.steps_per_epoch(config.patches_per_epoch, config.batch_size)
    model.compile(
        optimizer=training.make_optimizer(config, steps),
        loss=make_loss(config),
        metrics=[psnr],
        jit_compile=config.jit_compile,
    )
    return model


def make_loss(config: Config) -> keras.losses.Loss:
    """The configured training loss on 0..1 images."""
    if config.loss == "ssim":
        return SSIMLoss(config.ssim_weight)
    return {"mse": keras.losses.MeanSquaredError(), "mae": keras.losses.MeanAbsoluteError()}[
        config.loss
    ]


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------


def search_space(hp, config: Config) -> Config:
    """Maps keras-tuner hyperparameters onto `Config` fields; defaults equal `config`'s. A
    model that starts from pretrained weights keeps their architecture."""
    if config.pretrained not in ("none", "auto"):
        return dataclasses.replace(
            config,
            learning_rate=hp.Float(
                "learning_rate", 1e-5, 1e-2, sampling="log", default=config.learning_rate
            ),
            loss=hp.Choice("loss", ["mse", "mae", "ssim"], default=config.loss),
        )
    return dataclasses.replace(
        config,
        architecture=hp.Choice("architecture", ["unet", "dncnn"], default=config.architecture),
        depth=hp.Int("depth", 1, 4, default=config.depth),
        filters=hp.Choice(
            "filters", sorted({16, 24, 32, 48, config.filters}), default=config.filters
        ),
        residual=hp.Boolean("residual", default=config.residual),
        learning_rate=hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=config.learning_rate
        ),
        loss=hp.Choice("loss", ["mse", "mae", "ssim"], default=config.loss),
    )


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """uint8 pixels → uint8 denoised, float32 0..1 → float32 0..1; any height and width."""
    channels = spec["channels"]

    def denoise(images):
        return denoised(model, images, spec)

    def serve(pixels):
        images = denoise(tf.cast(pixels, tf.float32) / 255.0)
        return {"denoised": tf.cast(tf.round(images * 255.0), tf.uint8)}

    def serve_float(images):
        return {"denoised": denoise(images)}

    return {
        "serve": (serve, [tf.TensorSpec([None, None, None, channels], tf.uint8, name="pixels")]),
        "serve_float": (
            serve_float,
            [tf.TensorSpec([None, None, None, channels], tf.float32, name="images")],
        ),
    }


def portable_endpoint(model: keras.Model, spec: dict[str, Any], runtime: str) -> convert.Portable:
    """The LiteRT/ONNX function: the `serve` endpoint's computation (uint8 pixels → uint8
    denoised). ONNX takes any height and width, as the SavedModel does; LiteRT needs static
    shapes, so it takes tiles of the training patch size (denoise a larger image tile by tile)."""
    channels, size = spec["channels"], spec["patch_size"]
    side = size if runtime == "litert" else None

    def denoise(pixels):
        images = tf.cast(pixels, tf.float32) / 255.0
        return {"denoised": tf.cast(tf.round(denoised(model, images, spec) * 255.0), tf.uint8)}

    rng = np.random.default_rng(0)
    shape = (2, size, size, channels) if side else (2, size + 5, size + 3, channels)
    return convert.Portable(
        fn=denoise,
        signature=[tf.TensorSpec([None, side, side, channels], tf.uint8, name="pixels")],
        sample={"pixels": rng.integers(0, 256, shape, dtype=np.uint8)},
        reference="serve",
        notes={
            "input": f"pixels: uint8 [batch, {side or 'H'}, {side or 'W'}, {channels}], 0..255"
            + (f" (tiles of {size}x{size})" if side else ", any H and W"),
            "outputs": "denoised uint8, the input's shape",
        },
    )


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s noisy images cut into patch_size tiles (LiteRT's input; the train split's are
    its random training patches), uint8, scored by the mean PSNR (dB) of the denoised tiles
    against the clean ones."""
    ds = {"train": data.train, "val": data.val, "test": data.test}[split]
    tiles, cleans = denoising.uint8_tiles(ds, spec["patch_size"], spec["channels"], limit)
    return convert.PortableData(
        inputs={"pixels": tiles}, metric=f"{split}_psnr_tiles", score=denoising.tiles_psnr(cleans)
    )


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    channels = spec["channels"]
    return {
        "task": "image_denoising",
        "input": {
            "kind": "noisy_image",
            "channels": channels,
            "serve": f"uint8 pixels [batch, H, W, {channels}], 0..255, any H and W",
            "serve_float": f"float32 [batch, H, W, {channels}] in 0..1, any H and W",
        },
        "outputs": {"denoised": "the denoised images, same shape, dtype and range as the input"},
        "trained_noise": spec["noise_description"],
        "self_ensemble": spec.get("self_ensemble") is True,  # mean over 8 rotations and flips
    }


# ---------------------------------------------------------------------------------------------
# Metrics and plots
# ---------------------------------------------------------------------------------------------


def denoised(model: keras.Model, images, spec: dict[str, Any]) -> tf.Tensor:
    """The model's output on float32 images [B, H, W, C] in 0..1, clipped to 0..1 (averaged
    over the 8 rotations and flips with `spec["self_ensemble"]` true)."""
    return denoising.denoise(model, images, spec.get("self_ensemble") is True)


def calibrate(model: keras.Model, data: Data) -> dict[str, Any]:
    """self_ensemble=auto: on when it raises the validation tiles' mean PSNR (it costs 8 model
    calls per image at serving time)."""
    if data.spec["self_ensemble"] != "auto":
        return {}
    scores = denoising.self_ensemble_psnr(model, data.val)
    return {"self_ensemble": scores["on"] > scores["off"], "self_ensemble_val_psnr": scores}


def evaluate(model: keras.Model, data: Data, out_dir: str | Path | None) -> dict[str, Any]:
    """PSNR/SSIM of the whole test images, denoised and noisy; writes denoising.png."""
    metrics, rows, shown = denoising.test_quality(
        data.test, lambda x: denoised(model, x, data.spec), data.spec["names"]["test"]
    )
    metrics |= {"test_noise": data.spec["noise_description"], "per_image": rows[:50]}
    if out_dir is not None:
        reports.plot_denoising(shown, Path(out_dir) / "denoising.png")
    return metrics


BASELINE_VAL_TILES = 64  # validation tiles (spread over the split) that pick the baseline
BASELINE_TEST_IMAGES = 300  # test images (spread over the split) the baseline is compared on


def baseline(model: keras.Model, data: Data, config: Config) -> dict[str, Any]:
    """Non-local means and, where the `bm3d` package works, BM3D (noise sigma estimated per
    image), the better on validation PSNR, compared with the model on the identical noisy test
    images (Wilcoxon signed-rank over images); see `ktemplate.baselines`."""
    start = time.perf_counter()
    tiles = list(data.splits["val"].as_numpy_iterator())
    tiles = [tiles[i] for i in baselines.spread(len(tiles), BASELINE_VAL_TILES)]
    fitted, method = baselines.classical_denoiser(tiles, reports.image_quality)
    total = data.spec["sizes"]["test"]
    keep = set(baselines.spread(total, BASELINE_TEST_IMAGES).tolist())
    ours, theirs = denoising.paired_quality(
        data.test, lambda x: denoised(model, x, data.spec), method, keep
    )
    if len(theirs) < total:
        fitted["notes"].append(f"compared on {len(theirs)} of the {total} test images (spread)")
    fitted["seconds"] = round(time.perf_counter() - start, 2)
    return baselines.compare(
        fitted,
        {
            "test_psnr": round(float(theirs[:, 0].mean()), 3),
            "test_ssim": round(float(theirs[:, 1].mean()), 4),
            "test_images": len(theirs),
        },
        metric="test_psnr",
        label="test PSNR (dB)",
        model_value=float(ours[:, 0].mean()),
        base_value=float(theirs[:, 0].mean()),
        higher_is_better=True,
        test="Wilcoxon signed-rank",
        p_value=baselines.wilcoxon_p(ours[:, 0], theirs[:, 0]),
        n=len(theirs),
        unit="images",
        config=config,
        tries=[
            baselines.Try("patches_per_epoch", 2 * config.patches_per_epoch, "more patches"),
            baselines.Try("filters", 2 * config.filters, "a wider U-Net"),
            baselines.Try("depth", config.depth + 1, "a deeper U-Net"),
        ],
        number_format=".2f",
    )


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train denoising_autoencoder [options]`, run as
    `python -m ktemplate.templates.denoising_autoencoder [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
