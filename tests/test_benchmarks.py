"""The benchmark scripts still run (on a tiny workload: their figures come from real runs, not from here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cnn_epoch_benchmark_runs_and_reports_each_device(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    benchmark = _load("cnn_epoch")
    assert benchmark.main(["--images", "300", "--batch-size", "100", "--devices", "cpu", "cuda"]) == 0
    output = capsys.readouterr().out
    assert "300 training images" in output and "test accuracy" in output
    if torch.cuda.is_available():
        assert "CPU / GPU time per epoch" in output
    else:
        assert "cuda: SKIPPED, no CUDA GPU here" in output


def test_tiled_sample_keeps_labels_with_their_images() -> None:
    benchmark = _load("cnn_epoch")
    images, labels, test_images, _, description = benchmark.mnist_size_training_set(1000, seed=1)
    assert images.shape == (1000, 28, 28) and labels.shape == (1000,) and len(test_images) > 0
    if "tiled" in description:  # each tiled image is a shifted copy of a sample image with the same label
        (train, train_labels), _ = benchmark.load_mnist()
        padded = np.pad(train, ((0, 0), (2, 2), (2, 2)))
        shifted = np.stack([padded[:, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)], axis=1)
        for image, label in zip(images[:10], labels[:10]):
            same = (shifted[train_labels == label] == image).all(axis=(2, 3))
            assert same.any(), "a tiled image matches no shifted sample image of its label"


def test_sanitize_cost_benchmark_reports_each_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    graded = tmp_path / "autograded" / "someone" / "01_neuron"
    graded.mkdir(parents=True)
    shutil.copy(REPO / "source" / "01_neuron" / "01_neuron.ipynb", graded)
    assert _load("sanitize_cost").main(["01_neuron", "--from", str(tmp_path), "--repeats", "1"]) == 0
    output = capsys.readouterr().out
    assert "feedback before" in output and output.count("01_neuron") == 1 and "mean" in output
