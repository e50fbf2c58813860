"""Rebuilds denoising_autoencoder's built-in weights (`pretrained=builtin`) from real photographs.

    python benchmarks/build_denoiser.py                      # both weight files, then the check
    python benchmarks/build_denoiser.py --channels 1 --epochs 28 --patches 8192
    python benchmarks/build_denoiser.py --evaluate-only      # the held-out check alone
    python benchmarks/build_denoiser.py --compare-architectures 8   # U-Net against DnCNN

The corpus (clean photographs that ship in Debian packages, fetched once with `apt-get
download`, see `debian_data.py`; and scikit-image's train split):

    lomiri-wallpapers-16.04  15 photographs (CC-BY-4.0 / CC-BY-SA-4.0), 16 MB
    ukui-wallpapers          12 photographs and renders (CC-BY-SA-3.0), 21 MB
    scikit-image's train split (`pipelines.denoising.SKIMAGE_SPLITS["train"]`, BSD-3)

Each wallpaper is shrunk (box filter) to at most `LONG_SIDE` px on its long side: a 4000 px
JPEG shrunk four times keeps its detail and loses its sensor noise and compression artefacts,
so the clean targets are clean. Kept out of training: scikit-image's validation and test
images (the template's default data: its validation split decides whether a run's training
beats the weights, its test split is the benchmark). Never used at all, for training or
evaluation: `plasma-workspace-wallpapers` and `mate-backgrounds`. Held out for the check
(`--evaluate-only`): the photographs of `lomiri-wallpapers-20.04` (CC-BY-4.0 / CC-BY-SA-4.0)
and scikit-learn's two sample photographs, in grey and in colour.

Each weight file is the template's own default U-Net (`build_model` with the default
architecture fields), trained with the template itself (`ktemplate.train`, `dir:` the corpus,
`pretrained=none`) as a blind denoiser: Gaussian noise with sigma drawn from
[`SIGMA_MIN`, `SIGMA_MAX`] for every patch. The files land in `templates/weights/` with a JSON
record of how they were made (corpus, noise, epochs, validation PSNR).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debian_data  # noqa: E402

TRAIN_PACKAGES = ("lomiri-wallpapers-16.04", "ukui-wallpapers")
HELD_OUT_PACKAGES = ("lomiri-wallpapers-20.04",)
NEVER = ("plasma-workspace-wallpapers", "mate-backgrounds")  # others evaluate on these
LONG_SIDE = 1024
SIGMA_MIN, SIGMA_MAX = 0.01, 0.2
EPOCHS = {1: 28, 3: 22}  # of `--patches` random patches each: about 33 minutes per file on 2 cores
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "templates" / "weights"
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def shrunk(path: Path) -> np.ndarray:
    """An RGB uint8 image, its long side shrunk to at most LONG_SIDE px (box filter)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = LONG_SIDE / max(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.BOX)
        return np.asarray(image)


def package_photos(package: str) -> list[Path]:
    assert package not in NEVER
    root = debian_data.unpacked(package) / "usr/share/backgrounds"
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS)


def write_corpus(folder: Path) -> list[dict]:
    """The training corpus as PNG files in `folder`; returns what went in."""
    from ktemplate.pipelines.denoising import SKIMAGE_COLOR, SKIMAGE_SPLITS, to_channels
    from PIL import Image
    from skimage import data as skdata

    folder.mkdir(parents=True, exist_ok=True)
    record = []
    for package in TRAIN_PACKAGES:
        for path in package_photos(package):
            image = shrunk(path)
            name = f"{package}__{path.stem}.png"
            Image.fromarray(image).save(folder / name)
            record.append({"file": name, "source": package, "shape": list(image.shape)})
    for name in SKIMAGE_SPLITS["train"]:
        image = getattr(skdata, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        image = to_channels(image, 3 if name in SKIMAGE_COLOR else 1)
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            folder / f"skimage__{name}.png"
        )
        record.append(
            {"file": f"skimage__{name}.png", "source": "scikit-image", "shape": list(image.shape)}
        )
    return record


def held_out() -> dict[str, np.ndarray]:
    """The photographs the weights never saw (RGB uint8)."""
    from sklearn.datasets import load_sample_images

    photos = {}
    for package in HELD_OUT_PACKAGES:
        for path in package_photos(package):
            photos[f"{package}/{path.stem}"] = shrunk(path)
    sample = load_sample_images()
    for name, image in zip(sample.filenames, sample.images, strict=True):
        photos[f"scikit-learn/{Path(name).stem}"] = np.asarray(image)
    return photos


def train_on_corpus(channels, epochs, patches, corpus: Path, seed, output_dir, **overrides):
    """The template trained from scratch on the corpus as a blind Gaussian denoiser."""
    import ktemplate

    return ktemplate.train(
        "denoising_autoencoder",
        dataset=f"dir:{corpus}",
        output_dir=output_dir,
        pretrained="none",
        channels=channels,
        noise_sigma=SIGMA_MIN,
        noise_sigma_max=SIGMA_MAX,
        epochs=epochs,
        patches_per_epoch=patches,
        early_stopping_patience=0,
        baseline=False,
        seed=seed,
        verbose=2,
        **overrides,
    )


def build(channels: int, epochs: int, patches: int, corpus: Path, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = train_on_corpus(channels, epochs, patches, corpus, seed, tmp)
        seconds = time.perf_counter() - start
        target = (
            WEIGHTS_DIR / f"denoising_autoencoder_{'gray' if channels == 1 else 'rgb'}.weights.h5"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".partial.{target.name}")  # Keras wants .weights.h5
        run.model.save_weights(partial)
        os.replace(partial, target)
        val = run.history["train"]["val_psnr"]
        return {
            "file": target.name,
            "channels": channels,
            "epochs": epochs,
            "patches_per_epoch": patches,
            "noise": f"gaussian, sigma in [{SIGMA_MIN}, {SIGMA_MAX}] per patch",
            "best_val_psnr": round(max(val), 3),
            "corpus_test_psnr": run.metrics["test_psnr"],
            "seconds": round(seconds, 1),
            "seed": seed,
            "config": {
                k: run.config[k]
                for k in (
                    "filters",
                    "depth",
                    "convs_per_level",
                    "kernel_size",
                    "residual",
                    "batch_norm",
                    "activation",
                    "learning_rate",
                    "batch_size",
                    "patch_size",
                )
            },
        }


# --compare-architectures: the template's U-Net against DnCNN (Zhang et al., IEEE TIP 2017:
# 17 layers of 64 filters, about 0.56M weights) and a DnCNN of about the U-Net's arithmetic
# per pixel, each trained from scratch for the same time on the grey corpus.
ARCHITECTURES = {
    "U-Net (the default)": {},
    "DnCNN, 17 x 64 (published)": {"architecture": "dncnn", "dncnn_layers": 17, "filters": 64},
    "DnCNN, 17 x 16": {"architecture": "dncnn", "dncnn_layers": 17, "filters": 16},
}
COMPARE_EPOCHS = 4


def seconds_per_patch(overrides: dict) -> float:
    """Training seconds per 64 x 64 patch (batch 32, after two warm-up steps)."""
    import keras
    from ktemplate.templates import denoising_autoencoder as dae

    config = dae.Config(pretrained="none", patch_size=64, **overrides)
    model = dae.build_model(config, {"channels": 1})
    x = np.random.default_rng(0).uniform(size=(32, 64, 64, 1)).astype("float32")
    model.train_on_batch(x, x)
    model.train_on_batch(x, x)
    start, steps = time.perf_counter(), 4
    for _ in range(steps):
        model.train_on_batch(x, x)
    seconds = (time.perf_counter() - start) / (steps * len(x))
    keras.backend.clear_session()
    return seconds


def compare_architectures(corpus: Path, minutes: float, seed: int) -> list[dict]:
    """Each of ARCHITECTURES trained for about `minutes` of training (COMPARE_EPOCHS epochs of
    as many patches as its measured speed allows), scored on the corpus' validation split
    (the choice) and its test split."""
    rows = []
    for name, overrides in ARCHITECTURES.items():
        per_patch = seconds_per_patch(overrides)
        patches = max(64, round(minutes * 60 / COMPARE_EPOCHS / per_patch / 32) * 32)
        with tempfile.TemporaryDirectory() as tmp:  # the run's model loads from its folder
            start = time.perf_counter()
            run = train_on_corpus(
                1, COMPARE_EPOCHS, patches, corpus, seed, tmp, self_ensemble=False, **overrides
            )
            row = {
                "architecture": name,
                "config": overrides,
                "weights": run.model.count_params(),
                "ms_per_patch": round(1000 * per_patch, 3),
                "patches_seen": COMPARE_EPOCHS * patches,
                "train_seconds": run.metrics["train_seconds"],
                "run_seconds": round(time.perf_counter() - start, 1),
                "best_val_psnr": round(max(run.history["train"]["val_psnr"]), 3),
                "corpus_test_psnr": run.metrics["test_psnr"],
                "corpus_test_ssim": run.metrics["test_ssim"],
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


EVAL_SIGMA = 0.1  # issue #31's noise level (25.5 on a 0..255 scale)


def bm3d_at(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (the bm3d package) at a known noise sigma; its RGB variant for colour."""
    import bm3d

    x = noisy.astype("float64")
    if noisy.shape[-1] == 1:
        return np.asarray(bm3d.bm3d(x[..., 0], sigma_psd=sigma))[..., np.newaxis]
    return np.asarray(bm3d.bm3d_rgb(x, sigma_psd=sigma))


def evaluate(image_sets: dict[str, list[tuple[str, np.ndarray]]], estimated=True) -> list[dict]:
    """Per set: mean PSNR/SSIM of the built-in weights as they are (and self-ensembled), of
    BM3D at the true sigma and at the estimated sigma (the in-run baseline's), on the same
    noisy images (Gaussian sigma EVAL_SIGMA, clipped, noise fixed per image)."""
    from ktemplate.pipelines import denoising
    from ktemplate.templates import denoising_autoencoder as dae

    from ktemplate import baselines, reports

    rows = []
    noise = denoising.Noise(sigma=EVAL_SIGMA)
    for set_name, images in image_sets.items():
        channels = images[0][1].shape[-1]
        model = dae.build_model(dae.Config(pretrained="builtin"), {"channels": channels})
        noisy = denoising.fixed_noisy([im for _, im in images], noise, stream=7)
        scores: dict[str, list] = {}
        seconds: dict[str, float] = {}
        methods = {
            "builtin": lambda x, model=model: np.clip(model(x[np.newaxis])[0], 0.0, 1.0),
            "builtin x8": lambda x, model=model: denoising.denoise(model, x[np.newaxis], True)[0],
            "BM3D (true sigma)": lambda x: bm3d_at(x, EVAL_SIGMA),
            "BM3D (estimated sigma)": baselines.bm3d_denoise,
        }
        if not estimated:  # --true-sigma-only: BM3D once per image (colour BM3D is slow)
            del methods["BM3D (estimated sigma)"]
        for (_, clean), x in zip(images, noisy, strict=True):
            for method, fn in methods.items():
                start = time.perf_counter()
                out = np.asarray(fn(x))
                seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - start
                scores.setdefault(method, []).append(reports.image_quality(clean / 255.0, out))
        row = {"set": set_name, "images": len(images), "channels": channels}
        for method, found in scores.items():
            row[method] = {
                "psnr": round(float(np.mean([p for p, _ in found])), 3),
                "ssim": round(float(np.mean([q for _, q in found])), 4),
                "seconds": round(seconds[method], 1),
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def evaluation_sets() -> dict[str, list[tuple[str, np.ndarray]]]:
    """scikit-image's test images (grey, and its colour ones), and the held-out photographs
    in grey and in colour."""
    from ktemplate.pipelines.denoising import load_skimage, to_channels

    sets = {}
    for channels in (1, 3):
        images = load_skimage(channels)
        sets[f"skimage test, {'grey' if channels == 1 else 'colour'}"] = list(
            zip(images.names["test"], images.test, strict=True)
        )
    photos = held_out()
    sets["held-out photographs, grey"] = [(n, to_channels(im, 1)) for n, im in photos.items()]
    sets["held-out photographs, colour"] = list(photos.items())
    return sets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, choices=[1, 3], action="append")
    parser.add_argument("--epochs", type=int, help="default: EPOCHS, per channel count")
    parser.add_argument("--patches", type=int, default=8192, help="random patches per epoch")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument(
        "--compare-architectures",
        type=float,
        metavar="MINUTES",
        help="train the U-Net and two DnCNNs from scratch for MINUTES each (grey), then stop",
    )
    parser.add_argument("--sets", nargs="+", help="evaluate these sets only (default: all)")
    parser.add_argument(
        "--true-sigma-only", action="store_true", help="skip BM3D at the estimated sigma"
    )
    args = parser.parse_args(argv)
    record_path = WEIGHTS_DIR / "denoising_autoencoder.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if not args.evaluate_only:
        corpus = debian_data.cache().parent / "denoiser_corpus"
        if corpus.exists():
            shutil.rmtree(corpus)
        record["corpus"] = write_corpus(corpus)
    if args.compare_architectures:
        rows = compare_architectures(corpus, args.compare_architectures, args.seed)
        chosen = max(rows, key=lambda row: row["best_val_psnr"])["architecture"]
        print(f"chosen on the corpus' validation PSNR: {chosen}", flush=True)
        record["architectures"] = {
            "protocol": f"grey corpus, from scratch, {COMPARE_EPOCHS} epochs of as many "
            f"patches as {args.compare_architectures:g} minutes of training allow",
            "rows": rows,
            "chosen": chosen,
        }
        tmp = record_path.with_suffix(".partial")
        tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
        os.replace(tmp, record_path)
        return 0
    if not args.evaluate_only:
        record["corpus_notes"] = (
            f"wallpapers shrunk to at most {LONG_SIDE} px on the long side (box filter); "
            f"never used: {', '.join(NEVER)}"
        )
        for channels in args.channels or [1, 3]:
            epochs = args.epochs or EPOCHS[channels]
            built = build(channels, epochs, args.patches, corpus, args.seed)
            print(json.dumps(built), flush=True)
            record.setdefault("weights", {})[str(channels)] = built
            tmp = record_path.with_suffix(".partial")
            tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
            os.replace(tmp, record_path)
    sets = evaluation_sets()
    chosen = {name: sets[name] for name in args.sets or sets}
    rows = {row["set"]: row for row in record.get("evaluation", [])}
    for row in evaluate(chosen, estimated=not args.true_sigma_only):
        rows[row["set"]] = row
    record["evaluation"] = list(rows.values())
    record["evaluation_noise"] = f"gaussian sigma {EVAL_SIGMA}, clipped to 0..1"
    tmp = record_path.with_suffix(".partial")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, record_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
