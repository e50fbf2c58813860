"""Task metrics and plots shared by templates (classification today)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def subplots(*args, figsize=None, **kwargs):
    """(figure, axes) like `pyplot.subplots`, on a figure of its own: saving it needs no
    display, and matplotlib's backend and pyplot's figures (a notebook's) are left alone."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*args, **kwargs)


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, log loss, macro F1, per-class precision/recall/F1/support, confusion matrix."""
    from sklearn.metrics import classification_report, confusion_matrix, log_loss

    probabilities = probabilities / probabilities.sum(axis=-1, keepdims=True)
    predicted = probabilities.argmax(axis=-1)
    all_classes = list(range(len(class_names)))
    report = classification_report(
        labels,
        predicted,
        labels=all_classes,
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
    per_class = {
        name: {
            "precision": round(report[name]["precision"], 4),
            "recall": round(report[name]["recall"], 4),
            "f1": round(report[name]["f1-score"], 4),
            "support": int(report[name]["support"]),
        }
        for name in class_names
    }
    return {
        "test_accuracy": round(float((predicted == labels).mean()), 4),
        "test_log_loss": round(float(log_loss(labels, probabilities, labels=all_classes)), 4),
        "test_macro_f1": round(report["macro avg"]["f1-score"], 4),
        "test_examples": int(len(labels)),
        "test_errors": int((predicted != labels).sum()),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=all_classes).tolist(),
    }


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path) -> None:
    matrix = np.asarray(matrix)
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > threshold else "black",
            fontsize=8,
        )
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_image_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    path: Path,
    count: int = 36,
) -> None:
    """A grid of test images titled 'predicted (p) / true'; mistakes are shown first, in red."""
    predicted = probabilities.argmax(axis=-1)
    order = np.concatenate(
        [np.flatnonzero(predicted != labels), np.flatnonzero(predicted == labels)]
    )
    order = order[:count]
    cols = 6
    rows = max(1, int(np.ceil(len(order) / cols)))
    fig, axes = subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order, strict=False):
        image = images[i]
        cmap = "gray" if image.shape[-1] == 1 else None
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap=cmap)
        wrong = predicted[i] != labels[i]
        ax.set_title(
            f"{class_names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})\n"
            f"true {class_names[labels[i]]}",
            fontsize=7,
            color="red" if wrong else "black",
        )
    fig.suptitle("Test predictions (mistakes first, in red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def detection_metrics(anomaly: np.ndarray, values: np.ndarray, threshold: float) -> dict:
    """ROC AUC and average precision of `values` (None without both classes), and recall and
    false-positive rate of `values > threshold`."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    both = 0 < anomaly.sum() < len(anomaly)
    flagged = values > threshold
    return {
        "roc_auc": round(float(roc_auc_score(anomaly, values)), 4) if both else None,
        "average_precision": (
            round(float(average_precision_score(anomaly, values)), 4) if both else None
        ),
        "recall": round(float(flagged[anomaly == 1].mean()), 4) if anomaly.any() else None,
        "fpr": round(float(flagged[anomaly == 0].mean()), 4) if (anomaly == 0).any() else None,
    }


def plot_anomaly_scores(values, anomaly, threshold: float, score: str, path: Path) -> None:
    """Histograms of the test scores of normal examples and anomalies, with the threshold."""
    fig, ax = subplots(figsize=(6, 3.5))
    bins = np.linspace(values.min(), np.quantile(values, 0.99), 40)
    ax.hist(values[anomaly == 0], bins=bins, alpha=0.6, label="normal")
    if anomaly.any():
        ax.hist(values[anomaly == 1], bins=bins, alpha=0.6, label="anomaly")
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("1 - SSIM (score)" if score == "ssim" else "reconstruction error (score)")
    ax.set_ylabel("test examples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reconstructions(x, reconstruction, values, anomaly, out_dir) -> None:
    """The given images (top) over their reconstructions, titled with score and label:
    most_anomalous.png in `out_dir`."""
    fig, axes = subplots(2, len(x), figsize=(1.5 * len(x), 3.4), squeeze=False)
    for i in range(len(x)):
        for row, image in ((0, x[i]), (1, reconstruction[i])):
            pixels = np.clip(image, 0, 255).astype("uint8")
            if pixels.shape[-1] == 1:
                axes[row][i].imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                axes[row][i].imshow(pixels)
            axes[row][i].axis("off")
        kind = "anomaly" if anomaly[i] else "normal"
        axes[0][i].set_title(f"{values[i]:.3g}\n{kind}", fontsize=7)
    fig.suptitle("Most anomalous test examples (top) and their reconstructions", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(Path(out_dir) / "most_anomalous.png", dpi=100)


def confident_mistakes(
    texts: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    count: int,
) -> list[dict[str, Any]]:
    """The `count` wrong predictions with the highest predicted probability, most sure first."""
    predicted = probabilities.argmax(axis=-1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]
    return [
        {
            "text": texts[i] if len(texts[i]) <= 200 else texts[i][:197] + "...",
            "true": class_names[labels[i]],
            "predicted": class_names[predicted[i]],
            "probability": round(float(probabilities[i, predicted[i]]), 4),
        }
        for i in order
    ]


def mistakes_table(mistakes: list[dict[str, Any]]) -> str:
    """`confident_mistakes` as a Markdown table."""
    lines = ["| p | predicted | true | text |", "|---|---|---|---|"]
    for m in mistakes:
        cell = m["text"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {m['probability']:.3f} | {m['predicted']} | {m['true']} | {cell} |")
    return "\n".join(lines) + "\n"


def image_quality(clean: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one [H, W, C] image against the clean one, on a 0..1 scale."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    clean, image = clean.astype("float64"), np.clip(image, 0.0, 1.0).astype("float64")
    value_psnr = peak_signal_noise_ratio(clean, image, data_range=1.0)
    # SSIM's 7x7 window needs an odd size no larger than the image (tiny tfds images).
    win_size = min(7, *clean.shape[:2])
    win_size -= 1 - win_size % 2
    value_ssim = structural_similarity(
        clean, image, data_range=1.0, channel_axis=-1, win_size=win_size
    )
    return float(value_psnr), float(value_ssim)


def plot_denoising(shown: list, path: Path) -> None:
    """One row per `shown` test image (name, clean, noisy, denoised, scores): clean, noisy and
    denoised, with PSNR/SSIM in the titles."""
    fig, axes = subplots(len(shown), 3, figsize=(9, 3 * len(shown)), squeeze=False)
    for row, (name, clean, noisy, denoised, scores) in zip(axes, shown, strict=True):
        panels = [
            (clean, f"{name}: clean"),
            (noisy, f"noisy {scores['noisy_psnr']:.2f} dB / {scores['noisy_ssim']:.3f}"),
            (denoised, f"denoised {scores['psnr']:.2f} dB / {scores['ssim']:.3f}"),
        ]
        for ax, (image, title) in zip(row, panels, strict=True):
            image = np.clip(image, 0.0, 1.0)
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("Test images: clean, noisy, denoised (PSNR / SSIM)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title
    fig.savefig(path, dpi=100)
