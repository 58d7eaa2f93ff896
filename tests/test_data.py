"""birds_tf.data: fixed splits, pipeline contract, augmentation, and the missing-data errors."""
import dataclasses
import math
import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from birds_tf.data import DATASETS, DatasetNotFoundError, Splits, get_dataset
from birds_tf.data import augment, cifar, digits, tiny_imagenet
from tests.cifar_mock import cifar_mock


def _arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _check_batches(ds, shape, num_classes, batch_size):
    spec_x, spec_y = ds.element_spec
    assert spec_x.dtype == tf.float32 and spec_y.dtype == tf.int32
    assert tuple(spec_x.shape[1:]) == shape
    x, y = _arrays(ds)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert y.min() >= 0 and y.max() < num_classes
    sizes = [int(b.shape[0]) for b, _ in ds]
    assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size
    return x, y


# ----------------------------------------------------------------------------- digits


def test_api_names():
    assert DATASETS == ("digits", "animals", "cifar10", "cifar100", "tiny_imagenet", "synthetic")
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_digits_splits_shapes_and_stratification():
    s = get_dataset("digits", batch_size=100, eval_batch_size=250)
    assert isinstance(s, Splits) and s.name == "digits"
    assert (s.num_train, s.num_val, s.num_test) == (1077, 360, 360)
    assert s.num_train + s.num_val + s.num_test == 1797
    assert s.num_classes == 10 and s.input_shape == (8, 8, 1)
    assert s.steps_per_epoch == math.ceil(1077 / 100) == len(list(s.train))
    assert s.mean == digits.MEAN and s.std == digits.STD
    labels = {}
    for split, n, bs in [("train", 1077, 100), ("train_eval", 1077, 250), ("val", 360, 250),
                         ("test", 360, 250)]:
        x, y = _check_batches(getattr(s, split), (8, 8, 1), 10, bs)
        assert len(y) == n
        assert np.allclose(x * 16, np.round(x * 16), atol=1e-5)  # augmentation is exact
        labels[split] = y
    for split in ("train", "val", "test"):  # stratified: every class, in proportion
        counts = np.bincount(labels[split], minlength=10)
        assert counts.min() > 0
        np.testing.assert_allclose(counts / counts.sum(), np.bincount(labels["train_eval"]) / 1077,
                                   atol=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.num_train = 3


def test_digits_split_is_deterministic_and_disjoint():
    a, b = get_dataset("digits", batch_size=512), get_dataset("digits", batch_size=64, seed=5)
    for split in ("train_eval", "val", "test"):
        xa, ya = _arrays(getattr(a, split))
        xb, yb = _arrays(getattr(b, split))
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    rows = {split: {r.tobytes() for r in _arrays(getattr(a, split))[0].reshape(-1, 64)}
            for split in ("train_eval", "val", "test")}
    # load_digits has a few duplicate images; the splits may share those, not more.
    assert len(rows["val"] & rows["test"]) < 5 and len(rows["train_eval"] & rows["test"]) < 10


def test_digits_train_reshuffles_each_epoch_and_caps():
    s = get_dataset("digits", batch_size=64, augment=False)
    x1, y1 = _arrays(s.train)
    x2, y2 = _arrays(s.train)
    assert not np.array_equal(y1, y2)  # a new order every pass
    xe, ye = _arrays(s.train_eval)
    np.testing.assert_array_equal(np.sort(y1), np.sort(ye))  # the same images, once each
    np.testing.assert_allclose(np.sort(x1.sum(axis=(1, 2, 3))), np.sort(xe.sum(axis=(1, 2, 3))))
    c = get_dataset("digits", batch_size=16, max_train=40, max_eval=20)
    assert (c.num_train, c.num_val, c.num_test, c.steps_per_epoch) == (40, 20, 20, 3)
    xc, yc = _arrays(c.train_eval)
    np.testing.assert_array_equal(xc, xe[:40])  # the first N after the fixed split
    assert len(_arrays(c.train)[1]) == 40 and len(_arrays(c.test)[1]) == 20


def test_digits_augmentation_changes_images_but_not_labels():
    plain = get_dataset("digits", batch_size=2000, augment=False, seed=3)
    aug = get_dataset("digits", batch_size=2000, augment=True, seed=3)
    xp, yp = _arrays(plain.train)
    xa, ya = _arrays(aug.train)
    np.testing.assert_array_equal(yp, ya)  # same seed: same shuffle order
    assert xa.shape == xp.shape and xa.min() >= 0 and xa.max() <= 1
    changed = np.mean([not np.array_equal(a, p) for a, p in zip(xa, xp)])
    assert 0.5 < changed < 1.0  # 8 of 9 shifts move the image; a few blank-edge digits survive
    # Pad 1 + crop: every output is one of the nine one-pixel shifts of its input.
    padded = np.pad(xp, ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifts = np.stack([padded[:, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)])
    assert np.all(np.any(np.all(shifts == xa[None], axis=(2, 3, 4)), axis=0))


def test_digits_stats_constant_matches_train_split():
    (x, _), _, _ = digits.fixed_split()
    assert abs(x.mean() - digits.MEAN[0]) < 1e-3 and abs(x.std() - digits.STD[0]) < 1e-3


# ----------------------------------------------------------------------------- augmentation


def test_crop_flip_is_an_exact_pad_crop_flip():
    x = tf.random.uniform([16, 32, 32, 3], seed=1)
    y = augment.augment_batch(x, tf.constant([3, 4], tf.int64), pad=4, flip=True).numpy()
    padded = np.pad(x.numpy(), ((0, 0), (4, 4), (4, 4), (0, 0)))
    flips = []
    for i in range(16):
        found = [(oy, ox, f) for oy in range(9) for ox in range(9) for f in (0, 1)
                 if np.array_equal(padded[i, oy:oy + 32, ox:ox + 32][:, ::(-1 if f else 1)], y[i])]
        assert found, f"image {i} is not a pad-4 crop (+flip) of its input"
        flips.append(found[0][2])
    assert 0 < sum(flips) < 16
    again = augment.augment_batch(x, tf.constant([3, 4], tf.int64), pad=4, flip=True).numpy()
    np.testing.assert_array_equal(y, again)  # stateless: the seed decides


def test_rotation_keeps_shape_and_fills_corners_with_zero():
    ones = tf.ones([8, 32, 32, 3])
    y = augment.augment_batch(ones, tf.constant([1, 2], tf.int64), pad=0, rotate_degrees=15.0)
    y = y.numpy()
    assert y.shape == (8, 32, 32, 3) and y.min() >= 0 and y.max() <= 1
    np.testing.assert_array_equal(y[:, 12:20, 12:20], 1.0)  # the centre stays
    assert (y.mean(axis=(1, 2, 3)) < 1).sum() >= 7  # corners rotated out (unless angle ~ 0)
    # Angles stay within 15 degrees: the lost area of a 15-degree rotation is about 12%.
    assert y.mean(axis=(1, 2, 3)).min() > 0.85
    flat = augment.rotation_matrices(1, 32, 32, 0.0, tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_allclose(flat[0], [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-6)


# ----------------------------------------------------------------------------- CIFAR (mocked tfds)


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_through_tfds_mock(name, num_classes, tmp_path):
    index = np.random.default_rng(0).permutation(np.arange(44988, 45012))  # 12 train, 12 val
    with tfds.testing.mock_data(as_dataset_fn=cifar_mock(index, 12, num_classes)):
        s = get_dataset(name, batch_size=5, data_dir=str(tmp_path), seed=1)
        plain = get_dataset(name, batch_size=5, data_dir=str(tmp_path), seed=1, augment=False)
    assert (s.num_train, s.num_val, s.num_test, s.steps_per_epoch) == (12, 12, 12, 3)
    assert s.num_classes == num_classes and s.input_shape == (32, 32, 3)
    assert (s.mean, s.std) == cifar.STATS[name]
    assert cifar.ROTATE_DEGREES[name] == (15.0 if name == "cifar100" else 0.0)
    # First passes of both: the same seed gives the same shuffle order, so pairs line up.
    xa, ya = _arrays(s.train)
    xp, yp = _arrays(plain.train)
    np.testing.assert_array_equal(ya, yp)
    assert sum(not np.array_equal(a, p) for a, p in zip(xa, xp)) >= 10
    for split in ("train", "train_eval", "val", "test"):
        _check_batches(getattr(s, split), (32, 32, 3), num_classes, 5)
    for split in ("train_eval", "val", "test"):  # unaugmented and unshuffled
        a, b = _arrays(getattr(s, split)), _arrays(getattr(s, split))
        np.testing.assert_array_equal(a[0], b[0])
    xe = _arrays(s.train_eval)[0]
    np.testing.assert_allclose(xe * 255, np.round(xe * 255), atol=1e-3)  # uint8 / 255


def test_cifar_split_by_file_index_not_tfds_order(tmp_path):
    """tfds stores CIFAR's training images in a hashed order: the validation split must be the
    images whose id says index >= 45000 (the reference's), wherever tfds put them."""
    seen = []
    rng = np.random.default_rng(0)
    index = rng.permutation(np.concatenate([rng.choice(45000, 45, replace=False),
                                            45000 + rng.choice(5000, 5, replace=False)]))
    with tfds.testing.mock_data(as_dataset_fn=cifar_mock(index, 10, seen=seen)):
        s = get_dataset("cifar10", batch_size=8, data_dir=str(tmp_path))
        capped = get_dataset("cifar10", batch_size=8, max_train=20, max_eval=3)
    assert set(seen) == {"train", "test"}
    assert (s.num_train, s.num_val, s.num_test, s.steps_per_epoch) == (45, 5, 10, 6)
    val_x, val_y = _arrays(s.val)
    train_x, train_y = _arrays(s.train_eval)
    want_val = sorted(int(i) % 256 for i in index if i >= 45000)
    want_train = sorted(int(i) % 256 for i in index if i < 45000)
    assert sorted(np.round(val_x[:, 0, 0, 0] * 255).astype(int).tolist()) == want_val
    assert sorted(np.round(train_x[:, 0, 0, 0] * 255).astype(int).tolist()) == want_train
    assert len(val_y) == 5 and len(_arrays(s.test)[1]) == 10
    np.testing.assert_array_equal(cifar.file_index(tf.constant(["train_45000", "test_00012"])),
                                  [45000, 12])
    assert (capped.num_train, capped.num_val, capped.num_test) == (20, 3, 3)
    assert capped.steps_per_epoch == 3
    assert len(_arrays(capped.train)[1]) == 20 and len(_arrays(capped.val)[1]) == 3


def test_cifar_missing_data_fails_fast_with_instructions(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("birds_tf.data tried to download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    start = time.time()
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset("cifar10", data_dir=str(tmp_path))
    assert time.time() - start < 10
    message = str(info.value)
    assert "cifar10" in message
    assert f"tfds build cifar10 --data_dir={tmp_path}" in message
    assert "download_and_prepare()" in message
    assert f"train_eval.data_dir='{tmp_path}'" in message
    assert os.listdir(tmp_path) == []
    # A half-prepared folder (an interrupted download) gets the same error.
    (tmp_path / "cifar100" / "3.0.2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="tfds build cifar100"):
        get_dataset("cifar100", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- Tiny-ImageNet


WNIDS = ["n03", "n01", "n02"]  # not sorted on purpose: labels follow sorted wnids


def _color(label, k):
    return (40 + 60 * label, 10 + 20 * k, 128)


def _write_jpeg(path, color):
    image = np.broadcast_to(np.array(color, np.uint8), (64, 64, 3))
    tf.io.write_file(str(path), tf.io.encode_jpeg(image, quality=95))


def _tiny_folder(base):
    root = base / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for wnid in WNIDS:
        label = sorted(WNIDS).index(wnid)
        (root / "train" / wnid / "images").mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for k in range(10):
            _write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", _color(label, k))
    lines = []
    for i in range(6):
        wnid = WNIDS[i % 3]
        _write_jpeg(root / "val" / "images" / f"val_{i}.JPEG", _color(sorted(WNIDS).index(wnid), i))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def _identify(x):
    """(label, k) from the colour each synthetic image was filled with."""
    r, g = np.round(x.mean(axis=(1, 2))[:, :2] * 255).T
    return [(int(round((a - 40) / 60)), int(round((b - 10) / 20))) for a, b in zip(r, g)]


def test_tiny_imagenet_folder_labels_and_fixed_split(tmp_path):
    _tiny_folder(tmp_path)
    s = get_dataset("tiny_imagenet", batch_size=8, data_dir=str(tmp_path))
    assert (s.num_train, s.num_val, s.num_test, s.num_classes) == (27, 3, 6, 3)
    assert s.input_shape == (64, 64, 3) and s.steps_per_epoch == 4
    assert (s.mean, s.std) == (tiny_imagenet.MEAN, tiny_imagenet.STD)
    # ImageFolder order (class by class, files sorted), then the reference's seed-10 permutation.
    order = [(label, k) for label in range(3) for k in range(10)]
    perm = np.random.RandomState(10).permutation(30)
    for split, idx in (("train_eval", perm[:27]), ("val", perm[27:])):
        x, y = _check_batches(getattr(s, split), (64, 64, 3), 3, 8)
        ids = _identify(x)
        assert ids == [order[i] for i in idx]
        assert list(y) == [label for label, _ in ids]
    x, y = _check_batches(s.test, (64, 64, 3), 3, 8)
    ids = _identify(x)
    assert sorted(ids) == sorted((sorted(WNIDS).index(WNIDS[i % 3]), i) for i in range(6))
    assert list(y) == [label for label, _ in ids]
    xt, yt = _check_batches(s.train, (64, 64, 3), 3, 8)
    assert sorted(yt) == sorted(_arrays(s.train_eval)[1])


def test_tiny_imagenet_root_itself_and_env_var(tmp_path, monkeypatch):
    root = _tiny_folder(tmp_path)
    assert get_dataset("tiny_imagenet", data_dir=str(root), max_eval=2).num_test == 2
    monkeypatch.setenv("BIRDS_TF_DATA", str(tmp_path))
    assert get_dataset("tiny_imagenet", max_train=5).num_train == 5


def test_tiny_imagenet_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset("tiny_imagenet", data_dir=str(tmp_path))
    message = str(info.value)
    for part in ("Tiny-ImageNet", "cs231n.stanford.edu/tiny-imagenet-200.zip",
                 os.path.join(str(tmp_path), "tiny-imagenet-200"), "val_annotations.txt",
                 "train/<wnid>/images", "train_eval.data_dir"):
        assert part in message


# ----------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("name", ["cifar", "imagenet", "CIFAR10", None])
def test_unknown_dataset(name):
    with pytest.raises(ValueError) as info:
        get_dataset(name)
    assert repr(name) in str(info.value) and "tiny_imagenet" in str(info.value)


@pytest.mark.parametrize("kwargs,bad", [
    ({"batch_size": 0}, "0"), ({"batch_size": -3}, "-3"), ({"batch_size": 2.5}, "2.5"),
    ({"batch_size": True}, "True"), ({"eval_batch_size": 0}, "0"), ({"max_train": 0}, "0"),
    ({"max_eval": -1}, "-1"), ({"seed": "x"}, "'x'"), ({"seed": 1.0}, "1.0")])
def test_bad_arguments(kwargs, bad):
    """Integers (numpy ones too, as configs produce them) pass; anything else names the value."""
    with pytest.raises(ValueError) as info:
        get_dataset("digits", **kwargs)
    assert list(kwargs)[0] in str(info.value) and bad in str(info.value)


def test_numpy_integers_are_accepted():
    s = get_dataset("digits", batch_size=np.int64(500), seed=np.int32(2), max_eval=np.int64(7))
    assert s.steps_per_epoch == 3 and s.num_val == 7 and isinstance(s.num_val, int)


def test_train_epochs_are_keyed_by_epoch_so_resumes_see_the_same_batches():
    from birds_tf.data import get_dataset
    splits = get_dataset("digits", batch_size=128, seed=3)
    steps = splits.steps_per_epoch
    full = [(x.numpy(), y.numpy()) for x, y in splits.train_epochs(0, 3)]
    assert len(full) == 3 * steps
    resumed = [(x.numpy(), y.numpy()) for x, y in splits.train_epochs(2, 3)]
    for (xa, ya), (xb, yb) in zip(full[2 * steps:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Different epochs are shuffled and augmented differently.
    assert not np.array_equal(full[0][1], full[steps][1])


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_cifar_shaped_fixed_and_its_stats_recomputed():
    from birds_tf.data import synthetic
    from birds_tf.models import registry
    s = get_dataset("synthetic", batch_size=64, max_train=128, max_eval=64)
    assert (s.input_shape, s.num_classes) == ((32, 32, 3), 10)
    assert (s.num_train, s.num_val, s.num_test) == (128, 64, 64)
    x, y = synthetic.images(synthetic.SIZES["train"], 0)
    x2, y2 = synthetic.images(synthetic.SIZES["train"], 0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.min() >= 0 and x.max() <= 1 and set(y) == set(range(10))
    np.testing.assert_allclose(x.reshape(-1, 3).mean(0), synthetic.MEAN, atol=1e-4)
    np.testing.assert_allclose(x.reshape(-1, 3).std(0), synthetic.STD, atol=1e-4)
    assert registry.DATASET_STATS["synthetic"] == (synthetic.MEAN, synthetic.STD)
    # validation and test are other draws than training
    assert not np.array_equal(synthetic.images(16, 1)[0], x[:16])


def test_pipelines_run_without_autotune_and_give_the_same_batches():
    """Keras' fit leaves its iterator unfinished, and destroying one waits for tf.data's autotune
    thread (20-23 s idle at each fit exit, measured): every pipeline turns autotuning off, which
    must not change a single batch (order and augmentation are seeded)."""
    import numpy as np
    import tensorflow as tf

    from birds_tf.data import get_dataset
    def pipelines():  # built afresh: `train` reshuffles on every new iteration, by design
        splits = get_dataset("synthetic", batch_size=8, seed=3, max_train=24, max_eval=16)
        return splits.train, splits.val, splits.train_epochs(0, 2)
    tuned = tf.data.Options()
    tuned.autotune.enabled = True
    for ds, again in zip(pipelines(), pipelines()):
        assert ds.options().autotune.enabled is False
        ours = [b for b in ds.as_numpy_iterator()]
        autotuned = [b for b in again.with_options(tuned).as_numpy_iterator()]
        assert len(ours) == len(autotuned) > 0
        for (x, y), (xt, yt) in zip(ours, autotuned):
            np.testing.assert_array_equal(x, xt)
            np.testing.assert_array_equal(y, yt)
