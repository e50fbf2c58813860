"""text_transformer on the default movie-review sentences against TF-IDF + logistic regression.

Trains the default config (through the same code path as `ktemplate train text_transformer`)
for each seed, and fits scikit-learn's TF-IDF (word 1-2-grams) + LogisticRegression on the
identical train split in the same run. Prints a Markdown table; the figures in
benchmarks/RESULTS.md come from this script.

    python benchmarks/text_transformer_vader.py --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from ktemplate import files, run  # noqa: E402
from pipelines import text  # noqa: E402
from templates import text_transformer  # noqa: E402


def split_arrays(ds) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for x, y in ds.as_numpy_iterator():
        texts.append(x.decode("utf-8"))
        labels.append(y)
    return texts, np.asarray(labels)


def tfidf_baseline(dataset: str) -> tuple[float, float]:
    """TF-IDF (1-2-grams, sublinear tf) + LogisticRegression, C picked on the validation split."""
    splits = text.load_text(dataset)
    train_x, train_y = split_arrays(splits.train)
    val_x, val_y = split_arrays(splits.val)
    test_x, test_y = split_arrays(splits.test)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    train_features = vectorizer.fit_transform(train_x)
    best = None
    for c in (0.5, 1.0, 2.0, 4.0, 8.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(train_features, train_y)
        val_accuracy = float((model.predict(vectorizer.transform(val_x)) == val_y).mean())
        if best is None or val_accuracy > best[0]:
            best = (val_accuracy, model)
    seconds = time.perf_counter() - start
    accuracy = float((best[1].predict(vectorizer.transform(test_x)) == test_y).mean())
    return accuracy, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--dataset", default=text_transformer.Config().dataset)
    args = parser.parse_args()

    baseline_accuracy, baseline_seconds = tfidf_baseline(args.dataset)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            config = dataclasses.replace(text_transformer.Config(), seed=seed, dataset=args.dataset)
            start = time.perf_counter()
            run_dir = run.train(text_transformer, config, output_dir=out, verbose=0)
            wall = time.perf_counter() - start
            metrics = files.read_json(run_dir / "metrics.json")
            rows.append(
                (
                    seed,
                    metrics["test_accuracy"],
                    metrics["test_macro_f1"],
                    metrics["epochs"]["train"],
                    metrics["train_seconds"],
                    wall,
                )
            )

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}; dataset {args.dataset}"
    )
    print(f"test examples: {metrics['test_examples']}\n")
    print("| seed | Transformer test accuracy | macro F1 | epochs | fit s | run s |")
    print("|---|---|---|---|---|---|")
    for seed, acc, f1, epochs, fit_s, wall in rows:
        print(f"| {seed} | {acc:.4f} | {f1:.4f} | {epochs} | {fit_s:.1f} | {wall:.1f} |")
    accuracies = np.array([r[1] for r in rows])
    print(
        f"\nTransformer mean test accuracy {accuracies.mean():.4f} (min {accuracies.min():.4f}, "
        f"max {accuracies.max():.4f}); TF-IDF 1-2-grams + LogisticRegression "
        f"{baseline_accuracy:.4f} (fit {baseline_seconds:.1f} s)"
    )
    print(
        f"Transformer - baseline accuracy: {accuracies.mean() - baseline_accuracy:+.4f}; "
        f"max fit time {max(r[4] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
