"""cml.torch_checks and the torch side of cml.checks and cml.device: the stand-in device, CUDA skips."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cml import checks, device
from cml.checks import CheckFailed, check_close, check_equal, check_shape
from cml.torch_checks import (
    STAND_IN_DEVICE,
    ForwardProbe,
    check_device,
    check_parameters_close,
    cuda_or_skip,
    first_forward,
    is_probability_rows,
)

BATCHES = [(torch.randn(6, 7, generator=torch.Generator().manual_seed(k)), torch.arange(6) % 5) for k in range(3)]


def train_epoch(model: nn.Module, loader, optimizer, device) -> float:
    model.to(device)
    model.train()
    total = 0.0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)


def model_left_behind(model, loader, optimizer, device) -> float:
    for inputs, _ in loader:
        model(inputs.to(device))
    return 0.0


def batches_left_behind(model, loader, optimizer, device) -> float:
    model.to(device)
    for inputs, _ in loader:
        model(inputs)
    return 0.0


def test_probe_sees_a_device_agnostic_function_move_model_and_batches() -> None:
    probe = ForwardProbe(7, 5)
    optimizer = torch.optim.SGD(probe.parameters(), lr=0.1)
    sighting = first_forward("t.probe", probe, train_epoch, probe, BATCHES, optimizer, STAND_IN_DEVICE)
    assert sighting.parameter_devices == {"meta"} and sighting.input_devices == {"meta"} and sighting.training
    check_device("t.model", sighting.parameter_devices, STAND_IN_DEVICE)
    probe.eval()
    assert not first_forward("t.probe", probe, lambda m: m(torch.zeros(2, 7)), probe).training


@pytest.mark.parametrize("function, left_on_cpu", [(model_left_behind, "parameter_devices"),
                                                  (batches_left_behind, "input_devices")])
def test_probe_sees_what_was_left_on_the_cpu(function, left_on_cpu: str) -> None:
    probe = ForwardProbe(7, 5)
    sighting = first_forward("t.probe", probe, function, probe, BATCHES, None, STAND_IN_DEVICE)
    assert getattr(sighting, left_on_cpu) == {"cpu"}
    with pytest.raises(CheckFailed, match="should be on the 'meta' device, found on cpu"):
        check_device("t.device", getattr(sighting, left_on_cpu), STAND_IN_DEVICE, what="the model")


def test_first_forward_reports_errors_and_functions_that_never_call_the_model() -> None:
    def mixes_devices(model):
        torch.zeros(2, device="meta") + torch.zeros(2)

    with pytest.raises(CheckFailed, match="raised RuntimeError.*before its first forward pass"):
        first_forward("t.error", ForwardProbe(2, 2), mixes_devices, None)
    with pytest.raises(CheckFailed, match="without ever calling the model"):
        first_forward("t.never", ForwardProbe(2, 2), lambda: None)

    def swallows_everything(model):
        try:
            model(torch.zeros(1, 2))
        except Exception:
            return "hidden"

    probe = ForwardProbe(2, 2)
    assert first_forward("t.swallow", probe, swallows_everything, probe).training  # the stop is not an Exception


def test_parameters_close_fails_a_missing_zero_grad() -> None:
    torch.manual_seed(0)
    model = nn.Linear(7, 5)
    reference = copy.deepcopy(model)
    train_epoch(reference, BATCHES, torch.optim.SGD(reference.parameters(), lr=0.5), "cpu")
    same = copy.deepcopy(model)
    train_epoch(same, BATCHES, torch.optim.SGD(same.parameters(), lr=0.5), "cpu")
    check_parameters_close("t.same", same, reference)
    check_parameters_close("t.state_dict", same, reference.state_dict())

    accumulating = copy.deepcopy(model)
    optimizer = torch.optim.SGD(accumulating.parameters(), lr=0.5)
    for inputs, labels in BATCHES:
        nn.functional.cross_entropy(accumulating(inputs), labels).backward()
        optimizer.step()
    with pytest.raises(CheckFailed, match="'weight' differs"):
        check_parameters_close("t.accumulated", accumulating, reference)
    with pytest.raises(CheckFailed, match="parameters are"):
        check_parameters_close("t.names", nn.Linear(7, 5, bias=False), reference)
    with pytest.raises(CheckFailed, match="has shape"):
        check_parameters_close("t.shape", nn.Linear(5, 7), {"weight": torch.zeros(5, 7), "bias": torch.zeros(7)})


def test_probability_rows_tell_softmax_outputs_from_logits() -> None:
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    assert is_probability_rows(torch.softmax(logits, dim=1))
    assert not is_probability_rows(logits)
    assert not is_probability_rows(torch.sigmoid(logits))  # in [0, 1] but rows do not sum to 1
    assert not is_probability_rows(torch.softmax(logits, dim=1).flatten())


def test_checks_accept_tensors_that_require_grad() -> None:
    value = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    check_close("t.close", value * 2, torch.tensor([[2.0, 4.0, 6.0]]))
    check_shape("t.shape", value, (1, 3))
    check_equal("t.equal", torch.tensor([1, 2]), [1, 2])
    with pytest.raises(CheckFailed, match="should be 5"):
        check_close("t.close", value.sum() - 2, 5.0)


def test_skips_say_so_and_never_count_as_passed(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_FORCE_CPU", "1")
    assert cuda_or_skip("t.cuda", "no GPU") is False
    assert capsys.readouterr().out == "SKIPPED [t.cuda]: no GPU\n"
    record = checks.records[-1]
    assert record.check_id == "t.cuda" and record.skipped and not record.passed


def test_time_call_warms_up_and_takes_the_median() -> None:
    calls = []
    seconds = device.time_call(lambda: calls.append(1), device="cpu", warmup=2, repeats=3)
    assert len(calls) == 5 and 0 <= seconds < 0.1
    with pytest.raises(ValueError):
        device.time_call(lambda: None, repeats=0)
    device.synchronize("cpu")  # a no-op off CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the GPU run is not tested")
def test_device_agnostic_training_matches_between_cpu_and_cuda() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 5))
    on_gpu = copy.deepcopy(model)
    cpu_loss = train_epoch(model, BATCHES, torch.optim.SGD(model.parameters(), lr=0.1), "cpu")
    on_gpu.to("cuda")
    gpu_loss = train_epoch(on_gpu, BATCHES, torch.optim.SGD(on_gpu.parameters(), lr=0.1), "cuda")
    check_device("t.gpu", on_gpu, "cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    check_parameters_close("t.parity", on_gpu, model, rtol=1e-4, atol=1e-5)
    assert cuda_or_skip("t.cuda")
