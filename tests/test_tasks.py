"""The interactive explorers: their models' gradients, training, widgets, and the static fallback."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from cml.checks import numerical_gradient
from cml.tasks import ClassificationLinear, ClassificationXOR, Explorer

EXPLORERS = [ClassificationLinear, ClassificationXOR]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("explorer_class", EXPLORERS)
def test_gradients_match_finite_differences(explorer_class: type[Explorer]) -> None:
    explorer = explorer_class(seed=3)
    explorer.set_data(points=30, noise=0.4)
    analytic = explorer.gradients()
    for key, value in explorer.params.items():
        def loss_at(candidate: np.ndarray, key: str = key) -> float:
            saved = explorer.params[key]
            explorer.params[key] = candidate.reshape(saved.shape)
            loss = explorer.loss()
            explorer.params[key] = saved
            return loss

        numeric = numerical_gradient(loss_at, value)
        np.testing.assert_allclose(analytic[key], numeric, rtol=1e-5, atol=1e-8, err_msg=key)


def test_linear_explorer_learns_separable_data() -> None:
    explorer = ClassificationLinear(seed=0)
    start = explorer.loss()
    explorer.train(300)
    assert explorer.loss() < start / 2
    assert explorer.accuracy() >= 0.9
    assert len(explorer.history) == 301


def test_xor_explorer_solves_xor_and_one_unit_cannot() -> None:
    solved = ClassificationXOR(seed=3)
    solved.train(2000)
    assert solved.accuracy() == 1.0
    single = ClassificationXOR(seed=3, hidden=1)
    single.train(2000)
    assert single.accuracy() <= 0.8  # a single tanh unit draws one boundary band at most
    with pytest.raises(ValueError):
        ClassificationXOR(hidden=0)


def test_settings_and_parameters_by_name() -> None:
    explorer = ClassificationXOR(seed=0)
    explorer.set_data(points=40, separation=3.0)
    assert explorer.X.shape == (40, 2) and np.abs(explorer.X).max() > 1.2
    explorer.set_parameter("W1[1,0]", 2.5)
    assert explorer.get_parameter("W1[1,0]") == 2.5
    explorer.set_parameter("b2", -1.0)
    assert explorer.params["b2"].shape == () and explorer.get_parameter("b2") == -1.0
    with pytest.raises(KeyError, match="unknown setting"):
        explorer.set_data(colour=1.0)
    names = [slider.name for slider in explorer.parameter_sliders()]
    assert names == ["W1[0,0]", "W1[0,1]", "W1[1,0]", "W1[1,1]", "b1[0]", "b1[1]", "W2[0]", "W2[1]", "b2"]
    before = explorer.params["W1"].copy()
    explorer.reset()
    assert explorer.seed == 1 and not np.allclose(before, explorer.params["W1"])


@pytest.mark.parametrize("explorer_class", EXPLORERS)
def test_widgets_redraw_and_train(explorer_class: type[Explorer]) -> None:
    explorer = explorer_class(seed=0)
    panel = explorer.widget()
    image = explorer._widgets["image"]
    assert "cml-explorer" in panel._dom_classes and bytes(image.value).startswith(b"\x89PNG")
    first_parameter = explorer.parameter_sliders()[0].name

    shown = image.value
    explorer._widgets[first_parameter].value = 1.5
    assert explorer.get_parameter(first_parameter) == 1.5 and image.value != shown

    shown = image.value
    explorer._widgets["noise"].value = 0.5
    assert explorer.settings["noise"] == 0.5 and image.value != shown

    explorer._widgets["steps per click"].value = 20
    loss_before = explorer.loss()
    explorer._animate_training()
    assert len(explorer.history) == 21 and explorer.loss() < loss_before
    # the parameter sliders follow the trained parameters
    assert explorer._widgets[first_parameter].value == pytest.approx(explorer.get_parameter(first_parameter), abs=0.05)


def test_show_without_ipython_draws_a_pyplot_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(plt, "show", lambda: None)
    ClassificationLinear().show()
    assert len(plt.get_fignums()) == 1
    plt.close("all")


def test_show_without_ipywidgets_displays_the_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython
    import IPython.display

    shown: list[dict] = []
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw: shown.append(bundle))
    ClassificationXOR().show()
    assert len(shown) == 1 and shown[0]["image/png"].startswith(b"\x89PNG") and WIDGET_MIME not in shown[0]


def test_in_a_kernel_the_output_carries_widget_and_picture(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from cml.tasks import ClassificationLinear, ClassificationXOR\n"
        "ClassificationLinear(seed=0).show()\nClassificationXOR(seed=0).show()"
    )])
    NotebookClient(notebook, timeout=60, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    assert [output.output_type for output in outputs] == ["display_data", "display_data"]
    for output in outputs:
        assert {WIDGET_MIME, "image/png", "text/plain"} <= set(output.data)
