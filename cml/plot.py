"""Plot helpers in d2l's manner: each takes ``ax=None``, draws on it (or on a new figure), returns it.

Styling goes through :data:`STYLE` inside ``matplotlib.rc_context``; global rcParams are never changed.
Sizes are in inches, as matplotlib means them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "STYLE",
    "CLASS_COLORS",
    "scatter_classes",
    "decision_boundary",
    "boundary_evolution",
    "training_curves",
    "confusion_matrix",
    "image_grid",
]

STYLE: Mapping[str, Any] = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 80,
    "legend.frameon": False,
}

CLASS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.0)) -> Axes:
    if ax is not None:
        return ax
    _, new_ax = plt.subplots(figsize=figsize)
    return new_ax


def scatter_classes(X: np.ndarray, y: np.ndarray, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Scatter 2-D points ``X (n_samples, 2)`` coloured by integer class ``y (n_samples,)``."""
    X, y = np.asarray(X), np.asarray(y).astype(int).ravel()
    if X.ndim != 2 or X.shape[1] != 2 or len(X) != len(y):
        raise ValueError(f"expected X of shape (n, 2) and y of shape (n,), got {X.shape} and {y.shape}")
    with plt.rc_context(STYLE):
        ax = _axes(ax)
        for label in np.unique(y):
            mask = y == label
            ax.scatter(X[mask, 0], X[mask, 1], s=18, color=CLASS_COLORS[label % len(CLASS_COLORS)],
                       edgecolors="white", linewidths=0.5, label=f"class {label}")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.legend(loc="best", fontsize="small")
        if title:
            ax.set_title(title)
    return ax


def _grid(X: np.ndarray, resolution: int, padding: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    low, high = X.min(axis=0) - padding, X.max(axis=0) + padding
    return np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))


def decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    *,
    ax: Axes | None = None,
    resolution: int = 150,
    title: str | None = None,
) -> Axes:
    """Shade the regions ``predict`` assigns to each class, then scatter the data on top.

    ``predict`` maps points ``(m, 2)`` to class labels or to probabilities of class 1, shape ``(m,)``;
    probabilities are thresholded at 0.5.
    """
    X = np.asarray(X, dtype=np.float64)
    xx, yy = _grid(X, resolution)
    grid_points = np.column_stack([xx.ravel(), yy.ravel()])
    with np.errstate(all="ignore"):
        output = np.asarray(predict(grid_points), dtype=np.float64).reshape(-1)
    if output.size != grid_points.shape[0]:
        raise ValueError(f"predict returned {output.size} values for {grid_points.shape[0]} points")
    is_binary_probability = np.all((output >= 0) & (output <= 1)) and not np.all(output == output.round())
    labels = (output >= 0.5).astype(int) if is_binary_probability else output.round().astype(int)
    n_classes = max(int(labels.max()), int(np.max(y))) + 1
    with plt.rc_context(STYLE):
        ax = _axes(ax)
        ax.contourf(xx, yy, labels.reshape(xx.shape), levels=np.arange(n_classes + 1) - 0.5,
                    cmap=ListedColormap(CLASS_COLORS[:n_classes]), alpha=0.2)
        scatter_classes(X, y, ax=ax, title=title)
    return ax


def boundary_evolution(
    predictors: Sequence[Callable[[np.ndarray], np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    panel_size: float = 2.8,
) -> Figure:
    """One :func:`decision_boundary` panel per predictor (snapshots taken during training)."""
    if not predictors:
        raise ValueError("boundary_evolution needs at least one predictor")
    ncols = min(ncols, len(predictors))
    nrows = -(-len(predictors) // ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
        for index, ax in enumerate(axes.flat):
            if index >= len(predictors):
                ax.set_visible(False)
                continue
            title = titles[index] if titles is not None else f"snapshot {index}"
            decision_boundary(predictors[index], X, y, ax=ax, resolution=80, title=title)
            ax.get_legend().remove()
            ax.set_xlabel("")
            ax.set_ylabel("")
        fig.tight_layout()
    return fig


def training_curves(
    curves: Mapping[str, Sequence[float]],
    *,
    ax: Axes | None = None,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    log_scale: bool = False,
) -> Axes:
    """Plot named sequences (losses, accuracies) against their index, one line each."""
    with plt.rc_context(STYLE):
        ax = _axes(ax, figsize=(5.5, 3.5))
        for name, values in curves.items():
            ax.plot(np.arange(1, len(values) + 1), values, marker="o" if len(values) <= 30 else None,
                    markersize=3, label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log_scale:
            ax.set_yscale("log")
        if len(curves) > 1:
            ax.legend()
    return ax


def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_classes: int | None = None,
    normalize: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Draw the confusion matrix (rows: true class, columns: predicted class) with counts in the cells.

    With ``normalize=True`` each row is divided by its total, so the diagonal reads as per-class recall.
    """
    y_true, y_pred = np.asarray(y_true).astype(int).ravel(), np.asarray(y_pred).astype(int).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    n_classes = n_classes or int(max(y_true.max(), y_pred.max())) + 1
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (y_true, y_pred), 1)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    with plt.rc_context({**STYLE, "axes.grid": False}):
        ax = _axes(ax, figsize=(5.0, 4.5))
        image = ax.imshow(values, cmap="Blues")
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        threshold = values.max() / 2
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                    fontsize="x-small", color="white" if value > threshold else "black")
        ax.set_xticks(range(n_classes))
        ax.set_yticks(range(n_classes))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    return ax


def image_grid(
    images: np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
    predictions: Sequence[Any] | None = None,
    ncols: int = 8,
    image_size: float = 1.2,
) -> Figure:
    """Show images ``(n, height, width)`` (or flat ``(n, height * width)`` squares) in a grid.

    Titles show the label, and the prediction when given (in red where it differs from the label).
    """
    images = np.asarray(images)
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(f"flat images of {images.shape[1]} pixels are not square")
        images = images.reshape(-1, side, side)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"expected images of shape (n, height, width), got {images.shape}")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(image_size * ncols, image_size * nrows + 0.3), squeeze=False)
        for index, ax in enumerate(axes.flat):
            ax.axis("off")
            if index >= len(images):
                continue
            ax.imshow(images[index], cmap="gray_r")
            parts, color = [], "black"
            if labels is not None:
                parts.append(f"label {labels[index]}")
            if predictions is not None:
                parts.append(f"pred {predictions[index]}")
                if labels is not None and predictions[index] != labels[index]:
                    color = "#d62728"
            ax.set_title("\n".join(parts), fontsize="x-small", color=color)
        fig.tight_layout()
    return fig
