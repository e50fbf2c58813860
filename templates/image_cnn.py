"""Image classification with a small CNN, or a keras.applications backbone fine-tuned.

Data: by default scikit-learn's bundled handwritten digits (1,797 real 8x8 grayscale images,
10 classes) with a fixed stratified 70/10/20 split. Also `tfds:NAME` (mnist, cifar10, ...) and
`dir:PATH` (one sub-folder of images per class; colour, alpha, palette and 16-bit images are
decoded as `pipelines/images.py` says, and `channels=auto` keeps colour when there is some).

Model: normalization with train-split statistics as the first layer (the model and its export
take raw pixels) → convolutional blocks (Conv2D → BatchNorm → activation, pooling) → dropout,
L2 and a dense head. Below 5,000 train images two models are averaged (`members=auto`). With
`backbone` set, a keras.applications network is trained frozen, then fine-tuned.

Export: `serve` takes uint8 pixels [batch, H, W, C] (resized to the training size) and
`serve_image_bytes` encoded PNG/JPEG/BMP/GIF bytes [batch]; both return `probabilities`,
`class_id` and `class_name`.

What runs, in order (`ktemplate/lifecycle.py`): load_data (resolves channels, augment,
batch_norm, patience, members, class_weight, cache) → build_model → fit → fine_tune (a
backbone) × members, averaged → evaluate → baseline (pixel logistic regression / SVC) → export.

Adapt it: `ktemplate new my_task --from image_cnn`, then change `Config` defaults, the data
section (`load_data`) and `build_model`; the rest (training, tuning, export) is shared.

    ktemplate train image_cnn
    ktemplate train image_cnn --dataset dir:path/to/folders --set image_size=64
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import images

from ktemplate import baselines, convert, reports, serving, tasks, training
from ktemplate.config import (
    Auto,
    Fraction,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Resolver,
    TrainingConfig,
)
from ktemplate.contract import Data
from ktemplate.layers import applications_backbone

NAME = "image_cnn"
TUNE_OBJECTIVE = "val_accuracy"  # what `ktemplate tune` optimizes by default

Flip = Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
Backbone = Literal[
    "none", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_b0"
]

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "digits"  # digits, tfds:NAME or dir:PATH
    epochs: PositiveInt | Auto = "auto"  # per member; auto: 60, fewer within a compute budget
    batch_size: PositiveInt = 32  # per-replica batch size
    learning_rate: PositiveFloat = 3e-3  # peak learning rate (cosine decay to 1% of it)
    early_stopping_patience: NonNegativeInt | Auto = "auto"  # auto: 30, 8 or 4 by train size
    members: PositiveInt | Auto = "auto"  # models averaged; auto: 2 below 5,000 train images
    image_size: NonNegativeInt = 0  # square size images are resized to; 0 keeps the dataset's size
    channels: Literal[1, 3, "auto"] = "auto"  # dir: 1 gray, 3 RGB; auto: 3 if any has colour
    conv_blocks: PositiveInt = 2  # convolutional blocks; each ends with 2x2 pooling
    convs_per_block: PositiveInt = 2  # Conv2D layers per block
    filters: PositiveInt = 32  # filters in the first block, doubled in each further block
    kernel_size: PositiveInt = 3  # convolution kernel size
    pooling: Literal["max", "avg"] = "max"  # pooling at the end of each block
    dense_units: NonNegativeInt = 128  # units of the hidden dense layer; 0 removes it
    augment: bool | Literal["auto"] = "auto"  # train-only augmentation; auto: off (validation)
    batch_norm: bool | Literal["auto"] = "auto"  # auto: off below 10 train steps per epoch
    class_weight: Literal["auto", "none", "balanced"] = "none"  # auto: balanced if unbalanced
    cache: str = "auto"  # decoded images: memory, none, or a folder on disk; auto: memory if small
    translate: Fraction = 0.1  # max random shift, as a fraction of height/width
    rotate: Fraction = 0.04  # max random rotation, as a fraction of a full turn
    zoom: Fraction = 0.1  # max random zoom in/out, as a fraction
    contrast: Fraction = 0.1  # max random contrast change, as a fraction
    flip: Flip = "none"  # random flips; off because digits are not flip-invariant
    fill_mode: Literal["constant", "reflect", "nearest"] = "constant"  # fill of shifted-in pixels
    backbone: Backbone = "none"  # a keras.applications backbone instead of the conv blocks
    backbone_weights: str = "none"  # none, imagenet (downloads) or a path to a .weights.h5 file
    backbone_size: Annotated[int, Range(32)] = 96  # square input size the backbone sees
    fine_tune_epochs: NonNegativeInt = 0  # epochs with the backbone unfrozen after the frozen phase
    fine_tune_lr_factor: PositiveFloat = 0.1  # fine-tuning learning rate = learning_rate * this

    def __post_init__(self):
        super().__post_init__()
        weights = self.backbone_weights
        if weights not in ("none", "imagenet") and not Path(weights).is_file():
            raise ValueError(
                f"Config key 'backbone_weights' is {self.backbone_weights!r}: use none, imagenet "
                "or the path of an existing .weights.h5 file."
            )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


MIN_AUGMENT_SIDE = 16  # augment=true warns below this size (it blurs 8x8 digits)
PATIENCE_BY_TRAIN_SIZE = ((5_000, 30), (50_000, 8))  # (fewer train images than, patience)
LARGE_DATA_PATIENCE = 4  # ... and for larger train splits: an epoch is already many steps
SMALL_DATA_MEMBERS = (5_000, 2)  # members=auto: this many models below this many train images
UNBALANCED_RATIO = 1.5  # class_weight=auto balances when the largest class is this much larger
MIN_BATCH_NORM_STEPS = 10  # batch_norm=auto: on from this many train steps per epoch
MEMORY_CACHE_BYTES = 2 * 1024**3  # cache=auto: in memory when the decoded splits fit in this
BASELINE_IMAGES = {"train": 6_000, "val": 5_000, "test": 10_000}  # most images the baseline reads
AUTO_EPOCHS = (20, 60)  # epochs=auto: at least, at most
EPOCHS_BUDGET_MACS = 1e12  # epochs=auto: forward multiply-adds of all members' epochs (~2 min)


def forward_macs(config: Config, shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one image's forward pass through the conv blocks and hidden layer."""
    (height, width, channels), macs = shape, 0
    for block in range(config.conv_blocks):
        for _ in range(config.convs_per_block):
            filters = config.filters * 2**block
            macs += height * width * config.kernel_size**2 * channels * filters
            channels = filters
        height, width = -(-height // 2), -(-width // 2)  # 2x2 pooling, "same" padding
    return macs + height * width * channels * config.dense_units


def resolve_auto(
    config: Config | Resolver,
    train_size: int,
    shape: tuple[int, int, int],
    batch_size: int | None = None,
) -> Resolver:
    """augment, batch_norm, early_stopping_patience, members and epochs from the image shape
    and the train split's size.

    Augmentation is off: within the epoch budget, every folder tried did better on validation
    without it. A small train split needs many epochs of patience, a large one few. Below
    MIN_BATCH_NORM_STEPS steps an epoch, batch norm's moving statistics trail the weights (on
    300 digits validation accuracy fell from 0.72 to 0.17 while train accuracy was 1.0), so it
    is off. Each member trains as many epochs (within AUTO_EPOCHS) as EPOCHS_BUDGET_MACS allows.
    """
    side = min(shape[:2])
    auto = config if isinstance(config, Resolver) else Resolver(config)
    config = auto.config
    batch_size = batch_size or config.batch_size  # the global batch under a strategy
    steps = training.steps_per_epoch(train_size, batch_size)
    auto.pick(
        "batch_norm",
        steps >= MIN_BATCH_NORM_STEPS,
        f"{train_size} train images are {steps} steps of {batch_size} per epoch "
        f"{'>=' if steps >= MIN_BATCH_NORM_STEPS else '<'} {MIN_BATCH_NORM_STEPS}",
    )
    if config.batch_norm is True and steps < MIN_BATCH_NORM_STEPS:
        auto.warn(
            f"batch_norm=true with {steps} train steps per epoch: its moving statistics lag and "
            "validation accuracy can collapse (300 digits: 0.17); batch_norm=auto turns it off."
        )
    auto.pick("augment", False, "off: the folders tried did better on validation without it")
    patience = next((p for n, p in PATIENCE_BY_TRAIN_SIZE if train_size < n), LARGE_DATA_PATIENCE)
    auto.pick("early_stopping_patience", patience, f"{train_size} train images")
    limit, small_members = SMALL_DATA_MEMBERS
    small = train_size < limit
    auto.pick(
        "members",
        small_members if small else 1,
        f"{train_size} train images {'<' if small else '>='} {limit:,}"
        + (": the average of two models varies less on a small split" if small else ""),
    )
    macs = forward_macs(config, shape) if config.backbone == "none" else None
    cost = macs and auto.config.members * train_size * macs  # a backbone's: unknown
    training.budget_epochs(auto, AUTO_EPOCHS, EPOCHS_BUDGET_MACS, cost)
    if config.augment is True and side < MIN_AUGMENT_SIDE:
        auto.warn(
            f"augment=true on {side} px images: random shifts, rotations and zooms blur such "
            "small images (on the 8x8 digits it costs accuracy); augment=auto turns it off."
        )
    return auto


def load_data(config: Config, batch_size: int) -> Data:
    """Loads the configured source and builds the train/val/test pipelines.

    Normalization statistics come from the train split only; augmentation is applied to the
    train split only.
    """
    splits = images.load_images(config.dataset, config.image_size, config.channels)
    height, width, channels = splits.image_shape
    auto = Resolver(config)
    auto.pick("channels", channels, splits.notes.get("channels", "the source's own"))
    if "alpha" in splits.notes:
        auto.warn(splits.notes["alpha"])
    sizes = splits.counted_sizes()
    mean, variance = images.channel_stats(splits.train, channels, sizes["train"])
    auto = resolve_auto(auto, sizes["train"], (height, width, channels), batch_size)
    images.resolve_cache(auto, sizes, splits.image_shape, MEMORY_CACHE_BYTES)
    class_weight = training.class_weights(splits.train, splits.class_names, auto, UNBALANCED_RATIO)
    config = auto.config
    augment = None
    if config.augment:
        knobs = ("translate", "rotate", "zoom", "contrast", "flip", "fill_mode", "seed")
        augment = images.augmenter(*(getattr(config, k) for k in knobs))
    spec = {
        "input_shape": [height, width, channels],
        "class_names": splits.class_names,
        "mean": mean,
        "variance": variance,
        "sizes": sizes,
        "dataset": config.dataset,
        **auto.spec(),
    }
    return Data(
        **images.prepare_splits(splits.named(), batch_size, augment, config.seed, config.cache),
        spec=spec,
        splits=splits.named(),
        class_weight=class_weight,
    )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def _conv_blocks(x: keras.KerasTensor, config: Config) -> keras.KerasTensor:
    reg = training.regularizer(config)
    pool = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D}[config.pooling]
    for block in range(config.conv_blocks):
        for _ in range(config.convs_per_block):
            x = keras.layers.Conv2D(
                config.filters * 2**block,
                config.kernel_size,
                padding="same",
                use_bias=not config.batch_norm,
                kernel_regularizer=reg,
            )(x)
            if config.batch_norm:
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(config.activation)(x)
        x = pool(pool_size=2, padding="same")(x)
    return keras.layers.Flatten()(x)


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Builds and compiles the classifier; its input is raw pixels as float32 [B, H, W, C]."""
    height, width, channels = spec["input_shape"]
    inputs = keras.Input(shape=(height, width, channels), name="pixels")
    reg = training.regularizer(config)
    if config.backbone == "none":
        x = keras.layers.Normalization(mean=spec["mean"], variance=spec["variance"])(inputs)
        x = _conv_blocks(x, config)
    else:
        weights = None if config.backbone_weights == "none" else config.backbone_weights
        x = applications_backbone(inputs, config.backbone, config.backbone_size, weights)
    if config.dense_units:
        x = keras.layers.Dropout(config.dropout)(x)
        x = keras.layers.Dense(config.dense_units, kernel_regularizer=reg)(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(config.activation)(x)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(len(spec["class_names"]))(x)
    # float32 softmax: stable probabilities under mixed precision.
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=NAME)
    training.compile_classifier(model, config, spec["sizes"]["train"])
    return model


def fine_tune(model: keras.Model, config: Config, spec: dict[str, Any]):
    """Unfreezes the backbone and recompiles at a lower learning rate; None when not used."""
    return training.fine_tune_backbone(model, config, spec["sizes"]["train"])


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------


def search_space(hp, config: Config) -> Config:
    """Maps keras-tuner hyperparameters onto `Config` fields; defaults equal `config`'s."""
    return dataclasses.replace(
        config,
        conv_blocks=hp.Int("conv_blocks", 1, 3, default=config.conv_blocks),
        filters=hp.Choice("filters", [16, 32, 64], default=config.filters),
        dense_units=hp.Choice("dense_units", [0, 64, 128, 256], default=config.dense_units),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=config.dropout),
        l2=hp.Choice("l2", [0.0, 1e-5, 1e-4, 1e-3], default=config.l2),
        learning_rate=hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=config.learning_rate
        ),
        optimizer=hp.Choice("optimizer", ["adam", "adamw", "sgd"], default=config.optimizer),
    )


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """The SavedModel's endpoints: raw uint8 pixels, and encoded image bytes."""
    height, width, channels = spec["input_shape"]
    class_names = tf.constant(spec["class_names"])

    def classify(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return serving.classification_outputs(model(pixels, training=False), class_names)

    def serve(pixels):
        return classify(images.resize_float(tf.cast(pixels, tf.float32), (height, width)))

    def serve_image_bytes(image_bytes):
        return classify(images.decode_images(image_bytes, channels, (height, width)))

    return {
        "serve": (serve, [tf.TensorSpec([None, None, None, channels], tf.uint8, name="pixels")]),
        "serve_image_bytes": (
            serve_image_bytes,
            [tf.TensorSpec([None], tf.string, name="image_bytes")],
        ),
    }


def portable_endpoint(model: keras.Model, spec: dict[str, Any], runtime: str) -> convert.Portable:
    """The LiteRT/ONNX function: uint8 pixels at the training size → probabilities, class_id.
    No resize (it leaves the converters an unknown shape); class names are in the manifest."""
    del runtime  # one function serves both
    height, width, channels = spec["input_shape"]

    def classify(pixels):
        output = model(tf.cast(pixels, tf.float32), training=False)
        return tasks.portable_outputs("classification", output)

    rng = np.random.default_rng(0)
    return convert.Portable(
        fn=classify,
        signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="pixels")],
        sample={"pixels": rng.integers(0, 256, (4, height, width, channels), dtype=np.uint8)},
        reference="serve",
        notes={
            "input": f"pixels: uint8 [batch, {height}, {width}, {channels}], 0..255 (resize to "
            f"{height}x{width} first)",
            "outputs": tasks.PORTABLE_OUTPUTS["classification"],
        },
    )


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s images (at most `limit`) as uint8 pixels at the training size."""
    pixels, labels = convert.examples(data.splits[split], limit)
    pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(-1, *spec["input_shape"])
    return convert.scored({"pixels": pixels}, labels, split)


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": "image_classification",
        "input": images.manifest_input(spec["input_shape"]),
        "outputs": tasks.describe_outputs("classification", spec["class_names"]),
        "class_names": spec["class_names"],
    }


# ---------------------------------------------------------------------------------------------
# Metrics and plots
# ---------------------------------------------------------------------------------------------


def evaluate(model: keras.Model, data: Data, out_dir: str | Path | None) -> dict[str, Any]:
    """Test-split accuracy and per-class metrics; writes confusion_matrix.png and
    predictions.png to `out_dir` when given."""
    pixels, labels = images.arrays(data.test.unbatch(), limit=-1)
    probabilities = model.predict(pixels, verbose=0).astype("float64")
    class_names = data.spec["class_names"]
    metrics = reports.classification_metrics(labels, probabilities, class_names)
    if out_dir is not None:
        out_dir = Path(out_dir)
        reports.plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, out_dir / "confusion_matrix.png"
        )
        reports.plot_image_predictions(
            pixels.astype("uint8"), labels, probabilities, class_names, out_dir / "predictions.png"
        )
    return metrics


def baseline(model: keras.Model, data: Data, config: Config) -> dict[str, Any]:
    """Logistic regression and an RBF SVC on standardized pixels of the same splits (C and gamma
    picked on validation), compared with the model on the test images (McNemar); see
    `ktemplate.baselines`."""
    sizes = data.spec["sizes"]
    arrays = {
        name: images.arrays(images.spread_sample(ds, sizes[name], BASELINE_IMAGES[name]))
        for name, ds in data.splits.items()
    }
    fitted = baselines.pixel_classifier(
        arrays["train"],
        arrays["val"],
        arrays["test"][0],
        seed=config.seed,
        refit=data.val is None,  # a champion refitted on train+validation
        max_train=config.baseline_max_train,
    )
    test_x, test_y = arrays["test"]
    if len(test_y) < sizes["test"]:
        fitted["notes"].append(
            f"compared on {len(test_y)} of the {sizes['test']} test images (spread over the "
            "split), the model and the baseline on the same ones"
        )
    predicted = model.predict(test_x.astype("float32"), verbose=0).argmax(axis=-1)
    return baselines.compare_classification(
        fitted,
        test_y,
        predicted,
        data.spec["class_names"],
        unit="images",
        config=config,
        tries=[
            baselines.Try("augment", "true", "random shifts, rotations and zooms of the images"),
            baselines.Try("members", 2 * config.members, "more models averaged"),
            baselines.Try("backbone", "mobilenet_v3_small", "with backbone_weights=imagenet"),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train image_cnn [options]`, run as
    `python -m ktemplate.templates.image_cnn [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
