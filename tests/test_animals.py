"""The `animals` dataset: safe unpickling, the install hint, duplicates and the fixed split."""
import gzip
import hashlib
import importlib.util
import pickle

import numpy as np
import pytest

from birds_tf.data import DatasetNotFoundError, animals, get_dataset, safe_pickle


class _Payload:
    """Unpickling this with plain pickle would create a file (the marker of code execution)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("gz", [False, True])
def test_malicious_pickle_is_refused_without_running_anything(tmp_path, gz):
    marker = tmp_path / "pwned"
    path = tmp_path / ("evil.pkl.gz" if gz else "evil.pkl")
    data = pickle.dumps(_Payload(str(marker)))
    (gzip.open if gz else open)(path, "wb").write(data)
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"io\.open; only NumPy array"):
        safe_pickle.load_array(path)
    assert not marker.exists()


def test_object_arrays_and_non_arrays_are_refused(tmp_path):
    for name, value in (("obj.pkl", np.array([1, "a"], dtype=object)), ("list.pkl", [1, 2])):
        (tmp_path / name).write_bytes(pickle.dumps(value))
        with pytest.raises(safe_pickle.UnsafePickleError, match="not a numeric NumPy array"):
            safe_pickle.load_array(tmp_path / name)


def test_plain_arrays_round_trip(tmp_path):
    for protocol in (3, 4):  # the package uses 4
        value = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
        with gzip.open(tmp_path / f"a{protocol}.gz", "wb") as f:
            pickle.dump(value, f, protocol=protocol)
        np.testing.assert_array_equal(safe_pickle.load_array(tmp_path / f"a{protocol}.gz"), value)


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "animal_mnist" else real(name, *a))
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset("animals", batch_size=32)
    assert "python -m pip install --no-deps animal-mnist==0.4" in str(info.value)


def _hashes(x):
    return [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in x]


def test_duplicates_dropped_and_splits_disjoint_and_stratified():
    images, labels = animals.raw_arrays()
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    # Independent count of distinct images: NumPy's unique over flattened rows.
    distinct = np.unique(images.reshape(len(images), -1), axis=0)
    assert len(images) - len(distinct) == 284
    (xt, yt), (xv, yv), (xs, ys) = animals.fixed_split()
    assert (len(yt), len(yv), len(ys)) == (5829, 1943, 1944)
    assert len(yt) + len(yv) + len(ys) == len(distinct)
    sets = [set(_hashes(x)) for x in (xt, xv, xs)]
    assert [len(s) for s in sets] == [len(yt), len(yv), len(ys)]  # no duplicate within a split
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    for y, n in ((yt, len(yt)), (yv, len(yv)), (ys, len(ys))):  # stratified: shares within 1%
        share = np.bincount(y, minlength=10) / n
        full = np.bincount(animals.unique_images(images, labels)[1], minlength=10) / len(distinct)
        assert np.abs(share - full).max() < 0.01
    # The normaliser statistics are those of the fixed training split.
    assert abs(xt.mean() / 255 - animals.MEAN[0]) < 5e-4
    assert abs((xt / 255.0).std() - animals.STD[0]) < 5e-4


def test_pipeline_gives_28x28x1_images_in_unit_range():
    s = get_dataset("animals", batch_size=64, max_train=128, max_eval=64, augment=True)
    x, y = next(iter(s.train))
    assert x.shape == (64, 28, 28, 1) and x.dtype.name == "float32"
    assert float(np.min(x)) >= 0.0 and float(np.max(x)) <= 1.0
    assert s.num_classes == 10 and s.input_shape == (28, 28, 1)
    assert (s.num_train, s.num_val, s.num_test) == (128, 64, 64)
    xv, _ = next(iter(s.val))
    assert set(np.unique(np.asarray(xv) * 255).round(3)) <= set(np.arange(256.0))


def test_augment_switch_is_validated_and_turns_augmentation_off():
    from birds_tf.experiment import train_eval as experiment
    with pytest.raises(ValueError, match="augment must be True or False, got 'no'"):
        experiment.Config(dataset="animals", augment="no").validate()
    plain = get_dataset("animals", batch_size=64, max_train=64, augment=False, seed=3)
    x, y = next(iter(plain.train))
    # Without augmentation every training image is one of the stored ones.
    stored = {hashlib.sha256(np.round(a * 255).astype(np.uint8).tobytes()).hexdigest()
              for a in np.asarray(next(iter(plain.train_eval))[0])}
    assert {hashlib.sha256(np.round(a * 255).astype(np.uint8).tobytes()).hexdigest()
            for a in np.asarray(x)} == stored
