"""Data generators, encoding helpers and the MNIST loaders, all offline (files written by the tests)."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from cml import data


def test_linearly_separable_labels_follow_the_returned_line() -> None:
    problem = data.linearly_separable(300, margin=0.05, seed=3)
    X, y = problem.X, problem.y
    assert X.shape == (300, 2) and y.shape == (300,)
    above = X[:, 1] - (problem.slope * X[:, 0] + problem.bias)
    np.testing.assert_array_equal(y, (above > 0).astype(int))
    assert np.min(np.abs(above)) > 0.05
    assert 0 < y.mean() < 1


def test_generators_are_seeded_and_shaped() -> None:
    for make in (
        lambda seed: data.blobs(50, seed=seed),
        lambda seed: data.two_gaussians(50, seed=seed),
        lambda seed: data.xor(50, seed=seed),
        lambda seed: data.noisy_sine(50, seed=seed),
    ):
        first, second, other = make(7), make(7), make(8)
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(first[0], other[0])
    X, y = data.blobs(51, centers=[[0, 0], [5, 5], [0, 5]], std=0.1, seed=0)
    assert X.shape == (51, 2) and set(np.bincount(y)) == {17}


def test_xor_labels_are_exclusive_or_of_the_corners() -> None:
    X, y = data.xor(400, noise=0.05, seed=1)
    corners = (X > 0.5).astype(int)
    np.testing.assert_array_equal(y, corners[:, 0] ^ corners[:, 1])


def test_noisy_sine_is_sorted_columns() -> None:
    x, y = data.noisy_sine(30, noise=0.0, seed=2)
    assert x.shape == y.shape == (30, 1)
    assert np.all(np.diff(x[:, 0]) >= 0)
    np.testing.assert_allclose(y, np.sin(x))


def test_one_hot() -> None:
    encoded = data.one_hot(np.array([2, 0, 1, 2]), 4)
    np.testing.assert_array_equal(encoded.argmax(axis=1), [2, 0, 1, 2])
    assert encoded.shape == (4, 4) and encoded.sum() == 4
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        data.one_hot(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="integer"):
        data.one_hot(np.array([0.5]))


def test_train_test_split_is_a_seeded_partition() -> None:
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, test_fraction=0.3, seed=4)
    assert len(X_test) == 3 and len(X_train) == 7
    np.testing.assert_array_equal(X_train[:, 0] // 2, y_train)
    assert sorted(np.concatenate([y_train, y_test])) == list(range(10))
    again = data.train_test_split(X, y, test_fraction=0.3, seed=4)
    np.testing.assert_array_equal(again[3], y_test)
    with pytest.raises(ValueError, match="same length"):
        data.train_test_split(X, y[:5])


# --- MNIST loaders on small files ------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def tiny_mnist(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(6, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, size=6),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, size=(3, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, size=3),
    }
    for name, array in arrays.items():
        _write_idx(tmp_path / name, array)
    checksums = {name: hashlib.md5((tmp_path / name).read_bytes()).hexdigest() for name in arrays}
    return tmp_path, checksums, arrays


def test_read_idx_round_trip(tiny_mnist) -> None:
    folder, _, arrays = tiny_mnist
    images = data.read_idx(folder / "train-images-idx3-ubyte.gz")
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte.gz"])


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(bad)
    truncated = tmp_path / "short.idx"
    truncated.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="announces"):
        data.read_idx(truncated)


def test_load_full_from_cache_verifies_checksums(tiny_mnist) -> None:
    folder, checksums, arrays = tiny_mnist
    (train_images, train_labels), (test_images, test_labels) = data.load_mnist_full(folder, checksums=checksums)
    assert train_images.shape == (6, 28, 28) and test_images.shape == (3, 28, 28)
    assert train_labels.dtype == np.int64
    np.testing.assert_array_equal(test_labels, arrays["t10k-labels-idx1-ubyte.gz"])
    corrupt = dict(checksums, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(ValueError, match="corrupt"):
        data.load_mnist_full(folder, checksums=corrupt)


def test_missing_full_set_gives_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CML_DATA"):
        data.load_mnist("full", cache_dir=tmp_path)


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CML_DATA", str(tmp_path))
    assert data.mnist_cache_dir() == tmp_path / "mnist"


def test_sample_loader_on_a_small_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(10, 784))
    labels = np.arange(10)
    path = tmp_path / "mnist_small.csv.gz"
    with gzip.open(path, "wt") as stream:
        np.savetxt(stream, np.column_stack([pixels, labels]), fmt="%d", delimiter=",")
    (train_images, train_labels), (test_images, test_labels) = data.load_mnist_sample(path, test_fraction=0.2, seed=0)
    assert train_images.shape == (8, 28, 28) and test_images.shape == (2, 28, 28)
    assert sorted(np.concatenate([train_labels, test_labels])) == list(range(10))
    index = int(np.where(train_labels == train_labels[0])[0][0])
    np.testing.assert_array_equal(train_images[index].reshape(-1), pixels[train_labels[0]])


def test_sample_loader_rejects_a_wrong_table(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    np.savetxt(path, np.ones((3, 10)), delimiter=",")
    with pytest.raises(ValueError, match="785"):
        data.load_mnist_sample(path)


def test_offline_sample_is_real_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CML_DATA", str(tmp_path))  # no full set cached there: "auto" falls back to the sample
    (train_images, train_labels), (test_images, test_labels) = data.load_mnist()
    assert train_images.shape == (4000, 28, 28) and test_images.shape == (1000, 28, 28)
    assert train_images.dtype == np.uint8 and train_images.max() == 255
    assert set(np.unique(train_labels)) == set(range(10))
    # Digit images have dark borders and bright centres.
    assert train_images[:, :2, :].mean() < 1 and train_images[:, 10:18, 10:18].mean() > 50


def test_auto_prefers_a_cached_full_set(tiny_mnist, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, checksums, _ = tiny_mnist
    monkeypatch.setattr(data, "MNIST_FILES", checksums)
    (train_images, _), _ = data.load_mnist("auto", cache_dir=folder)
    assert train_images.shape == (6, 28, 28)


def test_unknown_source_is_rejected() -> None:
    with pytest.raises(ValueError, match="source"):
        data.load_mnist("internet")
