"""Plot helpers draw on the axes they are given and leave global style alone; the device helper picks CPU here."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from cml import data, device, plot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_helpers_draw_on_given_axes_and_keep_rcparams() -> None:
    before = dict(matplotlib.rcParams)
    X, y = data.blobs(40, seed=0)
    _, axes = plt.subplots(1, 4)
    assert plot.scatter_classes(X, y, ax=axes[0]) is axes[0]
    assert plot.decision_boundary(lambda points: points[:, 0] > 0, X, y, ax=axes[1]) is axes[1]
    assert plot.training_curves({"train": [3, 2, 1], "test": [3, 2.5, 2]}, ax=axes[2]) is axes[2]
    assert plot.confusion_matrix(y, 1 - y, ax=axes[3]) is axes[3]
    assert dict(matplotlib.rcParams) == before


def test_new_axes_when_none_given() -> None:
    X, y = data.xor(30, seed=0)
    ax = plot.scatter_classes(X, y)
    assert len(ax.collections) == 2  # one scatter per class


def test_decision_boundary_thresholds_probabilities() -> None:
    X, y = data.two_gaussians(50, seed=1)
    ax = plot.decision_boundary(lambda points: 1 / (1 + np.exp(-points.sum(axis=1))), X, y)
    assert ax.collections  # the shaded regions and the points


def test_decision_boundary_rejects_wrong_prediction_count() -> None:
    X, y = data.blobs(20, seed=0)
    with pytest.raises(ValueError, match="values for"):
        plot.decision_boundary(lambda points: np.zeros(3), X, y)


def test_boundary_evolution_one_panel_per_snapshot() -> None:
    X, y = data.blobs(30, seed=2)
    predictors = [lambda p, k=k: p[:, 0] > k for k in (-1.0, 0.0, 1.0)]
    figure = plot.boundary_evolution(predictors, X, y, titles=["a", "b", "c"], ncols=2)
    visible = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == ["a", "b", "c"]


def test_confusion_matrix_counts() -> None:
    ax = plot.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), n_classes=3)
    texts = [text.get_text() for text in ax.texts]
    assert texts == ["1", "1", "0", "0", "1", "0", "0", "0", "1"]


def test_image_grid_sizes_in_inches_and_marks_errors() -> None:
    images = np.zeros((5, 784))
    figure = plot.image_grid(images, labels=[1, 2, 3, 4, 5], predictions=[1, 2, 0, 4, 5], ncols=5, image_size=1.0)
    width, height = figure.get_size_inches()
    assert width == pytest.approx(5.0) and height == pytest.approx(1.3)
    titles = [ax.title for ax in figure.axes]
    assert titles[2].get_color() == "#d62728" and titles[0].get_color() == "black"
    with pytest.raises(ValueError, match="square"):
        plot.image_grid(np.zeros((2, 10)))


def test_scatter_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="expected X"):
        plot.scatter_classes(np.zeros((5, 3)), np.zeros(5))


def test_device_is_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("CML_FORCE_CPU", "1")
    assert device.try_gpu() == torch.device("cpu")
    assert device.resolve_device(None) == torch.device("cpu")
    assert device.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        device.resolve_device("cuda")
    assert device.describe_device("cpu").startswith("cpu (")


def test_cuda_device_when_present() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine: the CUDA branch of cml.device is not exercised here")
    assert device.try_gpu().type == "cuda"
    assert device.resolve_device("cuda").type == "cuda"
