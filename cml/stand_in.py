"""A stand-in accelerator that every machine has: tensors "on" it hold real values, and it behaves like a GPU.

Device promises ("moves the model and every batch to ``device``", "returns its result on the CPU", "never uses
a device of its own") must be checked on machines without a GPU too. Inside :class:`StandIn`, the ``meta``
device (:data:`STAND_IN_DEVICE`) becomes a second device that computes: ``x.to("meta")``, ``model.to("meta")``
and ``torch.zeros(..., device="meta")`` give ordinary CPU tensors that the stand-in *tags* as living on it, and
every result computed from tagged tensors is tagged as well, through the forward pass, the loss, the backward
pass (gradients) and the optimiser's step. As on a GPU:

* an operation that mixes a tagged tensor with an untagged one (a batch left on the CPU, a model not moved)
  raises ``RuntimeError: Expected all tensors to be on the same device`` (0-dimensional CPU tensors excepted);
* ``x.device`` of a tagged tensor says ``meta``, ``x.cpu()`` / ``x.to("cpu")`` give an untagged copy, and
  ``x.numpy()`` of a tagged tensor raises, as it does for a CUDA tensor;
* so a function can be run to its end on the stand-in, and its results, its model and its gradients examined:
  :meth:`StandIn.device_types` says where each of them is, and :meth:`StandIn.watch` records, at *every* forward
  pass of a model, where its parameters and inputs were, its mode, and whether gradients were being recorded.

The tags live in the stand-in (keyed by storage), never on the tensors, so a tagged tensor that escapes the
``with`` block is an ordinary CPU tensor, and the stand-in can still say where it was. Tagged storages are kept
alive as long as the :class:`StandIn` is, which is fine for the small models and data of a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["STAND_IN_DEVICE", "StandIn", "ForwardCall"]

STAND_IN_DEVICE = torch.device("meta")
"""The device a test passes to a function that must work on any device; inside :class:`StandIn` it computes."""

_CPU = torch.device("cpu")
_DEVICE_GETTER = torch.Tensor.device.__get__
_MISMATCH = ("Expected all tensors to be on the same device, but found at least two devices, {stand_in} and cpu! "
             "(in {operation}; the test's stand-in device plays the part of a GPU)")
_CROSS_DEVICE_OPERATIONS = {"aten::copy_", "aten::_to_copy", "aten::index.Tensor", "aten::index_put_",
                            "aten::_index_put_impl_", "aten::set_.source_Storage_storage_offset", "aten::set_.source_Storage",
                            "aten::set_.source_Tensor", "aten::lift_fresh", "aten::detach", "aten::alias"}
"""Operations that take tensors from two devices on a GPU as well (copies, indexing with CPU indices, ...)."""


@dataclass(frozen=True)
class ForwardCall:
    """What :meth:`StandIn.watch` saw at one forward pass of a model."""

    parameter_devices: frozenset[str]
    input_devices: frozenset[str]
    training: bool
    grad_enabled: bool


class StandIn:
    """A context in which :data:`STAND_IN_DEVICE` computes like a GPU and every tensor's device is followed.

    ``with StandIn() as stand_in: result = function(model, loader, STAND_IN_DEVICE)``; then
    ``stand_in.device_types(result)`` is ``{"meta"}`` for a result left on the stand-in, ``{"cpu"}`` for one
    brought back. Usable once.
    """

    def __init__(self) -> None:
        self._tagged: dict[int, torch.UntypedStorage] = {}
        self._modes: list[Any] = []

    # -- tags -------------------------------------------------------------------------------------------------
    def _key(self, tensor: torch.Tensor) -> int | None:
        with torch._C.DisableTorchFunction():  # the tensor's real device, not what the stand-in makes it say
            if tensor.device.type != "cpu" or tensor.layout != torch.strided:
                return None
            pointer = tensor.untyped_storage().data_ptr()
        return pointer or None  # an empty storage has no address and counts as being everywhere

    def holds(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` is on the stand-in."""
        key = self._key(tensor)
        return key is not None and key in self._tagged

    def _tag(self, value: Any) -> None:
        for tensor in _tensors(value):
            key = self._key(tensor)
            if key is not None:
                self._tagged[key] = tensor.untyped_storage()

    def _untag(self, value: Any) -> None:
        for tensor in _tensors(value):
            key = self._key(tensor)
            if key is not None:
                self._tagged.pop(key, None)

    def device_type(self, tensor: torch.Tensor) -> str:
        """The device type ``tensor`` is on, the stand-in's (``"meta"``) included."""
        return STAND_IN_DEVICE.type if self.holds(tensor) else tensor.device.type

    def device_types(self, value: Any) -> set[str]:
        """The device types of a tensor, of a module's parameters and buffers, or of every tensor in a container."""
        return {self.device_type(tensor) for tensor in _tensors(value) if tensor.numel() > 0}

    # -- watching a model -------------------------------------------------------------------------------------
    @contextmanager
    def watch(self, model: nn.Module) -> Iterator[list[ForwardCall]]:
        """Record a :class:`ForwardCall` at every forward pass of ``model`` while the block runs."""
        calls: list[ForwardCall] = []

        def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
            calls.append(ForwardCall(
                parameter_devices=frozenset(self.device_types(module)),
                input_devices=frozenset(self.device_types((args, kwargs))),
                training=module.training,
                grad_enabled=torch.is_grad_enabled(),
            ))

        handle = model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            yield calls
        finally:
            handle.remove()

    # -- the modes --------------------------------------------------------------------------------------------
    def __enter__(self) -> StandIn:
        if self._modes:
            raise RuntimeError("a StandIn is used once")
        self._modes = [_Propagate(self), _Moves(self)]
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc_info)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, nn.Module):
        return [*value.parameters(), *value.buffers()]
    leaves, _ = tree_flatten(value)
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


def _is_stand_in(device: Any) -> bool:
    try:
        return device is not None and torch.device(device).type == STAND_IN_DEVICE.type
    except (RuntimeError, TypeError):
        return False


class _Propagate(TorchDispatchMode):
    """Every ATen operation (the backward pass included): tag results of tagged inputs; refuse mixed devices."""

    def __init__(self, stand_in: StandIn) -> None:
        super().__init__()
        self.stand_in = stand_in

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = dict(kwargs or {})
        created_there = _is_stand_in(kwargs.get("device"))
        if created_there:
            kwargs["device"] = _CPU
        moved_here = "device" in kwargs and kwargs["device"] is not None and not created_there
        tensors = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        there = [tensor for tensor in tensors if self.stand_in.holds(tensor)]
        name = func._schema.name
        if there and not {name, f"{name}.{func._overloadname}"} & _CROSS_DEVICE_OPERATIONS:
            here = [tensor for tensor in tensors
                    if not self.stand_in.holds(tensor) and tensor.dim() > 0 and tensor.numel() > 0]
            if here:
                raise RuntimeError(_MISMATCH.format(stand_in=STAND_IN_DEVICE.type, operation=name))
        result = func(*args, **kwargs)
        if name == "aten::copy_":
            return result  # the destination stays where it was
        if created_there or (there and not moved_here):
            self.stand_in._tag(result)
        return result


class _Moves(TorchFunctionMode):
    """Moves between the stand-in and the CPU, and what a tensor says about its device."""

    def __init__(self, stand_in: StandIn) -> None:
        super().__init__()
        self.stand_in = stand_in

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = kwargs or {}
        stand_in = self.stand_in
        if func == _DEVICE_GETTER:
            return STAND_IN_DEVICE if stand_in.holds(args[0]) else func(*args, **kwargs)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and stand_in.holds(args[0]):
            raise TypeError(f"can't convert {STAND_IN_DEVICE.type} device type tensor to numpy. Use Tensor.cpu() to "
                            "copy the tensor to host memory first. (the test's stand-in device plays a GPU)")
        if _is_stand_in(kwargs.get("device")):  # a factory (torch.tensor, torch.zeros, ...) asked for the stand-in
            created = func(*args, **{**kwargs, "device": _CPU})
            stand_in._tag(created)
            return created
        if func is torch.Tensor.cpu:
            return self._move(args[0], _CPU, None)
        if func is torch.Tensor.to:
            tensor, rest = args[0], args[1:]
            if rest and isinstance(rest[0], torch.Tensor):
                other = rest[0]
                target = STAND_IN_DEVICE if stand_in.holds(other) else other.device
                return self._move(tensor, target, other.dtype)
            parsed = {key: value for key, value in kwargs.items() if key in ("device", "dtype", "non_blocking")}
            device, dtype, _, _ = torch._C._nn._parse_to(*rest, **parsed)
            if device is not None and (device.type == "cpu" or _is_stand_in(device)):
                return self._move(tensor, device, dtype)
        return func(*args, **kwargs)

    def _move(self, tensor: torch.Tensor, target: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
        stand_in = self.stand_in
        there_now = stand_in.holds(tensor)
        there_after = _is_stand_in(target)
        if there_now == there_after:
            # Already on that device: `.to` only converts the dtype (and returns the tensor itself when it need not).
            return tensor if dtype is None or dtype == tensor.dtype else tensor.to(dtype=dtype)
        moved = tensor.to(device=_CPU, dtype=dtype or tensor.dtype, copy=True)
        if there_after:
            stand_in._tag(moved)
        else:
            stand_in._untag(moved)
        return moved
