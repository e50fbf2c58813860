"""image_cnn on the default digits data against scikit-learn's SVC(gamma=0.001) baseline.

Trains the default config (through the same code path as `ktemplate train image_cnn`) for each
seed, and fits the classical baseline on the identical train split in the same run. Prints a
Markdown table; the figures in benchmarks/RESULTS.md come from this script.

    python benchmarks/image_cnn_digits.py --seeds 42 43 44
    python benchmarks/image_cnn_digits.py --seeds 42 --set deterministic=false  # a variant

"val accuracy" is the run's model (the checkpoint kept at the lowest val_loss; for an ensemble,
the members' average) on the validation split.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from ktemplate.pipelines import images, splits  # noqa: E402
from ktemplate.templates import image_cnn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import files, run  # noqa: E402


def svc_baseline() -> tuple[float, float]:
    """SVC(gamma=0.001) on the raw 0..16 digit features of the template's train/test split."""
    digits = load_digits()
    index = splits.stratified_split(digits.target, images.SPLIT_FRACTIONS)
    x = digits.images.reshape(len(digits.images), -1)
    start = time.perf_counter()
    svc = SVC(gamma=0.001).fit(x[index["train"]], digits.target[index["train"]])
    seconds = time.perf_counter() - start
    accuracy = float((svc.predict(x[index["test"]]) == digits.target[index["test"]]).mean())
    return accuracy, seconds


def validation(run_dir, config) -> tuple[float, float]:
    """Accuracy and log loss of the run's model (for an ensemble, the members' average) on
    the validation split."""
    model = run.load_best_model(run_dir)
    data = run.load_data(image_cnn, config)
    labels = np.concatenate([y.numpy() for _, y in data.val])
    probabilities = model.predict(data.val.map(lambda x, y: x), verbose=0)
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    picked = probabilities[np.arange(len(labels)), labels]
    return accuracy, float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def run_seeds(seeds: list[int], overrides: dict[str, str]) -> tuple[list[tuple], int]:
    """Trains the default config (with `overrides`) once per seed; returns one row per seed,
    (seed, val accuracy, val log loss, test accuracy, errors, epochs, fit s, run s), and the
    test size."""
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for seed in seeds:
            start = time.perf_counter()
            config = config_lib.apply_overrides(
                image_cnn.Config(seed=seed), overrides, from_text=True
            )
            run_dir = run.train(image_cnn, config, output_dir=out, verbose=0)
            wall = time.perf_counter() - start
            metrics = files.read_json(run_dir / "metrics.json")
            rows.append(
                (
                    seed,
                    *validation(run_dir, config),
                    metrics["test_accuracy"],
                    metrics["test_errors"],
                    metrics["epochs"]["train"],
                    metrics["train_seconds"],
                    wall,
                )
            )
    return rows, metrics["test_examples"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config field"
    )
    args = parser.parse_args()
    overrides = config_lib.parse_assignments(args.set)

    svc_accuracy, svc_seconds = svc_baseline()
    rows, test_examples = run_seeds(args.seeds, overrides)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}; overrides {' '.join(args.set) or 'none'}"
    )
    print(f"test examples: {test_examples}\n")
    print(
        "| seed | val accuracy | val log loss | CNN test accuracy | errors | epochs | fit s "
        "| run s (fit+eval+export) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed, val, val_loss, acc, errors, epochs, fit_s, wall in rows:
        print(
            f"| {seed} | {val:.4f} | {val_loss:.4f} | {acc:.4f} | {errors} | {epochs} "
            f"| {fit_s:.1f} | {wall:.1f} |"
        )
    accuracies = np.array([r[3] for r in rows])
    print(
        f"\nmean val accuracy {np.mean([r[1] for r in rows]):.4f}, "
        f"mean val log loss {np.mean([r[2] for r in rows]):.4f}"
    )
    print(
        f"\nCNN mean test accuracy {accuracies.mean():.4f} (min {accuracies.min():.4f}); "
        f"SVC(gamma=0.001) {svc_accuracy:.4f} (fit {svc_seconds:.2f} s)"
    )
    print(
        f"CNN - SVC accuracy: {accuracies.mean() - svc_accuracy:+.4f}; "
        f"max fit time {max(r[6] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
