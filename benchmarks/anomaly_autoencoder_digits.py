"""anomaly_autoencoder on the ten one-class splits of the digits, next to three baselines.

For each digit in turn (normal_class 0..9) and each seed, trains the default config through the
same code path as `ktemplate train anomaly_autoencoder --set normal_class=D` (train on that
digit's train split only; test on the test split of all digits, the other nine being the
anomalies). The run itself fits IsolationForest, One-Class SVM, PCA reconstruction error and
5-nearest-neighbour distance on the identical standardized train normals, picks one on the
validation split (its normals against the other digits' validation examples) and scores the
identical test split; this script collects every baseline's test ROC AUC. Prints a Markdown
table; benchmarks/RESULTS.md records it.

Defaults are chosen on the validation split, never the test split: the run validates on its
normal digit's validation examples only, so the script also scores the validation split of all
ten digits (the other nine as anomalies) with the run's model and prints that ROC AUC ("val").

    python benchmarks/anomaly_autoencoder_digits.py
    python benchmarks/anomaly_autoencoder_digits.py --digits 0 1 --seeds 42 --set bottleneck=16
    python benchmarks/anomaly_autoencoder_digits.py --seeds 42 --set score=ssim
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from ktemplate.pipelines import images  # noqa: E402
from ktemplate.pipelines import splits as splits_lib  # noqa: E402
from ktemplate.templates import anomaly_autoencoder  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import files, run  # noqa: E402

BASELINES = (
    "IsolationForest",
    "One-Class SVM",
    "PCA reconstruction error",
    "5-nearest-neighbour distance",
)


def validation_roc_auc(run_dir, digit: int) -> float:
    """ROC AUC of the run's score on the validation split of all ten digits (the same fixed
    split the template uses), the digits other than `digit` being the anomalies."""
    pixels, labels = images.digits_arrays()
    val = splits_lib.stratified_split(labels, anomaly_autoencoder.SPLIT_FRACTIONS)["val"]
    spec = files.read_json(run_dir / "spec.json")
    values = anomaly_autoencoder.scores(run.load_best_model(run_dir), spec, pixels[val])
    return float(roc_auc_score(labels[val] != digit, values.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config field"
    )
    args = parser.parse_args()
    overrides = config_lib.parse_assignments(args.set)
    rows = []  # (digit, seed, model auc, {baseline: auc}, fit s, fpr, recall, val auc)
    picked = []  # the baseline each run compared with (picked on validation)
    with tempfile.TemporaryDirectory() as out:
        for digit in args.digits:
            for seed in args.seeds:
                config = config_lib.apply_overrides(
                    anomaly_autoencoder.Config(),
                    {**overrides, "normal_class": str(digit), "seed": str(seed)},
                    from_text=True,
                )
                run_dir = run.train(anomaly_autoencoder, config, output_dir=out, verbose=0)
                metrics = files.read_json(run_dir / "metrics.json")
                base = metrics["baseline"]["test_roc_auc_by_name"]
                picked.append(metrics["baseline"]["name"])
                rows.append(
                    (
                        digit,
                        seed,
                        metrics["test_roc_auc"],
                        base,
                        metrics["train_seconds"],
                        metrics["test_fpr"],
                        metrics["test_recall"],
                        validation_roc_auc(run_dir, digit),
                    )
                )
                print(f"  digit {digit} seed {seed}: AUC {rows[-1][2]:.4f} (val {rows[-1][7]:.4f})"
                      f", baselines {base}, fit {rows[-1][4]:.1f} s", flush=True)  # fmt: skip

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, python "
        f"{platform.python_version()}; seeds {' '.join(map(str, args.seeds))}; overrides "
        f"{' '.join(args.set) or 'none'}\n"
    )
    print(
        "| normal digit | autoencoder val | autoencoder | IsolationForest | One-Class SVM | PCA "
        "| 5-NN distance | fit s (max) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for digit in args.digits:
        mine = [r for r in rows if r[0] == digit]
        cells = [np.mean([r[7] for r in mine]), np.mean([r[2] for r in mine])]
        cells += [np.mean([r[3][b] for r in mine]) for b in BASELINES]
        print(
            f"| {digit} | " + " | ".join(f"{c:.4f}" for c in cells)
            + f" | {max(r[4] for r in mine):.1f} |"
        )  # fmt: skip
    means = {"val": np.mean([r[7] for r in rows]), "autoencoder": np.mean([r[2] for r in rows])}
    means.update({b: np.mean([r[3][b] for r in rows]) for b in BASELINES})
    print(
        "| **mean** | "
        + " | ".join(f"**{means[k]:.4f}**" for k in ("val", "autoencoder", *BASELINES))
        + f" | {max(r[4] for r in rows):.1f} |"
    )
    best = max(BASELINES, key=means.get)
    wins = sum(r[2] > r[3][best] for r in rows)
    counts = {name: picked.count(name) for name in BASELINES}
    print(
        f"\nbaselines picked on validation: {counts}\n"
        f"autoencoder - best baseline on test ({best}): {means['autoencoder'] - means[best]:+.4f} "
        f"mean ROC AUC; above it on {wins} of {len(rows)} runs; mean test FPR at the threshold "
        f"{np.mean([r[5] for r in rows]):.3f} (target {anomaly_autoencoder.Config().target_fpr}),"
        f" mean recall {np.mean([r[6] for r in rows]):.3f}; max fit {max(r[4] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
