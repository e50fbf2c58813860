"""text_transformer on the default movie-review sentences against TF-IDF + logistic regression.

Trains the default config (through the same code path as `ktemplate train text_transformer`)
for each seed, and fits the runs' baseline (TF-IDF of word 1-2-grams and character 2-5-grams +
logistic regression, C on validation) on the identical train split in the same run. Prints a
Markdown table; the figures in benchmarks/RESULTS.md come from this script.

    python benchmarks/text_transformer_vader.py --seeds 42 43 44
    python benchmarks/text_transformer_vader.py --set epochs=12 --set dropout=0.3  # a variant

The validation accuracy column is the exported model's on the validation sentences (for one
model, the checkpoint kept at the lowest val_loss; for an ensemble, the members' average):
defaults are chosen on it, never on the test column. The McNemar column is the exact two-sided
p-value that the exported Transformer and the baseline have the same error rate on these test
sentences (paired: only the sentences exactly one of them gets wrong count).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ktemplate.pipelines import text  # noqa: E402
from ktemplate.templates import text_transformer  # noqa: E402

from ktemplate import baselines, files, run  # noqa: E402
from ktemplate import config as config_lib  # noqa: E402


def split_arrays(ds) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for x, y in ds.as_numpy_iterator():
        texts.append(x.decode("utf-8"))
        labels.append(y)
    return texts, np.asarray(labels)


def tfidf_baseline(train, val, test) -> tuple[np.ndarray, float]:
    """The runs' own baseline (`ktemplate.baselines.tfidf_logistic_regression`: TF-IDF of word
    1-2-grams and character 2-5-grams, logistic regression, C picked on the validation split).

    Each split is (texts, labels). Returns per test text whether it is classified correctly,
    and the fit seconds.
    """
    (test_x, test_y) = test
    fitted = baselines.tfidf_logistic_regression(train, val, test_x)
    return np.asarray(fitted["predicted"]) == test_y, fitted["seconds"]


def export_correct(run_dir, *splits: tuple[list[str], np.ndarray]) -> list[np.ndarray]:
    """Per split of (texts, labels): whether the run's exported SavedModel gets each right."""
    serve = tf.saved_model.load(str(run_dir / "export")).signatures["serve"]
    return [
        serve(text=tf.constant(texts))["class_id"].numpy() == labels for texts, labels in splits
    ]


def epochs_text(epochs) -> str:
    """Epochs trained: a number, or one per member of an ensemble ("5/6/5")."""
    return "/".join(map(str, epochs)) if isinstance(epochs, list) else str(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--dataset", default=text_transformer.Config().dataset)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config field"
    )
    args = parser.parse_args()
    overrides = {"dataset": args.dataset, **config_lib.parse_assignments(args.set)}

    splits = text.load_text(args.dataset)
    val_texts, val_labels = split_arrays(splits.val)
    test_texts, test_labels = split_arrays(splits.test)
    baseline_correct, baseline_seconds = tfidf_baseline(
        split_arrays(splits.train), (val_texts, val_labels), (test_texts, test_labels)
    )
    baseline_accuracy = float(baseline_correct.mean())
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            config = config_lib.apply_overrides(
                text_transformer.Config(), {**overrides, "seed": str(seed)}, from_text=True
            )
            start = time.perf_counter()
            run_dir = run.train(text_transformer, config, output_dir=out, verbose=0)
            wall = time.perf_counter() - start
            metrics = files.read_json(run_dir / "metrics.json")
            val_correct, correct = export_correct(
                run_dir, (val_texts, val_labels), (test_texts, test_labels)
            )
            if abs(correct.mean() - metrics["test_accuracy"]) > 1e-4:  # metrics are rounded
                raise RuntimeError("the export and the run's evaluation disagree on test")
            rows.append(
                (
                    seed,
                    float(val_correct.mean()),
                    metrics["test_accuracy"],
                    metrics["test_macro_f1"],
                    epochs_text(metrics["epochs"]["train"]),
                    metrics["train_seconds"],
                    wall,
                    baselines.mcnemar_p(correct, baseline_correct),
                )
            )

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}; dataset {args.dataset}; "
        f"overrides {' '.join(args.set) or 'none'}"
    )
    print(f"test examples: {metrics['test_examples']}\n")
    print(
        "| seed | val accuracy | Transformer test accuracy | macro F1 | epochs | fit s | run s "
        "| McNemar p vs baseline |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed, val, acc, f1, epochs, fit_s, wall, p_value in rows:
        print(
            f"| {seed} | {val:.4f} | {acc:.4f} | {f1:.4f} | {epochs} | {fit_s:.1f} | {wall:.1f} "
            f"| {p_value:.2f} |"
        )
    accuracies = np.array([r[2] for r in rows])
    val_accuracies = np.array([r[1] for r in rows])
    print(
        f"\nTransformer mean val accuracy {val_accuracies.mean():.4f}, "
        f"mean test accuracy {accuracies.mean():.4f} (min {accuracies.min():.4f}, "
        f"max {accuracies.max():.4f}); {baselines.TEXT_BASELINE} "
        f"{baseline_accuracy:.4f} (fit {baseline_seconds:.1f} s)"
    )
    print(
        f"Transformer - baseline accuracy: {accuracies.mean() - baseline_accuracy:+.4f}; "
        f"max fit time {max(r[5] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
