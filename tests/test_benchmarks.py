"""The benchmark scripts still run (on a tiny workload: their figures come from real runs, not from here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cnn_epoch_benchmark_runs_and_reports_each_device(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    benchmark = _load("cnn_epoch")
    assert benchmark.main(["--images", "300", "--batch-size", "100", "--devices", "cpu", "cuda"]) == 0
    output = capsys.readouterr().out
    assert "300 training images" in output and "test accuracy" in output
    if torch.cuda.is_available():
        assert "CPU / GPU time per epoch" in output
    else:
        assert "cuda: SKIPPED, no CUDA GPU here" in output


def test_tiled_sample_keeps_labels_with_their_images() -> None:
    benchmark = _load("cnn_epoch")
    images, labels, test_images, _, description = benchmark.mnist_size_training_set(1000, seed=1)
    assert images.shape == (1000, 28, 28) and labels.shape == (1000,) and len(test_images) > 0
    if "tiled" in description:  # each tiled image is a shifted copy of a sample image with the same label
        (train, train_labels), _ = benchmark.load_mnist()
        padded = np.pad(train, ((0, 0), (2, 2), (2, 2)))
        shifted = np.stack([padded[:, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)], axis=1)
        for image, label in zip(images[:10], labels[:10]):
            same = (shifted[train_labels == label] == image).all(axis=(2, 3))
            assert same.any(), "a tiled image matches no shifted sample image of its label"


def test_sanitize_cost_benchmark_reports_each_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    graded = tmp_path / "autograded" / "someone" / "01_neuron"
    graded.mkdir(parents=True)
    shutil.copy(REPO / "source" / "01_neuron" / "01_neuron.ipynb", graded)
    assert _load("sanitize_cost").main(["01_neuron", "--from", str(tmp_path), "--repeats", "1"]) == 0
    output = capsys.readouterr().out
    assert "feedback before" in output and output.count("01_neuron") == 1 and "mean" in output


def test_class_analytics_benchmark_runs_on_a_tiny_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = _load("class_analytics")
    assert benchmark.main(["--students", "12", "--assignments", "01_neuron", "--copied-pairs", "2",
                           "--baseline-students", "8", "--workdir", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "12 students x 1 assignments" in output and "2 planted copied pairs" in output
    assert "generating the class" in output and "not counted" in output
    assert "baseline: brute force, all pairs, 8 students" in output and "index on the same 8 students" in output
    for module, row in (("report", "report --no-cases"), ("similarity", "similarity (index)")):
        if (REPO / "cml" / "instructor" / "analytics" / f"{module}.py").exists():
            assert row in output
    if "report --no-cases" in output:
        assert "report.html" in output and "CSVs" in output and "target < 60 s:" in output
    if "similarity (index)" in output:
        assert "similarity.html" in output and "planted copied pairs:" in output
    submitted = sorted(path.relative_to(tmp_path / "submitted").parts[0]
                       for path in (tmp_path / "submitted").glob("*/01_neuron/01_neuron.ipynb"))
    assert len(submitted) == 12


def test_synthetic_class_is_deterministic_and_plants_copies(tmp_path: Path) -> None:
    import json

    generator = _load("synthetic_class")
    first = generator.generate_class(tmp_path / "a", students=8, assignments=["01_neuron"], seed=3, copied_pairs=2)
    again = generator.generate_class(tmp_path / "b", students=8, assignments=["01_neuron"], seed=3, copied_pairs=2)
    assert first.answers == again.answers and first.copied_pairs == again.copied_pairs
    assert (first.run_dir / "report.json").read_text() == (again.run_dir / "report.json").read_text()
    report = json.loads((first.run_dir / "report.json").read_text())
    assert len(report["submissions"]) == 8
    graded = [submission for submission in report["submissions"] if submission["status"] != "failed"]
    for submission in graded:  # code_score is the sum of the code cells' points, as nbgrader counts it
        assert submission["code_score"] == sum(cell["auto_score"] or 0 for cell in submission["cells"]
                                               if cell["cell_type"] == "code")
        assert {check["status"] for check in submission["checks"]} <= {"passed", "failed", "not_run"}
    for original, copier in first.copied_pairs:  # a copier hands in the original's answers, disguised
        cells = first.answers["01_neuron"]
        assert cells[original].keys() == cells[copier].keys()
        assert any(cells[original][cell] != cells[copier][cell] for cell in cells[original])
        records = {submission["student"]: submission for submission in report["submissions"]}
        assert [check["digest"] for check in records[original]["checks"]] == \
               [check["digest"] for check in records[copier]["checks"]]
