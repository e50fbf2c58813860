"""Recipes tried to close text_transformer's gap to TF-IDF + logistic regression.

Each variant trains the template's own model (`load_data`, `build_model`, the shared
callbacks) on the default movie-review sentences and prints validation and test accuracy per
seed, so the negative results recorded in benchmarks/RESULTS.md can be re-run:

- `single`: one model of the template's config (the reference for the others; the template's
  default run averages `members` of them, which `text_transformer_vader.py` measures).
- `ema`: the same, with an exponential moving average of the weights (momentum 0.99) used
  for validation and kept at the end.
- `ensemble`: `--members` models from different initialization seeds, all with the data order
  of `--seeds` (the template's `members` also varies the data order per member).
- `mlm`: self-supervised masked-token pretraining of the embedding and encoder blocks on
  unlabelled text (the movie train split and all of the archive's tweets, Amazon and NYT
  sentences; never the movie validation or test sentences), then the usual supervised fit.

    python benchmarks/text_transformer_variants.py ensemble --seeds 42 43 44 --members 5
    python benchmarks/text_transformer_variants.py mlm --seeds 42 43 --set epochs=3
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ktemplate.pipelines import text  # noqa: E402
from ktemplate.templates import text_transformer as tt  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import run, training  # noqa: E402

UNLABELLED = ("vader_tweets", "vader_amazon", "vader_nyt")
MASKED_PER_TEXT = 10  # at most this many predicted positions per pretraining sequence


def fit(model: keras.Model, data, config, extra_callbacks=()) -> float:
    start = time.perf_counter()
    model.fit(
        data.train,
        validation_data=data.val,
        epochs=config.epochs,
        shuffle=False,  # the train dataset shuffles itself
        callbacks=[*extra_callbacks, *training.callbacks(config, None)],
        verbose=0,
    )
    return time.perf_counter() - start


def probabilities(model: keras.Model, data, split: str) -> np.ndarray:
    """Class probabilities for the raw strings of `split` ('val' batches hold token ids)."""
    ds = getattr(data, split)
    if split == "test":
        return tt.text_model(model, data.spec).predict(ds.map(text.texts_only), verbose=0)
    return model.predict(ds.map(text.texts_only), verbose=0)


def labels(ds: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([y for _, y in ds.as_numpy_iterator()])


def with_ema(model: keras.Model, config, data) -> keras.Model:
    """Recompiles `model` with Adam keeping an EMA of the weights (same cosine schedule)."""
    steps = training.steps_per_epoch(data.spec["sizes"]["train"], config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps * config.epochs, alpha=0.01
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, use_ema=True, ema_momentum=0.99),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def unlabelled_token_ids(config, spec) -> np.ndarray:
    """Token ids of the pretraining texts: the train split plus the archive's other sets."""
    sets = [text.load_text(config.dataset).train]
    for name in UNLABELLED:
        splits = text.load_text(name)
        sets += [splits.train, splits.val, splits.test]
    texts = [t.decode("utf-8") for ds in sets for t, _ in ds.as_numpy_iterator()]
    ids = text.token_vectorizer(spec)(tf.constant(texts)).numpy()
    return ids[(ids > 0).sum(axis=1) >= 3]  # a text needs context around its masked words


def mask_tokens(ids: np.ndarray, vocab_size: int, rng: np.random.Generator, rate: float = 0.15):
    """BERT-style masking: positions to predict, their targets, weights and the inputs.

    The out-of-vocabulary id (1) serves as the mask token (80%), a random word replaces 10%,
    and 10% stay as they are.
    """
    inputs = ids.copy()
    n = len(ids)
    positions = np.zeros((n, MASKED_PER_TEXT), "int64")
    targets = np.zeros((n, MASKED_PER_TEXT), "int64")
    weights = np.zeros((n, MASKED_PER_TEXT), "float32")
    lengths = (ids > 0).sum(axis=1)
    for i in range(n):
        k = min(MASKED_PER_TEXT, max(1, round(lengths[i] * rate)))
        chosen = rng.choice(lengths[i], k, replace=False)
        positions[i, :k], targets[i, :k], weights[i, :k] = chosen, ids[i, chosen], 1.0
        draw = rng.random(k)
        inputs[i, chosen[draw < 0.8]] = 1
        randomized = chosen[(draw >= 0.8) & (draw < 0.9)]
        inputs[i, randomized] = rng.integers(2, vocab_size, len(randomized))
    return (inputs, positions), targets, weights


def pretrain(model: keras.Model, config, data, epochs: int, seed: int) -> float:
    """Masked-token pretraining of `model`'s embedding and encoder blocks (shared layers)."""
    ids = unlabelled_token_ids(config, data.spec)
    vocab_size = len(data.spec["vocabulary"]) + 2
    length = data.spec["sequence_length"]
    token_ids = keras.Input((length,), dtype="int64")
    positions = keras.Input((MASKED_PER_TEXT,), dtype="int64")
    padding_mask = keras.ops.not_equal(token_ids, 0)
    x = model.get_layer("embedding")(token_ids)
    for i in range(config.transformer_layers):
        x = model.get_layer(f"encoder_{i}")(x, padding_mask=padding_mask)
    x = keras.layers.Lambda(
        lambda t: tf.gather(t[0], t[1], batch_dims=1),
        output_shape=(MASKED_PER_TEXT, config.embed_dim),
    )([x, positions])
    x = keras.layers.Dense(config.embed_dim, activation="gelu")(x)
    x = keras.layers.LayerNormalization()(x)
    logits = keras.layers.Dense(vocab_size)(x)
    mlm = keras.Model([token_ids, positions], logits)
    steps = epochs * (len(ids) // 64 + 1)
    mlm.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        inputs, targets, weights = mask_tokens(ids, vocab_size, rng)  # new masks every epoch
        history = mlm.fit(
            inputs, targets, sample_weight=weights, batch_size=64, epochs=1, verbose=0
        )
        print(
            f"  pretraining epoch {epoch + 1}/{epochs}: masked-token accuracy "
            f"{history.history['accuracy'][0]:.3f}",
            flush=True,
        )
    print(f"  {len(ids)} pretraining texts", flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=["single", "ema", "ensemble", "mlm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--members", type=int, default=5, help="ensemble: models per seed")
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="mlm: epochs")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config field"
    )
    args = parser.parse_args()
    # The encoder alone (the model these recipes were tried on); --set wide=... adds one.
    overrides = {"wide": "none", "deep": "transformer", **config_lib.parse_assignments(args.set)}

    print(f"variant {args.variant}; overrides {' '.join(args.set) or 'none'}\n")
    print("| seed | val accuracy | test accuracy | seconds |")
    print("|---|---|---|---|")
    results = []
    for seed in args.seeds:
        config = config_lib.apply_overrides(
            tt.Config(), {**overrides, "seed": str(seed)}, from_text=True
        )
        training.set_global_options(config)
        data = tt.load_data(config, config.batch_size)
        config = run.resolved_config(config, data.spec)  # `auto` fields as a run resolves them
        val_labels, test_labels = labels(data.val), labels(data.test)
        members = args.members if args.variant == "ensemble" else 1
        val_sum, test_sum, seconds = 0.0, 0.0, 0.0
        for member in range(members):
            keras.utils.set_random_seed(seed + 1000 * member)
            model = tt.build_model(config, data.spec)
            extra = []
            if args.variant == "ema":
                model = with_ema(model, config, data)
                extra = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]
            if args.variant == "mlm":
                seconds += pretrain(model, config, data, args.pretrain_epochs, seed)
            seconds += fit(model, data, config, extra)
            val_sum = val_sum + probabilities(model, data, "val")
            test_sum = test_sum + probabilities(model, data, "test")
        val_accuracy = float((val_sum.argmax(-1) == val_labels).mean())
        test_accuracy = float((test_sum.argmax(-1) == test_labels).mean())
        results.append((val_accuracy, test_accuracy))
        print(f"| {seed} | {val_accuracy:.4f} | {test_accuracy:.4f} | {seconds:.1f} |", flush=True)
    val_mean, test_mean = np.mean(results, axis=0)
    print(f"\nmean val accuracy {val_mean:.4f}, mean test accuracy {test_mean:.4f}")


if __name__ == "__main__":
    main()
