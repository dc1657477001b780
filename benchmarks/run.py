"""Benchmarks (figures, not pass/fail): import time, notebook execution times and a NumPy-vs-PyTorch epoch.

    python benchmarks/run.py [--skip-notebooks] [--repeats 5]

0. The time ``import cml`` and the modules every notebook imports take in a fresh interpreter (best of five): what
   a student waits for in the first cell, before torch or JAX, which ``cml`` does not import.

1. Executes every source notebook (the solutions) in a fresh kernel, as nbval does, and prints its wall time.
2. Times one epoch of the ``03_mlp_from_scratch`` network: the reference ``NeuralNetwork`` (NumPy, taken from the
   source notebook's solution cells) against the same network, loss and mini-batch SGD written in PyTorch on the
   CPU, on the same data in the same run, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.data import load_mnist, one_hot  # noqa: E402
from cml.instructor.cells import cell_kind, strip_solution_markers  # noqa: E402
from cml.instructor.course import Course  # noqa: E402

MLP_NOTEBOOK = REPO / "source" / "03_mlp_from_scratch" / "03_mlp_from_scratch.ipynb"
NETWORK_API = ("init_weights", "forward", "predict", "backward", "train_iteration", "fit")


IMPORT_STUDENT_MODULES = "import cml, cml.checks, cml.data, cml.device, cml.progress"


def time_import(repeats: int = 5) -> None:
    """Print the best of ``repeats`` fresh-interpreter timings of the student modules' import."""
    import subprocess

    code = f"import time; t = time.perf_counter(); {IMPORT_STUDENT_MODULES}; print(time.perf_counter() - t)"
    timings = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=REPO).stdout) for _ in range(repeats)]
    print(f"`{IMPORT_STUDENT_MODULES}` in a fresh interpreter: best {min(timings):.3f} s, "
          f"median {statistics.median(timings):.3f} s of {repeats}")


def time_notebooks() -> None:
    from nbclient import NotebookClient

    course = Course(REPO)
    total = 0.0
    print("notebook execution (fresh kernel, solutions, this machine):")
    for assignment in course.assignments():
        for path in course.notebooks(assignment):
            notebook = course.read(path)
            started = time.perf_counter()
            NotebookClient(notebook, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            elapsed = time.perf_counter() - started
            total += elapsed
            print(f"  {path.relative_to(REPO)!s:<60} {elapsed:6.1f} s")
    print(f"  {'total':<60} {total:6.1f} s")


def reference_network() -> type:
    """The ``NeuralNetwork`` class defined by the 03 source notebook's solution, without running its experiments.

    Code cells are executed in order (solutions without their markers, test cells skipped) until the class
    has every method of the graded API.
    """
    namespace: dict[str, Any] = {"__name__": "benchmark_03"}
    for cell in nbformat.read(MLP_NOTEBOOK, as_version=4).cells:
        if cell.cell_type != "code" or cell_kind(cell) == "tests":
            continue
        source = "\n".join(line for line in strip_solution_markers(cell.source).splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        exec(compile(source, f"<{MLP_NOTEBOOK.name}>", "exec"), namespace)  # noqa: S102 (our own notebook)
        network = namespace.get("NeuralNetwork")
        if network is not None and all(hasattr(network, name) for name in NETWORK_API):
            return network
    raise RuntimeError(f"{MLP_NOTEBOOK} never defines NeuralNetwork with {NETWORK_API}")


def torch_epoch(X: np.ndarray, D: np.ndarray, n_hidden: int, batch_size: int, lr: float, seed: int) -> None:
    """One shuffled mini-batch SGD epoch of the same sigmoid network and summed squared error, in PyTorch."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    X_t, D_t = torch.from_numpy(X), torch.from_numpy(D)
    n_input, n_samples = X_t.shape
    W1 = (torch.randn(n_hidden, n_input, generator=generator, dtype=X_t.dtype) * n_input**-0.5).requires_grad_()
    b1 = torch.zeros(n_hidden, 1, dtype=X_t.dtype, requires_grad=True)
    W2 = (torch.randn(D_t.shape[0], n_hidden, generator=generator, dtype=X_t.dtype) * n_hidden**-0.5).requires_grad_()
    b2 = torch.zeros(D_t.shape[0], 1, dtype=X_t.dtype, requires_grad=True)
    parameters = [W1, b1, W2, b2]
    order = torch.randperm(n_samples, generator=generator)
    for start in range(0, n_samples, batch_size):
        batch = order[start:start + batch_size]
        x, d = X_t[:, batch], D_t[:, batch]
        y = torch.sigmoid(W2 @ torch.sigmoid(W1 @ x + b1) + b2)
        loss = 0.5 * ((y - d) ** 2).sum()
        gradients = torch.autograd.grad(loss, parameters)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter -= lr * gradient


def time_epochs(repeats: int, n_hidden: int = 32, lr: float = 0.1) -> None:
    """NumPy and PyTorch epochs on the same data, with the same number of threads, for a few batch sizes."""
    import torch
    from threadpoolctl import threadpool_limits

    network_class = reference_network()
    (train_images, train_labels), _ = load_mnist()
    X = (train_images.reshape(len(train_images), -1).T / 255.0).astype(np.float64)
    D = one_hot(train_labels, 10).T
    print(f"one epoch of the 03 network (784-{n_hidden}-10, sigmoid, summed squared error, {X.shape[1]} images, "
          f"float64), median of {repeats} epochs:")
    print(f"  {'threads':>7} {'batch':>6} {'NumPy (ms)':>11} {'PyTorch CPU (ms)':>17} {'NumPy / PyTorch':>16}")
    for n_threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n_threads)
        with threadpool_limits(limits=n_threads):
            for batch_size in (32, 512):
                numpy_times, torch_times = [], []
                for repeat in range(repeats):
                    np.random.seed(repeat)  # a student's class may use the global generator
                    network = network_class(X.shape[0], n_hidden, 10)
                    started = time.perf_counter()
                    network.fit(X, D, batch_size, n_epochs=1, lr=lr)
                    numpy_times.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    torch_epoch(X, D, n_hidden, batch_size, lr, seed=repeat)
                    torch_times.append(time.perf_counter() - started)
                numpy_ms = 1000 * statistics.median(numpy_times)
                torch_ms = 1000 * statistics.median(torch_times)
                print(f"  {n_threads:>7} {batch_size:>6} {numpy_ms:>11.1f} {torch_ms:>17.1f} {numpy_ms / torch_ms:>16.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    os.environ["CML_NO_PROGRESS"] = "1"  # bars write to stderr and would disturb the timings
    time_import()
    if not arguments.skip_notebooks:
        time_notebooks()
    time_epochs(arguments.repeats)


if __name__ == "__main__":
    main()
