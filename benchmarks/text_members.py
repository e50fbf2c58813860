"""How many text_transformer members pay: the validation accuracy and loss of the average of a
finished run's first k members, k = 1..members.

    ktemplate train text_transformer --dataset vader_amazon --set deep=transformer \
        --set wide=word_char --set members=5 --run-dir runs/amazon_5
    python benchmarks/text_members.py runs/amazon_5

The run's config and data are rebuilt from its folder (same split); each member's best
checkpoint (`members/<i>/checkpoints/best.keras`) scores the validation texts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ktemplate.templates import text_transformer  # noqa: E402

from ktemplate import files, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run with members > 1")
    args = parser.parse_args()
    saved = files.read_json(args.run_dir / "config.json")
    fields = text_transformer.Config.__dataclass_fields__
    config = text_transformer.Config(**{k: v for k, v in saved.items() if k in fields})
    if not (args.run_dir / "members").is_dir():
        raise SystemExit(f"{args.run_dir} has no members/ folder: train with members > 1.")
    data = run.run_data(text_transformer, config, tf.distribute.get_strategy())
    labels = np.concatenate([y.numpy() for _, y in data.val])
    probabilities = []
    print("| members averaged | val accuracy | val loss | the last member alone |")
    print("|---|---|---|---|")
    for i in range(config.members):
        path = args.run_dir / "members" / str(i) / "checkpoints" / "best.keras"
        model = keras.models.load_model(path, compile=False)
        probabilities.append(model.predict(data.val, verbose=0).astype("float64"))
        mean = np.mean(probabilities, axis=0)
        accuracy = float((mean.argmax(1) == labels).mean())
        loss = float(-np.log(mean[np.arange(len(labels)), labels] + 1e-12).mean())
        alone = float((probabilities[-1].argmax(1) == labels).mean())
        print(f"| {i + 1} | {accuracy:.4f} | {loss:.4f} | {alone:.4f} |", flush=True)


if __name__ == "__main__":
    main()
