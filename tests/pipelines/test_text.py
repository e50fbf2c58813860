import keras
import tensorflow as tf
from ktemplate.pipelines import text


def test_texts_that_standardize_to_nothing_still_pad_to_the_sequence_length():
    vectorizer = keras.layers.TextVectorization(
        output_sequence_length=8, ngrams=2, vocabulary=["good", "film", "good film"]
    )
    ds = tf.data.Dataset.from_tensor_slices((["!", "good film", "...", ""], [0, 1, 0, 1]))
    (ids, labels), *_ = list(text.prepare(ds, 4, False, vectorizer=vectorizer))
    assert ids.shape == (4, 8) and labels.shape == (4,)
    assert ids.numpy()[0].tolist() == [0] * 8  # all padding: the model answers with its prior
    assert ids.numpy()[1][:3].tolist() == [2, 3, 4]  # good, film, "good film"


def test_directory_empty_texts_are_left_out_with_a_warning_and_empty_classes_refused(tmp_path):
    import pytest

    from tests.helpers.text import make_text_folder

    root = make_text_folder(tmp_path / "texts", per_class=10)
    (root / "neg" / "blank.txt").write_text("  \n", encoding="utf-8")
    (root / "pos" / "empty.txt").write_text("", encoding="utf-8")
    splits = text.load_directory(root)
    assert sum(splits.sizes.values()) == 20  # the two empty files are not examples
    (warning,) = splits.warnings
    assert "2 empty (or whitespace-only) .txt file(s)" in warning and "'neg' 1" in warning
    (root / "unused").mkdir()
    with pytest.raises(ValueError, match="'unused' in .* hold no .txt files"):
        text.load_directory(root)
    (root / "unused" / "a.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Every .txt file of class\\(es\\) 'unused'"):
        text.load_directory(root)
