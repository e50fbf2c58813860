"""Text classification (or regression) with a small Transformer encoder trained from scratch.

Data: by default 10,605 movie-review sentences rated by people from -4 to +4 (Hutto and
Gilbert, ICWSM 2014; MIT license) from the vaderSentiment 3.3.2 source distribution (fetched
once with `pip download`, checked against its sha256). Label = sign of the rating (zero
ratings dropped); fixed stratified 70/10/20 split. Also `vader_tweets`, `vader_amazon`,
`vader_nyt`, `tfds:NAME`, `dir:PATH` (a sub-folder of .txt files per class) and `csv:PATH`.

Model: `TextVectorization` (train-split vocabulary) → token + position embeddings →
`transformer_layers` encoder blocks (`ktemplate/layers.py`) → masked pooling → softmax head;
`members` (5) such models averaged. Vectorization runs in the `tf.data` pipeline (no string
ops in the compiled step); `text_model` puts it in front of the model for evaluation and the
export. `embeddings=PATH` starts from word vectors (GloVe/word2vec text, or NAME.npy +
NAME.words) and then, with `wide=auto`, adds a linear model over the tokens (wide & deep).
`backbone=PRESET|PATH` swaps the encoder for a keras-hub backbone, frozen then fine-tuned
(its export needs tensorflow-text's ops when served). Figures: benchmarks/RESULTS.md.

Export: `serve` takes `tf.string` [batch] and returns `probabilities`, `class_id` and
`class_name` (regression: `prediction`). Empty texts get the prior, not an error.

What runs, in order (`ktemplate/lifecycle.py`): load_data (vocabulary from train; resolves
sequence_length, embed_dim, wide, class_weight) → build_model → fit (→ fine_tune a backbone)
× members, averaged → evaluate → baseline (TF-IDF + a linear model) → export.

Adapt it: `ktemplate new my_task --from text_transformer`, then change `Config` defaults, the
data section (`load_data`) and `build_model`; the rest (training, tuning, export) is shared.

    ktemplate train text_transformer
    ktemplate train text_transformer --dataset csv:tickets.csv --set text_column=body
    ktemplate predict saved_models/text_transformer/<run-id>/export "what a great film" lines.txt
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import hub, text, word_vectors

from ktemplate import baselines, convert, files, reports, tasks, training
from ktemplate.config import (
    Auto,
    Fraction,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Resolver,
    TaskKind,
    TrainingConfig,
)
from ktemplate.contract import Data
from ktemplate.layers import MaskedPooling, TokenAndPositionEmbedding, TransformerEncoderBlock

NAME = "text_transformer"
TUNE_OBJECTIVE = "val_accuracy"  # what `ktemplate tune` optimizes by default
MISTAKES_SHOWN = 10  # rows of the most-confident-mistakes table

Standardize = Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"]

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "vader_movies"  # vader_movies|_tweets|_amazon|_nyt, tfds:, dir: or csv:PATH
    text_column: str = "text"  # csv: the column holding the text
    label_column: str = "label"  # csv: the column holding the label (a class, or a number)
    task: TaskKind = "classification"  # regression: a number per text (vader: mean rating)
    epochs: PositiveInt = 12  # maximum epochs; early stopping usually ends sooner
    batch_size: PositiveInt = 32  # per-replica batch size
    learning_rate: PositiveFloat = 1e-3  # peak learning rate (cosine decay to 1% of it)
    early_stopping_patience: NonNegativeInt = 3  # epochs without val_loss improvement
    dropout: Fraction = 0.4  # dropout in the encoder blocks and before the head
    vocab_size: PositiveInt = 20000  # most frequent train-split tokens kept, + padding and OOV
    sequence_length: PositiveInt | Auto = "auto"  # tokens per text (cut/padded); auto: p90
    ngrams: Annotated[int, Range(1, 3)] = 2  # 1: words; 2: + word pairs ("not good"); 3: + triples
    token_dropout: Fraction = 0.0  # train-time augmentation: chance each token is dropped
    standardize: Standardize = "lower_and_strip_punctuation"  # text clean-up before splitting
    embed_dim: PositiveInt | Auto = "auto"  # encoder width; auto: 32, or the vectors' width
    num_heads: PositiveInt = 2  # attention heads; must divide embed_dim
    ff_dim: PositiveInt = 64  # hidden units of each block's feed-forward network
    transformer_layers: PositiveInt = 1  # encoder blocks
    pooling: Literal["mean", "max"] = "mean"  # how token vectors become one text vector
    wide: bool | Literal["auto"] = "auto"  # + a linear model over the tokens; auto: with vectors
    members: PositiveInt = 5  # models (seeds seed, seed+1, ...); probabilities averaged
    class_weight: Literal["auto", "none", "balanced"] = "auto"  # auto: balanced if unbalanced
    embeddings: str = "none"  # pretrained word vectors: a GloVe/word2vec text file or NAME.npy
    embeddings_trainable: bool = True  # fine-tune the pretrained vectors with the model
    embeddings_extra_words: NonNegativeInt = 20000  # the vectors' top words added as tokens
    backbone: str = "none"  # a keras-hub preset name (downloads) or a local preset folder
    fine_tune_epochs: NonNegativeInt = 2  # backbone: epochs unfrozen after the frozen phase
    fine_tune_lr_factor: PositiveFloat = 0.1  # backbone: fine-tuning rate = learning_rate * this

    def __post_init__(self):
        super().__post_init__()
        if self.embeddings != "none" and not Path(self.embeddings).is_file():
            raise ValueError(
                f"Config key 'embeddings' is {self.embeddings!r}: use none or the path of an "
                "existing word-vector file (GloVe/word2vec text format, or NAME.npy with "
                "NAME.words beside it)."
            )
        if self.backbone != "none":  # a backbone brings its own tokens and embeddings
            scratch = {"embeddings": self.embeddings != "none", "wide": self.wide is True}
            for key in [
                k for k, v in {**scratch, "token_dropout": self.token_dropout}.items() if v
            ]:
                raise ValueError(
                    f"Config keys 'backbone' and {key!r} exclude each other: {key} works on the "
                    f"from-scratch model only; leave it at its default with a backbone."
                )
        if self.embed_dim != "auto" and self.embed_dim % self.num_heads:
            raise ValueError(
                f"Config key 'embed_dim' ({self.embed_dim}) must be a multiple of 'num_heads' "
                f"({self.num_heads})."
            )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


SEQUENCE_PERCENTILE = 90  # sequence_length=auto covers this share of the train texts whole
MAX_AUTO_SEQUENCE_LENGTH = 256  # ... up to this many tokens (attention cost grows squared)
UNBALANCED_RATIO = 1.5  # class_weight=auto balances when the largest class is this much larger
DEFAULT_EMBED_DIM = 32  # embed_dim=auto without pretrained vectors


def load_data(config: Config, batch_size: int) -> Data:
    """Loads the configured source; train/val batches are token ids, test batches raw strings.

    The vocabulary is computed from the train split only and carried in the spec, with the
    standardization and sequence length, so `vectorizer(spec)` rebuilds the same mapping.
    `sequence_length=auto` is the 90th percentile of the train texts' token counts (rounded up
    to a multiple of 8, 8..256); `class_weight=auto` is balanced when the train split's
    classes are unbalanced.
    """
    splits = text.load_text(config.dataset, config.text_column, config.label_column, config.task)
    if config.backbone != "none":
        if config.task != "classification":
            raise ValueError("backbone= works for task=classification only; use backbone=none.")
        return _backbone_data(config, batch_size, splits)
    vocabulary = text.train_vocabulary(
        splits.train, config.vocab_size, _standardize(config), config.ngrams
    )
    added = []
    if config.embeddings != "none":
        standardize = functools.partial(text.standardize_words, standardize=_standardize(config))
        added = word_vectors.extra_words(
            config.embeddings, config.embeddings_extra_words, standardize, set(vocabulary)
        )
    vocabulary = vocabulary + added
    sizes = splits.counted_sizes()
    spec = {
        "task": config.task,
        "class_names": splits.class_names,
        "vocabulary": vocabulary,
        "standardize": config.standardize,
        "ngrams": config.ngrams,
        "sizes": sizes,
        "dataset": config.dataset,
    }
    auto = Resolver(config)
    for warning in splits.warnings:
        auto.warn(warning)
    if auto.is_auto("sequence_length"):
        counts = text.token_counts(splits.train, vectorizer({**spec, "sequence_length": None}))
        _pick_length(auto, counts, "tokens", MAX_AUTO_SEQUENCE_LENGTH)
    spec["sequence_length"] = auto.config.sequence_length
    init = word_vectors.resolve_width(config, vocabulary, len(added), auto, DEFAULT_EMBED_DIM)
    auto.pick(
        "wide",
        wide_default(config),
        "pretrained vectors: a linear model over the tokens beside the encoder (validation "
        "accuracy +0.02 on the movie sentences)"
        if config.embeddings != "none"
        else "no pretrained vectors: the encoder alone (the linear part did not help on "
        "validation without them)",
    )
    if init is not None:
        spec["embeddings"] = {
            "path": str(Path(config.embeddings).resolve()),
            "trainable": config.embeddings_trainable,
            "words_added": len(added),
            **init.summary(),
        }
    class_weight = None
    if config.task == "classification":
        class_weight = training.class_weights(
            splits.train, splits.class_names, auto, UNBALANCED_RATIO
        )
    else:
        spec.update(tasks.target_stats(np.concatenate([y for _, y in splits.train.batch(8192)])))
    spec.update(auto.spec())
    tokens = vectorizer(spec)
    return Data(
        train=text.prepare(
            splits.train,
            batch_size,
            True,
            seed=config.seed,
            vectorizer=tokens,
            token_dropout=config.token_dropout,
        ),
        val=text.prepare(splits.val, batch_size, False, vectorizer=tokens),
        test=text.prepare(splits.test, batch_size, False),
        spec=spec,
        splits=splits.named(),
        class_weight=class_weight,
    )


def _pick_length(auto: Resolver, counts: np.ndarray, what: str, limit: int) -> None:
    """sequence_length=auto: the SEQUENCE_PERCENTILE of the train texts' token counts, rounded
    up to a multiple of 8, 8..limit."""
    high = float(np.percentile(counts, SEQUENCE_PERCENTILE))
    auto.pick(
        "sequence_length",
        int(min(limit, max(8, 8 * np.ceil(high / 8)))),
        f"{SEQUENCE_PERCENTILE}th percentile of the train texts' counts of {what} is {high:.0f} "
        f"(longest {int(counts.max())}), rounded up to a multiple of 8, at most {limit}",
    )


def _backbone_data(config: Config, batch_size: int, splits: text.TextSplits) -> Data:
    """load_data with a keras-hub backbone: its own tokenizer and packer in the pipeline."""
    sizes = splits.counted_sizes()
    auto = Resolver(config)
    for warning in splits.warnings:
        auto.warn(warning)
    if auto.is_auto("sequence_length"):
        limit = min(MAX_AUTO_SEQUENCE_LENGTH, hub.max_length(config.backbone, 512))
        _pick_length(
            auto, hub.token_counts(splits.train, config.backbone), "the backbone's tokens", limit
        )
    spec = {
        "class_names": splits.class_names,
        "backbone": config.backbone,
        "sequence_length": auto.config.sequence_length,
        "sizes": sizes,
        "dataset": config.dataset,
        "imports": ["keras_hub"],  # what loading the checkpoint needs (its layers' classes)
    }
    class_weight = training.class_weights(splits.train, splits.class_names, auto, UNBALANCED_RATIO)
    spec.update(auto.spec())
    packer = hub.preprocessor(spec["backbone"], spec["sequence_length"])
    return Data(
        train=text.prepare(splits.train, batch_size, True, seed=config.seed, vectorizer=packer),
        val=text.prepare(splits.val, batch_size, False, vectorizer=packer),
        test=text.prepare(splits.test, batch_size, False),
        spec=spec,
        splits=splits.named(),
        class_weight=class_weight,
    )


def wide_default(config: Config) -> bool:
    """wide=auto: on with pretrained vectors. Chosen on validation accuracy of the default
    ensemble on the movie sentences, seeds 42-44: +0.016 to +0.021 with GloVe 6B 50d, -0.001
    to -0.005 without vectors (benchmarks/RESULTS.md)."""
    return config.embeddings != "none"


def vectorizer(spec: dict[str, Any]) -> keras.layers.TextVectorization:
    """Strings → token ids [batch, sequence_length] with the train split's vocabulary
    (ragged, every token kept, when the spec's sequence_length is None)."""
    return keras.layers.TextVectorization(
        standardize=None if spec["standardize"] == "none" else spec["standardize"],
        output_mode="int",
        output_sequence_length=spec["sequence_length"],
        ragged=spec["sequence_length"] is None,
        ngrams=spec.get("ngrams", 1) if spec.get("ngrams", 1) > 1 else None,
        vocabulary=spec["vocabulary"],
        name="vectorizer",
    )


def _standardize(config: Config) -> str | None:
    return None if config.standardize == "none" else config.standardize


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def _build_backbone_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """A keras-hub backbone (frozen; see `fine_tune`) → its pooled output (BERT-like presets)
    or masked mean pooling → dropout → softmax head."""
    backbone = hub.from_preset("Backbone", spec["backbone"])
    backbone.name = "backbone"
    backbone.trainable = False
    inputs = {
        name: keras.Input(shape=(None,), dtype=tensor.dtype, name=name)
        for name, tensor in backbone.input.items()
    }
    outputs = backbone(inputs)
    if isinstance(outputs, dict) and "pooled_output" in outputs:  # BERT-like: its [CLS] head
        x = outputs["pooled_output"]
    else:  # the others: mean over the tokens that are not padding
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        x = MaskedPooling("mean", name="pooling")(sequence, padding_mask=inputs["padding_mask"])
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(
        len(spec["class_names"]), kernel_regularizer=training.regularizer(config)
    )(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=NAME)
    training.compile_classifier(model, config, spec["sizes"]["train"])
    return model


def fine_tune(model: keras.Model, config: Config, spec: dict[str, Any]):
    """With a backbone: unfreezes it and recompiles at learning_rate * fine_tune_lr_factor for
    `fine_tune_epochs`; None otherwise (the from-scratch model trains in one phase)."""
    return training.fine_tune_backbone(model, config, spec["sizes"]["train"])


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Builds and compiles the classifier over token ids, int64 [batch, sequence_length] (with
    a backbone: over its preprocessor's dict of token ids and padding mask)."""
    if config.backbone != "none":
        return _build_backbone_model(config, spec)
    token_ids = keras.Input(shape=(spec["sequence_length"],), dtype="int64", name="token_ids")
    padding_mask = keras.ops.not_equal(token_ids, 0)
    vocab_size = len(spec["vocabulary"]) + 2  # + padding and out-of-vocabulary tokens
    x = TokenAndPositionEmbedding(
        vocab_size, spec["sequence_length"], config.embed_dim, name="embedding"
    )(token_ids)
    x = keras.layers.Dropout(config.dropout)(x)
    for i in range(config.transformer_layers):
        x = TransformerEncoderBlock(
            config.embed_dim,
            config.num_heads,
            config.ff_dim,
            config.dropout,
            config.activation,
            name=f"encoder_{i}",
        )(x, padding_mask=padding_mask)
    x = MaskedPooling(config.pooling, name="pooling")(x, padding_mask=padding_mask)
    x = keras.layers.Dropout(config.dropout)(x)
    kind = spec.get("task", "classification")
    units = len(spec["class_names"]) if kind == "classification" else 1
    x = keras.layers.Dense(units, kernel_regularizer=training.regularizer(config))(x)
    if wide_default(config) if config.wide == "auto" else config.wide:
        # One weight per class (or output) and token, summed over the text's tokens (a linear
        # model on token counts, trained with the encoder); a mean trained too slowly to matter.
        bag = keras.layers.Embedding(
            vocab_size, units, embeddings_initializer="zeros", name="wide"
        )(token_ids)
        bag = MaskedPooling("sum", name="wide_pooling")(bag, padding_mask=padding_mask)
        x = keras.layers.Add(name="wide_and_deep")([x, bag])
    if kind == "classification":  # float32 softmax: stable probabilities in mixed precision
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    else:
        outputs = tasks.to_target_units(x, spec["target_mean"], spec["target_std"])
    model = keras.Model(token_ids, outputs, name=NAME)
    if config.embeddings != "none":
        token_embedding = model.get_layer("embedding").token_embedding
        init = word_vectors.pretrained(config.embeddings, spec["vocabulary"], config.seed)
        token_embedding.embeddings.assign(init.matrix)
        token_embedding.trainable = config.embeddings_trainable
    tasks.compile_model(model, kind, config, spec["sizes"]["train"], spec.get("target_std", 1.0))
    return model


def text_model(model: keras.Model, spec: dict[str, Any]) -> keras.Model:
    """`model` behind the train split's `TextVectorization`: raw strings [batch] in."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    if "backbone" in spec:
        features = hub.preprocessor(spec["backbone"], spec["sequence_length"])(texts)
        return keras.Model(texts, model(features), name=f"{NAME}_text")
    return keras.Model(texts, model(vectorizer(spec)(texts)), name=f"{NAME}_text")


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------


def search_space(hp, config: Config) -> Config:
    """Maps keras-tuner hyperparameters onto `Config` fields; defaults equal `config`'s."""
    if config.backbone != "none":  # the backbone fixes the architecture
        return dataclasses.replace(
            config,
            learning_rate=hp.Float(
                "learning_rate", 1e-4, 3e-3, sampling="log", default=config.learning_rate
            ),
            dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=config.dropout),
            fine_tune_epochs=hp.Int("fine_tune_epochs", 0, 4, default=config.fine_tune_epochs),
        )
    if config.embeddings == "none":
        default_width = DEFAULT_EMBED_DIM if config.embed_dim == "auto" else config.embed_dim
        embed_dim = hp.Choice("embed_dim", [32, 64, 128], default=default_width)
        num_heads = hp.Choice("num_heads", [1, 2, 4], default=config.num_heads)
        # Heads must divide the width: an impossible pair falls back to one head per 32 units.
        width = {
            "embed_dim": embed_dim,
            "num_heads": num_heads if embed_dim % num_heads == 0 else max(1, embed_dim // 32),
        }
    else:  # the width is the pretrained vectors'
        width = {
            "embeddings_trainable": hp.Boolean(
                "embeddings_trainable", default=config.embeddings_trainable
            )
        }
    return dataclasses.replace(
        config,
        **width,
        transformer_layers=hp.Int("transformer_layers", 1, 3, default=config.transformer_layers),
        ff_dim=hp.Choice("ff_dim", [64, 128, 256], default=config.ff_dim),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=config.dropout),
        learning_rate=hp.Float(
            "learning_rate", 1e-4, 3e-3, sampling="log", default=config.learning_rate
        ),
        vocab_size=hp.Choice("vocab_size", [5000, 8000, 10000, 20000], default=config.vocab_size),
        ngrams=hp.Choice("ngrams", [1, 2], default=config.ngrams),
        wide=hp.Boolean(
            "wide", default=wide_default(config) if config.wide == "auto" else config.wide
        ),
        token_dropout=hp.Choice("token_dropout", [0.0, 0.1, 0.2], default=config.token_dropout),
    )


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """The SavedModel's endpoint: raw UTF-8 strings [batch] in, decoded predictions out."""
    end_to_end = text_model(model, spec)
    kind = spec.get("task", "classification")

    def serve(texts):
        return tasks.serving_outputs(kind, end_to_end(texts, training=False), spec["class_names"])

    serve.track = [end_to_end]  # the vocabulary lookup table goes into the SavedModel
    return {"serve": (serve, [tf.TensorSpec([None], tf.string, name="text")])}


def portable_endpoint(model: keras.Model, spec: dict[str, Any], runtime: str) -> convert.Portable:
    """The LiteRT/ONNX function: token ids → probabilities, class_id. Neither runtime has
    string ops, so vectorization happens in the caller: `vocabulary.txt` (written beside the
    file; line i is token id i) and the manifest's recipe say how."""
    del runtime
    if "backbone" in spec or spec["sequence_length"] is None:
        raise ValueError(
            "LiteRT/ONNX export needs the from-scratch model with a fixed sequence_length; a "
            "backbone's tokenizer (or sequence_length=none) has no token-id file to ship. "
            "Export the SavedModel only."
        )
    length, kind = spec["sequence_length"], spec.get("task", "classification")

    def predict(token_ids):
        return tasks.portable_outputs(kind, model(token_ids, training=False))

    vocabulary = ["", "[UNK]", *spec["vocabulary"]]
    sample = np.random.default_rng(0).integers(2, len(vocabulary), (4, length))
    sample[:, length // 2 :] = 0  # padded, as short texts are
    return convert.Portable(
        fn=predict,
        signature=[tf.TensorSpec([None, length], tf.int64, name="token_ids")],
        sample={"token_ids": sample.astype("int64")},
        reference=None,
        notes={
            "input": f"token_ids: int64 [batch, {length}]",
            "vectorize": text.vectorize_recipe(spec["standardize"], spec.get("ngrams", 1), length),
            "vocabulary": "vocabulary.txt",
            "outputs": tasks.PORTABLE_OUTPUTS[kind],
        },
        assets={"vocabulary.txt": "\n".join(vocabulary) + "\n"},
    )


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s texts (at most `limit`) as token ids from the train split's vocabulary, with
    the raw strings beside them as `text` (the SavedModel's input)."""
    texts, labels = convert.examples(data.splits[split], limit)
    ids = np.zeros((0, spec["sequence_length"]), np.int64)
    if texts:
        ids = vectorizer(spec)(tf.constant(texts, tf.string)).numpy().astype(np.int64)
    inputs = {"token_ids": ids, "text": np.array(texts, dtype=object)}
    return convert.scored(inputs, labels, split, spec.get("task", "classification"))


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    if "backbone" in spec:
        text_input = {
            "kind": "text",
            "serve": f"UTF-8 strings [batch]; the {spec['backbone']} tokenizer and packer "
            f"({spec['sequence_length']} tokens) run inside the graph",
            "backbone": spec["backbone"],
        }
        serving = {
            "requires": ["tensorflow-text"],
            "note": "the tokenizer's ops come from tensorflow-text: `import tensorflow_text` "
            "before tf.saved_model.load (keras-hub and this project are not needed)",
        }
    else:
        text_input = {
            "kind": "text",
            "serve": "UTF-8 strings [batch]; vectorization (standardize, split, vocabulary "
            "lookup, pad/cut) happens inside the graph",
            "vocabulary_size": len(spec["vocabulary"]) + 2,
        }
        serving = {}
    kind = spec.get("task", "classification")
    return {
        "task": f"text_{kind}",
        "input": text_input,
        **({"serving": serving} if serving else {}),
        "outputs": tasks.describe_outputs(kind, spec["class_names"]),
        "class_names": spec["class_names"],
    }


# ---------------------------------------------------------------------------------------------
# Metrics and plots
# ---------------------------------------------------------------------------------------------


def evaluate(model: keras.Model, data: Data, out_dir: str | Path | None) -> dict[str, Any]:
    """The task's test metrics and (classification) the most confident mistakes; writes
    confusion_matrix.png and confident_mistakes.md (regression: predictions.png) to `out_dir`."""
    texts, labels = text.arrays(data.test.unbatch(), limit=-1)
    kind, class_names = data.spec.get("task", "classification"), data.spec["class_names"]
    output = text_model(model, data.spec).predict(data.test.map(text.texts_only), verbose=0)
    output = output.astype("float64")
    metrics = tasks.test_metrics(kind, labels, output, class_names)
    plot = Path(out_dir or ".") / (
        "predictions.png" if kind == "regression" else "confusion_matrix.png"
    )
    if kind == "classification":
        mistakes = reports.confident_mistakes(texts, labels, output, class_names, MISTAKES_SHOWN)
        metrics["confident_mistakes"] = mistakes
        if out_dir is not None:
            files.write_text(
                plot.with_name("confident_mistakes.md"),
                "# Most confident mistakes (test split)\n\n" + reports.mistakes_table(mistakes),
            )
    if out_dir is not None:
        tasks.plot(kind, metrics, labels, output, plot, class_names)
    return metrics


def baseline(model: keras.Model, data: Data, config: Config) -> dict[str, Any]:
    """TF-IDF of word 1-2-grams and character 2-5-grams + logistic regression (regression:
    ridge), picked on validation, on the same splits, compared with the model on the test
    texts (McNemar, or a paired t-test of the absolute errors); see `ktemplate.baselines`."""
    kind = data.spec.get("task", "classification")
    arrays = {name: text.arrays(ds) for name, ds in data.splits.items()}
    test_texts, test_y = arrays["test"]
    fitted = baselines.tfidf_logistic_regression(
        arrays["train"],
        arrays["val"],
        test_texts,
        seed=config.seed,
        refit=data.val is None,  # a champion refitted on train+validation
        max_train=config.baseline_max_train,
        regression=kind == "regression",
    )
    output = text_model(model, data.spec).predict(tf.constant(test_texts), verbose=0)
    tries = [
        baselines.Try("wide", "true", "a linear model over the tokens beside the Transformer"),
        baselines.Try("members", 2 * config.members, "more models averaged"),
        baselines.Try("embeddings", "PATH/glove.6B.50d.txt", "pretrained word vectors"),
    ]
    return tasks.compare(
        kind, fitted, test_y, output, data.spec["class_names"], config, tries, unit="texts"
    )


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train text_transformer [options]`, run as
    `python -m ktemplate.templates.text_transformer [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
