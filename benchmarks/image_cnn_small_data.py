"""How image_cnn's small-data regime was chosen: variants scored on validation.

Runs `ktemplate train image_cnn` on the generalization suite's small image folders (a few
hundred to about a thousand images each) with each variant below, and prints the validation
accuracy and log loss of the model the run keeps (the checkpoint of lowest val_loss; with
members, their average), its epochs and fit time. Test figures are not printed: the
small-data defaults are chosen on these validation scores, and the test split is left for
benchmarks/generalization.py.

    python benchmarks/image_cnn_small_data.py                    # every variant, seed 42
    python benchmarks/image_cnn_small_data.py --seeds 42 43 44 --only batch_norm=false
    python benchmarks/image_cnn_small_data.py --only "members=1" "members=2" --datasets icons
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import generalization  # noqa: E402
import numpy as np  # noqa: E402
from ktemplate.pipelines import images  # noqa: E402
from ktemplate.templates import image_cnn  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import files, run  # noqa: E402

DATASETS = ("textures", "photo_patches", "digits_300", "icons", "faces")
# Fixed settings (not "auto") so that each row measures the same model whatever the defaults.
# The regularization rows (one model each, as the default then was) chose batch_norm=auto; the
# members/epochs rows weigh a second model against a longer first one; the class_weight rows
# weigh balanced class weights against none (on icons, the one unbalanced folder).
VARIANTS = {
    "dropout=0.2 l2=1e-4 (before)": "dropout=0.2 l2=0.0001 batch_norm=true members=1",
    "dropout=0.4": "dropout=0.4 l2=0.0001 batch_norm=true members=1",
    "l2=1e-3": "dropout=0.2 l2=0.001 batch_norm=true members=1",
    "dropout=0.4 l2=1e-3": "dropout=0.4 l2=0.001 batch_norm=true members=1",
    "filters=16 dense=64": "dropout=0.2 l2=0.0001 batch_norm=true filters=16 dense_units=64 "
    "members=1",
    "batch_norm=false": "dropout=0.2 l2=0.0001 batch_norm=false members=1",
    "members=2": "members=2",
    "members=1": "members=1",
    "members=2 epochs=30": "members=2 epochs=30",
    "members=1 epochs=30": "members=1 epochs=30",
    "class_weight=none": "class_weight=none",
    "class_weight=balanced": "class_weight=balanced",
    "defaults": "",
    "augment=false": "augment=false",
    "flip=horizontal": "flip=horizontal",
    "conv_blocks=3": "conv_blocks=3",
}


def kept_val(run_dir: Path, config) -> tuple[float, float, str]:
    """Validation accuracy and log loss of the model the run keeps, and its epochs."""
    model = run.load_best_model(run_dir)
    data = run.load_data(image_cnn, config)  # the same fixed split
    pixels, labels = images.arrays(data.val.unbatch(), limit=-1)
    probabilities = np.clip(model.predict(pixels, verbose=0).astype("float64"), 1e-12, 1)
    accuracy = float(np.mean(probabilities.argmax(axis=-1) == labels))
    loss = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))
    epochs = [  # rows of each member's history, less the header
        len(history.read_text().splitlines()) - 1
        for history in sorted(run_dir.glob("**/history_train.csv"))
    ]
    return accuracy, loss, ", ".join(map(str, epochs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--only", nargs="+", help="variant names (default: all)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores\n")
    print("| variant | data set | seed | val accuracy | val loss | epochs | fit s |")
    print("|---|---|---|---|---|---|---|", flush=True)
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for name in args.datasets:
            _, build = generalization.DATASETS[name]
            folders[name] = build(Path(tmp) / "data" / name)
        for variant, assignments in variants.items():
            for name in args.datasets:
                for seed in args.seeds:
                    overrides = {
                        **folders[name],
                        **config_lib.parse_assignments(assignments.split()),
                        **config_lib.parse_assignments(args.set),
                        "seed": str(seed),
                        "baseline": "false",
                    }
                    config = config_lib.apply_overrides(
                        image_cnn.Config(), overrides, from_text=True
                    )
                    run_dir = run.train(image_cnn, config, output_dir=Path(tmp) / "runs", verbose=0)
                    accuracy, loss, epochs = kept_val(run_dir, config)
                    seconds = files.read_json(run_dir / "metrics.json")["train_seconds"]
                    scores[variant].append((accuracy, loss))
                    print(
                        f"| {variant} | {name} | {seed} | {accuracy:.4f} | {loss:.4f} "
                        f"| {epochs} | {seconds:.0f} |",
                        flush=True,
                    )
    print("\n| variant | mean val accuracy | mean val loss |")
    print("|---|---|---|")
    for variant, values in scores.items():
        accuracy, loss = np.mean(values, axis=0)
        print(f"| {variant} | {accuracy:.4f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
