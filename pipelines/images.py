"""Image data: sources, train-split statistics, augmentation and the tf.data input pipeline.

Every source returns `ImageSplits`: unbatched `tf.data` datasets of `(uint8 image [H, W, C],
int64 label)` for train, validation and test, plus class names. The pipeline then caches,
shuffles (train only), batches, augments (train only) and prefetches.

Sources (the `dataset` config value):
    digits      scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, 10 classes,
                a fixed stratified split. Pixel values 0..16 are rescaled to 0..255 uint8.
    tfds:NAME   a TensorFlow Datasets image classification dataset (mnist, cifar10, ...).
    dir:PATH    a folder with one sub-folder of images per class.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import splits as splits_lib
from ktemplate.pipelines.sources import (
    parse_source,
    tfds_builder,
    tfds_split_size,
    tfds_three_splits,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test


@dataclasses.dataclass
class ImageSplits(splits_lib.NamedSplits):
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    class_names: list[str]
    image_shape: tuple[int, int, int]
    sizes: dict[str, int]
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # what decoding found


def _from_arrays(images: np.ndarray, labels: np.ndarray, index: dict[str, np.ndarray]) -> dict:
    return {
        split: tf.data.Dataset.from_tensor_slices((images[idx], labels[idx].astype("int64")))
        for split, idx in index.items()
    }


def load_digits() -> ImageSplits:
    """scikit-learn's handwritten digits with a fixed stratified 70/10/20 split."""
    images, labels = digits_arrays()
    index = splits_lib.stratified_split(labels, SPLIT_FRACTIONS)
    ds = _from_arrays(images, labels, index)
    return ImageSplits(
        ds["train"],
        ds["val"],
        ds["test"],
        class_names=[str(d) for d in range(10)],
        image_shape=(8, 8, 1),
        sizes={split: len(idx) for split, idx in index.items()},
    )


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits as uint8 images [1797, 8, 8, 1] on a 0..255 scale, and their labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype("uint8")[..., np.newaxis]
    return images, digits.target.astype("int64")


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(
        p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


BACKGROUND = 255  # transparent pixels are composited onto white


def _rgb_and_alpha(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded image bytes → uint8 RGB [height, width, 3] and alpha [height, width] (255 where
    the image has none). JPEGs go through libjpeg, which turns CMYK (and gray) into RGB."""
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")

    def jpeg():
        rgb = tf.io.decode_jpeg(data, channels=3)
        return rgb, tf.fill(tf.shape(rgb)[:-1], tf.constant(255, tf.uint8))

    def other():
        image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
        count = tf.shape(image)[-1]
        opaque = tf.fill(tf.concat([tf.shape(image)[:-1], [1]], 0), tf.constant(255, tf.uint8))
        padded = tf.concat([image, opaque], axis=-1)  # a last channel of 255: no alpha
        rgb = tf.gather(padded, tf.where(count >= 3, [0, 1, 2], [0, 0, 0]), axis=-1)
        alpha = tf.gather(padded, tf.where(tf.equal(count % 2, 0), count - 1, count), axis=-1)
        return rgb, alpha

    rgb, alpha = tf.cond(is_jpeg, jpeg, other)
    return tf.ensure_shape(rgb, [None, None, 3]), alpha


def _composited(rgb: tf.Tensor, alpha: tf.Tensor, channels: int) -> tf.Tensor:
    weight = tf.cast(alpha, tf.float32)[..., tf.newaxis] / 255.0
    image = tf.cast(rgb, tf.float32) * weight + BACKGROUND * (1.0 - weight)
    if channels == 1:
        image = tf.image.rgb_to_grayscale(tf.round(image))
    return tf.cast(tf.round(image), tf.uint8)


def decode_composited(data: tf.Tensor, channels: int) -> tf.Tensor:
    """Encoded image bytes (PNG, JPEG, BMP, GIF; gray, gray+alpha, palette, RGB, RGBA, 16-bit,
    CMYK JPEG) → uint8 [height, width, channels]: alpha is composited onto a white background
    (so transparent pixels do not keep whatever colour they hold), then colour is kept
    (`channels=3`) or turned into luminance (`channels=1`). Training and the exports decode
    with this one function."""
    return _composited(*_rgb_and_alpha(data), channels)


CHECK_THREADS = 8  # parallel decodes in the up-front check of a dir: folder


@dataclasses.dataclass
class _Checked:
    shape: tuple[int, int] | None  # None: the file does not decode
    colour: bool = False
    alpha: bool = False


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _inspect(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One file's (height, width), whether it has colour after compositing (its channels differ
    somewhere) and whether any pixel is transparent: one graph call, not a dozen eager ops."""
    rgb, alpha = _rgb_and_alpha(tf.io.read_file(path))
    image = _composited(rgb, alpha, 3)
    colour = tf.reduce_any(tf.reduce_max(image, -1) != tf.reduce_min(image, -1))
    return tf.shape(image)[:2], colour, tf.reduce_any(alpha < 255)


def _check_files(files: list[Path]) -> list[_Checked]:
    """Decodes every file once (nothing is kept): its size, whether it has colour after
    compositing, and whether any pixel is transparent."""

    inspect = _inspect.get_concrete_function()  # traced once, before the threads call it

    def check(file: Path) -> _Checked:
        try:
            shape, colour, alpha = inspect(tf.constant(str(file)))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            return _Checked(None)
        return _Checked(tuple(int(n) for n in shape.numpy()), bool(colour), bool(alpha))

    with concurrent.futures.ThreadPoolExecutor(CHECK_THREADS) as pool:
        return list(pool.map(check, files))


def decode_file(path: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    """One image file → uint8 [height, width, channels] (`decode_composited`), resized
    (bilinear) to `size`."""
    return resize_uint8(decode_composited(tf.io.read_file(path), channels), size)


def load_directory(path: str | Path, image_size: int, channels: int | str) -> ImageSplits:
    """Lists a folder of class sub-folders and splits its files 70/10/20, stratified and fixed.

    Images stream from disk: the splits are datasets of file paths, decoded and resized in
    parallel `tf.data` maps, so a folder far larger than memory trains (`prepare`'s cache is
    optional). Every file is decoded once up front, in parallel and without keeping the
    pixels, so that a corrupt file is reported by name rather than failing mid-epoch. Images
    are resized to `image_size` (square; 0 keeps the first image's size) with bilinear
    interpolation, the same resize the exported model applies.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no images, fewer than two classes, a class too small to split, or an image
            that cannot be decoded.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Dataset folder not found: {root}. Pass dir:PATH, a folder with one sub-folder of "
            "images per class."
        )
    class_files = {
        d.name: _image_files(d)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    empty = [name for name, found in class_files.items() if not found]
    class_files = {name: found for name, found in class_files.items() if found}
    if not class_files:
        raise ValueError(
            f"No images found in {root}: expected one sub-folder per class holding "
            f"{', '.join(IMAGE_EXTENSIONS)} files."
        )
    if empty:
        raise ValueError(
            f"Class folder(s) {', '.join(map(repr, empty))} in {root} hold no "
            f"{', '.join(IMAGE_EXTENSIONS)} files, so the model would not know those classes: "
            "add images to them, or move them out of the dataset folder."
        )
    if len(class_files) < 2:
        only = next(iter(class_files))
        raise ValueError(
            f"{root} has images for one class only ('{only}'); classification needs at least "
            "two class sub-folders."
        )
    files = [f for found in class_files.values() for f in found]
    labels = np.concatenate(
        [np.full(len(found), i, "int64") for i, found in enumerate(class_files.values())]
    )
    checked = _check_files(files)
    corrupt = [str(f) for f, c in zip(files, checked, strict=True) if c.shape is None]
    if corrupt:
        raise ValueError(
            f"Could not decode {len(corrupt)} image file(s) in {root}: {', '.join(corrupt[:5])}"
            f"{' ...' if len(corrupt) > 5 else ''}. Remove or re-save them and try again."
        )
    colour = sum(c.colour for c in checked)
    notes = {
        "channels": f"{colour} of {len(files)} images have colour"
        if colour
        else f"all {len(files)} images are gray",
    }
    if channels == "auto":
        channels = 3 if colour else 1
    alpha = sum(c.alpha for c in checked)
    if alpha:
        notes["alpha"] = (
            f"{alpha} of {len(files)} images have transparency: composited onto white (so are "
            "the images the export decodes)"
        )
    height, width = (image_size, image_size) if image_size else checked[0].shape
    index = splits_lib.stratified_split(labels, SPLIT_FRACTIONS, class_names=list(class_files))
    paths = np.array([str(f) for f in files])

    def split(idx: np.ndarray) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((paths[idx], labels[idx]))
        return ds.map(
            lambda f, y: (decode_file(f, channels, (height, width)), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return ImageSplits(
        split(index["train"]),
        split(index["val"]),
        split(index["test"]),
        class_names=list(class_files),
        image_shape=(height, width, channels),
        sizes={name: len(idx) for name, idx in index.items()},
        notes=notes,
    )


def load_tfds(name: str, image_size: int = 0, data_dir: str | None = None) -> ImageSplits:
    """Loads a TFDS image classification dataset through `tfds.builder`.

    Uses the dataset's own validation split when it has one, otherwise the last 10% of train;
    its test split when it has one, otherwise the last 20% of train.

    Raises:
        ValueError: unknown dataset name, or one without an image and a class label.
        DataUnavailableError: the dataset is not prepared and could not be downloaded.
    """
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir)
    image_key, label_key = builder.info.supervised_keys or (None, None)
    features = builder.info.features
    if image_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        raise ValueError(
            f"TFDS dataset '{name}' is not an image classification dataset (supervised keys "
            f"{builder.info.supervised_keys}). Pick one like mnist, fashion_mnist or cifar10."
        )
    height, width, channels = features[image_key].shape
    if image_size:
        height = width = image_size
    elif height is None or width is None:
        raise ValueError(
            f"TFDS dataset '{name}' has images of varying size; set image_size (e.g. "
            "--set image_size=64) to resize them."
        )
    split_names = tfds_three_splits(builder)
    datasets = {}
    for split, tfds_split in split_names.items():
        ds = builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)
        if image_size:
            ds = ds.map(
                lambda x, y: (resize_uint8(x, (height, width)), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        datasets[split] = ds
    sizes = {split: tfds_split_size(builder, s) for split, s in split_names.items()}
    return ImageSplits(
        datasets["train"],
        datasets["val"],
        datasets["test"],
        class_names=list(features[label_key].names),
        image_shape=(height, width, channels),
        sizes=sizes,
    )


def load_images(dataset: str, image_size: int = 0, channels: int | str = "auto") -> ImageSplits:
    """Dispatches a `dataset` config value to its source.

    Args:
        dataset: "digits", "tfds:NAME" or "dir:PATH".
        image_size: square size to resize to; 0 keeps the source's size.
        channels: channels to decode `dir:` images to (1 grayscale, 3 RGB; auto: 3 when any
            image has colour). The other sources keep their own.
    """
    kind, arg = parse_source(dataset, allowed=("digits", "tfds", "dir"))
    if kind == "digits":
        if image_size not in (0, 8):
            raise ValueError("The digits dataset is 8x8; leave image_size at 0 to use it as is.")
        return load_digits()
    if kind == "tfds":
        return load_tfds(arg, image_size)
    return load_directory(arg, image_size, channels)


count_examples = splits_lib.count_examples


def resolve_cache(auto, sizes: dict[str, int], shape: tuple[int, int, int], limit: int):
    """cache=auto: in memory when every split's decoded uint8 pixels fit in `limit` bytes,
    else none (each epoch decodes the files again, streaming from disk); recorded in the
    `ktemplate.config.Resolver` `auto`, which is returned."""
    total = sum(sizes.values()) * int(np.prod(shape))
    fits = total <= limit
    auto.pick(
        "cache",
        "memory" if fits else "none",
        f"the decoded images take {total / 1024**2:,.0f} MiB "
        f"{'<=' if fits else '>'} {limit / 1024**3:.0f} GiB",
    )
    return auto


def spread_sample(ds: tf.data.Dataset, size: int, limit: int) -> tf.data.Dataset:
    """At most about `limit` of `ds`'s `size` examples, every k-th (all classes of a split
    sorted by class are represented); `ds` itself when it is small enough."""
    stride = -(-size // limit) if size > limit else 1
    return ds.shard(stride, 0) if stride > 1 else ds


def arrays(ds: tf.data.Dataset, limit: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` examples of an unbatched (image, label) dataset as NumPy arrays."""
    pixels, labels = [], []
    for x, y in ds.take(limit).batch(1024).as_numpy_iterator():
        pixels.append(x)
        labels.append(y)
    return np.concatenate(pixels), np.concatenate(labels)


def resize_uint8(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    resized = tf.image.resize(tf.cast(image, tf.float32), size)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


STATS_SAMPLE = 20_000  # channel_stats reads at most about this many train images


def channel_stats(
    train: tf.data.Dataset, channels: int, size: int | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance of the train split's pixels (float64 accumulation), over
    at most about STATS_SAMPLE images spread over the split when its `size` is given."""
    if size is not None:
        train = spread_sample(train, size, STATS_SAMPLE)
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for images, _ in train.batch(1024).as_numpy_iterator():
        pixels = images.reshape(-1, channels).astype("float64")
        total += pixels.sum(axis=0)
        total_sq += (pixels**2).sum(axis=0)
        count += pixels.shape[0]
    if count == 0:
        raise ValueError("The train split is empty; cannot compute normalization statistics.")
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 1e-12)
    return mean.tolist(), variance.tolist()


def augmenter(
    translate: float,
    rotate: float,
    zoom: float,
    contrast: float,
    flip: str,
    fill_mode: str,
    seed: int,
) -> keras.Sequential | None:
    """Random augmentation for train batches of raw 0..255 float pixels; None if all are off."""
    layers = []
    if flip != "none":
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if translate > 0:
        layers.append(
            keras.layers.RandomTranslation(translate, translate, fill_mode=fill_mode, seed=seed)
        )
    if rotate > 0:
        layers.append(keras.layers.RandomRotation(rotate, fill_mode=fill_mode, seed=seed))
    if zoom > 0:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode=fill_mode, seed=seed))
    if contrast > 0:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def prepare(
    ds: tf.data.Dataset,
    batch_size: int,
    training: bool,
    augment: keras.Sequential | None = None,
    seed: int = 0,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool = False,
    cache: str = "memory",
) -> tf.data.Dataset:
    """cache → shuffle (train) → batch → cast to float32 → augment (train) → prefetch.

    `cache`: "memory" keeps the decoded uint8 pixels in memory after the first epoch (4x
    smaller than float32), "none" decodes every epoch again (a streamed `dir:` folder larger
    than memory), any other value is a file prefix to cache to on disk. Augmentation runs on
    whole batches in parallel map calls, after the cache, so every epoch sees new random
    transforms.
    """
    if cache == "memory":
        ds = ds.cache()
    elif cache != "none":
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(cache)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None:
        ds = ds.map(
            lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def prepare_splits(
    splits: dict[str, tf.data.Dataset],
    batch_size: int,
    augment: keras.Sequential | None,
    seed: int,
    cache: str,
) -> dict[str, tf.data.Dataset]:
    """`prepare` for each split of {"train", "val", "test"} (train shuffled and augmented);
    `cache` is memory, none, or a folder that gets a cache file per split."""
    return {
        name: prepare(
            ds,
            batch_size,
            name == "train",
            augment if name == "train" else None,
            seed=seed,
            cache=cache if cache in ("memory", "none") else str(Path(cache) / name),
        )
        for name, ds in splits.items()
    }


def manifest_input(input_shape: tuple[int, int, int] | list[int]) -> dict[str, Any]:
    """The manifest's `input` entry of an export with `serve` (uint8 pixels) and
    `serve_image_bytes` (encoded images) signatures, both resized to `input_shape`."""
    height, width, channels = input_shape
    return {
        "kind": "image",
        "height": height,
        "width": width,
        "channels": channels,
        "serve": f"uint8 pixels [batch, H, W, {channels}], 0..255; other H, W are resized "
        f"(bilinear) to {height}x{width}",
        "serve_image_bytes": "encoded PNG/JPEG/BMP/GIF bytes [batch]",
    }


def decode_images(encoded: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    """Decodes a batch of encoded images (PNG/JPEG/BMP/GIF bytes) to float32 [B, H, W, C].

    Each image may have its own size; all are resized (bilinear) to `size`.
    """

    def decode_one(data):
        image = decode_composited(data, channels)
        return resize_float(tf.cast(image, tf.float32)[tf.newaxis], size)[0]

    return tf.map_fn(
        decode_one, encoded, fn_output_signature=tf.TensorSpec([*size, channels], tf.float32)
    )


def resize_float(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Resizes float [B, H, W, C] images to `size` (bilinear) when their size differs."""
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], tf.constant(size)))
    return tf.cond(same, lambda: images, lambda: tf.image.resize(images, size))
