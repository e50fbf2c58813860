"""What `deterministic=true` costs, and whether it makes runs repeat exactly.

For each template's default data, trains a fixed number of epochs (no early stopping, one
model, no baseline) with op determinism off, then on, then on again, through the same code path
as `ktemplate train`, and prints fit seconds per epoch, their ratio (on / off), and whether
the two deterministic runs ended with bit-identical weights.

    python benchmarks/determinism.py
    python benchmarks/determinism.py --templates image_cnn --epochs 10
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ktemplate import (  # noqa: E402
    files,
    run,
    templates,  # noqa: E402
)

FIXED = {"early_stopping_patience": 0, "members": 1, "baseline": False}
EPOCHS = {"image_cnn": 10, "timeseries_lstm": 10, "text_transformer": 3, "denoising_autoencoder": 2}


def fit(template, deterministic: bool, epochs: int, out: str) -> tuple[float, np.ndarray]:
    config = template.Config(**FIXED, epochs=epochs, deterministic=deterministic)
    run_dir = run.train(template, config, output_dir=out, verbose=0)
    seconds = files.read_json(run_dir / "metrics.json")["train_seconds"]
    model = keras.models.load_model(run_dir / "checkpoints" / "best.keras", compile=False)
    return seconds / epochs, np.concatenate([w.numpy().ravel() for w in model.weights])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", nargs="+", default=list(EPOCHS))
    parser.add_argument("--epochs", type=int, help="epochs per run (default: per template)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores\n")
    print("| template | epochs | s/epoch off | s/epoch on | on / off | on twice: same weights |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for name in args.templates:
            template = templates.load(name)
            epochs = args.epochs or EPOCHS[name]
            off, _ = fit(template, False, epochs, out)
            on, first = fit(template, True, epochs, out)
            on_again, second = fit(template, True, epochs, out)
            on = min(on, on_again)
            same = "yes" if np.array_equal(first, second) else "NO"
            print(f"| {name} | {epochs} | {off:.2f} | {on:.2f} | {on / off:.2f} | {same} |")


if __name__ == "__main__":
    main()
