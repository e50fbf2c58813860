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
