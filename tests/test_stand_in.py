"""The stand-in device: computes like a GPU on a CPU-only machine, so device promises are checked everywhere."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cml.checks import CheckFailed
from cml.stand_in import STAND_IN_DEVICE, StandIn
from cml.torch_checks import check_device, check_forward_calls, run_on_stand_in


def _data(n: int = 22, batch_size: int = 5) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 4, generator=generator), torch.arange(n) % 3), batch_size=batch_size)


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 3))


def train_epoch(model, loader, optimizer, device, *, move_model=True, move_batch=True, global_device=False):
    device = "cpu" if global_device else device
    if move_model:
        model.to(device)
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        if move_batch:
            x, y = x.to(device), y.to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    return total / count


def predictions(model, loader, device, *, bring_back=True, under_no_grad=True):
    model.to(device)
    model.eval()
    found = []
    with torch.set_grad_enabled(not under_no_grad):
        for x, y in loader:
            logits = model(x.to(device))
            labels = y.to(logits.device)  # an idiom that must work: the stand-in reports its own device
            found.append((logits.argmax(dim=1) == labels).long())
    result = torch.cat(found)
    return result.cpu() if bring_back else result


@pytest.mark.parametrize("make_optimizer", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                                            lambda p: torch.optim.Adam(p, lr=0.01)], ids=["sgd", "adam"])
def test_a_correct_epoch_runs_to_its_end_with_the_values_of_the_cpu(make_optimizer) -> None:
    model, twin = _model(), _model()
    cpu_loss = train_epoch(twin, _data(), make_optimizer(twin.parameters()), "cpu")
    run = run_on_stand_in("t.runs", model, train_epoch, model, _data(), make_optimizer(model.parameters()),
                          STAND_IN_DEVICE)
    assert run.result == cpu_loss
    assert len(run.forward_calls) == 5  # 22 samples in batches of 5: the smaller last batch is seen too
    check_forward_calls("t.calls", run, training=True, grad_enabled=True)
    check_device("t.model", model, STAND_IN_DEVICE, stand_in=run.stand_in)
    for parameter, expected in zip(model.parameters(), twin.parameters()):
        assert torch.equal(parameter.detach(), expected.detach())
        assert run.stand_in.device_types(parameter.grad) == {"meta"}  # the backward pass ran on the stand-in
    assert next(model.parameters()).device.type == "cpu"  # outside the block, ordinary CPU tensors


@pytest.mark.parametrize("slip", ["move_model", "move_batch"])
def test_a_model_or_batch_left_on_the_cpu_fails_as_on_a_gpu(slip: str) -> None:
    model = _model()
    with pytest.raises(CheckFailed, match="same device"):
        run_on_stand_in("t.left", model, train_epoch, model, _data(), torch.optim.SGD(model.parameters(), lr=0.1),
                        STAND_IN_DEVICE, **{slip: False})


def test_a_global_device_instead_of_the_given_one_is_seen() -> None:
    model = _model()
    run = run_on_stand_in("t.global", model, train_epoch, model, _data(), torch.optim.SGD(model.parameters(), lr=0.1),
                          STAND_IN_DEVICE, global_device=True)
    with pytest.raises(CheckFailed, match="'meta' device at forward pass 1"):
        check_forward_calls("t.calls", run)
    with pytest.raises(CheckFailed, match="should be on the 'meta' device, found on cpu"):
        check_device("t.model", model, STAND_IN_DEVICE, stand_in=run.stand_in)


def test_results_must_come_back_and_work_must_be_done_without_gradients() -> None:
    model = _model()
    run = run_on_stand_in("t.eval", model, predictions, model, _data(), STAND_IN_DEVICE)
    check_device("t.result", run.result, "cpu", stand_in=run.stand_in)
    check_forward_calls("t.calls", run, training=False, grad_enabled=False)
    left = run_on_stand_in("t.eval", model, predictions, model, _data(), STAND_IN_DEVICE, bring_back=False)
    with pytest.raises(CheckFailed, match="found on meta"):
        check_device("t.result", left.result, "cpu", stand_in=left.stand_in)
    recording = run_on_stand_in("t.eval", model, predictions, model, _data(), STAND_IN_DEVICE, under_no_grad=False)
    with pytest.raises(CheckFailed, match="should not be recorded at forward pass 1"):
        check_forward_calls("t.calls", recording, grad_enabled=False)


def test_a_tensor_on_the_stand_in_behaves_like_one_on_a_gpu() -> None:
    with StandIn() as stand_in:
        x = torch.arange(6.0).reshape(2, 3).to(STAND_IN_DEVICE)
        assert x.device == STAND_IN_DEVICE and stand_in.holds(x)
        assert stand_in.holds(x * 2) and stand_in.holds(x[0]) and stand_in.holds(x.sum())
        assert stand_in.holds(torch.zeros(3, device=x.device)) and stand_in.holds(torch.tensor([1.0], device=x.device))
        assert x.sum().item() == 15.0 and x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        with pytest.raises(TypeError, match="cpu"):
            x.numpy()
        with pytest.raises(TypeError, match="cpu"):
            np.asarray(x)
        back = x.cpu()
        assert not stand_in.holds(back) and back.device.type == "cpu" and back.numpy().sum() == 15.0
        assert not stand_in.holds(x.to("cpu")) and stand_in.holds(x.to(torch.float64))
        assert stand_in.holds(back.to(x)) and x.to(STAND_IN_DEVICE) is x
        assert (x + torch.tensor(1.0)).sum().item() == 21.0  # a 0-dimensional CPU tensor mixes, as on a GPU
        with pytest.raises(RuntimeError, match="same device"):
            x + back
        model = copy.deepcopy(nn.Linear(3, 2)).to(STAND_IN_DEVICE)
        assert stand_in.device_types(model) == {"meta"} and stand_in.device_types(model.cpu()) == {"cpu"}
