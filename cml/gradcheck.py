"""Gradient checking: compare the gradients your backward pass computes with finite differences.

The skill taught in 02 and used in 02, 03 and 06 on every layer. :func:`gradient_check` perturbs each entry of
each array you give it (in place, restoring it afterwards), re-evaluates your forward computation, and reports,
per array, the relative error between your gradient and the centred differences
``(f(x + eps) - f(x - eps)) / (2 eps)`` (CS231n's measure, taken over the whole array so that entries whose
gradient is zero, such as a dead ReLU unit's, do not turn rounding noise into a large error)::

    rel_error = ||analytic - numeric|| / max(1e-8, ||analytic|| + ||numeric||)

and the entry where the two differ most.

When the forward computation returns an array rather than a scalar loss, pass ``upstream``, the gradient that
arrives from above (an array of the output's shape, random by default): the checked scalar is then
``sum(upstream * output)``. Summing the raw outputs instead lets errors cancel; a softmax's outputs always sum
to one, so the plain sum would have a zero gradient whatever its input, and any backward pass would "pass".

Reading the report: below ``1e-7`` the gradient is right; up to ``1e-4`` it is probably right (kinks such as
ReLU at 0, float32 rounding); above that it is wrong. A wrong report names the entry where the two disagree most.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GradientRow", "GradientReport", "gradient_check", "relative_error", "GOOD", "SUSPICIOUS"]

GOOD = 1e-7
"""Largest relative error reported as "ok": a correct float64 gradient is usually far below it."""

SUSPICIOUS = 1e-4
"""Largest relative error reported as "check": kinks and float32 rounding can reach it; beyond it is "WRONG"."""


def relative_error(analytic: Any, numeric: Any) -> float:
    """``||a - n|| / max(1e-8, ||a|| + ||n||)`` with Euclidean norms over all entries (two arrays of one shape)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(1e-8, np.linalg.norm(a) + np.linalg.norm(n)))


@dataclass(frozen=True)
class GradientRow:
    """The comparison for one array: its name, shape, entries checked, their relative error and the worst entry."""

    name: str
    shape: tuple[int, ...]
    checked: int
    error: float
    worst_index: tuple[int, ...] | None
    analytic: float
    numeric: float
    problem: str = ""

    @property
    def verdict(self) -> str:
        """``"ok"``, ``"check"`` or ``"WRONG"`` (see :data:`GOOD` and :data:`SUSPICIOUS`)."""
        if self.problem:
            return "WRONG"
        if self.error <= GOOD:
            return "ok"
        return "check" if self.error <= SUSPICIOUS else "WRONG"


@dataclass(frozen=True)
class GradientReport:
    """One :class:`GradientRow` per checked array, printable as a table (plain text, or HTML in a notebook)."""

    rows: tuple[GradientRow, ...]

    @property
    def max_error(self) -> float:
        """The largest of the arrays' relative errors (``inf`` if a gradient had the wrong shape)."""
        return max((np.inf if row.problem else row.error for row in self.rows), default=0.0)

    def passed(self, tolerance: float = SUSPICIOUS) -> bool:
        """Whether every array's relative error is at most ``tolerance``."""
        return self.max_error <= tolerance

    def __getitem__(self, name: str) -> GradientRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def _lines(self) -> list[tuple[str, ...]]:
        header = ("array", "shape", "checked", "rel. error", "verdict", "worst entry: yours vs numeric")
        lines = [header]
        for row in self.rows:
            if row.problem:
                lines.append((row.name, str(row.shape), "-", "-", row.verdict, row.problem))
                continue
            worst = "" if row.worst_index is None else (
                f"[{', '.join(map(str, row.worst_index))}]: {row.analytic:.6g} vs {row.numeric:.6g}")
            lines.append((row.name, str(row.shape), str(row.checked), f"{row.error:.2e}", row.verdict, worst))
        return lines

    def __str__(self) -> str:
        lines = self._lines()
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)

    def _repr_html_(self) -> str:
        header, *body = self._lines()
        colours = {"ok": "#1a7f37", "check": "#9a6700", "WRONG": "#cf222e"}
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        rows = []
        for line in body:
            cells = "".join(
                f'<td style="color:{colours[cell]};font-weight:bold">{cell}</td>' if i == 4
                else f"<td>{html.escape(cell)}</td>" for i, cell in enumerate(line))
            rows.append(f"<tr>{cells}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _scalar(output: Any, upstream: np.ndarray | None) -> float:
    values = np.asarray(output, dtype=np.float64)
    if upstream is None:
        if values.size != 1:
            raise ValueError(
                f"the function returned an array of shape {values.shape}; pass upstream= (an array of that shape) "
                "to check the gradient of sum(upstream * output), or return a scalar loss")
        return float(values.reshape(()))
    if values.shape != upstream.shape:
        raise ValueError(f"upstream has shape {upstream.shape} but the function returned shape {values.shape}")
    return float(np.sum(upstream * values))


def gradient_check(
    function: Callable[[], Any],
    arrays: Mapping[str, np.ndarray],
    gradients: Mapping[str, Any],
    *,
    upstream: Any = None,
    eps: float = 1e-6,
    max_entries: int | None = 200,
    seed: int = 0,
) -> GradientReport:
    """Check ``gradients[name]`` against finite differences of ``function`` for every array in ``arrays``.

    ``function()`` takes no argument and computes from the arrays themselves (a closure over your network),
    returning a scalar loss, or any array when ``upstream`` is given. ``arrays`` maps names to the float arrays
    it reads (``{"W1": net.W1, ...}``, inputs included if you want their gradient); each is perturbed in place
    and restored, so pass the arrays your computation really uses, not copies. ``gradients`` maps the same names
    to your analytic gradients, each of its array's shape. ``upstream``: ``"random"`` for a random array of the
    output's shape (drawn from ``seed``), or an array of that shape. ``max_entries``: at most this many entries
    per array, drawn at random (``None``: all of them). Arrays must be float64 for errors below :data:`GOOD`.
    """
    missing = [name for name in arrays if name not in gradients]
    if missing:
        raise KeyError(f"no gradient given for {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    if isinstance(upstream, str):
        if upstream != "random":
            raise ValueError('upstream must be None, "random" or an array')
        upstream = rng.standard_normal(np.shape(function()))
    elif upstream is not None:
        upstream = np.asarray(upstream, dtype=np.float64)
    rows = []
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{name} must be a float NumPy array that the function reads, got {type(array).__name__}")
        analytic = np.asarray(gradients[name], dtype=np.float64)
        if analytic.shape != array.shape:
            rows.append(GradientRow(name, array.shape, 0, np.inf, None, np.nan, np.nan,
                                    f"your gradient has shape {analytic.shape}, its array {array.shape}"))
            continue
        indices = list(np.ndindex(array.shape))
        if max_entries is not None and len(indices) > max_entries:
            chosen = rng.choice(len(indices), size=max_entries, replace=False)
            indices = [indices[i] for i in sorted(chosen)]
        numeric = np.empty(len(indices))
        for k, index in enumerate(indices):
            original = array[index]
            try:
                array[index] = original + eps
                f_plus = _scalar(function(), upstream)
                array[index] = original - eps
                f_minus = _scalar(function(), upstream)
            finally:
                array[index] = original
            numeric[k] = (f_plus - f_minus) / (2 * eps)
        chosen_analytic = np.array([analytic[index] for index in indices])
        worst = int(np.argmax(np.abs(chosen_analytic - numeric))) if indices else None
        rows.append(GradientRow(
            name, array.shape, len(indices), relative_error(chosen_analytic, numeric),
            indices[worst] if worst is not None else None,
            float(chosen_analytic[worst]) if worst is not None else np.nan,
            float(numeric[worst]) if worst is not None else np.nan))
    return GradientReport(tuple(rows))
