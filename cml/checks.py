"""The checking API that every visible and hidden test goes through.

Each check has a stable identifier (``"sigmoid.large_inputs"``), compares a student's value with an
independent oracle, and raises :class:`CheckFailed` with a message that says what was expected without
showing the test's code. Every verdict is also appended to :data:`records`, so a grader can later
collect the verdicts (and the values behind them) outside the student's kernel without the tests
being rewritten. When the grader asks for it (:mod:`cml.check_log`), each check also writes the values
it compared, so that the verdict can be given again outside the kernel, where student code cannot reach.

Checks return ``None`` on purpose: nbgrader reads a grade cell's last expression as a partial score.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import io
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cml import check_log
from cml.check_log import grading_seed

__all__ = [
    "grading_seed",
    "observe",
    "record_verdict",
    "CheckFailed",
    "CheckRecord",
    "records",
    "quiet",
    "call_quietly",
    "rel_error",
    "numerical_gradient",
    "check_close",
    "check_equal",
    "check_shape",
    "check_true",
    "check_gradient",
    "check_accuracy",
    "skip",
    "call_without_autodiff",
    "WITHHELD",
    "HiddenOracle",
    "hidden_oracle",
    "log_withheld",
    "log_inputs",
    "unwrap_oracle",
]


class CheckFailed(AssertionError):
    """A check did not pass; ``str(error)`` is the message meant for the student."""

    def __init__(self, check_id: str, message: str) -> None:
        super().__init__(f"[{check_id}] {message}")
        self.check_id = check_id


@dataclass(frozen=True)
class CheckRecord:
    """One verdict: which check, whether it passed, and the message shown when it did not.

    A skipped check (``skipped=True``, see :func:`skip`) was not run; it has ``passed=False`` so that no
    tally counts it as a pass.
    """

    check_id: str
    passed: bool
    message: str = ""
    skipped: bool = False


records: list[CheckRecord] = []
"""Every verdict given in this process, in order."""


class _Withheld:
    """The type of :data:`WITHHELD`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return WITHHELD_REPR


WITHHELD_REPR = "<oracle withheld by the grader>"
WITHHELD = _Withheld()
"""What the oracle argument of a hidden check is in a student's graded kernel: the grader holds the value, and the
check only logs the student's (see :mod:`cml.instructor.oracles`). Never seen when practising."""


@dataclass(frozen=True)
class HiddenOracle:
    """The oracle argument of a hidden check in the grader's reference run: the value, marked as one the grader
    judges outside the students' kernels (:func:`hidden_oracle`)."""

    value: Any


def hidden_oracle(value: Any) -> HiddenOracle:
    """Mark ``value`` as a hidden check's oracle (the grader's reference run wraps them so)."""
    return HiddenOracle(value)


def unwrap_oracle(expected: Any) -> tuple[Any, bool, bool]:
    """``(value, hidden, withheld)`` of a check's oracle argument."""
    if expected is WITHHELD:
        return None, True, True
    if isinstance(expected, HiddenOracle):
        return expected.value, True, False
    return expected, False, False


def log_withheld(kind: str, check_id: str, actual: Any, what: str, **parameters: float) -> None:
    """Log the student's value of a check whose oracle the grader holds; the grader gives the verdict."""
    if check_log.enabled():
        check_log.write({"kind": kind, "id": check_id, "actual": check_log.encode(actual), "hidden": True,
                         "withheld": True, "what": what, "parameters": parameters})


def record_verdict(check_id: str, passed: bool, message: str = "") -> None:
    """Record a check's result (and log it for the grader); raise :class:`CheckFailed` with ``message`` if it failed."""
    records.append(CheckRecord(check_id, passed, "" if passed else message))
    check_log.write({"kind": "verdict", "id": check_id, "passed": bool(passed)})
    if not passed:
        raise CheckFailed(check_id, message)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Run a block with warnings, NumPy floating-point messages and stderr swallowed.

    nbgrader scores a grade cell zero as soon as anything reaches stderr, so a correct answer that
    merely warns (``np.exp(1000)`` overflowing inside a naive sigmoid) must be called inside this.
    Yields the buffer that stderr was redirected to.
    """
    buffer = io.StringIO()
    with warnings.catch_warnings(), np.errstate(all="ignore"), contextlib.redirect_stderr(buffer):
        warnings.simplefilter("ignore")
        yield buffer


def call_quietly(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function(*args, **kwargs)`` inside :func:`quiet` and return its result."""
    with quiet():
        return function(*args, **kwargs)


def rel_error(actual: Any, expected: Any) -> float:
    """Largest element-wise relative error ``|a - b| / max(1e-8, |a| + |b|)`` (CS231n's measure)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))


def numerical_gradient(function: Callable[[np.ndarray], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Centred finite-difference gradient of a scalar ``function`` at ``x``, in float64.

    ``x`` has any shape; the result has the same shape. ``function`` is called with a float64
    copy of ``x`` perturbed by ``±eps`` in one entry at a time.
    """
    point = np.array(x, dtype=np.float64)
    gradient = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        original = point[index]
        point[index] = original + eps
        f_plus = float(np.sum(function(point.copy())))
        point[index] = original - eps
        f_minus = float(np.sum(function(point.copy())))
        point[index] = original
        gradient[index] = (f_plus - f_minus) / (2 * eps)
    return gradient


def observe(kind: str, check_id: str, actual: Any, expected: Any, *, derived: bool = False, hidden: bool = False,
            what: str = "the result", **parameters: float) -> None:
    """Log what a check is about to compare (the student's ``actual``, the oracle's ``expected``), for the grader.

    ``derived``: the expected value comes from the student's own code too, so the grader compares the two
    logged values again instead of comparing ``actual`` with the reference run's ``expected``. ``hidden``: the
    check's oracle is a hidden test's, which the grader withholds from students' kernels and judges itself.
    """
    if check_log.enabled():
        check_log.write({"kind": kind, "id": check_id, "actual": check_log.encode(actual),
                         "expected": check_log.encode(expected), "derived": derived, "hidden": hidden, "what": what,
                         "parameters": parameters})


def log_inputs(check_id: str, inputs: Any) -> None:
    """Log the inputs a hidden test drew (from :func:`grading_seed`), for the grader only.

    The grader compares them with the reference run's: code that reseeds or replaces the random generators, to
    make the tests draw inputs it knows the answers for, changes them, and is flagged. Does nothing when practising.
    """
    if check_log.enabled():
        check_log.write({"kind": "inputs", "id": check_id, "actual": check_log.encode(inputs)})


def skip(check_id: str, reason: str) -> None:
    """Record that a check could not run here (no GPU, say) and say so on stdout, never as a pass."""
    records.append(CheckRecord(check_id, False, reason, skipped=True))
    check_log.write({"kind": "skip", "id": check_id})
    print(f"SKIPPED [{check_id}]: {reason}")


def _host_copy(value: Any) -> Any:
    """A torch tensor (on any device, requiring grad or not) as a NumPy array; anything else unchanged."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _as_float_array(check_id: str, value: Any, what: str) -> np.ndarray:
    if value is None:
        record_verdict(check_id, False, f"{what} is None: did the function forget to `return` its result?")
    try:
        array = np.asarray(_host_copy(value), dtype=np.float64)
    except (TypeError, ValueError):
        record_verdict(check_id, False, f"{what} should be numeric, got a {type(value).__name__}.")
    return array


def _format_index(index: tuple[int, ...]) -> str:
    return "" if not index else "[" + ", ".join(str(i) for i in index) + "]"


def check_shape(check_id: str, actual: Any, expected_shape: Sequence[int], *, what: str = "the result") -> None:
    """Check that ``actual`` is an array of exactly ``expected_shape``."""
    expected_shape, hidden, withheld = unwrap_oracle(expected_shape)
    shape = tuple(actual.shape) if hasattr(actual, "shape") else np.shape(actual) if actual is not None else None
    if withheld:
        log_withheld("shape", check_id, shape, what)
        return
    observe("shape", check_id, shape, tuple(expected_shape), hidden=hidden, what=what)
    record_verdict(
        check_id,
        shape == tuple(expected_shape),
        f"{what} should have shape {tuple(expected_shape)}, got "
        + ("None (missing `return`?)" if shape is None else f"{shape}") + ".",
    )


def check_close(
    check_id: str,
    actual: Any,
    expected: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    what: str = "the result",
    expected_from_student: bool = False,
) -> None:
    """Check ``actual`` against ``expected`` element-wise: ``|a - e| <= atol + rtol * |e|``.

    A size-1 result is accepted where a scalar is expected (``loss_i`` may return ``[0.3]``);
    otherwise the shapes must match exactly, so that broadcasting cannot hide a wrong shape.
    ``expected_from_student=True`` says that ``expected`` is computed from the student's code as well (a
    second run that must reproduce the first, say); see :mod:`cml.instructor.preprocessors.verdicts`.
    """
    expected, hidden, withheld = unwrap_oracle(expected)
    if withheld:
        log_withheld("close", check_id, _host_copy(actual), what, rtol=rtol, atol=atol)
        return
    expected_array = np.asarray(_host_copy(expected), dtype=np.float64)
    actual_array = _as_float_array(check_id, actual, what)
    observe("close", check_id, actual_array, expected_array, derived=expected_from_student, hidden=hidden, what=what,
            rtol=rtol, atol=atol)
    if expected_array.ndim == 0 and actual_array.size == 1:
        actual_array = actual_array.reshape(())
    if actual_array.shape != expected_array.shape:
        record_verdict(check_id, False, f"{what} should have shape {expected_array.shape}, got {actual_array.shape}.")
    if not np.all(np.isfinite(actual_array) | ~np.isfinite(expected_array)):
        record_verdict(check_id, False, f"{what} contains NaN or infinite values where finite numbers were expected.")
    with np.errstate(all="ignore"):
        bad = ~np.isclose(actual_array, expected_array, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        record_verdict(check_id, True)
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    record_verdict(
        check_id,
        False,
        f"{what} is wrong at {int(bad.sum())} of {bad.size} entries "
        f"(largest error {float(np.max(np.abs(actual_array - expected_array)[bad])):.3g}); "
        f"for example {what}{_format_index(first)} should be {expected_array[first]:.6g}, "
        f"got {actual_array[first]:.6g}.",
    )


def check_equal(check_id: str, actual: Any, expected: Any, *, what: str = "the result",
                expected_from_student: bool = False) -> None:
    """Check exact equality of integer-like arrays (labels, indices, counts) or plain values.

    ``expected_from_student``: as for :func:`check_close`.
    """
    expected, hidden, withheld = unwrap_oracle(expected)
    actual, expected = _host_copy(actual), _host_copy(expected)
    if withheld:
        log_withheld("equal", check_id, actual, what)
        return
    observe("equal", check_id, actual, expected, derived=expected_from_student, hidden=hidden, what=what)
    if isinstance(expected, (np.ndarray, list, tuple)):
        actual_array, expected_array = np.asarray(actual), np.asarray(expected)
        if actual_array.shape != expected_array.shape:
            record_verdict(check_id, False, f"{what} should have shape {expected_array.shape}, got {actual_array.shape}.")
        mismatches = int(np.sum(actual_array != expected_array))
        record_verdict(check_id, mismatches == 0, f"{what} differs from the expected values at {mismatches} positions.")
    else:
        record_verdict(check_id, bool(actual == expected), f"{what} should be {expected!r}, got {actual!r}.")


def check_true(check_id: str, condition: Any, message: str) -> None:
    """Record a condition computed by the test; ``message`` explains what was expected."""
    record_verdict(check_id, bool(condition), message)


def check_gradient(
    check_id: str,
    function: Callable[[np.ndarray], Any],
    x: Any,
    analytic_gradient: Any,
    *,
    tolerance: float = 1e-6,
    eps: float = 1e-6,
    what: str = "the gradient",
    expected_from_student: bool = False,
) -> None:
    """Compare an analytic gradient with centred finite differences of ``function`` at ``x``.

    Passes when :func:`rel_error` between the two is at most ``tolerance``; the shapes must match.
    ``expected_from_student``: ``function`` depends on the student's code (see :func:`check_close`).
    """
    function, hidden, withheld = unwrap_oracle(function)
    if withheld:
        log_withheld("gradient", check_id, _host_copy(analytic_gradient), what, tolerance=tolerance)
        return
    analytic = _as_float_array(check_id, analytic_gradient, what)
    point = np.asarray(x, dtype=np.float64)
    if analytic.shape != point.shape:
        record_verdict(check_id, False, f"{what} should have the shape of its variable, {point.shape}, got {analytic.shape}.")
    with quiet():
        numeric = numerical_gradient(function, point, eps=eps)
    observe("gradient", check_id, analytic, numeric, derived=expected_from_student, hidden=hidden, what=what,
            tolerance=tolerance)
    error = rel_error(analytic, numeric)
    record_verdict(
        check_id,
        error <= tolerance,
        f"{what} disagrees with a finite-difference estimate (relative error {error:.2e}, "
        f"allowed {tolerance:.0e}). Check signs, missing factors and which terms are summed.",
    )


def check_accuracy(check_id: str, accuracy: Any, minimum: float, *, what: str = "accuracy") -> None:
    """Check that an accuracy in [0, 1] reaches ``minimum``."""
    value = float(np.asarray(_as_float_array(check_id, accuracy, what)).reshape(-1)[0])
    observe("accuracy", check_id, value, minimum, what=what)
    if not 0.0 <= value <= 1.0:
        record_verdict(check_id, False, f"{what} should be a fraction between 0 and 1, got {value:.4g}.")
    record_verdict(check_id, value >= minimum, f"{what} is {value:.3f}; at least {minimum:.3f} was expected.")



_AUTODIFF_ENTRY_POINTS = {
    "jax": ("grad", "value_and_grad", "vjp", "jvp", "jacfwd", "jacrev", "jacobian", "hessian", "linearize"),
    "torch.autograd": ("grad", "backward"),
    "torch.func": ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian"),
}
_AUTODIFF_PACKAGES = ("jax", "torch", "autograd", "tensorflow")


def _autodiff_functions() -> list[tuple[object, str, Any]]:
    """``(owner, attribute, function)`` for every autodiff entry point of the libraries already imported."""
    found = []
    for module_name, attributes in _AUTODIFF_ENTRY_POINTS.items():
        module = sys.modules.get(module_name)
        for attribute in attributes if module is not None else ():
            if hasattr(module, attribute):
                found.append((module, attribute, getattr(module, attribute)))
    torch = sys.modules.get("torch")
    if torch is not None:
        found.append((torch.Tensor, "backward", torch.Tensor.backward))
    return found


class _BlockAutodiffImports(importlib.abc.MetaPathFinder):
    """Refuses to import an autodiff package that was not loaded before the guarded call."""

    def __init__(self, used: list[str]) -> None:
        self.used = used
        self.blocked = {name for name in _AUTODIFF_PACKAGES if name not in sys.modules}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.split(".")[0] in self.blocked:
            self.used.append(f"import {fullname}")
            raise ImportError(f"importing {fullname} is not allowed here: derive this gradient by hand.")
        return None


def _foreign_libraries(result: Any) -> list[str]:
    """The array libraries other than NumPy among ``result`` (a value, a tuple/list, or a dict of values)."""
    if isinstance(result, dict):
        values = list(result.values())
    elif isinstance(result, (tuple, list)):
        values = list(result)
    else:
        values = [result]
    libraries = {type(value).__module__.split(".")[0] for value in values}
    return sorted(libraries & {"jax", "jaxlib", "torch", "tensorflow"})


def call_without_autodiff(check_id: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` with JAX's and PyTorch's differentiation entry points switched off.

    For exercises meant to be derived by hand: reaching ``jax.grad``, ``torch.autograd`` or
    ``Tensor.backward`` (also through a name imported with ``from jax import grad``), or importing an
    autodiff library during the call, fails the check, and so does returning JAX arrays or torch
    tensors (alone, in a tuple or list, or as the values of a dict) instead of NumPy values.
    Returns the result.

    Limits: a gradient function built *before* the call (``g = jax.grad(f)`` at module level) is
    already compiled and cannot be seen; its JAX-array results are still refused unless converted.
    """
    originals = _autodiff_functions()
    used: list[str] = []

    def forbidden(name: str) -> Callable[..., Any]:
        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            used.append(name)
            raise RuntimeError(f"{name} is not allowed here: derive this gradient by hand.")

        return refuse

    replacements = {id(original): forbidden(f"{getattr(owner, '__name__', owner)}.{name}")
                    for owner, name, original in originals}
    namespace = getattr(function, "__globals__", {})
    aliased = {name: value for name, value in namespace.items() if id(value) in replacements}
    import_blocker = _BlockAutodiffImports(used)
    try:
        for owner, name, original in originals:
            setattr(owner, name, replacements[id(original)])
        for name, value in aliased.items():
            namespace[name] = replacements[id(value)]
        sys.meta_path.insert(0, import_blocker)
        try:
            result = function(*args, **kwargs)
        except (RuntimeError, ImportError):
            if not used:
                raise
            result = None
    finally:
        sys.meta_path.remove(import_blocker)
        for owner, name, original in originals:
            setattr(owner, name, original)
        namespace.update(aliased)
    record_verdict(check_id, not used, f"this exercise is to be differentiated by hand, but it used {', '.join(sorted(set(used)))}.")
    foreign = _foreign_libraries(result)
    record_verdict(check_id, not foreign, f"expected NumPy arrays or floats, got values from {', '.join(foreign)}.")
    return result
