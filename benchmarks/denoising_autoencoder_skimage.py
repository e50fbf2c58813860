"""denoising_autoencoder on scikit-image's test images against classical denoisers.

Trains the default config (through the same code path as `ktemplate train denoising_autoencoder`)
and, in the same run, denoises the identical noisy test images (Gaussian sigma 0.1 on a 0..1
scale, noise fixed by `pipelines.denoising.NOISE_SEED`) with scikit-image's
`denoise_tv_chambolle` (weight 0.1) and `denoise_nl_means` (sigma from `estimate_sigma`,
h = 0.8 sigma, 5x5 patches, distance 6, fast mode, as in scikit-image's own example), and with
BM3D (the `bm3d` package) given the true sigma, its strongest setting (the run's own baseline
gives it the sigma estimated per image). Prints a Markdown table; the figures in
benchmarks/RESULTS.md come from this script.

    python benchmarks/denoising_autoencoder_skimage.py [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from ktemplate.pipelines import denoising  # noqa: E402
from ktemplate.templates import denoising_autoencoder as dae  # noqa: E402

from ktemplate import baselines, files, reports, run  # noqa: E402
from ktemplate import config as config_lib  # noqa: E402


def classical_baselines(config: dae.Config) -> dict[str, dict[str, tuple[float, float]]]:
    """PSNR/SSIM per test image for TV (Chambolle) and non-local means, and their seconds."""
    from skimage.restoration import denoise_tv_chambolle

    patch = denoising.DEFAULT_PATCH_SIZE if config.patch_size == "auto" else config.patch_size
    clean = denoising.load_clean_images(config.dataset, config.channels, patch)
    noisy = denoising.fixed_noisy(clean.test, dae.noise_settings(config), stream=1)
    import bm3d

    results: dict[str, dict] = {"tv_chambolle": {}, "nl_means": {}, "bm3d": {}, "seconds": {}}
    seconds = {"tv_chambolle": 0.0, "nl_means": 0.0, "bm3d": 0.0}
    for name, image, noisy_image in zip(clean.names["test"], clean.test, noisy, strict=True):
        reference = image.astype("float64") / 255.0
        # scikit-image takes grayscale as [H, W] (channel_axis=None), colour as [H, W, 3].
        gray = noisy_image.shape[-1] == 1
        x = noisy_image[..., 0].astype("float64") if gray else noisy_image.astype("float64")
        axis = None if gray else -1
        start = time.perf_counter()
        tv = denoise_tv_chambolle(x, weight=0.1, channel_axis=axis)
        seconds["tv_chambolle"] += time.perf_counter() - start
        start = time.perf_counter()
        nlm = baselines.non_local_means(noisy_image)
        seconds["nl_means"] += time.perf_counter() - start
        start = time.perf_counter()
        sigma = config.noise_sigma
        if gray:
            b = np.asarray(bm3d.bm3d(x, sigma_psd=sigma))[..., np.newaxis]
        else:
            b = np.asarray(bm3d.bm3d_rgb(x, sigma_psd=sigma))
        seconds["bm3d"] += time.perf_counter() - start
        results["bm3d"][name] = reports.image_quality(reference, b)
        if gray:
            tv = tv[..., np.newaxis]
        results["tv_chambolle"][name] = reports.image_quality(reference, tv)
        results["nl_means"][name] = reports.image_quality(reference, nlm)
    results["seconds"] = seconds
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = config_lib.apply_overrides(
        dae.Config(), config_lib.parse_assignments(args.set), from_text=True
    )

    baselines = classical_baselines(config)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_dir = run.train(dae, config, output_dir=out, verbose=2)
        wall = time.perf_counter() - start
        metrics = files.read_json(run_dir / "metrics.json")
        spec = files.read_json(run_dir / "spec.json")

    load = os.getloadavg()
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, python "
        f"{platform.python_version()}, load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1/5/15 min)"
    )
    print(f"noise: {metrics['test_noise']}; non-default config: {args.set or 'none'}\n")
    print(
        "| test image | noisy | TV Chambolle | non-local means | BM3D (true sigma) | autoencoder |"
    )
    print("|---|---|---|---|---|---|")
    for row in metrics["per_image"]:
        name = row["image"]
        tv_psnr, tv_ssim = baselines["tv_chambolle"][name]
        nl_psnr, nl_ssim = baselines["nl_means"][name]
        b_psnr, b_ssim = baselines["bm3d"][name]
        print(
            f"| {name} | {row['noisy_psnr']:.2f} / {row['noisy_ssim']:.3f} "
            f"| {tv_psnr:.2f} / {tv_ssim:.3f} | {nl_psnr:.2f} / {nl_ssim:.3f} "
            f"| {b_psnr:.2f} / {b_ssim:.3f} | {row['psnr']:.2f} / {row['ssim']:.3f} |"
        )

    def mean(method: str, k: int) -> float:
        return float(np.mean([v[k] for v in baselines[method].values()]))

    print(
        f"| **mean** | {metrics['test_noisy_psnr']:.2f} / {metrics['test_noisy_ssim']:.3f} "
        f"| {mean('tv_chambolle', 0):.2f} / {mean('tv_chambolle', 1):.3f} "
        f"| {mean('nl_means', 0):.2f} / {mean('nl_means', 1):.3f} "
        f"| {mean('bm3d', 0):.2f} / {mean('bm3d', 1):.3f} "
        f"| {metrics['test_psnr']:.2f} / {metrics['test_ssim']:.3f} |"
    )
    print("\n(PSNR dB / SSIM on whole test images)")
    start = metrics.get("starting_weights")
    if start:
        kept = "kept as they are" if start["kept"] else "improved on by training"
        print(f"\nstarting weights: {start['weights']}, val_loss {start['val_loss']:.6g}, {kept}")
    if "self_ensemble_val_psnr" in spec:
        scores = spec["self_ensemble_val_psnr"]
        print(
            f"self_ensemble: {'on' if spec['self_ensemble'] else 'off'} (validation PSNR "
            f"{scores['off']:.3f} dB plain, {scores['on']:.3f} dB averaged over 8)"
        )
    in_run = metrics.get("baseline", {})
    if in_run.get("summary"):
        print(f"the run's own baseline: {in_run['summary']}")
    print(
        f"\nautoencoder: fit {metrics['train_seconds']:.0f} s over {metrics['epochs']['train']} "
        f"epochs, run {wall:.0f} s (fit + evaluation + baseline + export); TV "
        f"{baselines['seconds']['tv_chambolle']:.1f} s, non-local means "
        f"{baselines['seconds']['nl_means']:.1f} s, BM3D {baselines['seconds']['bm3d']:.1f} s "
        "for all test images"
    )
    gap = metrics["test_psnr"] - mean("bm3d", 0)
    ssim_gap = metrics["test_ssim"] - mean("bm3d", 1)
    met = gap >= 0.2 and ssim_gap >= 0 and wall < 300
    print(
        f"autoencoder - BM3D (true sigma): {gap:+.2f} dB PSNR, {ssim_gap:+.3f} SSIM; target "
        f"(+0.2 dB or more, SSIM no lower, the run under 5 minutes): {'met' if met else 'not met'}"
    )


if __name__ == "__main__":
    main()
