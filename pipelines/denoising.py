"""Denoising data: clean images from a source, random training patches, synthetic noise.

Every source returns `CleanImages`: lists of clean uint8 images [H, W, C] (each its own size)
for train, validation and test, split by image so that test images are never seen in training.
Noise is synthetic and added on the fly: the model learns noisy → clean.

Sources (the `dataset` config value):
    skimage     real photographs, scans and micrographs bundled with scikit-image; only those in
                `SKIMAGE_SPLITS`, all of which load without a network (several `skimage.data`
                loaders download through pooch and are not used). A fixed split by image.
    dir:PATH    a folder of clean images (PNG/JPEG/BMP/GIF, any sizes, sub-folders included),
                split 70/10/20 by file with a fixed seed. Unreadable files are skipped and
                counted (the run's spec lists them); a folder with no readable image is an error.
    tfds:NAME   the images of a TensorFlow Datasets dataset (mnist, cifar10, ...), at most
                `max_images` per split.

Pipelines:
    train       `patches_per_epoch` random `patch_size` crops per epoch (image chosen uniformly,
                then position), a random flip and rotation by 90°, and fresh noise for every
                patch in every epoch (`tf.data.Dataset.random` re-seeds each epoch).
    validation  non-overlapping tiles of the validation images with noise fixed by `NOISE_SEED`.
    test        whole images, batched by size, with noise fixed by `NOISE_SEED`.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from ktemplate.pipelines.sources import parse_source, tfds_builder, tfds_three_splits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
NOISE_SEED = 20240601  # fixed on purpose: validation/test noise is the same in every run
SPLIT_SEED = 0  # fixed on purpose: dir: splits do not change with the run's seed
MAX_VAL_TILES = 256  # validation tiles kept (evenly spread) so validation stays fast
NOISE_KINDS = ("gaussian", "salt_pepper", "poisson")

# scikit-image's bundled real images that load offline (checked with the network blocked), and
# the split each belongs to. Synthetic images (checkerboard, logo, phantom, binary shapes) are
# left out. With channels=3 only the colour images (`SKIMAGE_COLOR`) are used.
SKIMAGE_SPLITS = {
    "train": (
        "astronaut",
        "brick",
        "coffee",
        "grass",
        "gravel",
        "hubble_deep_field",
        "microaneurysms",
        "retina",
        "stereo_motorcycle",
        "text",
    ),
    "val": ("clock", "moon", "rocket"),
    "test": ("camera", "coins", "page", "cell", "chelsea", "immunohistochemistry"),
}
SKIMAGE_COLOR = frozenset(
    {
        "astronaut",
        "coffee",
        "hubble_deep_field",
        "retina",
        "stereo_motorcycle",
        "rocket",
        "chelsea",
        "immunohistochemistry",
    }
)


@dataclasses.dataclass
class CleanImages:
    train: list[np.ndarray]  # uint8 [H, W, C], sizes may differ
    val: list[np.ndarray]
    test: list[np.ndarray]
    names: dict[str, list[str]]  # split → one name per image
    channels: int
    skipped: list[str]  # files that could not be decoded (dir: only)


@dataclasses.dataclass(frozen=True)
class Noise:
    """Synthetic noise on a 0..1 scale; the noisy image is clipped to 0..1 like a saved image."""

    kind: str = "gaussian"  # gaussian, salt_pepper or poisson
    sigma: float = 0.1  # gaussian standard deviation (the lower end when sigma_max > 0)
    sigma_max: float = 0.0  # > sigma: blind denoising, sigma drawn from [sigma, sigma_max]
    amount: float = 0.05  # salt_pepper: fraction of pixels set to 0 or 1
    peak: float = 30.0  # poisson: photon count of a white pixel (lower is noisier)

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"Unknown noise {self.kind!r}; use one of {', '.join(NOISE_KINDS)}.")
        if not 0.0 < self.sigma <= 1.0:
            raise ValueError(
                f"noise_sigma must be in (0, 1] on a 0..1 pixel scale, got {self.sigma} "
                "(for 0..255 images divide by 255: sigma 25 is 0.098)."
            )
        if self.sigma_max != 0.0 and not self.sigma < self.sigma_max <= 1.0:
            raise ValueError(
                f"noise_sigma_max must be 0 (fixed sigma) or in (noise_sigma, 1] = "
                f"({self.sigma}, 1], got {self.sigma_max}."
            )
        if not 0.0 < self.amount < 1.0:
            raise ValueError(f"noise_amount must be in (0, 1), got {self.amount}.")
        if self.peak <= 0:
            raise ValueError(f"noise_peak must be > 0, got {self.peak}.")

    def describe(self) -> str:
        if self.kind == "gaussian":
            if self.sigma_max:
                return f"gaussian, sigma in [{self.sigma}, {self.sigma_max}]"
            return f"gaussian, sigma {self.sigma}"
        if self.kind == "salt_pepper":
            return f"salt and pepper, amount {self.amount}"
        return f"poisson, peak {self.peak}"


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 image [H, W] or [H, W, C] as [H, W, channels] (gray ↔ RGB, alpha dropped)."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype("uint8") * 255
    elif image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype("uint8")
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.shape[-1] in (2, 4):  # gray + alpha, RGBA
        image = image[..., :-1]
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return tf.image.rgb_to_grayscale(image).numpy()
    return np.repeat(image, 3, axis=-1)


def load_skimage(channels: int) -> CleanImages:
    """scikit-image's bundled real images (`SKIMAGE_SPLITS`), converted to `channels`."""
    import skimage.data

    def load(name: str) -> np.ndarray:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        return to_channels(image, channels)

    names = {
        split: [n for n in found if channels == 1 or n in SKIMAGE_COLOR]
        for split, found in SKIMAGE_SPLITS.items()
    }
    loaded = {split: [load(n) for n in found] for split, found in names.items()}
    return CleanImages(**loaded, names=names, channels=channels, skipped=[])


def _decode_file(path: Path, channels: int) -> np.ndarray | None:
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return None
    return to_channels(image, channels)


def load_directory(path: str | Path, channels: int, patch_size: int = 64) -> CleanImages:
    """Every image under `path`, split 70/10/20 by file (fixed seed); unreadable files skipped.

    With fewer than 3 readable images there is no file for each split, so each image is split
    by region instead (`split_by_region`), with a warning.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no readable image, or one or two images too small to split by region.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Dataset folder not found: {root}. Pass dir:PATH, a folder of clean images."
        )
    found = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    decoded, skipped = [], []
    for file in found:
        image = _decode_file(file, channels)
        if image is None:
            skipped.append(str(file))
        else:
            decoded.append((file.relative_to(root).as_posix(), image))
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s) in {root}: "
            f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}.",
            stacklevel=2,
        )
    if not decoded:
        raise ValueError(
            f"No readable images in {root}: found {len(found)} file(s) with an image extension "
            f"({', '.join(IMAGE_EXTENSIONS)}), {len(skipped)} of them unreadable. Put clean "
            "PNG/JPEG images in the folder (sub-folders are searched too)."
        )
    if len(decoded) < 3:
        warnings.warn(
            f"{root} has {len(decoded)} readable image(s), fewer than one per split: each is "
            "cut by region instead (top rows train, then validation, bottom rows test).",
            stacklevel=2,
        )
        return split_by_region(decoded, channels, patch_size, skipped)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(decoded))
    n_val = max(1, round(0.1 * len(decoded)))
    n_test = max(1, round(0.2 * len(decoded)))
    index = {
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
        "train": np.sort(order[n_val + n_test :]),
    }
    return CleanImages(
        **{split: [decoded[i][1] for i in idx] for split, idx in index.items()},
        names={split: [decoded[i][0] for i in idx] for split, idx in index.items()},
        channels=channels,
        skipped=skipped,
    )


def split_by_region(
    named_images: list[tuple[str, np.ndarray]], channels: int, patch_size: int, skipped: list[str]
) -> CleanImages:
    """Splits each image into horizontal bands: train on top, validation, then test at the
    bottom (the bottom 20% and the 15% above it, each at least `patch_size` rows), so no pixel
    is in two splits.

    Raises:
        ValueError: an image with fewer than 3 x `patch_size` rows.
    """
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    names: dict[str, list] = {"train": [], "val": [], "test": []}
    for name, image in named_images:
        height = image.shape[0]
        n_test = max(patch_size, round(0.2 * height))
        n_val = max(patch_size, round(0.15 * height))
        n_train = height - n_val - n_test
        if n_train < patch_size:
            raise ValueError(
                f"{name} is {height} rows high: too small to cut into train, validation and "
                f"test regions of at least patch_size={patch_size} rows each (needs "
                f"{3 * patch_size}). Add more images to the folder or lower patch_size."
            )
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
        bounds["test"] = (n_train + n_val, height)
        for split, (start, end) in bounds.items():
            parts[split].append(image[start:end])
            names[split].append(f"{name} (rows {start}-{end})")
    return CleanImages(**parts, names=names, channels=channels, skipped=skipped)


def load_tfds(name: str, channels: int, max_images: int, data_dir: str | None = None):
    """The images of TFDS dataset `name`: its own validation/test splits when it has them.

    Raises:
        ValueError: unknown dataset, or one without an image feature.
        DataUnavailableError: the dataset is not prepared and could not be downloaded.
    """
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir)
    features = builder.info.features
    supervised = builder.info.supervised_keys or ("image",)
    image_key = supervised[0] if supervised[0] in features else "image"
    if image_key not in features or not isinstance(features[image_key], tfds.features.Image):
        raise ValueError(
            f"TFDS dataset '{name}' has no image feature to denoise (features: "
            f"{', '.join(features.keys())}). Pick one like mnist or cifar10."
        )
    loaded, names = {}, {}
    for split, tfds_split in tfds_three_splits(builder).items():
        ds = builder.as_dataset(split=tfds_split, shuffle_files=False).take(max_images)
        loaded[split] = [to_channels(ex[image_key], channels) for ex in ds.as_numpy_iterator()]
        names[split] = [f"{tfds_split}#{i}" for i in range(len(loaded[split]))]
    return CleanImages(**loaded, names=names, channels=channels, skipped=[])


def load_clean_images(
    dataset: str, channels: int, patch_size: int, max_images: int = 2000, check_size: bool = True
) -> CleanImages:
    """Dispatches a `dataset` config value to its source and checks the image sizes.

    `patch_size` also sets the smallest region when a folder of one or two images is split by
    region; `check_size=False` leaves the size check to the caller (`check_patch_size`).

    Raises:
        ValueError: unknown source, or a train/validation image smaller than `patch_size`.
    """
    kind, arg = parse_source(dataset, allowed=("skimage", "tfds", "dir"))
    if kind == "skimage":
        clean = load_skimage(channels)
    elif kind == "tfds":
        clean = load_tfds(arg, channels, max_images)
    else:
        clean = load_directory(arg, channels, patch_size)
    for split in ("train", "val", "test"):
        if not getattr(clean, split):
            raise ValueError(f"The {split} split of {dataset} has no images.")
    if check_size:
        check_patch_size(clean, patch_size, dataset)
    return clean


def smallest_side(clean: CleanImages) -> int:
    """The smallest height or width among the train and validation images."""
    return min(min(image.shape[:2]) for image in clean.train + clean.val)


DEFAULT_PATCH_SIZE = 64  # patch_size=auto: this, or less when the images are smaller
MIN_PATCH_SIZE = 16


def auto_patch_size(clean: CleanImages, multiple: int) -> tuple[int, str]:
    """patch_size=auto and why: 64, or the largest multiple of `multiple` (a U-Net's 2**depth)
    that fits the smallest train or validation image (small images such as 25x25 faces still
    train)."""
    side = smallest_side(clean)
    patch = min(DEFAULT_PATCH_SIZE, max(MIN_PATCH_SIZE, side // multiple * multiple))
    if patch == DEFAULT_PATCH_SIZE:
        return patch, f"the default {DEFAULT_PATCH_SIZE}"
    return patch, f"the smallest train/validation image is {side} px (a multiple of {multiple})"


def check_patch_size(
    clean: CleanImages, patch_size: int, dataset: str, multiple: int = 1, smallest: int = 1
) -> None:
    """Raises ValueError naming the train/validation images smaller than `patch_size`, with a
    patch size that fits them all (a multiple of `multiple`, at least `smallest`) when there
    is one."""
    small = [
        f"{name} ({image.shape[0]}x{image.shape[1]})"
        for split in ("train", "val")
        for name, image in zip(clean.names[split], getattr(clean, split), strict=True)
        if min(image.shape[:2]) < patch_size
    ]
    if small:
        fits = smallest_side(clean) // multiple * multiple
        advice = (
            f"Set patch_size={fits} (--set patch_size={fits}: the largest that fits every "
            "image) or remove those images."
            if smallest <= fits < patch_size
            else f"Remove those images (no patch_size of at least {smallest} fits them)."
        )
        raise ValueError(
            f"{len(small)} train/validation image(s) of {dataset} are smaller than patch_size "
            f"{patch_size}: {', '.join(small[:5])}{' ...' if len(small) > 5 else ''}. {advice}"
        )


# ---------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------


def add_noise(clean: tf.Tensor, noise: Noise, seed: tf.Tensor) -> tf.Tensor:
    """Noisy version of a clean float image (any shape) in 0..1, from a stateless [2] seed."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    if noise.kind == "gaussian":
        sigma = noise.sigma
        if noise.sigma_max:
            sigma = tf.random.stateless_uniform([], seeds[0], noise.sigma, noise.sigma_max)
        noisy = clean + sigma * tf.random.stateless_normal(tf.shape(clean), seeds[1])
    elif noise.kind == "salt_pepper":
        hit = tf.random.stateless_uniform(tf.shape(clean), seeds[0]) < noise.amount
        salt = tf.cast(tf.random.stateless_uniform(tf.shape(clean), seeds[1]) < 0.5, clean.dtype)
        noisy = tf.where(hit, salt, clean)
    else:
        counts = tf.random.stateless_poisson(tf.shape(clean), seeds[0], clean * noise.peak)
        noisy = tf.cast(counts, clean.dtype) / noise.peak
    return tf.clip_by_value(noisy, 0.0, 1.0)


def fixed_noisy(images: list[np.ndarray], noise: Noise, stream: int) -> list[np.ndarray]:
    """float32 0..1 noisy copies of uint8 images, noise fixed by `NOISE_SEED` and the index."""
    return [
        add_noise(tf.constant(image, tf.float32) / 255.0, noise, [NOISE_SEED + stream, i]).numpy()
        for i, image in enumerate(images)
    ]


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


def train_patches(
    images: list[np.ndarray],
    patch_size: int,
    patches_per_epoch: int,
    batch_size: int,
    noise: Noise,
    seed: int,
) -> tf.data.Dataset:
    """Batches of (noisy, clean) float32 patches [B, p, p, C]; new crops and noise each epoch."""
    channels = images[0].shape[-1]
    flat = tf.constant(np.concatenate([im.ravel() for im in images]))
    starts = tf.constant(np.cumsum([0] + [im.size for im in images[:-1]]), tf.int64)
    heights = tf.constant([im.shape[0] for im in images], tf.int64)
    widths = tf.constant([im.shape[1] for im in images], tf.int64)
    rows = tf.range(patch_size, dtype=tf.int64)[:, None, None]
    cols = tf.range(patch_size, dtype=tf.int64)[None, :, None]
    chans = tf.range(channels, dtype=tf.int64)[None, None, :]

    def sample(random_value):
        seeds = tf.random.experimental.stateless_split(tf.stack([random_value, seed]), 6)
        i = tf.random.stateless_uniform([], seeds[0], 0, len(images), tf.int64)
        top = tf.random.stateless_uniform([], seeds[1], 0, heights[i] - patch_size + 1, tf.int64)
        left = tf.random.stateless_uniform([], seeds[2], 0, widths[i] - patch_size + 1, tf.int64)
        index = starts[i] + ((top + rows) * widths[i] + left + cols) * channels + chans
        patch = tf.cast(tf.gather(flat, index), tf.float32) / 255.0
        turns = tf.random.stateless_uniform([], seeds[3], 0, 4, tf.int32)
        patch = tf.image.rot90(patch, turns)
        flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
        patch = tf.cond(flip, lambda: tf.reverse(patch, [1]), lambda: patch)
        return add_noise(patch, noise, seeds[5]), patch

    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = ds.take(patches_per_epoch).map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def tiles(images: list[np.ndarray], patch_size: int, max_tiles: int = MAX_VAL_TILES) -> np.ndarray:
    """Non-overlapping `patch_size` tiles of the images, at most `max_tiles` evenly spread."""
    found = [
        image[top : top + patch_size, left : left + patch_size]
        for image in images
        for top in range(0, image.shape[0] - patch_size + 1, patch_size)
        for left in range(0, image.shape[1] - patch_size + 1, patch_size)
    ]
    if len(found) > max_tiles:
        keep = np.linspace(0, len(found) - 1, max_tiles).round().astype(int)
        found = [found[i] for i in keep]
    return np.stack(found)


def validation_tiles(
    images: list[np.ndarray], patch_size: int, batch_size: int, noise: Noise
) -> tf.data.Dataset:
    """Batches of (noisy, clean) validation tiles; the noise is the same in every run."""
    clean = tiles(images, patch_size)
    noisy = np.stack(fixed_noisy(list(clean), noise, stream=0))
    ds = tf.data.Dataset.from_tensor_slices((noisy, clean.astype("float32") / 255.0))
    return ds.cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)


def whole_images(images: list[np.ndarray], batch_size: int, noise: Noise) -> tf.data.Dataset:
    """(noisy, clean) float32 whole images, batched by size, in the order of `images`.

    Images of equal size are batched together (a tfds: test split is fast); the noise is the
    same in every run. Consecutive images share a batch only when they have the same size, so
    the order of `images` is kept.
    """
    noisy = fixed_noisy(images, noise, stream=1)
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and images[groups[-1][0]].shape == image.shape and len(groups[-1]) < batch_size:
            groups[-1].append(i)
        else:
            groups.append([i])
    ds = None
    for group in groups:
        batch = tf.data.Dataset.from_tensors(
            (
                np.stack([noisy[i] for i in group]),
                np.stack([images[i] for i in group]).astype("float32") / 255.0,
            )
        )
        ds = batch if ds is None else ds.concatenate(batch)
    return ds


def uint8_tiles(ds, size: int, channels: int, limit: int | None = None):
    """The (noisy, clean) images of a batched split cut into `size` x `size` tiles (at most
    `limit`): the noisy tiles as uint8 pixels (a converted model's input), the clean ones as
    floats in 0..1."""
    tiles = [np.zeros((0, size, size, channels), np.uint8)]
    cleans = [np.zeros((0, size, size, channels))]
    count = 0
    for noisy, clean in ds.unbatch().as_numpy_iterator() if ds is not None else ():
        for top in range(0, noisy.shape[0] - size + 1, size):
            for left in range(0, noisy.shape[1] - size + 1, size):
                tile = noisy[top : top + size, left : left + size]
                tiles.append(np.clip(np.round(tile * 255.0), 0, 255).astype(np.uint8)[None])
                cleans.append(clean[top : top + size, left : left + size][None])
                count += 1
        if limit is not None and count >= limit:
            break
    return np.concatenate(tiles)[:limit], np.concatenate(cleans)[:limit]


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------

QUALITY_DIGITS = {"psnr": 3, "ssim": 4, "noisy_psnr": 3, "noisy_ssim": 4}  # rounding of scores


def test_quality(ds, denoise_fn, names: list[str], shown: int = 8):
    """PSNR/SSIM per image of `denoise_fn`'s output and of the noisy input over a batched
    (noisy, clean) split: the means as `test_*` metrics, the rows (one per image, named), and up
    to `shown` examples (name, clean, noisy, denoised, row) to plot."""
    from ktemplate.reports import image_quality

    rows, examples = [], []
    for noisy, clean in ds.as_numpy_iterator():
        out = np.asarray(denoise_fn(noisy))
        for i in range(len(noisy)):
            (psnr_out, ssim_out), (psnr_in, ssim_in) = (
                image_quality(clean[i], out[i]),
                image_quality(clean[i], noisy[i]),
            )
            row = {"psnr": psnr_out, "ssim": ssim_out, "noisy_psnr": psnr_in, "noisy_ssim": ssim_in}
            rows.append(
                {"image": names[len(rows)]}
                | {k: round(v, QUALITY_DIGITS[k]) for k, v in row.items()}
            )
            if len(examples) < shown:
                examples.append((rows[-1]["image"], clean[i], noisy[i], out[i], rows[-1]))
    metrics = {
        f"test_{key}": round(float(np.mean([r[key] for r in rows])), n)
        for key, n in QUALITY_DIGITS.items()
    }
    return metrics | {"test_images": len(rows)}, rows, examples


def paired_quality(ds, denoise_fn, method, keep: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM ([n, 2] each) of `denoise_fn`'s output and of `method`'s (one image at a
    time) on the images of a batched (noisy, clean) split whose index is in `keep`."""
    from ktemplate.reports import image_quality

    ours, theirs, index = [], [], 0
    for noisy, clean in ds.as_numpy_iterator():
        out = np.asarray(denoise_fn(noisy))
        for i in range(len(noisy)):
            if index in keep:
                ours.append(image_quality(clean[i], out[i]))
                theirs.append(image_quality(clean[i], method(noisy[i])))
            index += 1
    return np.array(ours).reshape(-1, 2), np.array(theirs).reshape(-1, 2)


def tiles_psnr(cleans: np.ndarray):
    """The score of a converted model's outputs on `uint8_tiles`' tiles: the mean PSNR (dB) of
    the uint8 `denoised` tiles against the clean ones."""

    def psnr(outputs) -> float:
        images = outputs["denoised"].astype(np.float64) / 255.0
        mse = np.mean((images - cleans) ** 2, axis=(1, 2, 3))
        return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))

    return psnr


# ---------------------------------------------------------------------------------------------
# Built-in weights and the self-ensemble
# ---------------------------------------------------------------------------------------------

BUILTIN = "the default U-Net trained on photographs, Gaussian noise sigma 0.01-0.2"
BUILTIN_FILES = {1: "denoising_autoencoder_gray", 3: "denoising_autoencoder_rgb"}  # .weights.h5


def builtin_mismatch(config, architecture: dict) -> str:
    """Why the built-in weights cannot start `config`'s model ("" when they can)."""
    for field, value in architecture.items():
        if getattr(config, field) != value:
            return f"{field} is {getattr(config, field)!r}, not {value!r}"
    return ""


def auto_pretrained(config, architecture: dict) -> tuple[str, str]:
    """pretrained=auto and why: builtin for the built-in architecture and Gaussian noise."""
    why_not = builtin_mismatch(config, architecture) or (
        f"the noise is {config.noise}" if config.noise != "gaussian" else ""
    )
    return ("none", why_not) if why_not else ("builtin", BUILTIN)


EPOCHS_FROM_SCRATCH, EPOCHS_FINE_TUNE = 20, 6  # epochs=auto


def auto_epochs(pretrained: str) -> tuple[int, str]:
    """epochs=auto and why: a fine-tune of pretrained weights needs fewer (on the default
    data 6 epochs scored 30.74 dB against 20 epochs' 30.81, in 4 minutes of the run's 8)."""
    if pretrained == "none":
        return EPOCHS_FROM_SCRATCH, "training from scratch"
    return EPOCHS_FINE_TUNE, f"fine-tuning the {pretrained} weights"


def with_epochs(config, channels: int, architecture: dict):
    """`config` with an unresolved epochs=auto set as `load_data` would (a model built outside a
    run, such as `build_model(Config(), spec)`, still gets a learning-rate schedule)."""
    if config.epochs != "auto":
        return config
    starts = pretrained_file(config, channels, architecture) is not None
    return dataclasses.replace(config, epochs=auto_epochs("builtin" if starts else "none")[0])


def check_pretrained(config, architecture: dict) -> None:
    """Config's `pretrained`: builtin with another architecture, or a missing file, is an error."""
    why_not = builtin_mismatch(config, architecture)
    if config.pretrained == "builtin" and why_not:
        raise ValueError(
            f"Config: pretrained=builtin is {BUILTIN}, and {why_not}: set pretrained=none to "
            "train this model from scratch (or pretrained=auto)."
        )
    path = Path(config.pretrained)
    if config.pretrained not in ("auto", "builtin", "none") and not (
        path.name.endswith(".weights.h5") and path.is_file()
    ):
        raise ValueError(
            f"Config key 'pretrained' is {config.pretrained!r}: give builtin, none, auto or an "
            "existing .weights.h5 file of this model (model.save_weights)."
        )


def pretrained_file(config, channels: int, architecture: dict) -> Path | None:
    """The weights file a model of `config` starts from (None: from scratch); an unresolved
    auto is builtin where the architecture fits."""
    if config.pretrained == "none" or (
        config.pretrained == "auto" and builtin_mismatch(config, architecture)
    ):
        return None
    if config.pretrained not in ("auto", "builtin"):
        return Path(config.pretrained)
    from importlib.resources import files

    name = f"{BUILTIN_FILES[channels]}.weights.h5"
    return Path(str(files("ktemplate.templates") / "weights" / name))


def load_pretrained(model, config, architecture: dict) -> None:
    """Loads the weights `config.pretrained` names into the built `model` (not while a size
    estimate builds it without weights); weights of another architecture are a clear error."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    weights = pretrained_file(config, model.input_shape[-1], architecture)
    if weights is None or in_stateless_scope():
        return
    try:
        model.load_weights(weights)
    except ValueError as e:
        raise ValueError(
            f"pretrained={config.pretrained}: {weights} does not fit this model ({e}). Give "
            "the weights of a model with the same architecture fields, or pretrained=none."
        ) from None


def denoise(model, images, ensemble: bool) -> tf.Tensor:
    """`model` on float32 images [B, H, W, C] in 0..1, clipped to 0..1; with `ensemble`, the
    mean of its outputs over the 8 rotations and flips (each undone)."""
    if not ensemble:
        return tf.clip_by_value(tf.cast(model(images, training=False), tf.float32), 0.0, 1.0)
    outputs = []
    for flip in (False, True):
        x = tf.reverse(images, [2]) if flip else tf.convert_to_tensor(images)
        for k in range(4):
            y = tf.image.rot90(model(tf.image.rot90(x, k), training=False), 4 - k)
            outputs.append(tf.reverse(y, [2]) if flip else y)
    return tf.clip_by_value(tf.cast(tf.add_n(outputs) / 8.0, tf.float32), 0.0, 1.0)


def self_ensemble_psnr(model, val: tf.data.Dataset) -> dict[str, float]:
    """Mean PSNR (dB) over the (noisy, clean) validation tiles, plain ("off") and self-ensembled
    ("on")."""
    scores: dict[str, list[float]] = {"off": [], "on": []}
    for noisy, clean in val:
        for key in scores:
            mse = tf.reduce_mean(tf.square(denoise(model, noisy, key == "on") - clean), [1, 2, 3])
            scores[key] += (10 * np.log10(1 / np.maximum(mse.numpy(), 1e-12))).tolist()
    return {key: round(float(np.mean(found)), 3) for key, found in scores.items()}
