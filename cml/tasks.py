"""Interactive explorers: move the data and a model's parameters, watch the decision boundary follow.

Each explorer is a small NumPy model on 2-D data drawn by :mod:`cml.data`, shown as ipywidgets
sliders next to a matplotlib figure rendered to PNG. Nothing needs a server: in JupyterLab the
sliders redraw the figure and *Train* animates a few gradient steps. Where widgets cannot run
(nbval, an exported or untrusted notebook, a plain Python session) the same call shows a static
figure instead, because the output carries the PNG next to the widget.

>>> explorer = ClassificationLinear(seed=0)
>>> explorer.show()  # doctest: +SKIP
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from cml import data
from cml.plot import CLASS_COLORS, STYLE, scatter_classes

__all__ = ["Slider", "Explorer", "ClassificationLinear", "ClassificationXOR"]

_PROBABILITY_COLORS = LinearSegmentedColormap.from_list("class_probability", [CLASS_COLORS[0], "#ffffff", CLASS_COLORS[1]])


@dataclass(frozen=True)
class Slider:
    """A numeric control: its range, step and starting value."""

    name: str
    low: float
    high: float
    step: float
    value: float
    integer: bool = False


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1 / (1 + exp(-z))


def _cross_entropy(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class Explorer:
    """Base class: data sliders, parameter sliders, a figure, and Train / Reset buttons.

    Subclasses define the data (:meth:`make_data`), the parameters (:attr:`parameter_sliders`),
    the model (:meth:`probability`) and one gradient step of the mean cross-entropy
    (:meth:`gradients`). Parameters live in :attr:`params`, a dict of float arrays.
    """

    title = "explorer"
    data_sliders: tuple[Slider, ...] = ()
    training_sliders: tuple[Slider, ...] = (
        Slider("learning rate", 0.01, 2.0, 0.01, 0.5),
        Slider("steps per click", 1, 200, 1, 40, integer=True),
    )
    frames_per_click = 10
    parameter_limit = 5.0
    """Parameter sliders range over ``[-parameter_limit, parameter_limit]``."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.settings: dict[str, float] = {s.name: s.value for s in self.data_sliders + self.training_sliders}
        self.X, self.y = self.make_data()
        self.params = self.initial_params()
        self.history: list[float] = [self.loss()]
        self._widgets: dict[str, Any] = {}
        self._syncing = False

    # -- the model, defined by subclasses ------------------------------------------------------
    def make_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Points ``X (n, 2)`` and labels ``y (n,)`` in {0, 1} for the current data settings."""
        raise NotImplementedError


    def initial_params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def probability(self, X: np.ndarray) -> np.ndarray:
        """The model's probability of class 1 for points ``X (m, 2)``, shape ``(m,)``."""
        raise NotImplementedError

    def gradients(self) -> dict[str, np.ndarray]:
        """Gradients of the mean cross-entropy on the data, same keys and shapes as :attr:`params`."""
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------------
    def parameter_sliders(self) -> tuple[Slider, ...]:
        """One slider per scalar parameter at its current value, named ``"<key>[<index>]"`` or ``"<key>"``."""
        sliders = []
        for key, array in self.params.items():
            for index in np.ndindex(array.shape):
                name = key if not index else f"{key}[{','.join(map(str, index))}]"
                value = float(np.clip(array[index], -self.parameter_limit, self.parameter_limit))
                sliders.append(Slider(name, -self.parameter_limit, self.parameter_limit, 0.05, value))
        return tuple(sliders)

    def loss(self) -> float:
        return _cross_entropy(self.probability(self.X), self.y)

    def accuracy(self) -> float:
        return float(np.mean((self.probability(self.X) >= 0.5) == self.y))

    def train(self, n_steps: int | None = None) -> None:
        """Take ``n_steps`` full-batch gradient steps (default: the *steps per click* setting)."""
        rate = self.settings["learning rate"]
        for _ in range(int(n_steps if n_steps is not None else self.settings["steps per click"])):
            for key, gradient in self.gradients().items():
                self.params[key] = self.params[key] - rate * gradient
            self.history.append(self.loss())

    def reset(self, seed: int | None = None) -> None:
        """Draw new starting parameters (from ``seed``, or the next seed) and forget the loss history."""
        self.seed = self.seed + 1 if seed is None else seed
        self.params = self.initial_params()
        self.history = [self.loss()]

    def set_data(self, **settings: float) -> None:
        """Change data settings by name (``noise=0.3``) and draw the data again; parameters are kept."""
        for name, value in settings.items():
            key = name.replace("_", " ")
            if key not in self.settings:
                raise KeyError(f"unknown setting {name!r}; known: {sorted(self.settings)}")
            self.settings[key] = value
        self.X, self.y = self.make_data()
        self.history = [self.loss()]

    def get_parameter(self, name: str) -> float:
        key, index = _split_parameter(name)
        return float(self.params[key][index])

    def set_parameter(self, name: str, value: float) -> None:
        key, index = _split_parameter(name)
        updated = self.params[key].copy()
        updated[index] = value
        self.params[key] = updated
        self.history = [self.loss()]

    def figure(self, figure: Figure | None = None) -> Figure:
        """The current state: probability shading, the 0.5 boundary, the data, and the loss so far.

        Draws on ``figure`` when given (a pyplot figure, to be shown), else on a new detached figure.
        """
        with plt.rc_context(STYLE):
            figure = figure or Figure()
            figure.set_size_inches(8.4, 3.8)
            figure.set_layout_engine("constrained")
            boundary_ax, loss_ax = figure.subplots(1, 2, width_ratios=(1.15, 1))
            low, high = self.X.min(axis=0) - 0.6, self.X.max(axis=0) + 0.6
            xx, yy = np.meshgrid(np.linspace(low[0], high[0], 120), np.linspace(low[1], high[1], 120))
            with np.errstate(all="ignore"):
                p = self.probability(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
            boundary_ax.contourf(xx, yy, p, levels=np.linspace(0, 1, 11), cmap=_PROBABILITY_COLORS, alpha=0.35)
            if p.min() < 0.5 < p.max():
                boundary_ax.contour(xx, yy, p, levels=[0.5], colors="black", linewidths=1.5)
            scatter_classes(self.X, self.y, ax=boundary_ax)
            boundary_ax.set_xlim(low[0], high[0])
            boundary_ax.set_ylim(low[1], high[1])
            boundary_ax.set_title(f"{self.title}: accuracy {self.accuracy():.0%}, loss {self.loss():.3f}")
            loss_ax.plot(np.arange(len(self.history)), self.history, color="black")
            loss_ax.set_xlabel("gradient step")
            loss_ax.set_ylabel("mean cross-entropy")
            loss_ax.set_xlim(0, max(10, len(self.history) - 1))
            loss_ax.set_ylim(bottom=0)
            loss_ax.set_title("training loss")
        return figure

    def png(self) -> bytes:
        """:meth:`figure` as PNG bytes."""
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()

    def widget(self) -> Any:
        """The interactive panel (an ``ipywidgets.Box``); raises ImportError without ipywidgets."""
        import ipywidgets as widgets

        image = widgets.Image(value=self.png(), format="png", layout=widgets.Layout(height="auto", max_width="100%"))
        image.add_class("cml-explorer-figure")
        self._widgets = {"image": image}

        def control(slider: Slider, on_change: Callable[[str, float], None]) -> Any:
            kind = widgets.IntSlider if slider.integer else widgets.FloatSlider
            options = {} if slider.integer else {"readout_format": ".2f"}
            box = kind(value=slider.value, min=slider.low, max=slider.high, step=slider.step,
                       description=slider.name, continuous_update=False, style={"description_width": "8em"},
                       **options)
            box.observe(lambda change: on_change(slider.name, change["new"]), names="value")
            self._widgets[slider.name] = box
            return box

        data_controls = [control(s, self._on_data) for s in self.data_sliders]
        training_controls = [control(s, self._on_training) for s in self.training_sliders]
        parameter_controls = [control(s, self._on_parameter) for s in self.parameter_sliders()]
        train_button = widgets.Button(description="Train", icon="play", button_style="primary")
        reset_button = widgets.Button(description="Reset", icon="refresh")
        train_button.on_click(lambda _: self._animate_training())
        reset_button.on_click(lambda _: self._on_reset())
        panel = widgets.VBox([
            widgets.HTML("<b>Data</b>"), *data_controls,
            widgets.HTML("<b>Parameters</b>"), *parameter_controls,
            widgets.HTML("<b>Training</b>"), *training_controls, widgets.HBox([train_button, reset_button]),
        ])
        box = widgets.HBox([panel, image], layout=widgets.Layout(align_items="flex-start"))
        box.add_class("cml-explorer")
        return box

    def show(self) -> None:
        """Display the explorer; a static figure where widgets are unavailable.

        In a notebook the output holds both the widget and the PNG of its first state: JupyterLab
        renders the widget, while nbval, nbconvert and untrusted notebooks fall back to the picture.
        """
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # plain Python without IPython
            get_ipython = None  # type: ignore[assignment]
        if get_ipython is None or get_ipython() is None:
            self.figure(plt.figure())
            plt.show()
            return
        try:
            panel = self.widget()
        except ImportError:
            panel = None
        bundle: dict[str, Any] = {
            # the widget's own first picture, so that the figure is rendered once
            "image/png": bytes(self._widgets["image"].value) if panel is not None else self.png(),
            "text/plain": f"<{type(self).__name__}: interactive explorer (needs ipywidgets in JupyterLab)>",
        }
        if panel is not None:
            bundle.update(panel._repr_mimebundle_())
        display(bundle, raw=True)

    # -- widget callbacks ------------------------------------------------------------------------
    def _redraw(self) -> None:
        if "image" in self._widgets:
            self._widgets["image"].value = self.png()

    def _sync_parameter_sliders(self) -> None:
        self._syncing = True
        try:
            for slider in self.parameter_sliders():
                box = self._widgets.get(slider.name)
                if box is not None:
                    box.value = slider.value  # the current value, clipped to the slider's range
        finally:
            self._syncing = False

    def _on_data(self, name: str, value: float) -> None:
        self.set_data(**{name: value})
        self._redraw()

    def _on_training(self, name: str, value: float) -> None:
        self.settings[name] = value

    def _on_parameter(self, name: str, value: float) -> None:
        if not self._syncing:
            self.set_parameter(name, value)
            self._redraw()

    def _on_reset(self) -> None:
        self.reset()
        self._sync_parameter_sliders()
        self._redraw()

    def _animate_training(self) -> None:
        total = int(self.settings["steps per click"])
        frames = min(self.frames_per_click, total)
        done = 0
        for frame in range(1, frames + 1):
            target = round(total * frame / frames)
            self.train(target - done)
            done = target
            self._sync_parameter_sliders()
            self._redraw()
            time.sleep(0.05)  # let the front end paint each frame


def _split_parameter(name: str) -> tuple[str, tuple[int, ...]]:
    """``"W1[0,1]"`` → ``("W1", (0, 1))``; ``"b"`` → ``("b", ())``."""
    if "[" not in name:
        return name, ()
    key, rest = name.split("[", 1)
    return key, tuple(int(part) for part in rest.rstrip("]").split(","))


class ClassificationLinear(Explorer):
    """One sigmoid neuron ``p = σ(w · x + b)`` on two Gaussian classes.

    Sliders: the number of points, the spread of each class and the distance between their means;
    the weights ``w[0]``, ``w[1]`` and the bias ``b``; the learning rate and steps per *Train* click.
    The boundary is the line ``w · x + b = 0``, perpendicular to ``w``.
    """

    title = "one neuron"
    data_sliders = (
        Slider("points", 10, 400, 10, 100, integer=True),
        Slider("noise", 0.1, 3.0, 0.05, 1.0),
        Slider("separation", 0.0, 6.0, 0.1, 3.0),
    )

    def make_data(self) -> tuple[np.ndarray, np.ndarray]:
        return data.two_gaussians(int(self.settings["points"]), separation=self.settings["separation"],
                                  std=self.settings["noise"], seed=0)

    def initial_params(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return {"w": rng.normal(0.0, 1.0, size=2), "b": np.zeros(())}

    def probability(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(X @ self.params["w"] + self.params["b"])

    def gradients(self) -> dict[str, np.ndarray]:
        error = (self.probability(self.X) - self.y) / len(self.y)  # d loss / d logit, per point
        return {"w": self.X.T @ error, "b": np.sum(error)}


class ClassificationXOR(Explorer):
    """A 2-``hidden``-1 network ``p = σ(W2ᵀ tanh(W1ᵀ x + b1) + b2)`` on the XOR problem.

    One neuron cannot separate XOR; two tanh hidden units can. Sliders: the number of points, the
    noise around each corner and the corners' distance (*separation*); every weight and bias of the
    network; the learning rate and steps per *Train* click. Try setting the weights by hand first.
    """

    title = "XOR network"
    parameter_limit = 6.0
    data_sliders = (
        Slider("points", 20, 400, 10, 120, integer=True),
        Slider("noise", 0.0, 1.0, 0.02, 0.15),
        Slider("separation", 0.5, 4.0, 0.1, 2.0),
    )
    training_sliders = (
        Slider("learning rate", 0.01, 3.0, 0.01, 1.0),
        Slider("steps per click", 1, 500, 1, 100, integer=True),
    )

    def __init__(self, seed: int = 0, hidden: int = 2) -> None:
        if hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {hidden}")
        self.hidden = hidden
        super().__init__(seed)

    def make_data(self) -> tuple[np.ndarray, np.ndarray]:
        X, y = data.xor(int(self.settings["points"]), noise=self.settings["noise"], seed=0)
        return (X - 0.5) * self.settings["separation"], y  # corners at ±separation/2 around the origin

    def initial_params(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        scale = np.sqrt(2.0 / (2 + self.hidden))  # Glorot
        return {
            "W1": rng.normal(0.0, scale, size=(2, self.hidden)),
            "b1": np.zeros(self.hidden),
            "W2": rng.normal(0.0, scale, size=self.hidden),
            "b2": np.zeros(()),
        }

    def _hidden(self, X: np.ndarray) -> np.ndarray:
        return np.tanh(X @ self.params["W1"] + self.params["b1"])

    def probability(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(self._hidden(X) @ self.params["W2"] + self.params["b2"])

    def gradients(self) -> dict[str, np.ndarray]:
        hidden = self._hidden(self.X)
        error = (_sigmoid(hidden @ self.params["W2"] + self.params["b2"]) - self.y) / len(self.y)
        hidden_error = np.outer(error, self.params["W2"]) * (1 - hidden**2)
        return {
            "W1": self.X.T @ hidden_error,
            "b1": hidden_error.sum(axis=0),
            "W2": hidden.T @ error,
            "b2": np.sum(error),
        }
