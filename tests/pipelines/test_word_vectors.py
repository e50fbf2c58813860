import numpy as np
import pytest
from ktemplate.pipelines import word_vectors


def write_text_vectors(path, vectors: dict[str, list[float]], header: bool = False) -> None:
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [" ".join([word, *map(str, v)]) for word, v in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


VECTORS = {"good": [1.0, 0.0, 2.0], "film": [0.0, 1.0, 0.0], "not": [-1.0, 0.0, 0.0]}


@pytest.mark.parametrize("header", [False, True])
def test_text_format_keeps_only_wanted_words(tmp_path, header):
    path = tmp_path / "vectors.txt"
    write_text_vectors(path, {**VECTORS, "unused": [9.0, 9.0, 9.0]}, header)
    vectors, dim = word_vectors.read(path, {"good", "not", "absent"})
    assert dim == 3 and set(vectors) == {"good", "not"}
    np.testing.assert_array_equal(vectors["good"], [1.0, 0.0, 2.0])


def test_npy_format_with_word_list(tmp_path):
    np.save(tmp_path / "glove.npy", np.array(list(VECTORS.values()), "float32"))
    (tmp_path / "glove.words").write_text("\n".join(VECTORS) + "\n", encoding="utf-8")
    vectors, dim = word_vectors.read(tmp_path / "glove.npy", {"film"})
    assert dim == 3 and list(vectors) == ["film"]
    np.testing.assert_array_equal(vectors["film"], [0.0, 1.0, 0.0])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(word_vectors.WordVectorsError, match="does not exist"):
        word_vectors.read(tmp_path / "nope.txt", {"a"})
    np.save(tmp_path / "m.npy", np.zeros([2, 3], "float32"))
    with pytest.raises(word_vectors.WordVectorsError, match="m.words"):
        word_vectors.read(tmp_path / "m.npy", {"a"})
    (tmp_path / "m.words").write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(word_vectors.WordVectorsError, match="names 3 words"):
        word_vectors.read(tmp_path / "m.npy", {"a"})
    (tmp_path / "bad.txt").write_text("a 1 2 3\nb 1 x 3\n", encoding="utf-8")
    with pytest.raises(word_vectors.WordVectorsError, match="line 2"):
        word_vectors.read(tmp_path / "bad.txt", {"b"})


def test_embedding_matrix_rows_follow_the_vocabulary():
    vectors = {k: np.asarray(v, "float32") for k, v in VECTORS.items()}
    vocabulary = ["good", "film", "not good", "unseen", "not unseen"]
    init = word_vectors.embedding_init(vocabulary, vectors, 3, seed=0)
    assert init.matrix.shape == (7, 3)  # padding, OOV, 5 tokens
    np.testing.assert_array_equal(init.matrix[0], 0.0)  # padding
    np.testing.assert_array_equal(init.matrix[2], VECTORS["good"])
    np.testing.assert_array_equal(init.matrix[4], [0.0, 0.0, 1.0])  # mean of "not", "good"
    assert init.summary() == {
        "dim": 3,
        "words_found": 2,
        "words": 3,
        "ngrams_found": 1,
        "ngrams": 2,
    }
    again = word_vectors.embedding_init(vocabulary, vectors, 3, seed=0)
    other = word_vectors.embedding_init(vocabulary, vectors, 3, seed=1)
    np.testing.assert_array_equal(init.matrix, again.matrix)
    assert not np.array_equal(init.matrix[5], other.matrix[5])  # unseen words: random per seed
    with pytest.raises(word_vectors.WordVectorsError, match="none of the vocabulary"):
        word_vectors.embedding_init(["x"], {}, 3, seed=0)
