"""The checking API: verdicts, messages students read, oracles, and silence on stderr."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from cml import checks
from cml.checks import CheckFailed


def test_check_close_passes_and_records() -> None:
    before = len(checks.records)
    checks.check_close("demo.pass", np.array([1.0, 2.0]), [1.0, 2.0 + 1e-12])
    assert checks.records[before:] == [checks.CheckRecord("demo.pass", True, "")]


def test_check_close_failure_message_names_check_position_and_values() -> None:
    with pytest.raises(CheckFailed) as failure:
        checks.check_close("demo.values", np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]),
                           what="f(x)")
    message = str(failure.value)
    assert message.startswith("[demo.values]")
    assert "1 of 4" in message and "f(x)[1, 1] should be 4" in message and "got 5" in message
    assert failure.value.check_id == "demo.values"
    assert checks.records[-1].passed is False


@pytest.mark.parametrize("actual", [np.array([0.5]), [0.5], np.float32(0.5), 0.5])
def test_scalar_expected_accepts_size_one_results(actual: object) -> None:
    checks.check_close("demo.scalar", actual, 0.5)


@pytest.mark.parametrize(
    ("actual", "fragment"),
    [
        (None, "forget to `return`"),
        ("text", "numeric"),
        (np.ones(3), "shape ()"),
        (np.ones((3, 1)), "shape (3,)"),
        (np.array([np.nan, 1.0, 1.0]), "NaN"),
    ],
)
def test_check_close_rejects_wrong_kinds_of_results(actual: object, fragment: str) -> None:
    expected = 1.0 if fragment == "shape ()" else np.ones(3)
    with pytest.raises(CheckFailed) as failure:
        checks.check_close("demo.kinds", actual, expected)
    assert fragment in str(failure.value)


def test_broadcasting_cannot_hide_a_transposed_result() -> None:
    expected = np.arange(6.0).reshape(2, 3)
    with pytest.raises(CheckFailed, match="shape"):
        checks.check_close("demo.transposed", expected.T, expected)


def test_tolerances_are_respected() -> None:
    checks.check_close("demo.tol", 1.0 + 1e-3, 1.0, rtol=1e-2)
    with pytest.raises(CheckFailed):
        checks.check_close("demo.tol", 1.0 + 1e-3, 1.0, rtol=1e-5)


def test_check_equal_shape_and_count() -> None:
    checks.check_equal("demo.eq", np.array([1, 2, 3]), np.array([1, 2, 3]))
    with pytest.raises(CheckFailed, match="2 positions"):
        checks.check_equal("demo.eq", np.array([1, 0, 0]), np.array([1, 2, 3]))
    with pytest.raises(CheckFailed, match="shape"):
        checks.check_equal("demo.eq", np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(CheckFailed, match="should be 3"):
        checks.check_equal("demo.eq", 4, 3)


def test_check_shape_and_true() -> None:
    checks.check_shape("demo.shape", np.zeros((2, 3)), (2, 3))
    with pytest.raises(CheckFailed, match=r"\(3, 2\)"):
        checks.check_shape("demo.shape", np.zeros((2, 3)), (3, 2))
    with pytest.raises(CheckFailed, match="None"):
        checks.check_shape("demo.shape", None, (3, 2))
    checks.check_true("demo.true", True, "never shown")
    with pytest.raises(CheckFailed, match="explained"):
        checks.check_true("demo.true", np.bool_(False), "explained")


def test_numerical_gradient_matches_closed_form_in_float64() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3, 4))
    x = rng.standard_normal((4, 2)).astype(np.float32)  # converted to float64 inside
    numeric = checks.numerical_gradient(lambda v: np.sum(np.tanh(matrix @ v)), x)
    analytic = matrix.T @ (1 - np.tanh(matrix @ x.astype(np.float64)) ** 2)
    assert numeric.dtype == np.float64 and numeric.shape == x.shape
    assert checks.rel_error(numeric, analytic) < 1e-8


def test_check_gradient_tells_right_from_wrong() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5))

    def function(v: np.ndarray) -> float:
        return float(np.sum(v**3))

    checks.check_gradient("demo.grad", function, x, 3 * x**2)
    for wrong in (-3 * x**2, 3 * x, (3 * x**2).T, 3 * x**2 / x.size):
        with pytest.raises(CheckFailed):
            checks.check_gradient("demo.grad", function, x, wrong)


def test_rel_error_floor_and_zero() -> None:
    assert checks.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert checks.rel_error(1.0, 1.0 + 1e-9) < 1e-9
    assert checks.rel_error(1.0, -1.0) == pytest.approx(1.0)


def test_check_accuracy() -> None:
    checks.check_accuracy("demo.acc", 0.91, 0.9)
    with pytest.raises(CheckFailed, match="at least 0.950"):
        checks.check_accuracy("demo.acc", 0.91, 0.95)
    with pytest.raises(CheckFailed, match="between 0 and 1"):
        checks.check_accuracy("demo.acc", 91.0, 0.9)


def test_checks_return_none_so_nbgrader_gives_full_points() -> None:
    # nbgrader reads a grade cell's last expression as a partial score.
    assert checks.check_close("demo.none", 1.0, 1.0) is None
    assert checks.check_true("demo.none", True, "") is None


def test_quiet_swallows_warnings_fp_errors_and_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    def naive_sigmoid(x: np.ndarray) -> np.ndarray:
        warnings.warn("a harmless warning", stacklevel=2)
        print("to stderr", file=sys.stderr)
        return 1 / (1 + np.exp(-x))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            result = checks.call_quietly(naive_sigmoid, np.array([-1000.0, 0.0]))
    np.testing.assert_allclose(result, [0.0, 0.5])
    assert capsys.readouterr().err == ""


def test_call_without_autodiff_catches_every_route_to_autodiff() -> None:
    import jax
    import torch

    from cml.checks import call_without_autodiff

    # Defined as in a notebook: module-level names, one of them bound by `from jax import grad`.
    student_code = """
import jax
import numpy as np
import torch
from jax import grad

def by_hand(x):
    return 2 * x

def with_jax_grad(x):
    return np.asarray(jax.grad(lambda v: (v**2).sum())(x))

def with_imported_grad(x):
    return np.asarray(grad(lambda v: (v**2).sum())(x))

def with_backward(x):
    tensor = torch.tensor(x, requires_grad=True)
    (tensor**2).sum().backward()
    return tensor.grad.numpy()

def returning_jax_array(x):
    return jax.numpy.asarray(2 * x)
"""
    namespace: dict = {}
    exec(student_code, namespace)
    x = np.arange(3.0)
    np.testing.assert_array_equal(call_without_autodiff("hand", namespace["by_hand"], x), 2 * x)
    for cheat in ("with_jax_grad", "with_imported_grad", "with_backward", "returning_jax_array"):
        with pytest.raises(CheckFailed):
            call_without_autodiff("hand", namespace[cheat], x)
    # an autodiff library imported inside the call is refused too (run in a fresh interpreter,
    # where torch has not been imported yet)
    probe = (
        "import numpy as np\n"
        "from cml.checks import CheckFailed, call_without_autodiff\n"
        "def sneaky(x):\n"
        "    import torch\n"
        "    return np.asarray(x)\n"
        "try:\n"
        "    call_without_autodiff('hand', sneaky, np.ones(2))\n"
        "except CheckFailed as error:\n"
        "    print('refused:', error)\n"
        "import torch\n"
        "print('torch importable afterwards')\n"
    )
    import subprocess

    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    assert "refused:" in output and "import torch" in output and "torch importable afterwards" in output
    # a dict of JAX arrays is refused
    with pytest.raises(CheckFailed, match="jax"):
        call_without_autodiff("hand", lambda x: {"w": jax.numpy.asarray(x)}, x)
    # everything is restored afterwards
    assert float(jax.grad(lambda v: v**2)(3.0)) == 6.0 and namespace["grad"] is jax.grad
    tensor = torch.tensor(2.0, requires_grad=True)
    (tensor**2).backward()
    assert float(tensor.grad) == 4.0
