"""How image_cnn's small-data regime was chosen: regularization variants, scored on validation.

Runs `ktemplate train image_cnn` on the generalization suite's three small image folders (a few
hundred training images each) with the default config and with each variant below, and prints
the validation accuracy and loss of the checkpoint the run keeps (the epoch of lowest
val_loss). Test figures are not printed: the small-data defaults are chosen on these
validation scores, and the test split is left for benchmarks/generalization.py.

    python benchmarks/image_cnn_small_data.py                    # every variant, seed 42
    python benchmarks/image_cnn_small_data.py --seeds 42 43 44 --only batch_norm=false
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import generalization  # noqa: E402
import numpy as np  # noqa: E402
from ktemplate.templates import image_cnn  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import files, run  # noqa: E402

DATASETS = ("textures", "photo_patches", "digits_300")
# Fixed settings (not "auto") so that each row measures the same model whatever the defaults.
VARIANTS = {
    "dropout=0.2 l2=1e-4 (before)": "dropout=0.2 l2=0.0001 batch_norm=true",
    "dropout=0.4": "dropout=0.4 l2=0.0001 batch_norm=true",
    "l2=1e-3": "dropout=0.2 l2=0.001 batch_norm=true",
    "dropout=0.4 l2=1e-3": "dropout=0.4 l2=0.001 batch_norm=true",
    "filters=16 dense=64": "dropout=0.2 l2=0.0001 batch_norm=true filters=16 dense_units=64",
    "batch_norm=false": "dropout=0.2 l2=0.0001 batch_norm=false",
}


def best_val(run_dir: Path) -> tuple[float, float, int]:
    """val_accuracy and val_loss at the epoch of lowest val_loss (the kept checkpoint)."""
    with open(run_dir / "history_train.csv") as f:
        rows = list(csv.DictReader(f))
    best = min(rows, key=lambda row: float(row["val_loss"]))
    return float(best["val_accuracy"]), float(best["val_loss"]), len(rows)


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
                    accuracy, loss, epochs = best_val(run_dir)
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
