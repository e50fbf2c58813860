"""Fixed, reproducible splits: a test set must not change between runs."""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 0  # fixed on purpose: runs with different `seed` values share one test set


def stratified_split(
    labels: np.ndarray,
    fractions: tuple[float, float, float],
    class_names: list[str] | None = None,
    seed: int = SPLIT_SEED,
) -> dict[str, np.ndarray]:
    """Splits example indices into train/val/test with each class in every split.

    Each class contributes `round(fraction * count)` examples (at least one) to validation and
    test, the rest to train. Indices inside each split are sorted.

    Args:
        labels: integer class labels, one per example.
        fractions: (train, validation, test) fractions summing to 1.
        class_names: names used in error messages.
        seed: seed of the per-class shuffle.

    Raises:
        ValueError: a class has fewer than 3 examples, too few to appear in every split.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"Split fractions must sum to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        if len(idx) < 3:
            name = class_names[label] if class_names else str(label)
            raise ValueError(
                f"Class '{name}' has {len(idx)} example(s); each class needs at least 3 "
                "(one each for train, validation and test)."
            )
        idx = rng.permutation(idx)
        n_val = max(1, round(fractions[1] * len(idx)))
        n_test = max(1, round(fractions[2] * len(idx)))
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {split: np.sort(np.concatenate(p)) for split, p in parts.items()}


def label_counts(ds, classes: int) -> np.ndarray:
    """Examples per class of an unbatched `tf.data` dataset of (x, label)."""
    labels = [y for y in ds.map(lambda _, y: y).batch(8192).as_numpy_iterator()]
    if not labels:
        return np.zeros([classes], "int64")
    return np.bincount(np.concatenate(labels), minlength=classes)


def count_examples(ds) -> int:
    """The number of examples in `ds`, from its cardinality when known, else by counting."""
    cardinality = int(ds.cardinality())
    if cardinality >= 0:
        return cardinality
    return int(ds.reduce(np.int64(0), lambda n, *_: n + 1))


class NamedSplits:
    """What a loader's splits dataclass shares (it has train, val, test and sizes)."""

    def named(self) -> dict:
        """The splits by name (what `Data.splits` holds)."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def counted_sizes(self) -> dict[str, int]:
        """Examples per split, counted where the source did not say."""
        named = self.named()
        return {s: n if n is not None else count_examples(named[s]) for s, n in self.sizes.items()}
