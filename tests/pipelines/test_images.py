import numpy as np
import pytest
import tensorflow as tf
from ktemplate.pipelines import images
from ktemplate.pipelines.sources import DataUnavailableError, parse_source

from tests.helpers.images import make_image_folder


def test_digits_split_sizes_and_pixels():
    splits = images.load_digits()
    assert splits.sizes == {"train": 1259, "val": 179, "test": 359}
    assert sum(splits.sizes.values()) == 1797
    x, y = next(iter(splits.train))
    assert x.dtype == tf.uint8 and x.shape == (8, 8, 1) and y.dtype == tf.int64
    pixels = np.stack([x for x, _ in splits.train.as_numpy_iterator()])
    assert pixels.max() == 255 and pixels.min() == 0


def test_channel_stats_use_train_split_only():
    train = tf.data.Dataset.from_tensor_slices(
        (np.full((4, 2, 2, 1), 10, "uint8"), np.zeros(4, "int64"))
    )
    mean, variance = images.channel_stats(train, 1)
    assert mean == [10.0] and variance[0] == pytest.approx(0.0, abs=1e-9)
    splits = images.load_digits()
    mean, variance = images.channel_stats(splits.train, 1)
    train_pixels = np.stack([x for x, _ in splits.train.as_numpy_iterator()]).astype("float64")
    assert mean[0] == pytest.approx(train_pixels.mean())
    assert variance[0] == pytest.approx(train_pixels.var())


def test_augmentation_on_train_only():
    splits = images.load_digits()
    augment = images.augmenter(0.2, 0.1, 0.1, 0.1, "none", "constant", seed=1)
    raw = next(iter(splits.val.batch(16)))[0].numpy().astype("float32")
    val = images.prepare(splits.val, 16, training=False)
    first = next(iter(val))[0].numpy()
    np.testing.assert_array_equal(first, raw)  # unshuffled, unaugmented
    np.testing.assert_array_equal(next(iter(val))[0].numpy(), first)
    train = images.prepare(splits.val, 16, training=True, augment=augment, seed=1)
    batch = next(iter(train))[0].numpy()
    assert batch.shape == (16, 8, 8, 1) and batch.dtype == np.float32
    sorted_raw = np.sort(np.stack([x for x, _ in splits.val.as_numpy_iterator()]).reshape(-1))
    assert not np.array_equal(np.sort(batch.reshape(-1)), sorted_raw[: batch.size])


def test_directory_source(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=6, size=(12, 10))
    splits = images.load_images(f"dir:{root}", image_size=0, channels=1)
    assert splits.class_names == ["cat", "dog"]
    assert splits.image_shape == (12, 10, 1)
    assert splits.sizes == {"train": 8, "val": 2, "test": 2}
    labels = [int(y) for _, y in splits.test]
    assert sorted(labels) == [0, 1]
    resized = images.load_images(f"dir:{root}", image_size=16, channels=3)
    x, _ = next(iter(resized.train))
    assert x.shape == (16, 16, 3) and x.dtype == tf.uint8


def test_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Dataset folder not found"):
        images.load_images(f"dir:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images found"):
        images.load_images(f"dir:{tmp_path / 'empty'}")
    one = make_image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ValueError, match="one class only \\('only'\\)"):
        images.load_images(f"dir:{one}")
    # An empty class folder would silently give a model that does not know that class.
    missing_class = make_image_folder(tmp_path / "three", classes=("cat", "dog"))
    (missing_class / "bird").mkdir()
    (missing_class / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    with pytest.raises(ValueError, match="Class folder\\(s\\) 'bird' in .* hold no"):
        images.load_images(f"dir:{missing_class}")
    corrupt = make_image_folder(tmp_path / "corrupt")
    (corrupt / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="Could not decode 1 image file.*broken.png"):
        images.load_images(f"dir:{corrupt}")


def test_unknown_dataset_kind():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*tfds:mnist"):
        parse_source("mnist", allowed=("digits", "tfds", "dir"))
    with pytest.raises(ValueError, match="Unknown dataset 'tfds:'"):
        parse_source("tfds:", allowed=("digits", "tfds", "dir"))


def test_tfds_source_with_mock_data(online):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        splits = images.load_images("tfds:mnist")
        assert splits.image_shape == (28, 28, 1)
        assert splits.class_names == [str(i) for i in range(10)]
        x, y = next(iter(splits.train))
        assert x.shape == (28, 28, 1) and x.dtype == tf.uint8
        assert images.count_examples(splits.test) == 20
        resized = images.load_images("tfds:mnist", image_size=16)
        assert next(iter(resized.val))[0].shape == (16, 16, 1)


def test_tfds_unknown_name():
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'no_such_dataset_xyz'"):
        images.load_images("tfds:no_such_dataset_xyz")


def test_tfds_not_prepared_and_offline(tmp_path, monkeypatch):
    # A closed loopback port stands in for an unreachable internet.
    monkeypatch.setenv("KTEMPLATE_NETWORK_PROBE", "127.0.0.1:9")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailableError, match="not prepared.*cannot reach the internet"):
        images.load_images("tfds:mnist")


def test_decode_images_resizes_each_image():
    small = tf.io.encode_png(np.full((4, 4, 1), 200, "uint8"))
    large = tf.io.encode_png(np.full((16, 12, 1), 100, "uint8"))
    decoded = images.decode_images(tf.stack([small, large]), 1, (8, 8)).numpy()
    assert decoded.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(decoded[0], 200)
    np.testing.assert_allclose(decoded[1], 100)


def test_directory_images_stream_from_their_files(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=10, size=(12, 10))
    splits = images.load_directory(root, 0, 1)
    # The split datasets decode files: change a train file after loading and the next pass
    # sees the new pixels (nothing was decoded into memory).
    first_path = sorted((root / "cat").glob("*.png"))[0]
    before = next(iter(splits.train))[0].numpy()
    from tests.helpers.images import write_png

    write_png(first_path, np.full((12, 10, 1), 7, "uint8"))
    after = next(iter(splits.train))[0].numpy()
    assert not np.array_equal(before, after) and (after == 7).all()
    assert splits.sizes == {"train": 14, "val": 2, "test": 4}


def test_prepare_caches_in_memory_on_disk_or_not_at_all(tmp_path):
    ds = tf.data.Dataset.from_tensor_slices(
        (np.arange(8 * 4, dtype="uint8").reshape(8, 2, 2, 1), np.arange(8))
    )
    for cache in ("memory", "none", str(tmp_path / "cache" / "train")):
        batches = list(images.prepare(ds, 4, training=False, cache=cache))
        assert [b[0].shape[0] for b in batches] == [4, 4]
    assert list((tmp_path / "cache").iterdir())  # the file cache was written


def test_channel_stats_read_a_bounded_spread_sample(monkeypatch):
    labels = np.repeat([0, 1], 50)  # sorted by class, like a split of a dir: folder
    pixels = np.where(labels == 0, 10, 200).astype("uint8").reshape(100, 1, 1, 1)
    ds = tf.data.Dataset.from_tensor_slices((pixels, labels))
    monkeypatch.setattr(images, "STATS_SAMPLE", 10)
    mean, _ = images.channel_stats(ds, 1, size=100)
    assert mean == [pytest.approx(105.0)]  # both classes in the sample, not the first 10 only
    assert len(list(images.spread_sample(ds, 100, 10))) == 10


def test_channels_auto_and_transparency_are_read_as_the_export_reads_them(tmp_path):
    from tests.helpers.images import write_png

    gray = make_image_folder(tmp_path / "gray")
    splits = images.load_images(f"dir:{gray}", channels="auto")
    assert splits.image_shape[-1] == 1 and "all 10 images are gray" in splits.notes["channels"]
    # Colour with an alpha channel (RGBA PNGs, as icons are saved): colour is kept, and
    # transparent pixels become white, whatever RGB they hold.
    colour = make_image_folder(tmp_path / "colour", channels=3)
    rgba = np.zeros((12, 10, 4), np.uint8)
    rgba[..., 0], rgba[:6, :, 3] = 200, 255  # red on the top half; the bottom half transparent
    write_png(colour / "cat" / "icon.png", rgba)
    splits = images.load_images(f"dir:{colour}", channels="auto")
    assert splits.image_shape[-1] == 3
    assert "1 of 11 images have transparency: composited onto white" in splits.notes["alpha"]
    decoded = images.decode_composited(tf.io.read_file(str(colour / "cat" / "icon.png")), 3)
    np.testing.assert_array_equal(decoded[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(decoded[-1, 0], [255, 255, 255])
    # Gray + alpha to one channel, and the serving decode agrees with the training decode.
    la = np.stack([np.full((4, 4), 50, np.uint8), np.full((4, 4), 0, np.uint8)], axis=-1)
    la[0, 0, 1] = 255
    write_png(tmp_path / "la.png", la)
    data = tf.io.read_file(str(tmp_path / "la.png"))
    one = images.decode_composited(data, 1).numpy()[..., 0]
    assert one[0, 0] == 50 and one[1, 1] == 255
    served = images.decode_images(tf.stack([data]), 1, (4, 4)).numpy()[0, ..., 0]
    np.testing.assert_array_equal(served, one)
