import numpy as np
import pytest
import tensorflow as tf
from ktemplate.pipelines import denoising

from tests.helpers.images import write_png


def test_skimage_split_is_by_image_and_offline_list_is_explicit():
    names = denoising.SKIMAGE_SPLITS
    train, val, test = set(names["train"]), set(names["val"]), set(names["test"])
    assert not (train & test) and not (train & val) and not (val & test)
    clean = denoising.load_skimage(channels=1)
    assert clean.names["test"] == list(names["test"])
    assert all(im.dtype == np.uint8 and im.shape[-1] == 1 for im in clean.train + clean.test)
    rgb = denoising.load_skimage(channels=3)
    assert set(rgb.names["test"]) <= denoising.SKIMAGE_COLOR and rgb.test[0].shape[-1] == 3
    assert all(rgb.names[split] for split in ("train", "val", "test"))


def test_gaussian_noise_has_the_configured_sigma_and_fixed_noise_repeats():
    clean = np.full((64, 64, 1), 128, "uint8")
    noise = denoising.Noise("gaussian", sigma=0.1)
    first = denoising.fixed_noisy([clean], noise, stream=1)[0]
    again = denoising.fixed_noisy([clean], noise, stream=1)[0]
    np.testing.assert_array_equal(first, again)
    assert abs(float((first - 128 / 255).std()) - 0.1) < 0.01
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_salt_pepper_and_poisson_noise():
    clean = tf.fill([100, 100, 1], 0.5)
    salted = denoising.add_noise(clean, denoising.Noise("salt_pepper", amount=0.2), [1, 2])
    hit = float(tf.reduce_mean(tf.cast(tf.not_equal(salted, 0.5), tf.float32)))
    assert 0.17 < hit < 0.23
    assert set(np.unique(salted.numpy())) == {0.0, 0.5, 1.0}
    counted = denoising.add_noise(clean, denoising.Noise("poisson", peak=20.0), [1, 2]).numpy()
    assert abs(counted.mean() - 0.5) < 0.02 and counted.std() > 0.1


def test_blind_noise_draws_sigma_from_the_range():
    noise = denoising.Noise("gaussian", sigma=0.05, sigma_max=0.3)
    stds = [
        float(tf.math.reduce_std(denoising.add_noise(tf.fill([64, 64, 1], 0.5), noise, [0, i])))
        for i in range(12)
    ]
    assert min(stds) < 0.15 < max(stds)


@pytest.mark.parametrize(
    "kwargs",
    [{"sigma": 0.0}, {"sigma": 1.5}, {"sigma": -0.1}, {"sigma": 0.2, "sigma_max": 0.1}],
)
def test_noise_sigma_out_of_range(kwargs):
    with pytest.raises(ValueError, match="noise_sigma"):
        denoising.Noise("gaussian", **kwargs)


def test_train_patches_are_augmented_crops_with_new_noise_each_epoch():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 30, 1), dtype="uint8"), np.zeros((20, 50, 1), "uint8")]
    ds = denoising.train_patches(images, 16, 8, 4, denoising.Noise(), seed=1)
    epoch1 = [(x.numpy(), y.numpy()) for x, y in ds]
    epoch2 = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [x.shape for x, _ in epoch1] == [(4, 16, 16, 1)] * 2
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])
    # Every clean patch is a (flipped/rotated) crop of one of the images.
    flat = {*images[0].ravel().tolist(), 0}
    assert set(np.round(epoch1[0][1] * 255).astype(int).ravel().tolist()) <= flat


def test_whole_images_keep_order_and_sizes():
    images = [np.zeros((20, 30, 1), "uint8"), np.zeros((20, 30, 1), "uint8"), np.ones((9, 7, 1))]
    images[2] = images[2].astype("uint8")
    batches = list(denoising.whole_images(images, 8, denoising.Noise()).as_numpy_iterator())
    assert [x.shape for x, _ in batches] == [(2, 20, 30, 1), (1, 9, 7, 1)]


def test_directory_without_readable_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="No readable images"), pytest.warns(UserWarning):
        denoising.load_directory(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="not found"):
        denoising.load_directory(tmp_path / "missing", 1)


def test_corrupt_file_is_skipped_and_counted(tmp_path):
    for i in range(4):
        write_png(tmp_path / f"{i}.png", np.full((20, 20, 3), 40 * i, "uint8"))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        clean = denoising.load_directory(tmp_path, 1)
    assert clean.skipped == [str(tmp_path / "broken.jpg")]
    assert sum(len(clean.names[s]) for s in ("train", "val", "test")) == 4
    assert clean.train[0].shape == (20, 20, 1)


def test_images_smaller_than_patch_size(tmp_path):
    for i in range(4):
        write_png(tmp_path / f"{i}.png", np.zeros((12, 40, 1), "uint8"))
    with pytest.raises(ValueError, match="smaller than patch_size 16"):
        denoising.load_clean_images(f"dir:{tmp_path}", 1, patch_size=16)


def test_one_or_two_images_are_split_by_region(tmp_path):
    rng = np.random.default_rng(0)
    write_png(tmp_path / "a.png", rng.integers(0, 255, (100, 40, 1), dtype="uint8"))
    write_png(tmp_path / "b.png", rng.integers(0, 255, (60, 30, 1), dtype="uint8"))
    with pytest.warns(UserWarning, match="2 readable image"):
        clean = denoising.load_clean_images(f"dir:{tmp_path}", 1, patch_size=16)
    assert clean.names["train"] == ["a.png (rows 0-64)", "b.png (rows 0-28)"]
    assert clean.names["val"] == ["a.png (rows 64-80)", "b.png (rows 28-44)"]
    assert clean.names["test"] == ["a.png (rows 80-100)", "b.png (rows 44-60)"]
    whole = tf.io.decode_png((tmp_path / "a.png").read_bytes()).numpy()
    stacked = np.concatenate([clean.train[0], clean.val[0], clean.test[0]])
    np.testing.assert_array_equal(stacked, whole)  # every pixel in exactly one split
    assert len(denoising.tiles(clean.val, 16)) > 0  # validation tiles exist
    with pytest.raises(ValueError, match="too small to cut"), pytest.warns(UserWarning):
        denoising.load_clean_images(f"dir:{tmp_path}", 1, patch_size=32)
