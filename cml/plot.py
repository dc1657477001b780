"""Plot helpers in d2l's manner: each takes ``ax=None``, draws on it (or on a new figure), returns it.

Styling goes through :data:`STYLE` inside ``matplotlib.rc_context``; global rcParams are never changed.
Sizes are in inches, as matplotlib means them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle
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
    "network_diagram",
    "computational_graph",
    "convolution_step",
    "pooling_step",
    "dropout_masks",
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


# --- Diagrams of the ideas: networks, computational graphs, convolution, pooling, dropout -------------------------
# Artists carry a gid so that tests (and curious readers) can find them: "unit" (a drawn circle), "dropped unit",
# "cross" (the line crossing out a dropped unit), "ellipsis", "window" (an outlined input window), "entry" (the
# outlined output entry), "chosen" (the entry max pooling picks), "edge" (an arrow of a computational graph), "value"
# and "gradient" (the numbers on its edges), "node NAME" (the box of node NAME).

_LAYER_GAP = 3.0
_UNIT_RADIUS = 0.3
_LAYER_COLORS = {"input": "#c6dbef", "hidden": "#c7e9c0", "output": "#fdd0a2"}
_HIGHLIGHT = "#d62728"


def _unit_slots(size: int, max_units: int) -> list[int | None]:
    """Indices of the units drawn for a layer of ``size`` units, top to bottom; ``None`` marks the ellipsis."""
    if size <= max_units:
        return list(range(size))
    head = (max_units + 1) // 2
    return [*range(head), None, *range(size - (max_units - head), size)]


def _check_layer_sizes(layer_sizes: Sequence[int]) -> list[int]:
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"a network needs at least 2 layers (input and output), got {len(sizes)}")
    if not all(isinstance(size, Integral) and not isinstance(size, bool) and size > 0 for size in sizes):
        raise ValueError(f"layer sizes must be positive integers, got {sizes}")
    return [int(size) for size in sizes]


def _draw_network(
    ax: Axes,
    sizes: Sequence[int],
    *,
    max_units: int,
    kept: Sequence[np.ndarray | None] | None = None,
) -> None:
    """Draw the units and edges of a layered network on ``ax``.

    Layer ``i`` is centred at ``x = 3 i``, its drawn units one apart vertically around ``y = 0``. ``kept[i]`` is a
    boolean mask ``(sizes[i],)`` (``None``: all kept); dropped units are greyed, crossed out and lose their edges.
    """
    kept = kept if kept is not None else [None] * len(sizes)
    positions: list[list[tuple[float, float, bool]]] = []  # per layer: (x, y, kept) of each drawn unit
    for layer, size in enumerate(sizes):
        slots = _unit_slots(size, max_units)
        half = (len(slots) - 1) / 2
        x = layer * _LAYER_GAP
        kind = "input" if layer == 0 else "output" if layer == len(sizes) - 1 else "hidden"
        drawn = []
        for slot, unit in enumerate(slots):
            y = half - slot
            if unit is None:
                ax.plot([x, x, x], [y - 0.25, y, y + 0.25], linestyle="none", marker="o", markersize=2.5,
                        color="0.3", gid="ellipsis")
                continue
            is_kept = kept[layer] is None or bool(kept[layer][unit])
            ax.add_patch(Circle((x, y), _UNIT_RADIUS, facecolor=_LAYER_COLORS[kind] if is_kept else "0.88",
                                edgecolor="0.25" if is_kept else "0.6", linewidth=1.0, zorder=3,
                                gid="unit" if is_kept else "dropped unit"))
            if not is_kept:
                arm = _UNIT_RADIUS * 0.75
                ax.plot([x - arm, x + arm, np.nan, x - arm, x + arm], [y - arm, y + arm, np.nan, y + arm, y - arm],
                        color=_HIGHLIGHT, linewidth=1.2, zorder=4, gid="cross")
            drawn.append((x, y, is_kept))
        positions.append(drawn)
    segments = [[(x0, y0), (x1, y1)]
                for left, right in zip(positions[:-1], positions[1:])
                for x0, y0, kept0 in left if kept0
                for x1, y1, kept1 in right if kept1]
    ax.add_collection(LineCollection(segments, colors="0.55", linewidths=0.5, alpha=0.6, zorder=1))
    ax.set_aspect("equal")
    ax.axis("off")


def _network_figsize(width: float, height: float, max_size: tuple[float, float] = (12.0, 7.0)) -> tuple[float, float]:
    """Inches for a drawing ``width x height`` data units wide and high, at most ``max_size``."""
    scale = min(0.42, max_size[0] / width, max_size[1] / height)
    return width * scale, height * scale


def network_diagram(
    layer_sizes: Sequence[int],
    *,
    activations: Sequence[str] | None = None,
    samples: Literal["rows", "columns"] = "rows",
    layer_names: Sequence[str] | None = None,
    max_units: int = 8,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw a fully connected network ``layer_sizes = [d, h1, ..., out]`` with the shapes of its arrays.

    Each layer is a column of circles (at most ``max_units``; a larger layer shows its first and last units, a
    vertical ellipsis and its true size, e.g. "784 units"). Under the input layer the data matrix and, under
    the layer they feed into, the weights and biases are labelled with their shapes: ``samples="rows"`` gives
    ``X (n, d)``, ``W1 (d, h1)``, ``b1 (h1,)``; ``samples="columns"`` gives ``X (d, n)``, ``W1 (h1, d)``,
    ``b1 (h1, 1)``. ``activations`` (one per non-input layer) are written above the layers.
    """
    sizes = _check_layer_sizes(layer_sizes)
    if activations is not None and len(activations) != len(sizes) - 1:
        raise ValueError(f"expected {len(sizes) - 1} activations (one per non-input layer), got {len(activations)}")
    if layer_names is not None and len(layer_names) != len(sizes):
        raise ValueError(f"expected {len(sizes)} layer names, got {len(layer_names)}")
    if samples not in ("rows", "columns"):
        raise ValueError(f"samples must be 'rows' or 'columns', got {samples!r}")
    if max_units < 2:
        raise ValueError(f"max_units must be at least 2, got {max_units}")
    names = list(layer_names) if layer_names is not None else (
        ["input", *(f"hidden {index}" for index in range(1, len(sizes) - 1)), "output"])
    half = (len(_unit_slots(max(sizes), max_units)) - 1) / 2
    top, bottom = half + _UNIT_RADIUS, -half - _UNIT_RADIUS
    width, height = (len(sizes) - 1) * _LAYER_GAP + 3.0, top - bottom + (4.4 if max(sizes) > max_units else 3.9)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        if ax is None:
            figure, ax = plt.subplots(figsize=_network_figsize(width, height))
            figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99 if not title else 0.93)
        _draw_network(ax, sizes, max_units=max_units)
        text_style = {"ha": "center", "va": "center", "fontsize": "small"}
        for layer, size in enumerate(sizes):
            x = layer * _LAYER_GAP
            ax.text(x, bottom - 0.6, names[layer], **text_style)
            if size > max_units:
                ax.text(x, bottom - 1.1, f"{size} units", color="0.35", style="italic", **text_style)
            if activations is not None and layer > 0:
                ax.text(x, top + 0.6, activations[layer - 1], fontweight="bold", **text_style)
        shapes_y = bottom - (1.9 if max(sizes) > max_units else 1.4)
        ax.text(0, shapes_y, f"X (n, {sizes[0]})" if samples == "rows" else f"X ({sizes[0]}, n)", **text_style)
        for layer in range(1, len(sizes)):
            fan_in, fan_out = sizes[layer - 1], sizes[layer]
            weight_shape, bias_shape = (f"({fan_in}, {fan_out})", f"({fan_out},)") if samples == "rows" else (
                f"({fan_out}, {fan_in})", f"({fan_out}, 1)")
            ax.text(layer * _LAYER_GAP, shapes_y, f"W{layer} {weight_shape}", **text_style)
            ax.text(layer * _LAYER_GAP, shapes_y - 0.55, f"b{layer} {bias_shape}", **text_style)
        ax.set_xlim(-1.5, (len(sizes) - 1) * _LAYER_GAP + 1.5)
        ax.set_ylim(shapes_y - 1.0, top + 1.0)
        if title:
            ax.set_title(title)
    return ax


def _topological_depths(nodes: Mapping[str, str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Depth of each node: the length of the longest path reaching it from a node without inputs."""
    successors: dict[str, list[str]] = {name: [] for name in nodes}
    in_degree = dict.fromkeys(nodes, 0)
    for source, target in edges:
        for name in (source, target):
            if name not in nodes:
                raise ValueError(f"edge ({source!r}, {target!r}) names unknown node {name!r}")
        successors[source].append(target)
        in_degree[target] += 1
    depth = dict.fromkeys(nodes, 0)
    ready = [name for name in nodes if in_degree[name] == 0]
    visited = 0
    while ready:
        name = ready.pop(0)
        visited += 1
        for target in successors[name]:
            depth[target] = max(depth[target], depth[name] + 1)
            in_degree[target] -= 1
            if in_degree[target] == 0:
                ready.append(target)
    if visited < len(nodes):
        stuck = sorted(name for name, degree in in_degree.items() if degree > 0)
        raise ValueError(f"the graph has a cycle: nodes on it or after it: {stuck}")
    return depth


def computational_graph(
    nodes: Mapping[str, str],
    edges: Sequence[tuple[str, str]],
    *,
    values: Mapping[str, float] | None = None,
    gradients: Mapping[str, float] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw a computational graph left to right, with forward values and gradients on its edges.

    ``nodes`` maps a name to its label (mathtext allowed, e.g. ``"$z = wx + b$"``); ``edges`` are
    ``(source, target)`` names. A node's column is its depth (longest path from a node without inputs). Above each
    edge stands the forward value of its source, ``values[source]``, and below it, in red, ``gradients[source]``,
    the gradient of the loss with respect to the source. A node without outgoing edges (the loss) shows its value
    and gradient the same way, to its right.
    """
    if not nodes:
        raise ValueError("computational_graph needs at least one node")
    depth = _topological_depths(nodes, edges)
    values, gradients = values or {}, gradients or {}
    columns: dict[int, list[str]] = {}
    for name in nodes:
        columns.setdefault(depth[name], []).append(name)
    n_columns, n_rows = max(columns) + 1, max(len(column) for column in columns.values())
    position = {name: (float(column), (len(names) - 1) / 2 - row)
                for column, names in columns.items() for row, name in enumerate(names)}
    low = -n_rows / 2 - (0.4 if values or gradients else 0.15)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        ax = _axes(ax, figsize=(min(12.0, 2.3 * n_columns + 0.4), min(6.0, max(1.8, 1.1 * n_rows + 0.8))))
        ax.set_xlim(-0.6, n_columns - 0.4)
        ax.set_ylim(low, n_rows / 2)
        boxes = {name: ax.text(*position[name], label, ha="center", va="center", zorder=3, gid=f"node {name}",
                               bbox={"boxstyle": "round,pad=0.45", "facecolor": "#eaf2fb", "edgecolor": "#1f77b4"})
                 for name, label in nodes.items()}
        for source, target in edges:
            # centre to centre, clipped at the two boxes: the numbers below sit on the drawn line
            ax.annotate("", xy=position[target], xytext=position[source], gid="edge",
                        arrowprops={"arrowstyle": "-|>", "color": "0.3", "linewidth": 1.0, "shrinkA": 2, "shrinkB": 2,
                                    "patchA": boxes[source].get_bbox_patch(), "patchB": boxes[target].get_bbox_patch()})
            # 45 % of the way from the source (fanned-in edges are still apart there), pushed off the line along
            # its normal on screen, and aligned so that the text extends away from the line
            start, end = ax.transData.transform([position[source], position[target]])
            normal = np.array([start[1] - end[1], end[0] - start[0]]) / max(np.hypot(*(end - start)), 1e-9)
            normal = normal if normal[1] >= 0 else -normal  # the side above the line
            anchor = tuple(0.55 * np.array(position[source]) + 0.45 * np.array(position[target]))
            for side, mapping, color, gid in ((1, values, "black", "value"), (-1, gradients, _HIGHLIGHT, "gradient")):
                if source not in mapping:
                    continue
                offset = side * normal
                ax.annotate(f"{mapping[source]:.3g}", xy=anchor, xytext=tuple(5 * offset), textcoords="offset points",
                            ha="left" if offset[0] > 0.2 else "right" if offset[0] < -0.2 else "center",
                            va="bottom" if offset[1] > 0.2 else "top" if offset[1] < -0.2 else "center",
                            fontsize="small", color=color, gid=gid)
        has_output = {source for source, _ in edges}
        for name in nodes:
            if name in has_output:
                continue
            for side, mapping, color, gid in ((1, values, "black", "value"), (-1, gradients, _HIGHLIGHT, "gradient")):
                if name in mapping:
                    ax.annotate(f"{mapping[name]:.3g}", xy=(1.0, 0.5), xycoords=boxes[name], xytext=(8, 2 * side),
                                textcoords="offset points", ha="left", va="bottom" if side > 0 else "top",
                                fontsize="small", color=color, gid=gid)
        if values or gradients:
            ax.text((n_columns - 1) / 2, low, "above an edge: the forward value of its source;  below, in red: "
                    "\u2202L/\u2202(source)", ha="center", va="bottom", fontsize="x-small", color="0.35")
        ax.axis("off")
        if title:
            ax.set_title(title)
    return ax


def _format_number(value: float, *, parenthesize: bool = False) -> str:
    """A short cell label: integers as such, others with two significant digits (no exponent up to 10 000)."""
    if float(value).is_integer():
        text = f"{int(round(value))}"
    else:
        text = f"{value:.0f}" if 10 <= abs(value) < 1e4 else f"{value:.2g}"
    return f"({text})" if parenthesize and value < 0 else text


def _matrix_panel(
    ax: Axes,
    matrix: np.ndarray,
    *,
    cmap: str,
    title: str,
    muted: np.ndarray | None = None,
    fontsize: float = 9.0,
) -> None:
    """Draw ``matrix (rows, cols)`` as pale coloured cells with their numbers; ``muted`` cells get grey numbers."""
    low, high = float(matrix.min()), float(matrix.max())
    spread = high - low if high > low else 1.0
    ax.imshow(matrix, cmap=cmap, norm=Normalize(low - 0.1 * spread, high + 1.2 * spread))
    if fontsize > 0:
        for (row, col), value in np.ndenumerate(matrix):
            grey = muted is not None and bool(muted[row, col])
            ax.text(col, row, _format_number(value), ha="center", va="center", fontsize=fontsize,
                    color="0.55" if grey else "black")
    rows, cols = matrix.shape
    ax.hlines(np.arange(rows + 1) - 0.5, -0.5, cols - 0.5, color="white", linewidth=1.0)
    ax.vlines(np.arange(cols + 1) - 0.5, -0.5, rows - 0.5, color="white", linewidth=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize="small")


def _outline(ax: Axes, row: int, col: int, height: int, width: int, gid: str, **style: Any) -> None:
    ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False, edgecolor=_HIGHLIGHT,
                           linewidth=style.pop("linewidth", 2.5), zorder=4, gid=gid, clip_on=False, **style))


def _panels(
    axes: Sequence[Axes] | None,
    widths: Sequence[int],
    height: int,
    extra_height: float,
) -> tuple[Figure, list[Axes], float]:
    """The given axes, or a new row of panels ``widths`` cells wide; return figure, axes and the number font size."""
    cell = min(0.42, 11.0 / (sum(widths) + len(widths)), 6.0 / height)
    fontsize = 0.0 if cell < 0.22 else min(9.0, 22.0 * cell)
    if axes is not None:
        if len(axes) != len(widths):
            raise ValueError(f"expected {len(widths)} axes, got {len(axes)}")
        return axes[0].figure, list(axes), fontsize
    figure, new_axes = plt.subplots(1, len(widths), gridspec_kw={"width_ratios": widths},
                                    figsize=(cell * (sum(widths) + len(widths)) + 0.4, cell * height + extra_height))
    top = 1 - extra_height / (cell * height + extra_height)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=top, wspace=0.1)
    return figure, list(new_axes), fontsize


def _check_position(position: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int]:
    row, col = (int(index) for index in position)
    if not (0 <= row < out_shape[0] and 0 <= col < out_shape[1]):
        raise ValueError(f"position {tuple(position)} is outside the output of shape {out_shape}")
    return row, col


def convolution_step(
    image: np.ndarray,
    kernel: np.ndarray,
    *,
    position: tuple[int, int] = (0, 0),
    stride: int = 1,
    padding: int = 0,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Show how one output entry of a 2-D convolution is computed, in three panels.

    Input ``image (H, W)`` zero-padded by ``padding`` with the window producing output ``position`` outlined; the
    ``kernel (kH, kW)``; the output map ``((H + 2p - kH) // s + 1, (W + 2p - kW) // s + 1)`` with the entry at
    ``position`` outlined and its value written as the sum of products. As in ``torch.nn.functional.conv2d``
    (cross-correlation), the kernel is not flipped.
    """
    image, kernel = np.asarray(image, dtype=np.float64), np.asarray(kernel, dtype=np.float64)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"image and kernel must be 2-D, got shapes {image.shape} and {kernel.shape}")
    if stride < 1 or padding < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    padded = np.pad(image, padding)
    (kernel_h, kernel_w) = kernel.shape
    out_shape = ((padded.shape[0] - kernel_h) // stride + 1, (padded.shape[1] - kernel_w) // stride + 1)
    if min(out_shape) < 1:
        raise ValueError(f"a {kernel.shape} kernel does not fit the padded input of shape {padded.shape}")
    row, col = _check_position(position, out_shape)
    output = np.array([[np.sum(padded[r * stride:r * stride + kernel_h, c * stride:c * stride + kernel_w] * kernel)
                        for c in range(out_shape[1])] for r in range(out_shape[0])])
    window = padded[row * stride:row * stride + kernel_h, col * stride:col * stride + kernel_w]
    value = float(np.sum(window * kernel))
    if kernel.size <= 9:
        lines = [" + ".join(f"{_format_number(a)}\u00d7{_format_number(b, parenthesize=True)}"
                            for a, b in zip(window_row, kernel_row))
                 for window_row, kernel_row in zip(window, kernel)]
        products = " +\n".join(lines)
    else:
        products = f"sum of the {kernel_h}\u00d7{kernel_w} products"
    output_title = f"output[{row}, {col}] =\n{products}\n= {value:.4g}"
    with plt.rc_context({**STYLE, "axes.grid": False}):
        figure, (input_ax, kernel_ax, output_ax), fontsize = _panels(
            axes, [padded.shape[1], kernel_w, out_shape[1]], max(padded.shape[0], 3), 0.35 + 0.17 * (kernel_h + 2))
        muted = np.pad(np.zeros(image.shape, dtype=bool), padding, constant_values=True)
        input_title = f"input {image.shape[0]}\u00d7{image.shape[1]}" + (f", padded by {padding}" if padding else "")
        _matrix_panel(input_ax, padded, cmap="Blues", title=f"{input_title}\nstride {stride}", muted=muted,
                      fontsize=fontsize)
        _outline(input_ax, row * stride, col * stride, kernel_h, kernel_w, "window")
        _matrix_panel(kernel_ax, kernel, cmap="Oranges", title=f"kernel {kernel_h}\u00d7{kernel_w}\n(not flipped)",
                      fontsize=fontsize)
        _matrix_panel(output_ax, output, cmap="Greens", title=output_title, fontsize=fontsize)
        _outline(output_ax, row, col, 1, 1, "entry")
    return figure


def pooling_step(
    image: np.ndarray,
    *,
    size: int = 2,
    stride: int | None = None,
    position: tuple[int, int] = (0, 0),
    mode: Literal["max", "average"] = "max",
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Show how one output entry of 2-D max or average pooling is computed, in two panels.

    Input ``image (H, W)`` with the ``size x size`` window of output ``position`` outlined (for max pooling the
    chosen entry is marked); the output map ``((H - size) // stride + 1, (W - size) // stride + 1)`` with the entry
    outlined and its value in the title. ``stride`` defaults to ``size`` (non-overlapping windows).
    """
    image = np.asarray(image, dtype=np.float64)
    stride = size if stride is None else stride
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if mode not in ("max", "average"):
        raise ValueError(f"mode must be 'max' or 'average', got {mode!r}")
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be >= 1, got size={size}, stride={stride}")
    out_shape = ((image.shape[0] - size) // stride + 1, (image.shape[1] - size) // stride + 1)
    if min(out_shape) < 1:
        raise ValueError(f"a {size}x{size} window does not fit the input of shape {image.shape}")
    row, col = _check_position(position, out_shape)
    reduce = np.max if mode == "max" else np.mean
    output = np.array([[reduce(image[r * stride:r * stride + size, c * stride:c * stride + size])
                        for c in range(out_shape[1])] for r in range(out_shape[0])])
    window = image[row * stride:row * stride + size, col * stride:col * stride + size]
    value = float(reduce(window))
    with plt.rc_context({**STYLE, "axes.grid": False}):
        figure, (input_ax, output_ax), fontsize = _panels(axes, [image.shape[1], out_shape[1]], image.shape[0], 0.75)
        _matrix_panel(input_ax, image, cmap="Blues", fontsize=fontsize,
                      title=f"input {image.shape[0]}\u00d7{image.shape[1]}\n{size}\u00d7{size} window, stride {stride}")
        _outline(input_ax, row * stride, col * stride, size, size, "window")
        if mode == "max":
            chosen_row, chosen_col = np.unravel_index(np.argmax(window), window.shape)
            input_ax.add_patch(Circle((col * stride + chosen_col, row * stride + chosen_row), 0.42, fill=False,
                                      edgecolor=_HIGHLIGHT, linewidth=1.5, linestyle="--", zorder=4, gid="chosen"))
        _matrix_panel(output_ax, output, cmap="Greens", fontsize=fontsize,
                      title=f"{mode} pooling\noutput[{row}, {col}] =\n{mode} of window\n= {value:.4g}")
        _outline(output_ax, row, col, 1, 1, "entry")
    return figure


def dropout_masks(
    layer_sizes: Sequence[int],
    p: float,
    *,
    n_masks: int = 3,
    seed: int = 0,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Draw ``n_masks`` dropout masks of one network side by side, as PyTorch's ``nn.Dropout(p)`` draws them.

    ``p`` is the probability of zeroing a unit. Every hidden unit is dropped independently (input and output units
    never are): for each mask and each hidden layer in turn, ``rng.random(size) < p`` with
    ``rng = np.random.default_rng(seed)``. Dropped units are greyed and crossed out, their edges removed.
    """
    sizes = _check_layer_sizes(layer_sizes)
    if not 0 <= p < 1:
        raise ValueError(f"p is the probability of dropping a unit and must satisfy 0 <= p < 1, got {p}")
    if len(sizes) < 3:
        raise ValueError("dropout_masks needs at least one hidden layer")
    if n_masks < 1:
        raise ValueError(f"n_masks must be at least 1, got {n_masks}")
    rng = np.random.default_rng(seed)
    n_hidden = sum(sizes[1:-1])
    max_units = 8
    half = (len(_unit_slots(max(sizes), max_units)) - 1) / 2
    panel_width, panel_height = (len(sizes) - 1) * _LAYER_GAP + 1.6, 2 * half + 1.2
    with plt.rc_context({**STYLE, "axes.grid": False}):
        if axes is None:
            # the panels share the width with 10 % gaps between them
            width, height = _network_figsize(panel_width * (1.1 * n_masks - 0.1), panel_height, max_size=(12.0, 5.0))
            figure, new_axes = plt.subplots(1, n_masks, figsize=(width, height + 0.6), squeeze=False)
            figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.6 / (height + 0.6), wspace=0.1)
            axes = list(new_axes.flat)
        elif len(axes) != n_masks:
            raise ValueError(f"expected {n_masks} axes, got {len(axes)}")
        figure = axes[0].figure
        for index, ax in enumerate(axes, start=1):
            kept: list[np.ndarray | None] = [None, *(rng.random(size) >= p for size in sizes[1:-1]), None]
            n_kept = int(sum(int(mask.sum()) for mask in kept if mask is not None))
            _draw_network(ax, sizes, max_units=max_units, kept=kept)
            ax.set_xlim(-0.8, (len(sizes) - 1) * _LAYER_GAP + 0.8)
            ax.set_ylim(-half - 0.6, half + 0.6)
            ax.set_title(f"mask {index}: {n_kept} of {n_hidden} hidden units kept", fontsize="small")
        figure.suptitle(f"dropout with p = {p:g}: during training each kept unit is scaled by 1/(1 - p) = "
                        f"{1 / (1 - p):.3g}; in evaluation (model.eval()) nothing is dropped", fontsize="small")
    return figure
