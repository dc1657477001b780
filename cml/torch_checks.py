"""Checks for PyTorch exercises: where models and batches live, parameters after training, CUDA parity.

A machine without a GPU still has a device that is not the CPU: :data:`STAND_IN_DEVICE` (``meta``). Inside
:class:`~cml.stand_in.StandIn` it computes like a GPU (see :mod:`cml.stand_in`), so :func:`run_on_stand_in` runs
a training or evaluation function to its end there and records every forward pass of its model;
:func:`check_forward_calls` and :func:`check_device` (given the run's stand-in) then say whether the model,
every batch, and the results were where the text says, at every step, in the right mode. Outside a
:class:`~cml.stand_in.StandIn`, ``meta`` tensors carry shapes but no data: a :class:`ForwardProbe` stops a
function at its first forward pass and reports where the model and the batch were then. Checks that need a
real GPU go behind :func:`cuda_or_skip`, which reports them as skipped where there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cml import check_log
from cml.checks import log_withheld, observe, quiet, record_verdict, skip, unwrap_oracle
from cml.device import cuda_available
from cml.stand_in import STAND_IN_DEVICE, ForwardCall, StandIn

__all__ = [
    "STAND_IN_DEVICE",
    "StandInRun",
    "run_on_stand_in",
    "check_forward_calls",
    "ForwardReached",
    "Sighting",
    "ForwardProbe",
    "first_forward",
    "check_device",
    "check_parameters_close",
    "cuda_or_skip",
    "is_probability_rows",
]

class ForwardReached(BaseException):
    """Raised by :class:`ForwardProbe` to stop the caller; a BaseException, so ``except Exception`` lets it by."""


@dataclass(frozen=True)
class Sighting:
    """What a :class:`ForwardProbe` saw at its first forward pass."""

    parameter_devices: frozenset[str]
    """Device types of the probe's parameters, such as ``{"meta"}``."""
    input_devices: frozenset[str]
    """Device types of every tensor passed to forward."""
    training: bool
    """Whether the probe was in training mode (``model.train()``) or evaluation mode (``model.eval()``)."""


class ForwardProbe(nn.Module):
    """A stand-in model: records where it and its inputs are at the first forward pass, then stops the caller.

    ``n_inputs`` and ``n_outputs`` only size the Linear layer inside, so that optimisers have parameters;
    inputs of any shape are accepted. After the call, :attr:`sighting` holds a :class:`Sighting`.
    """

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_inputs, n_outputs)
        self.sighting: Sighting | None = None

    def forward(self, *inputs: Any, **keyword_inputs: Any) -> torch.Tensor:
        tensors = [value for value in (*inputs, *keyword_inputs.values()) if isinstance(value, torch.Tensor)]
        self.sighting = Sighting(
            parameter_devices=frozenset(parameter.device.type for parameter in self.parameters()),
            input_devices=frozenset(tensor.device.type for tensor in tensors),
            training=self.training,
        )
        raise ForwardReached()


def _summary(error: Exception) -> str:
    """``"TypeName: first line of the message"`` (at most 300 characters of it), for a check's failure message."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line[:300]}"


def first_forward(
    check_id: str, probe: ForwardProbe, function: Callable[..., Any], *args: Any, **kwargs: Any
) -> Sighting:
    """Call ``function(*args, **kwargs)`` until it reaches ``probe``'s forward pass; return what the probe saw.

    Fails the check when the function returns without calling the model, or raises an error of its own
    first (typically the device-mismatch error of a model or batch left on the CPU).
    """
    probe.sighting = None
    failure = ""
    try:
        function(*args, **kwargs)
    except ForwardReached:
        pass
    except Exception as error:  # the student's function failed before reaching the model
        failure = f"the function raised {_summary(error)} before its first forward pass."
    if failure:
        record_verdict(check_id, False, failure + " Asked to work on another device, it should move the model and "
                 "every batch there first.")
    if probe.sighting is None:
        record_verdict(check_id, False, "the function returned without ever calling the model on a batch.")
    assert probe.sighting is not None
    return probe.sighting


@dataclass(frozen=True)
class StandInRun:
    """A function run to its end on the stand-in device (:func:`run_on_stand_in`)."""

    result: Any
    forward_calls: list[ForwardCall]
    """One record per forward pass of the watched model, in order."""
    stand_in: StandIn
    """Says where the result, the model and anything else the test kept are (:meth:`StandIn.device_types`)."""


def run_on_stand_in(check_id: str, model: nn.Module, function: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> StandInRun:
    """Call ``function(*args, **kwargs)`` (which should be asked to work on :data:`STAND_IN_DEVICE`) to its end.

    The stand-in computes like a GPU: a model or batch left on the CPU makes the function raise, as it would on
    a GPU, and so does ``.numpy()`` of a tensor still on the device. Fails ``check_id`` when the function raises
    or never calls ``model``; warnings and stderr are swallowed (a grade cell must stay silent).
    """
    stand_in = StandIn()
    failure = ""
    result = None
    with quiet(), stand_in, stand_in.watch(model) as calls:
        try:
            result = function(*args, **kwargs)
        except Exception as error:  # the student's function failed on the stand-in device
            failure = f"the function raised {_summary(error)}."
    if failure:
        record_verdict(check_id, False, failure + " Asked to work on another device (the test's stand-in for a GPU), "
                       "it should move the model and every batch there, and bring results back with .cpu() where "
                       "they must be on the CPU.")
    if not calls:
        record_verdict(check_id, False, "the function returned without ever calling the model on a batch.")
    record_verdict(check_id, True)
    return StandInRun(result, calls, stand_in)


def check_forward_calls(check_id: str, run: StandInRun, *, device: str | torch.device = STAND_IN_DEVICE,
                        training: bool | None = None, grad_enabled: bool | None = None,
                        what: str = "the model") -> None:
    """At *every* forward pass of ``run``: the model's parameters and inputs were on ``device``; the model was in
    training mode (``training=True``) or evaluation mode (``False``); gradients were (``grad_enabled=True``) or
    were not (``False``) being recorded. ``None`` leaves that property unchecked."""
    expected = torch.device(device).type
    for index, call in enumerate(run.forward_calls, start=1):
        where = f"at forward pass {index} of {len(run.forward_calls)}"
        if call.parameter_devices != {expected}:
            record_verdict(check_id, False, f"{what}'s parameters should be on the '{expected}' device {where}, found "
                           f"on {', '.join(sorted(call.parameter_devices)) or 'no device'} (move it with model.to(device)).")
        if call.input_devices != {expected}:
            record_verdict(check_id, False, f"the batch given to {what} should be on the '{expected}' device {where}, "
                           f"found on {', '.join(sorted(call.input_devices)) or 'no device'} (move it with x.to(device)).")
        if training is not None and call.training != training:
            mode = "training mode (model.train())" if training else "evaluation mode (model.eval())"
            record_verdict(check_id, False, f"{what} should be in {mode} {where}.")
        if grad_enabled is not None and call.grad_enabled != grad_enabled:
            record_verdict(check_id, False, f"gradients should {'' if grad_enabled else 'not '}be recorded {where}"
                           + ("" if grad_enabled else " (evaluate inside torch.no_grad())") + ".")
    record_verdict(check_id, True)


def _device_types(value: Any, stand_in: StandIn | None = None) -> set[str]:
    if stand_in is not None and isinstance(value, (nn.Module, torch.Tensor, list, tuple, dict)):
        return stand_in.device_types(value)
    if isinstance(value, nn.Module):
        tensors = [*value.parameters(), *value.buffers()]
        return {tensor.device.type for tensor in tensors}
    if isinstance(value, torch.Tensor):
        return {value.device.type}
    if isinstance(value, (torch.device, str)):
        return {torch.device(value).type}
    if isinstance(value, (set, frozenset)):
        return {torch.device(item).type for item in value}
    raise TypeError(f"cannot tell the device of a {type(value).__name__}")


def check_device(check_id: str, value: Any, device: str | torch.device, *, what: str = "the result",
                 stand_in: StandIn | None = None) -> None:
    """``value`` (a tensor, a module's parameters and buffers, a device, or a set of device types) is on ``device``.

    Only the device type is compared, so ``"cuda"`` matches ``cuda:0``. Pass a run's ``stand_in`` for values
    computed by :func:`run_on_stand_in` (a tensor it holds is on :data:`STAND_IN_DEVICE`; a tuple, list or dict
    of tensors is on ``device`` when all of them are).
    """
    expected = torch.device(device).type
    try:
        found = _device_types(value, stand_in)
    except TypeError as error:
        record_verdict(check_id, False, f"{what} should be a tensor or a model: {error}.")
    record_verdict(
        check_id,
        found == {expected},
        f"{what} should be on the '{expected}' device, found on {', '.join(sorted(found)) or 'no device'}. "
        "A device-agnostic function moves the model (`model.to(device)`) and every batch (`x.to(device)`) itself.",
    )


def check_parameters_close(
    check_id: str,
    model: nn.Module,
    expected: nn.Module | Mapping[str, torch.Tensor],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    what: str = "the parameters",
) -> None:
    """Every parameter of ``model`` equals the same-named one of ``expected`` (a module or a state_dict)."""
    actual = dict(model.named_parameters())
    logged = {name: value.detach().cpu() for name, value in actual.items()}
    expected, hidden, withheld = unwrap_oracle(expected)
    if withheld:
        log_withheld("parameters", check_id, logged, what, rtol=rtol, atol=atol)
        return
    reference = dict(expected.named_parameters()) if isinstance(expected, nn.Module) else dict(expected)
    if check_log.enabled():
        observe("parameters", check_id, logged, {name: value.detach().cpu() for name, value in reference.items()},
                hidden=hidden, what=what, rtol=rtol, atol=atol)
    if set(actual) != set(reference):
        record_verdict(check_id, False, f"{what}: the model's parameters are {sorted(actual)}, expected {sorted(reference)}.")
    for name, value in actual.items():
        value = value.detach().cpu().double()
        target = reference[name].detach().cpu().double()
        if value.shape != target.shape:
            record_verdict(check_id, False, f"{what}: '{name}' has shape {tuple(value.shape)}, expected {tuple(target.shape)}.")
        if not torch.allclose(value, target, rtol=rtol, atol=atol):
            error = float((value - target).abs().max())
            record_verdict(
                check_id,
                False,
                f"{what}: '{name}' differs from the expected values (largest difference {error:.3g}). Each "
                "batch should take exactly one step on that batch's gradient: zero the gradients, compute the "
                "loss on the model's raw outputs (logits), backpropagate, step.",
            )
    record_verdict(check_id, True)


def cuda_or_skip(check_id: str, reason: str = "no CUDA GPU here; this GPU check was not run") -> bool:
    """True when a CUDA GPU is usable; otherwise record ``check_id`` as skipped (not passed) and return False."""
    if cuda_available():
        return True
    skip(check_id, reason)
    return False


def is_probability_rows(outputs: torch.Tensor, *, tolerance: float = 1e-4) -> bool:
    """Whether every row of ``outputs (batch, classes)`` lies in [0, 1] and sums to 1: softmax output, not logits."""
    values = outputs.detach().cpu().double()
    if values.ndim != 2:
        return False
    in_range = bool(((values >= -tolerance) & (values <= 1 + tolerance)).all())
    return in_range and bool(torch.allclose(values.sum(dim=1), torch.ones(len(values), dtype=values.dtype), atol=tolerance))
