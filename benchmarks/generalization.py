"""Every template's defaults on real data sets other than its default, next to its baseline.

Each data set is real and obtainable offline: bundled in an installed package (scikit-learn,
scikit-image, statsmodels), in the vaderSentiment archive the text template already uses, or
in a Debian package (`fortunes`, for the five-class texts; `oxygen-icon-theme`, for the icons;
see `debian_data.py`). Each run is
`ktemplate train` with the template's defaults (only the data source and its column names are
set), so `auto` fields resolve from the data as a user's would; the baseline is the one every
run fits (see README, "A classical baseline beside every result"). Prints a Markdown table; the
figures in benchmarks/RESULTS.md come from this script.

    python benchmarks/generalization.py                         # every data set, seed 42
    python benchmarks/generalization.py --only timeseries_lstm  # one template's data sets
    python benchmarks/generalization.py --only elec_equip --seeds 42 43 44

Defaults are chosen on validation splits, never on these test figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import debian_data  # noqa: E402  (benchmarks/, beside this script)
import numpy as np  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import (  # noqa: E402
    files,
    run,
    templates,  # noqa: E402
)

FORTUNE_CLASSES = ("computers", "politics", "science", "food", "love")
# fortunes-de: its categories of 300 to 2,000 texts (held out: never used to choose a default)
FORTUNE_CLASSES_DE = ("unfug", "witze", "linuxtag", "infodrom", "namen", "woerterbuch", "regeln")


# ---------------------------------------------------------------------------------------------
# Data sets: name → (template, description, builder(folder) → {config field: value})
# ---------------------------------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def _patches(image: np.ndarray, size: int, limit: int) -> list[np.ndarray]:
    rows, cols = image.shape[0] // size, image.shape[1] // size
    found = [
        image[r * size : (r + 1) * size, c * size : (c + 1) * size]
        for r in range(rows)
        for c in range(cols)
    ]
    keep = np.random.default_rng(0).permutation(len(found))[:limit]
    return [found[i] for i in sorted(keep)]


def textures(folder: Path) -> dict:
    """scikit-image's brick, grass and gravel photographs cut into 32x32 gray patches."""
    from skimage import data

    for name in ("brick", "grass", "gravel"):
        image = getattr(data, name)()
        for i, patch in enumerate(_patches(image, 32, 256)):
            _write_png(folder / name / f"{i}.png", patch[..., None].astype("uint8"))
    return {"dataset": f"dir:{folder}"}


def photo_patches(folder: Path) -> dict:
    """Which photograph a 32x32 colour patch comes from: five scikit-image/scikit-learn photos."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    sources = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "china": china,
        "flower": flower,
    }
    for name, image in sources.items():
        for i, patch in enumerate(_patches(image, 32, 160)):
            _write_png(folder / name / f"{i}.png", patch.astype("uint8"))
    return {"dataset": f"dir:{folder}", "channels": "3"}


def digits_few(folder: Path) -> dict:
    """300 of scikit-learn's digits (a few hundred training images: the small-data regime)."""
    from ktemplate.pipelines import images

    pixels, labels = images.digits_arrays()
    keep = np.random.default_rng(0).permutation(len(labels))[:300]
    for i in keep:
        _write_png(folder / str(labels[i]) / f"{i}.png", pixels[i])
    return {"dataset": f"dir:{folder}"}


def _csv(path: Path, header: str, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def elec_equip(folder: Path) -> dict:
    """Euro-area electrical equipment orders, monthly 1995-2016 (257 steps, statsmodels)."""
    from statsmodels.datasets import elec_equip as source

    frame = source.load().data
    rows = zip(frame.index.strftime("%Y-%m-%d"), frame.iloc[:, 0], strict=True)
    csv = _csv(folder / "elec_equip.csv", "date,orders", rows)
    return {"dataset": f"csv:{csv}", "time_column": "date", "target_column": "orders"}


def elnino(folder: Path) -> dict:
    """Monthly Nino 1+2 sea surface temperature 1950-2010 (732 steps, statsmodels)."""
    from statsmodels.datasets import elnino as source

    frame = source.load_pandas().data
    rows = [
        (f"{int(year)}-{month:02d}-01", value)
        for year, values in zip(frame["YEAR"], frame.iloc[:, 1:].to_numpy(), strict=True)
        for month, value in enumerate(values, start=1)
    ]
    csv = _csv(folder / "elnino.csv", "month,temperature", rows)
    return {"dataset": f"csv:{csv}", "time_column": "month", "target_column": "temperature"}


def realgdp(folder: Path) -> dict:
    """US real GDP, quarterly 1959-2009 (203 steps, statsmodels macrodata)."""
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    rows = [
        (f"{int(y)}-{3 * int(q) - 2:02d}-01", v)
        for y, q, v in zip(frame["year"], frame["quarter"], frame["realgdp"], strict=True)
    ]
    csv = _csv(folder / "realgdp.csv", "quarter,realgdp", rows)
    return {"dataset": f"csv:{csv}", "time_column": "quarter", "target_column": "realgdp"}


def sunspots(folder: Path) -> dict:
    """Yearly sunspot numbers 1700-2008 (309 steps, statsmodels)."""
    from statsmodels.datasets import sunspots as source

    frame = source.load_pandas().data
    rows = zip((f"{int(y)}-01-01" for y in frame["YEAR"]), frame["SUNACTIVITY"], strict=True)
    csv = _csv(folder / "sunspots.csv", "year,sunspots", rows)
    return {"dataset": f"csv:{csv}", "time_column": "year", "target_column": "sunspots"}


def vader(name: str) -> Callable[[Path], dict]:
    def build(folder: Path) -> dict:
        return {"dataset": name}

    build.__doc__ = f"{name}: rated sentences from the vaderSentiment archive (another domain)"
    return build


def fortunes(folder: Path, language: str = "", classes=FORTUNE_CLASSES) -> dict:
    """Five unbalanced classes of short texts: Debian's fortune cookies by category."""
    source = debian_data.fortunes_dir(language)
    for name in classes:
        texts = (source / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")
        for i, text in enumerate(t.strip() for t in texts):
            if text:
                path = folder / name / f"{i}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text + "\n", encoding="utf-8")
    return {"dataset": f"dir:{folder}"}


def fortunes_de(folder: Path) -> dict:
    """Seven unbalanced classes of German texts: Debian's `fortunes-de` by category (held out)."""
    return fortunes(folder, "de", FORTUNE_CLASSES_DE)


ICON_CONTEXTS = ("actions", "apps", "categories", "devices", "mimetypes", "places", "status")


def icons(folder: Path) -> dict:
    """KDE's Oxygen 32x32 desktop icons by context (seven unbalanced classes, 1,169 PNGs with
    alpha, 33 to 629 a class), the files as the package ships them (`oxygen-icon-theme`)."""
    source = debian_data.oxygen_icons_dir()
    for context in ICON_CONTEXTS:
        (folder / context).mkdir(parents=True)
        for path in sorted((source / context).glob("*.png")):
            if not path.is_symlink():  # aliases of another icon of the folder
                (folder / context / path.name).write_bytes(path.read_bytes())
    return {"dataset": f"dir:{folder}"}


def faces(folder: Path) -> dict:
    """Face or not: scikit-image's 100 LFW faces and 100 non-face patches, 25x25 gray."""
    from skimage import data

    for i, image in enumerate(data.lfw_subset()):
        label = "face" if i < 100 else "other"  # the subset's order (skimage's own examples)
        _write_png(folder / label / f"{i}.png", np.round(image * 255).astype("uint8")[..., None])
    return {"dataset": f"dir:{folder}"}


def lfw_faces(folder: Path) -> dict:
    """200 face photographs of 25x25 pixels (scikit-image's bundled LFW subset)."""
    from skimage import data

    for i, face in enumerate(data.lfw_subset()):
        _write_png(folder / f"{i}.png", np.round(face * 255).astype("uint8")[..., None])
    return {"dataset": f"dir:{folder}"}


def sample_photos(folder: Path) -> dict:
    """scikit-learn's two colour photographs (china, flower): a folder of two images."""
    from sklearn.datasets import load_sample_images

    for name, image in zip(("china", "flower"), load_sample_images().images, strict=True):
        _write_png(folder / f"{name}.png", image)
    return {"dataset": f"dir:{folder}", "channels": "3"}


def skimage_colour(folder: Path) -> dict:
    """scikit-image's colour photographs only (channels=3: a different, smaller image set)."""
    return {"channels": "3"}


DATASETS: dict[str, tuple[str, Callable[[Path], dict]]] = {
    "textures": ("image_cnn", textures),
    "photo_patches": ("image_cnn", photo_patches),
    "digits_300": ("image_cnn", digits_few),
    "icons": ("image_cnn", icons),
    "faces": ("image_cnn", faces),
    "elec_equip": ("timeseries_lstm", elec_equip),
    "elnino": ("timeseries_lstm", elnino),
    "realgdp": ("timeseries_lstm", realgdp),
    "sunspots": ("timeseries_lstm", sunspots),
    "vader_tweets": ("text_transformer", vader("vader_tweets")),
    "vader_amazon": ("text_transformer", vader("vader_amazon")),
    "vader_nyt": ("text_transformer", vader("vader_nyt")),
    "fortunes_5": ("text_transformer", fortunes),
    "fortunes_de": ("text_transformer", fortunes_de),
    "lfw_faces": ("denoising_autoencoder", lfw_faces),
    "sample_photos": ("denoising_autoencoder", sample_photos),
    "skimage_colour": ("denoising_autoencoder", skimage_colour),
}


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


TABLE_HEADER = (
    "| data set | template | seed | size (train/val/test) | metric | template | baseline "
    "| baseline method | difference | verdict | fit s | baseline s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def size_text(spec: dict) -> str:
    sizes = spec["sizes"]
    if "steps" in spec:
        return (
            f"{spec['steps']} steps ({spec.get('frequency', 'none')}); test origins {sizes['test']}"
        )
    return f"{sizes['train']}/{sizes['val']}/{sizes['test']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="data set or template names")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    chosen = [
        name
        for name, (template, _) in DATASETS.items()
        if not args.only or name in args.only or template in args.only
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}; overrides {' '.join(args.set) or 'none'}\n"
    )
    print(TABLE_HEADER, flush=True)
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            template_name, build = DATASETS[name]
            template = templates.load(template_name)
            overrides = build(Path(tmp) / "data" / name)
            overrides.update(config_lib.parse_assignments(args.set))
            for seed in args.seeds:
                config = config_lib.apply_overrides(
                    template.Config(), {**overrides, "seed": str(seed)}, from_text=True
                )
                run_dir = run.train(template, config, output_dir=Path(tmp) / "runs", verbose=0)
                metrics = files.read_json(run_dir / "metrics.json")
                spec = files.read_json(run_dir / "spec.json")
                print(table_row(name, template_name, seed, metrics, spec), flush=True)
                verdicts.append(metrics["baseline"]["comparison"]["verdict"])
    print(
        f"\nbetter {verdicts.count('better')}, level {verdicts.count('level')}, "
        f"worse {verdicts.count('worse')} of {len(verdicts)} runs"
    )


def table_row(name: str, template_name: str, seed: int, metrics: dict, spec: dict) -> str:
    """One Markdown row: the run's figure, its baseline's, the difference and the verdict."""
    block = metrics["baseline"]
    comparison = block["comparison"]
    extra = f" ({comparison['test']} p {comparison['p_value']:.2g}, n {comparison['n']})"
    return (
        f"| {name} | {template_name} | {seed} | {size_text(spec)} | {comparison['metric']} "
        f"| {comparison['model']:.4g} | {comparison['baseline']:.4g} | {block['name']} "
        f"| {comparison['difference']:+.4g}{extra} | {comparison['verdict']} "
        f"| {metrics['train_seconds']:.0f} | {block['seconds']:.0f} |"
    )


if __name__ == "__main__":
    main()
