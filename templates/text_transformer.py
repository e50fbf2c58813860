"""Text classification with a small Transformer encoder trained from scratch.

Task: assign one of N classes to a piece of text (reviews, support tickets, any labelled text).

Data: by default 10,605 movie-review sentences rated by people from -4 to +4 (Hutto and
Gilbert, ICWSM 2014; MIT license), shipped inside the vaderSentiment 3.3.2 source
distribution: fetched once with `pip download` into the user cache and checked against its
sha256. Label = sign of the rating (zero ratings dropped); fixed stratified 70/10/20 split.
Also `vader_tweets`, `vader_amazon`, `vader_nyt` (same archive), `tfds:NAME` (imdb_reviews,
ag_news_subset, ...), `dir:PATH` (one sub-folder of UTF-8 .txt files per class) and
`csv:PATH` (`text_column` and `label_column`).

Model: `TextVectorization` (vocabulary from the train split only) → token + position
embeddings → `transformer_layers` encoder blocks (multi-head self-attention over non-padding
tokens, feed-forward, residuals, layer norm, dropout) → masked mean/max pooling → a softmax
head. A run trains `members` (5) such models, each with its own seed, and averages their
probabilities (a deep ensemble; see `members` in README): on the default data one model scores
about 0.765 test accuracy and five 0.775, level with TF-IDF + logistic regression, in about
85 s of fitting on two CPU cores. The trained model takes token ids: vectorization runs in the
`tf.data` pipeline (in parallel, cached, and no string ops in the compiled train step — XLA
and TPUs need that), and `text_model` puts the same `TextVectorization` in front of it for
evaluation and the export, which take raw strings. The encoder block is written here with
`keras.layers.MultiHeadAttention` (keras-hub is used only for pretrained backbones).

Pretrained knowledge: `embeddings=PATH` initializes the token embedding from word vectors
(GloVe/word2vec text, or NAME.npy + NAME.words) and, with `wide=auto`, adds a linear model over
the same tokens to the logits (wide & deep): with GloVe 6B 50d the default ensemble scores about
0.805 on the movie sentences, against 0.778 for TF-IDF + logistic regression.
`backbone=PRESET|PATH` replaces the encoder with a keras-hub backbone and its tokenizer,
trained frozen first, then `fine_tune_epochs` unfrozen (the export then needs
tensorflow-text's ops at serving time; see the manifest).

Export: `serve` takes `tf.string` [batch] and returns `probabilities`, `class_id` and
`class_name`. Empty or whitespace-only texts get an answer (the classifier's prior), not an
error.

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
from ktemplate.pipelines import splits as splits_lib
from ktemplate.pipelines import text, word_vectors

from ktemplate import baselines, convert, files, reports, tasks, training
from ktemplate.config import (
    Auto,
    ConfigError,
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
        if self.backbone != "none" and self.embeddings != "none":
            raise ValueError(
                "Config keys 'backbone' and 'embeddings' exclude each other: a pretrained "
                "backbone brings its own embeddings. Set one of them to none."
            )
        if self.backbone != "none" and self.wide is True:
            raise ValueError(
                "Config key 'wide' works on the from-scratch model only; set it to auto or false "
                "with a backbone."
            )
        if self.backbone != "none" and self.token_dropout:
            raise ValueError(
                "Config key 'token_dropout' works on the from-scratch model only; set it to 0 "
                "with a backbone."
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
    added = pretrained_words(config, set(vocabulary)) if config.embeddings != "none" else []
    vocabulary = vocabulary + added
    sizes = _sizes(splits)
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
        high = float(np.percentile(counts, SEQUENCE_PERCENTILE))
        length = int(min(MAX_AUTO_SEQUENCE_LENGTH, max(8, 8 * np.ceil(high / 8))))
        auto.pick(
            "sequence_length",
            length,
            f"{SEQUENCE_PERCENTILE}th percentile of the train texts' token counts is "
            f"{high:.0f} (longest {int(counts.max())}), rounded up to a multiple of 8, at most "
            f"{MAX_AUTO_SEQUENCE_LENGTH}",
        )
    spec["sequence_length"] = auto.config.sequence_length
    init = resolve_width(config, vocabulary, len(added), auto)
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
        class_weight = _class_weight(splits, auto)
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
        splits={"train": splits.train, "val": splits.val, "test": splits.test},
        class_weight=class_weight,
    )


def _sizes(splits: text.TextSplits) -> dict[str, int]:
    return {
        split: n if n is not None else text.count_examples(getattr(splits, split))
        for split, n in splits.sizes.items()
    }


def _class_weight(splits: text.TextSplits, auto: Resolver) -> dict[int, float] | None:
    """class_weight (auto: balanced when the train split's classes are unbalanced)."""
    return training.class_weights(
        splits_lib.label_counts(splits.train, len(splits.class_names)),
        splits.class_names,
        auto,
        UNBALANCED_RATIO,
    )


def _backbone_data(config: Config, batch_size: int, splits: text.TextSplits) -> Data:
    """load_data with a keras-hub backbone: its own tokenizer and packer in the pipeline."""
    sizes = _sizes(splits)
    auto = Resolver(config)
    for warning in splits.warnings:
        auto.warn(warning)
    if auto.is_auto("sequence_length"):
        tokenizer = hub_preprocessor(config.backbone, None).tokenizer
        counts = []
        for texts, _ in splits.train.take(20_000).batch(1024).as_numpy_iterator():
            tokens = tokenizer(tf.constant(texts))
            if isinstance(tokens, tf.RaggedTensor):
                counts.append(tokens.row_lengths().numpy())
            else:  # a list of lists, or a dense tensor when all texts have one length
                counts.append(np.array([len(t) for t in tokens]))
        counts = np.concatenate(counts) + 2  # the start and end tokens the packer adds
        high = float(np.percentile(counts, SEQUENCE_PERCENTILE))
        limit = min(MAX_AUTO_SEQUENCE_LENGTH, hub_max_length(config.backbone))
        auto.pick(
            "sequence_length",
            int(min(limit, max(8, 8 * np.ceil(high / 8)))),
            f"{SEQUENCE_PERCENTILE}th percentile of the train texts' counts of "
            f"{config.backbone}'s tokens is {high:.0f} (longest {int(counts.max())}), rounded up "
            f"to a multiple of 8, at most {limit}",
        )
    spec = {
        "class_names": splits.class_names,
        "backbone": config.backbone,
        "sequence_length": auto.config.sequence_length,
        "sizes": sizes,
        "dataset": config.dataset,
        "imports": ["keras_hub"],  # what loading the checkpoint needs (its layers' classes)
    }
    class_weight = _class_weight(splits, auto)
    spec.update(auto.spec())
    packer = hub_preprocessor(spec["backbone"], spec["sequence_length"])
    return Data(
        train=text.prepare(splits.train, batch_size, True, seed=config.seed, vectorizer=packer),
        val=text.prepare(splits.val, batch_size, False, vectorizer=packer),
        test=text.prepare(splits.test, batch_size, False),
        spec=spec,
        splits={"train": splits.train, "val": splits.val, "test": splits.test},
        class_weight=class_weight,
    )


def keras_hub():
    """The keras_hub module (imported on first use: it costs seconds and only backbones need
    it)."""
    try:
        import keras_hub
    except ImportError as e:
        raise ConfigError(
            f"backbone= needs the keras-hub package ({e}); install it with `pip install keras-hub`."
        ) from None
    return keras_hub


def _from_preset(kind: str, preset: str, **kwargs):
    hub = keras_hub()
    try:
        return getattr(hub.models, kind).from_preset(preset, **kwargs)
    except Exception as e:  # keras-hub raises many kinds for a missing or unreachable preset
        where = (
            "the local preset folder"
            if Path(preset).exists()
            else "the preset name (it downloads from Kaggle or Hugging Face, which needs "
            "internet: offline, give a local preset folder written by save_to_preset)"
        )
        raise ConfigError(
            f"backbone={preset}: keras-hub could not load its {kind} ({type(e).__name__}: "
            f"{str(e)[:300]}). Check {where}."
        ) from None


def hub_preprocessor(preset: str, sequence_length: int | None):
    """The preset's TextClassifierPreprocessor (tokenizer + packer): strings → its inputs."""
    kwargs = {} if sequence_length is None else {"sequence_length": sequence_length}
    return _from_preset("TextClassifierPreprocessor", preset, **kwargs)


def hub_max_length(preset: str) -> int:
    """The longest sequence the preset's backbone takes (position embeddings)."""
    backbone = _from_preset("Backbone", preset, load_weights=False)
    return int(getattr(backbone, "max_sequence_length", MAX_AUTO_SEQUENCE_LENGTH))


def resolve_width(
    config: Config, vocabulary: list[str], added: int, auto: Resolver
) -> word_vectors.EmbeddingInit | None:
    """embed_dim=auto: DEFAULT_EMBED_DIM, or the width of the pretrained vectors (how many of
    the train split's words and word pairs they cover goes into the reason). The last `added`
    words of `vocabulary` came from the vector file. Returns the embedding initialization
    (None without vectors)."""
    if config.embeddings == "none":
        auto.pick("embed_dim", DEFAULT_EMBED_DIM, "no pretrained vectors (embeddings=none)")
        return None
    init = pretrained_embeddings(config.embeddings, vocabulary, config.seed)
    found, words = init.words_found - added, init.words - added  # added words all have vectors
    covered = f"{found:,} of the train split's {words:,} words found"
    if init.ngrams:
        covered += f", {init.ngrams_found:,} of {init.ngrams:,} word pairs (mean of their words)"
    if added:
        covered += f"; {added:,} more of its most frequent words added as tokens"
    auto.pick("embed_dim", init.dim, f"{init.dim}-d vectors in {config.embeddings}: {covered}")
    if config.embed_dim not in ("auto", init.dim):
        raise ConfigError(
            f"embed_dim={config.embed_dim} but the vectors in {config.embeddings} are "
            f"{init.dim}-d: the embedding width follows the vectors, so leave embed_dim=auto."
        )
    if init.dim % config.num_heads:
        raise ConfigError(
            f"The vectors in {config.embeddings} are {init.dim}-d, not a multiple of "
            f"num_heads={config.num_heads}: set num_heads to a divisor of {init.dim}."
        )
    if found < words / 2:
        auto.warn(
            f"only {found:,} of the train split's {words:,} words have a vector in "
            f"{config.embeddings}: check that its words are standardized like the texts "
            f"(standardize={config.standardize}) and in the same language."
        )
    return init


def wide_default(config: Config) -> bool:
    """wide=auto: on with pretrained vectors. Chosen on validation accuracy of the default
    ensemble on the movie sentences, seeds 42-44: +0.016 to +0.021 with GloVe 6B 50d, -0.001
    to -0.005 without vectors (benchmarks/RESULTS.md)."""
    return config.embeddings != "none"


def pretrained_words(config: Config, known: set[str]) -> list[str]:
    """Up to `embeddings_extra_words` of the vector file's most frequent words that are not yet
    tokens and that standardization leaves as they are: words the train split lacks still get
    their pretrained meaning at test time instead of the out-of-vocabulary token."""
    if not config.embeddings_extra_words:
        return []
    words = word_vectors.first_words(config.embeddings, config.embeddings_extra_words)
    standardized = text.standardize_words(words, _standardize(config))
    return [w for w, s in zip(words, standardized, strict=True) if w == s and w not in known]


@functools.lru_cache(maxsize=4)
def _read_vectors(path: str, mtime: float, words: frozenset[str]):
    return word_vectors.read(path, set(words))


def pretrained_embeddings(
    path: str, vocabulary: list[str], seed: int
) -> word_vectors.EmbeddingInit:
    """The embedding matrix for `vocabulary` from the vectors at `path` (the file is read once
    per vocabulary; each seed draws its own vectors for the words the file lacks)."""
    try:
        words = frozenset(word_vectors.vocabulary_words(vocabulary))
        vectors, dim = _read_vectors(str(Path(path).resolve()), Path(path).stat().st_mtime, words)
        return word_vectors.embedding_init(vocabulary, vectors, dim, seed)
    except word_vectors.WordVectorsError as e:
        raise ConfigError(f"embeddings={path}: {e}") from None


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


@keras.saving.register_keras_serializable(package=NAME)
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sum of a learned token embedding and a learned position embedding."""

    def __init__(self, vocab_size: int, sequence_length: int, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("vocab_size", vocab_size),
            ("sequence_length", sequence_length),
            ("embed_dim", embed_dim),
        ):
            if value <= 0:
                raise ValueError(f"TokenAndPositionEmbedding: {name} must be > 0, got {value}.")
        self.vocab_size = vocab_size
        self.sequence_length = sequence_length
        self.embed_dim = embed_dim
        self.token_embedding = keras.layers.Embedding(vocab_size, embed_dim, name="token")
        self.position_embedding = keras.layers.Embedding(sequence_length, embed_dim, name="pos")

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build((self.sequence_length,))

    def call(self, token_ids):
        positions = keras.ops.arange(keras.ops.shape(token_ids)[-1])
        return self.token_embedding(token_ids) + self.position_embedding(positions)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embed_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "sequence_length": self.sequence_length,
            "embed_dim": self.embed_dim,
        }


@keras.saving.register_keras_serializable(package=NAME)
class TransformerEncoderBlock(keras.layers.Layer):
    """Self-attention then a feed-forward network, each with dropout, a residual and LayerNorm.

    Padding positions (`padding_mask` False) are never attended to.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.1,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if embed_dim <= 0 or num_heads <= 0 or ff_dim <= 0:
            raise ValueError(
                "TransformerEncoderBlock: embed_dim, num_heads and ff_dim must be > 0, got "
                f"{embed_dim}, {num_heads}, {ff_dim}."
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"TransformerEncoderBlock: embed_dim ({embed_dim}) must be a multiple of "
                f"num_heads ({num_heads})."
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"TransformerEncoderBlock: dropout must be in [0, 1), got {dropout}.")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.activation = activation
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim=embed_dim // num_heads, dropout=dropout, name="attention"
        )
        self.ff_hidden = keras.layers.Dense(ff_dim, activation=activation, name="ff_hidden")
        self.ff_output = keras.layers.Dense(embed_dim, name="ff_output")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.ff_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ff_norm")
        self.attention_dropout = keras.layers.Dropout(dropout)
        self.ff_dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.ff_hidden.build(input_shape)
        self.ff_output.build((*input_shape[:-1], self.ff_dim))
        self.attention_norm.build(input_shape)
        self.ff_norm.build(input_shape)

    def call(self, inputs, padding_mask=None, training=False):
        attention_mask = None
        if padding_mask is not None:
            attention_mask = keras.ops.expand_dims(padding_mask, 1)  # [B, 1 query, T keys]
        attended = self.attention(inputs, inputs, attention_mask=attention_mask, training=training)
        x = self.attention_norm(inputs + self.attention_dropout(attended, training=training))
        hidden = self.ff_output(self.ff_hidden(x))
        return self.ff_norm(x + self.ff_dropout(hidden, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package=NAME)
class MaskedPooling(keras.layers.Layer):
    """Mean, max or sum over the non-padding tokens; a text with no tokens pools to zeros."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "max", "sum"):
            raise ValueError(f"MaskedPooling: mode must be 'mean', 'max' or 'sum', got {mode!r}.")
        self.mode = mode

    def call(self, inputs, padding_mask):
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), inputs.dtype)
        count = keras.ops.sum(mask, axis=1)
        if self.mode == "sum":
            return keras.ops.sum(inputs * mask, axis=1)
        if self.mode == "mean":
            return keras.ops.sum(inputs * mask, axis=1) / keras.ops.maximum(count, 1.0)
        pooled = keras.ops.max(keras.ops.where(mask > 0, inputs, -1e4), axis=1)
        return keras.ops.where(count > 0, pooled, keras.ops.zeros_like(pooled))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _build_backbone_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """A keras-hub backbone (frozen; see `fine_tune`) → its pooled output (BERT-like presets)
    or masked mean pooling → dropout → softmax head."""
    backbone = _from_preset("Backbone", spec["backbone"])
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
        init = pretrained_embeddings(config.embeddings, spec["vocabulary"], config.seed)
        token_embedding.embeddings.assign(init.matrix)
        token_embedding.trainable = config.embeddings_trainable
    tasks.compile_model(model, kind, config, spec["sizes"]["train"], spec.get("target_std", 1.0))
    return model


def text_model(model: keras.Model, spec: dict[str, Any]) -> keras.Model:
    """`model` behind the train split's `TextVectorization`: raw strings [batch] in."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    if "backbone" in spec:
        features = hub_preprocessor(spec["backbone"], spec["sequence_length"])(texts)
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
    length = spec["sequence_length"]

    def classify(token_ids):
        output = tf.cast(model(token_ids, training=False), tf.float32)
        if spec.get("task") == "regression":
            return {"prediction": tf.reshape(output, [-1])}
        return {"probabilities": output, "class_id": tf.argmax(output, axis=-1)}

    vocabulary = ["", "[UNK]", *spec["vocabulary"]]
    rng = np.random.default_rng(0)
    sample = rng.integers(2, len(vocabulary), (4, length))
    sample[:, length // 2 :] = 0  # padded, as short texts are
    ngrams = spec.get("ngrams", 1)
    return convert.Portable(
        fn=classify,
        signature=[tf.TensorSpec([None, length], tf.int64, name="token_ids")],
        sample={"token_ids": sample.astype("int64")},
        reference=None,
        notes={
            "input": f"token_ids: int64 [batch, {length}]",
            "vectorize": f"standardize ({spec['standardize']}: lower-case, remove ASCII "
            "punctuation), split on whitespace, "
            + (
                f"then add the {ngrams}-grams (words joined by one space) after the words, "
                if ngrams > 1
                else ""
            )
            + f"map each token to its line number in vocabulary.txt (1 when absent, 0 is "
            f"padding), cut or zero-pad to {length}",
            "vocabulary": "vocabulary.txt",
            "outputs": "prediction float32 [batch]"
            if spec.get("task") == "regression"
            else "probabilities float32 [batch, classes]; class_id int64 [batch] (the "
            "manifest's class_names[class_id] is its name)",
        },
        assets={"vocabulary.txt": "\n".join(vocabulary) + "\n"},
    )


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s texts (at most `limit`) as the portable function takes them, token ids from
    the train split's vocabulary, with the raw strings beside them as `text` (the SavedModel's
    input); scored by accuracy of the class_id."""
    texts, labels = [], []
    for x, y in data.splits[split].take(-1 if limit is None else limit).as_numpy_iterator():
        texts.append(x)
        labels.append(y)
    labels = np.asarray(labels)
    ids = np.zeros((0, spec["sequence_length"]), np.int64)
    if texts:
        ids = vectorizer(spec)(tf.constant(texts, tf.string)).numpy().astype(np.int64)
    inputs = {"token_ids": ids, "text": np.array(texts, dtype=object)}
    if spec.get("task") == "regression":
        return convert.PortableData(
            inputs=inputs,
            metric=f"{split}_mae",
            score=lambda outputs: float(np.mean(np.abs(outputs["prediction"] - labels))),
        )
    return convert.PortableData(
        inputs=inputs,
        metric=f"{split}_accuracy",
        score=lambda outputs: float(np.mean(outputs["class_id"] == labels)),
    )


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
    """The mistakes as a Markdown table."""
    lines = ["| p | predicted | true | text |", "|---|---|---|---|"]
    for m in mistakes:
        cell = m["text"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {m['probability']:.3f} | {m['predicted']} | {m['true']} | {cell} |")
    return "\n".join(lines) + "\n"


def evaluate(model: keras.Model, data: Data, out_dir: str | Path | None) -> dict[str, Any]:
    """Test-split accuracy, per-class metrics and the most confident mistakes; writes
    confusion_matrix.png and confident_mistakes.md to `out_dir` when given."""
    texts, labels = [], []
    for x, y in data.test.as_numpy_iterator():
        texts += [t.decode("utf-8", errors="replace") for t in x]
        labels.append(y)
    labels = np.concatenate(labels)
    end_to_end = text_model(model, data.spec)
    probabilities = end_to_end.predict(data.test.map(text.texts_only), verbose=0)
    probabilities = probabilities.astype("float64")
    class_names = data.spec["class_names"]
    if data.spec.get("task") == "regression":
        metrics = tasks.test_metrics("regression", labels, probabilities)
        if out_dir is not None:
            path = Path(out_dir) / "predictions.png"
            tasks.plot("regression", metrics, labels, probabilities, path)
        return metrics
    metrics = reports.classification_metrics(labels, probabilities, class_names)
    metrics["confident_mistakes"] = confident_mistakes(
        texts, labels, probabilities, class_names, MISTAKES_SHOWN
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        reports.plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, out_dir / "confusion_matrix.png"
        )
        files.write_text(
            out_dir / "confident_mistakes.md",
            "# Most confident mistakes (test split)\n\n"
            + mistakes_table(metrics["confident_mistakes"]),
        )
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
