"""The diagrams of cml.plot draw what their text promises, reject impossible requests and render under Agg."""

from __future__ import annotations

import io
import re
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from cml import plot

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def _with_gid(ax, gid: str) -> list:
    return [artist for artist in ax.get_children() if artist.get_gid() == gid]


def _renders_silently(figure) -> None:
    """The figure saves as PNG without a warning (a notebook cell writing to stderr scores zero), also cropped as
    the inline backend of Jupyter saves it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for options in ({}, {"bbox_inches": "tight"}):
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=40, **options)
            assert buffer.getvalue().startswith(b"\x89PNG")


def test_network_diagram_rows_convention_shapes_and_truncated_layers() -> None:
    before = dict(matplotlib.rcParams)
    ax = plot.network_diagram([784, 128, 10], activations=["ReLU", "softmax"], title="MLP")
    texts = _texts(ax)
    for label in ("X (n, 784)", "W1 (784, 128)", "b1 (128,)", "W2 (128, 10)", "b2 (10,)",
                  "input", "hidden 1", "output", "ReLU", "softmax", "784 units", "128 units", "10 units"):
        assert label in texts, label
    # 784 and 128 exceed max_units=8: 8 circles each and an ellipsis; 10 > 8 as well
    assert len(_with_gid(ax, "unit")) == 3 * 8
    assert len(_with_gid(ax, "ellipsis")) == 3
    assert ax.get_title() == "MLP"
    assert dict(matplotlib.rcParams) == before
    _renders_silently(ax.figure)


def test_network_diagram_columns_convention_and_small_layers() -> None:
    _, given = plt.subplots()
    ax = plot.network_diagram([2, 3, 1], samples="columns", layer_names=["x", "h", "y"], max_units=4, ax=given)
    assert ax is given
    texts = _texts(ax)
    for label in ("X (2, n)", "W1 (3, 2)", "b1 (3, 1)", "W2 (1, 3)", "b2 (1, 1)", "x", "h", "y"):
        assert label in texts, label
    assert not any(text.endswith("units") for text in texts)  # no layer is truncated
    assert len(_with_gid(ax, "unit")) == 2 + 3 + 1
    assert len(ax.collections[0].get_segments()) == 2 * 3 + 3 * 1  # every edge between consecutive layers


def test_network_diagram_max_units_caps_the_circles() -> None:
    ax = plot.network_diagram([20, 5], max_units=3)
    assert len(_with_gid(ax, "unit")) == 3 + 3
    assert "20 units" in _texts(ax) and "5 units" in _texts(ax)


@pytest.mark.parametrize(("sizes", "kwargs", "message"), [
    ([5], {}, "at least 2 layers"),
    ([3, 0, 2], {}, "positive"),
    ([3, -1], {}, "positive"),
    ([3, 4, 2], {"activations": ["relu"]}, "activations"),
])
def test_network_diagram_rejects(sizes, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        plot.network_diagram(sizes, **kwargs)


NODES = {"x": "$x$", "w": "$w$", "z": "$z = wx$", "L": "$L = z^2$"}
EDGES = [("x", "z"), ("w", "z"), ("z", "L")]


def test_computational_graph_layout_values_and_gradients() -> None:
    values = {"x": 2.0, "w": -1.5, "z": -3.0, "L": 9.0}
    gradients = {"x": 9.0, "w": -12.0, "z": -6.0, "L": 1.0}
    ax = plot.computational_graph(NODES, EDGES, values=values, gradients=gradients, title="forward and backward")
    boxes = {text.get_gid()[len("node "):]: text for text in ax.texts if (text.get_gid() or "").startswith("node ")}
    assert {name: box.get_text() for name, box in boxes.items()} == NODES
    x_of = {name: box.get_position()[0] for name, box in boxes.items()}
    assert x_of["x"] == x_of["w"] < x_of["z"] < x_of["L"]  # columns by depth
    assert boxes["x"].get_position()[1] != boxes["w"].get_position()[1]  # one depth, spread vertically
    assert len(_with_gid(ax, "edge")) == len(EDGES)
    value_texts = [text.get_text() for text in _with_gid(ax, "value")]
    gradient_texts = [text for text in _with_gid(ax, "gradient")]
    assert sorted(value_texts) == sorted(["2", "-1.5", "-3", "9"])
    assert sorted(text.get_text() for text in gradient_texts) == sorted(["9", "-12", "-6", "1"])
    assert all(matplotlib.colors.to_hex(text.get_color()) == "#d62728" for text in gradient_texts)
    _renders_silently(ax.figure)


def test_computational_graph_longest_path_sets_the_depth() -> None:
    nodes = {"a": "a", "b": "b", "c": "c"}
    ax = plot.computational_graph(nodes, [("a", "b"), ("b", "c"), ("a", "c")])
    x_of = {text.get_gid(): text.get_position()[0] for text in ax.texts if text.get_gid()}
    assert x_of["node a"] < x_of["node b"] < x_of["node c"]


def test_computational_graph_rejects_cycles_and_unknown_nodes() -> None:
    with pytest.raises(ValueError, match="cycle"):
        plot.computational_graph({"a": "a", "b": "b"}, [("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="unknown node 'q'"):
        plot.computational_graph({"a": "a"}, [("a", "q")])
    with pytest.raises(ValueError, match="at least one node"):
        plot.computational_graph({}, [])


def test_diagrams_are_exported() -> None:
    for name in ("network_diagram", "computational_graph", "convolution_step", "pooling_step", "dropout_masks"):
        assert name in plot.__all__ and callable(getattr(plot, name))


def _title_value(title: str) -> float:
    return float(re.findall(r"=\s*(-?[\d.e+-]+)\s*$", title)[0])


def test_convolution_step_value_matches_cross_correlation_with_stride_and_padding() -> None:
    rng = np.random.default_rng(0)
    image, kernel = rng.standard_normal((6, 7)), rng.standard_normal((3, 3))
    # torch.nn.functional.conv2d(image, kernel, stride=2, padding=1), computed independently with NumPy windows
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(image, 1), kernel.shape)[::2, ::2]
    expected = np.einsum("ijkl,kl->ij", windows, kernel)
    assert expected.shape == ((6 + 2 - 3) // 2 + 1, (7 + 2 - 3) // 2 + 1)
    for position in [(0, 0), (1, 2), (expected.shape[0] - 1, expected.shape[1] - 1)]:
        figure = plot.convolution_step(image, kernel, position=position, stride=2, padding=1)
        input_ax, kernel_ax, output_ax = figure.axes
        assert _title_value(output_ax.get_title()) == pytest.approx(expected[position], rel=1e-3, abs=1e-3)
        np.testing.assert_allclose(output_ax.images[0].get_array(), expected, rtol=1e-12, atol=1e-12)
        window = _with_gid(input_ax, "window")[0]
        assert window.get_xy() == (position[1] * 2 - 0.5, position[0] * 2 - 0.5)
        assert (window.get_width(), window.get_height()) == (3, 3)
        entry = _with_gid(output_ax, "entry")[0]
        assert entry.get_xy() == (position[1] - 0.5, position[0] - 0.5)
        assert input_ax.images[0].get_array().shape == (8, 9)  # the zero-padded input
        plt.close(figure)


def test_convolution_step_writes_the_sum_of_products_without_flipping() -> None:
    image = np.arange(9.0).reshape(3, 3)
    kernel = np.array([[1.0, 0.0], [0.0, -1.0]])
    figure = plot.convolution_step(image, kernel, position=(0, 1))
    title = figure.axes[2].get_title()
    assert "1\u00d71 + 2\u00d70" in title and "4\u00d70 + 5\u00d7(-1)" in title
    assert _title_value(title) == -4  # 1*1 + 5*(-1): cross-correlation, not convolution
    _renders_silently(figure)


def test_convolution_step_rejects() -> None:
    with pytest.raises(ValueError, match="outside"):
        plot.convolution_step(np.zeros((5, 5)), np.ones((3, 3)), position=(3, 0))
    with pytest.raises(ValueError, match="outside"):
        plot.convolution_step(np.zeros((5, 5)), np.ones((3, 3)), position=(2, 0), stride=2, padding=0)
    with pytest.raises(ValueError, match="2-D"):
        plot.convolution_step(np.zeros((1, 5, 5)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        plot.convolution_step(np.zeros((5, 5)), np.ones(3))


def test_pooling_step_max_and_average() -> None:
    image = np.array([[1, 3, 2, 0], [4, 2, 9, 1], [0, 5, 7, 7], [6, 1, 3, 8]], dtype=float)
    figure = plot.pooling_step(image, position=(0, 1))
    input_ax, output_ax = figure.axes
    assert _title_value(output_ax.get_title()) == 9
    np.testing.assert_array_equal(output_ax.images[0].get_array(), [[4, 9], [6, 8]])
    assert _with_gid(input_ax, "chosen")[0].center == (2, 1)  # the 9, in column 2 and row 1
    assert _with_gid(input_ax, "window")[0].get_xy() == (1.5, -0.5)
    assert _with_gid(output_ax, "entry")[0].get_xy() == (0.5, -0.5)
    _renders_silently(figure)

    figure = plot.pooling_step(image, size=3, stride=1, position=(1, 1), mode="average")
    input_ax, output_ax = figure.axes
    assert _title_value(output_ax.get_title()) == pytest.approx(image[1:4, 1:4].mean(), rel=1e-3)
    assert output_ax.images[0].get_array().shape == (2, 2)
    assert not _with_gid(input_ax, "chosen")
    with pytest.raises(ValueError, match="outside"):
        plot.pooling_step(image, position=(2, 0))


def test_dropout_masks_follow_the_seed_and_keep_input_and_output() -> None:
    sizes, p, seed = [3, 6, 5, 2], 0.5, 4
    figure = plot.dropout_masks(sizes, p, n_masks=3, seed=seed)
    rng = np.random.default_rng(seed)
    assert len(figure.axes) == 3
    for index, ax in enumerate(figure.axes, start=1):
        dropped = sum(int((rng.random(size) < p).sum()) for size in sizes[1:-1])
        assert len(_with_gid(ax, "cross")) == len(_with_gid(ax, "dropped unit")) == dropped
        assert len(_with_gid(ax, "unit")) == sum(sizes) - dropped
        assert ax.get_title() == f"mask {index}: {11 - dropped} of 11 hidden units kept"
    assert "1/(1 - p)" in figure._suptitle.get_text() and "evaluation" in figure._suptitle.get_text()
    _renders_silently(figure)


def test_dropout_masks_remove_the_edges_of_dropped_units() -> None:
    figure = plot.dropout_masks([2, 3, 2], 0.0, n_masks=1)
    ax = figure.axes[0]
    assert not _with_gid(ax, "cross") and len(ax.collections[0].get_segments()) == 2 * 3 + 3 * 2
    assert ax.get_title() == "mask 1: 3 of 3 hidden units kept"
    figure = plot.dropout_masks([2, 40, 2], 0.99, n_masks=1, seed=1)
    ax = figure.axes[0]
    kept_drawn = len(_with_gid(ax, "unit")) - 4  # input and output units always drawn
    assert len(ax.collections[0].get_segments()) == 4 * kept_drawn


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_masks_rejects_probabilities_outside_zero_one(p) -> None:
    with pytest.raises(ValueError, match="0 <= p < 1"):
        plot.dropout_masks([3, 4, 2], p)


def test_diagrams_draw_on_given_axes() -> None:
    figure, axes = plt.subplots(1, 3)
    assert plot.convolution_step(np.ones((4, 4)), np.ones((2, 2)), axes=axes) is figure
    figure, axes = plt.subplots(1, 2)
    assert plot.pooling_step(np.ones((4, 4)), axes=axes) is figure
    figure, axes = plt.subplots(1, 2)
    assert plot.dropout_masks([2, 3, 1], 0.5, n_masks=2, axes=axes) is figure
    with pytest.raises(ValueError, match="expected 3 axes"):
        plot.convolution_step(np.ones((4, 4)), np.ones((2, 2)), axes=axes)
