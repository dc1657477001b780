"""Benchmark: one training epoch of an MNIST-size CNN (60,000 images) on the CPU and, when present, the GPU.

    python benchmarks/cnn_epoch.py [--devices cpu cuda] [--epochs 1] [--batch-size 256] [--images 60000]

Prints, per device, the seconds of each epoch, the images per second, and the test accuracy after training,
then the CPU/GPU time ratio of the last epoch. Before the first timed epoch each device trains a throwaway copy
of the model for a few untimed steps (``--warmup-steps``, both batch shapes of the epoch): that pays once for
what is not training (the CUDA context, loading kernels, cuDNN choosing its convolution algorithms, which
``cudnn.benchmark`` lets it time for these fixed shapes), and the timed model still starts from its own
initial weights. Same model, data, optimiser (Adam; on CUDA its fused kernel, the same update) and number of
steps on every device.

The data stay resident on the device: the whole training set is copied there once, and each batch is a
slice of it taken with a permutation drawn on the device, so no batch crosses the host-device bus (a
DataLoader of CPU tensors would move every batch, which is what makes small GPU workloads slower than the
CPU). Images: the full MNIST training set when it is cached (see ``cml.data.load_mnist``); otherwise the
offline 5,000-image sample, its 4,000 training images tiled to 60,000 with random shifts of up to two
pixels (an augmented sample, said so in the output). Test accuracy is always on held-out images.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.data import load_mnist  # noqa: E402
from cml.device import describe_device, resolve_device, synchronize  # noqa: E402


def make_cnn() -> nn.Module:
    """PyTorch's classic MNIST network: two 3x3 convolutions (32, 64), max-pool, dropout, 128 hidden units."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def mnist_size_training_set(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``(train_images, train_labels, test_images, test_labels, description)``; images uint8 (n, 28, 28)."""
    (train_images, train_labels), (test_images, test_labels) = load_mnist()
    if len(train_images) >= n_images:
        return train_images[:n_images], train_labels[:n_images], test_images, test_labels, "full MNIST"
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(train_images), n_images)
    shifted = np.zeros((n_images, 28, 28), dtype=np.uint8)
    shifts = rng.integers(-2, 3, size=(n_images, 2))
    padded = np.pad(train_images, ((0, 0), (2, 2), (2, 2)))
    for row, (pick, (dy, dx)) in enumerate(zip(picks, shifts)):
        shifted[row] = padded[pick, 2 + dy : 30 + dy, 2 + dx : 30 + dx]
    description = f"the {len(train_images)}-image MNIST sample tiled to {n_images} with shifts of up to 2 px"
    return shifted, train_labels[picks], test_images, test_labels, description


def as_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1], on ``device`` (one copy of the whole set)."""
    return (torch.from_numpy(images).to(device).float() / 255.0).unsqueeze(1)


def train_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                batch_size: int, generator: torch.Generator) -> float:
    """One shuffled epoch over resident tensors; returns the mean batch loss (read once, at the end)."""
    model.train()
    order = torch.randperm(len(images), device=images.device, generator=generator)
    total = torch.zeros((), device=images.device)
    n_batches = 0
    for start in range(0, len(images), batch_size):
        batch = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        loss.backward()
        optimizer.step()
        total += loss.detach()
        n_batches += 1
    return float(total) / n_batches


def warm_up(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, steps: int) -> None:
    """Train a copy of ``model`` for ``steps`` untimed steps, on full batches and on the epoch's short last one."""
    if steps <= 0:
        return
    throwaway = copy.deepcopy(model)
    optimizer = make_optimizer(throwaway, images.device)
    last = len(images) % batch_size or batch_size
    generator = torch.Generator(device=images.device).manual_seed(12345)
    for step in range(steps):
        size = last if step == steps - 1 else min(batch_size, len(images))
        batch = torch.randint(0, len(images), (size,), device=images.device, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(throwaway(images[batch]), labels[batch]).backward()
        optimizer.step()
    synchronize(images.device)


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam at 1e-3; on CUDA the fused implementation (one kernel for all parameters, the same update)."""
    return torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    model.eval()
    correct = sum(int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
                  for i in range(0, len(images), batch_size))
    return correct / len(images)


def run(device_name: str, data: tuple[np.ndarray, ...], epochs: int, batch_size: int, seed: int,
        warmup_steps: int) -> float:
    device = resolve_device(device_name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_x, train_y, test_x, test_y = data
    torch.manual_seed(seed)
    model = make_cnn().to(device)
    images, labels = as_tensor(train_x, device), torch.from_numpy(train_y).to(device)
    test_images, test_labels = as_tensor(test_x, device), torch.from_numpy(test_y).to(device)
    started = time.perf_counter()
    warm_up(model, images, labels, batch_size, warmup_steps)
    if warmup_steps > 0:
        print(f"  {describe_device(device)}  warm-up: {warmup_steps} untimed steps of a copy, "
              f"{time.perf_counter() - started:.2f} s", flush=True)
    optimizer = make_optimizer(model, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    seconds = 0.0
    for epoch in range(1, epochs + 1):
        synchronize(device)
        started = time.perf_counter()
        loss = train_epoch(model, images, labels, optimizer, batch_size, generator)
        synchronize(device)
        seconds = time.perf_counter() - started
        print(f"  {describe_device(device)}  epoch {epoch}: {seconds:7.2f} s  ({len(images) / seconds:8.0f} images/s)"
              f"  loss {loss:.4f}  test accuracy {accuracy(model, test_images, test_labels):.4f}", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped where absent")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=10, help="untimed steps of a copy before timing")
    arguments = parser.parse_args(argv)
    *data, description = mnist_size_training_set(arguments.images, arguments.seed)
    print(f"CNN epoch benchmark: {len(data[0])} training images ({description}), {len(data[2])} test images, "
          f"batch {arguments.batch_size}, torch {torch.__version__}")
    last_epoch = {}
    for device_name in arguments.devices:
        if device_name.startswith("cuda") and not torch.cuda.is_available():
            print(f"  {device_name}: SKIPPED, no CUDA GPU here")
            continue
        last_epoch[device_name] = run(device_name, data, arguments.epochs, arguments.batch_size, arguments.seed,
                                     arguments.warmup_steps)
    gpu = next((name for name in last_epoch if name.startswith("cuda")), None)
    if "cpu" in last_epoch and gpu:
        print(f"CPU / GPU time per epoch: {last_epoch['cpu'] / last_epoch[gpu]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
