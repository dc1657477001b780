"""The students' self-check (``cml-course check``, :mod:`cml.selfcheck`) and the manifest the release carries for it.

A tiny course is released with nbgrader and the course's own configuration (so its notebook carries the manifest
that :class:`~cml.instructor.preprocessors.manifest.WriteManifest` writes); students' notebooks are made from it,
each with one thing wrong, and checked by the command, all at once in parallel processes. One more run checks a
solution of a real assignment, released afresh from ``source/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_output

from cml import selfcheck
from cml.instructor.authoring.convert import script_to_notebook
from cml.instructor.authoring.release import generate_release
from cml.instructor.cells import grade_id, released_source
from cml.instructor.course import Course
from cml.instructor.preprocessors.manifest import build_manifest
from cml.instructor.testing.submissions import Case, build_submission

REPO = Path(__file__).resolve().parents[1]
REAL_ASSIGNMENT = "01_neuron"
STOP_AFTER = 10
"""Seconds a cell of the notebook with a never-ending cell may run (a generous bound on the others' time)."""

TINY = '''# %% [markdown]
# Doubling and halving.

# %% readonly id=imports
from cml.checks import check_close

# %% solution id=double
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% tests id=test_double points=2
"""double doubles."""
check_close("double.one", double(1.0), 2.0)
check_close("double.half", double(0.25), 0.5)
### BEGIN HIDDEN TESTS
check_close("double.secret_negative", double(-3.0), -6.0)
### END HIDDEN TESTS

# %% solution id=half
def half(x):
    ### BEGIN SOLUTION
    return x / 2
    ### END SOLUTION

# %% tests id=test_half points=1
"""half halves (visible checks only)."""
check_close("half.two", half(2.0), 1.0)

# %% [markdown] manual id=why points=1
# Because two halves make a whole.
'''


def _solved(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return build_submission(Case("student", "tiny", "everything answered", base="solution", lose=()), source, release)


def _index(notebook: nbformat.NotebookNode, name: str) -> int:
    return next(index for index, cell in enumerate(notebook.cells) if grade_id(cell) == name)


def _students(correct: nbformat.NotebookNode) -> dict[str, tuple[str, nbformat.NotebookNode]]:
    """``{case: (file name, notebook)}``: the correct notebook and one variant per thing that costs points."""
    edited = copy.deepcopy(correct)
    edited.cells[_index(edited, "test_double")].source += "\n# no more checks here"
    deleted = copy.deepcopy(correct)
    del deleted.cells[_index(deleted, "test_half")]
    failing = copy.deepcopy(correct)
    failing.cells[_index(failing, "double")].source = "def double(x):\n    return 3 * x"
    out_of_order = copy.deepcopy(correct)  # the saved notebook ran the later cell first: its outputs show success
    uses = new_code_cell("print(scale * 2)", execution_count=2,
                         outputs=[new_output("stream", name="stdout", text="6\n")])
    defines = new_code_cell("scale = 3", execution_count=1)
    at = _index(out_of_order, "test_half") + 1
    out_of_order.cells[at:at] = [uses, defines]
    stops = copy.deepcopy(correct)  # a cell that prints a lot, one that runs too long, one that kills its kernel
    stops.cells += [new_code_cell("print('x' * 1_700_000)"), new_code_cell("import time\ntime.sleep(600)"), new_code_cell("import os\nos._exit(3)"),
                    new_code_cell("print('never')")]
    return {"correct": ("tiny.ipynb", correct), "stops": ("tiny.ipynb", stops), "edited": ("tiny.ipynb", edited),
            "deleted": ("tiny.ipynb", deleted), "renamed": ("tiny (1).ipynb", correct),
            "failing": ("tiny.ipynb", failing), "out_of_order": ("tiny.ipynb", out_of_order)}


def _real_release(folder: Path) -> Path:
    """A real assignment's release notebook as handed out. The committed one carries its manifest; one from before
    the manifest is built afresh from ``source/`` by the course's release build (an nbgrader run)."""
    course = Course(REPO)
    committed = course.release / REAL_ASSIGNMENT / f"{REAL_ASSIGNMENT}.ipynb"
    target = folder / "real" / committed.name  # run elsewhere: what the notebook writes stays out of release/
    target.parent.mkdir(parents=True)
    if selfcheck.MANIFEST_KEY in nbformat.read(committed, as_version=4).metadata:
        shutil.copy(committed, target)
    else:
        shutil.copy(generate_release(course, folder / "release", [REAL_ASSIGNMENT]) / REAL_ASSIGNMENT / target.name,
                    target)
    return target


def _in_a_kernel(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` with a last cell calling :func:`check_this_notebook`, run in a kernel that knows its
    file as JupyterLab's do: the check runs inside a kernel and starts one of its own."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_code_cell("from cml.selfcheck import check_this_notebook\ncheck_this_notebook()"))
    environment = {key: value for key, value in os.environ.items() if key != "CML_NO_PROGRESS"}
    NotebookClient(notebook, kernel_name="python3", timeout=120, allow_errors=True, shutdown_kernel="immediate",
                   resources={"metadata": {"path": str(path.parent)}}).execute(
        env={**environment, "JPY_SESSION_NAME": str(path)}, stderr=subprocess.DEVNULL)
    return notebook


@pytest.fixture(scope="module")
def tiny_release() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """The tiny course's source notebook and its release, made as ``nbgrader generate_assignment`` makes it with the
    course's configuration (the released sources, nbgrader's checksums, the manifest) without an nbgrader run;
    :func:`test_release_build_writes_the_manifest` proves the build does the same."""
    from nbgrader.utils import compute_checksum

    source = script_to_notebook(TINY)
    release = copy.deepcopy(source)
    release.metadata[selfcheck.MANIFEST_KEY] = build_manifest(source, "tiny", "tiny.ipynb")
    for cell in release.cells:
        cell.source = released_source(cell)
        if grade_id(cell):
            cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    return source, release


@pytest.fixture(scope="module")
def checked(tiny_release, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every student checked, side by side: ``{case: Report}``; ``"command"``: ``(exit status, output)`` of
    ``cml-course check --json`` on the correct one; ``"in_a_kernel"``: the notebook that checked itself; and
    ``"seconds"``: how long it all took."""
    source, release = tiny_release
    folder = tmp_path_factory.mktemp("students")
    paths = {}
    for case, (name, notebook) in _students(_solved(source, release)).items():
        (folder / case).mkdir()
        nbformat.write(notebook, folder / case / name)
        paths[case] = folder / case / name
    paths["real"] = _real_release(folder)
    started = time.perf_counter()
    command = subprocess.Popen([sys.executable, "-m", "cml.instructor.entry", "check", "--json", str(paths["correct"])],
                               cwd=folder, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with ThreadPoolExecutor(4) as pool:
        futures = {case: pool.submit(selfcheck.check_notebook, path, timeout=STOP_AFTER if case == "stops" else None)
                   for case, path in paths.items()}
        futures["in_a_kernel"] = pool.submit(_in_a_kernel, paths["correct"])
        results: dict[str, Any] = {case: future.result() for case, future in futures.items()}
    stdout, stderr = command.communicate(timeout=300)
    results["command"] = (command.returncode, stdout, stderr)
    results["seconds"] = time.perf_counter() - started
    return results


def test_release_build_writes_the_manifest(mini_course_template: Path) -> None:
    """``nbgrader generate_assignment`` with the course's configuration writes the manifest (conftest's mini course
    is built so)."""
    mini = Course(mini_course_template)
    release = nbformat.read(mini.release / "mini" / "mini.ipynb", as_version=4)
    assert release.metadata[selfcheck.MANIFEST_KEY] == build_manifest(
        mini.read(mini.source / "mini" / "mini.ipynb"), "mini", "mini.ipynb")
    assert release.metadata[selfcheck.MANIFEST_KEY]["cells"][1] == {
        "grade_id": "test_square", "kind": "tests", "points": 1.0, "hidden_tests": True}


def test_manifest_holds_ids_kinds_points_and_nothing_of_the_tests(tiny_release) -> None:
    _, release = tiny_release
    manifest = release.metadata[selfcheck.MANIFEST_KEY]
    assert manifest["assignment"] == "tiny" and manifest["notebook"] == "tiny.ipynb"
    assert [(cell["grade_id"], cell["kind"], cell["points"], cell["hidden_tests"]) for cell in manifest["cells"]] == [
        ("imports", "locked", 0.0, False), ("double", "answer", 0.0, False), ("test_double", "tests", 2.0, True),
        ("half", "answer", 0.0, False), ("test_half", "tests", 1.0, False), ("why", "written", 1.0, False)]
    assert all(set(cell) == {"grade_id", "kind", "points", "hidden_tests"} for cell in manifest["cells"])
    assert "secret" not in json.dumps(manifest) and "return 2" not in json.dumps(manifest)


def test_correct_notebook_passes(checked) -> None:
    report = checked["correct"]
    text = report.text()
    assert report.ok, text
    assert "test_double" in text and "visible checks 2/2 passed" in text
    assert "test_half" in text and "visible checks 1/1 passed" in text
    assert "Visible checks: 3 of 3 passed." in text
    assert "2 of 4 points are decided by hidden tests too" in text
    assert "Secured by visible checks alone (passing test cells without hidden tests): 1 points" in text
    assert "written, graded by your instructor; answered" in text
    assert "OK: nothing found that costs points." in text
    print(f"{len(checked) - 1} checks side by side in {checked['seconds']:.1f} s")


def test_command_prints_json_and_exits_zero(checked) -> None:
    status, stdout, stderr = checked["command"]
    report = json.loads(stdout)
    assert status == 0 and report["ok"] is True, stdout + stderr
    exercises = {exercise["grade_id"]: exercise for exercise in report["exercises"]}
    assert exercises["test_double"] | {"checks_passed": 2, "checks_run": 2, "passed": True, "hidden_tests": True,
                                       "kind": "tests", "points": 2.0} == exercises["test_double"]
    assert exercises["why"]["kind"] == "written" and exercises["why"]["unanswered"] is False
    assert (report["total_points"], report["hidden_points"], report["secured_points"]) == (4.0, 2.0, 1.0)


def test_command_exits_one_on_a_problem(checked, tmp_path: Path, capsys) -> None:
    path = Path(checked["renamed"].notebook)
    assert selfcheck.run_command(argparse.Namespace(notebook=tmp_path / "missing.ipynb", timeout=None, json=False)) == 2
    with pytest.MonkeyPatch.context() as patch:  # the run itself is tested above: here only the exit status
        patch.setattr(selfcheck, "check_notebook", lambda *_args, **_kwargs: checked["renamed"])
        assert selfcheck.run_command(argparse.Namespace(notebook=path, timeout=None, json=False)) == 1
    assert "NOT OK" in capsys.readouterr().out


@pytest.mark.parametrize(("case", "message"), [
    ("edited", "the test cell 'test_double' was edited"),
    ("deleted", "the test cell 'test_half' was deleted"),
    ("renamed", "the file is called 'tiny (1).ipynb', but the grader expects 'tiny.ipynb'"),
    ("out_of_order", "fails when the notebook runs from the top, but not in your saved notebook (NameError: name "
                     "'scale' is not defined)"),
    ("failing", "visible checks 0/1 passed; cell FAILS (CheckFailed: [double.one]"),
])
def test_what_costs_points_fails_the_check(checked, case: str, message: str) -> None:
    report = checked[case]
    text = report.text()
    assert not report.ok, text
    assert message in " ".join(text.split()), text
    assert "NOT OK" in text


def test_a_cell_past_the_limits_and_a_dead_kernel_are_reported(checked) -> None:
    report = checked["stops"]
    text = " ".join(report.text().split())
    assert not report.ok
    assert "prints 1.7 MB of output; the grader drops more than 2.0 MB per cell" in text, text
    assert f"fails: timed out: stopped after {STOP_AFTER} s, as the grader stops a cell" in text, text
    assert "the fresh run stopped in cell" in text and "DeadKernelError" in text, text
    assert [exercise.passed for exercise in report.exercises if exercise.kind is selfcheck.Kind.TESTS] == [True, True]


def test_out_of_order_saved_notebook_is_warned_about(checked) -> None:
    assert "the saved notebook ran cells out of order" in checked["out_of_order"].text()


def test_real_release_notebook(checked) -> None:
    """A real assignment as handed out: every test cell fails (nothing answered yet), every written answer is the
    stub, every test cell has hidden tests, and nothing was edited, deleted or renamed."""
    report = checked["real"]
    tests = [exercise for exercise in report.exercises if exercise.kind is selfcheck.Kind.TESTS]
    written = [exercise for exercise in report.exercises if exercise.kind is selfcheck.Kind.WRITTEN]
    assert tests and written and not report.ok
    assert all(not exercise.passed and "NotImplementedError" in exercise.error for exercise in tests), report.text()
    assert all(exercise.unanswered for exercise in written)
    assert report.hidden_points() == sum(exercise.points for exercise in tests) > 0
    tampering = ("edited", "deleted", "rename", "metadata", "moved", "appears")
    assert not [finding for finding in report.findings if any(word in finding.message for word in tampering)]


def test_a_notebook_checks_itself_from_its_last_cell(checked) -> None:
    """In a kernel that knows its notebook (as JupyterLab's do), the last cell runs the check in a kernel of its
    own, where the same cell prints one line; the report lands in the cell's output, nothing on stderr."""
    cell = checked["in_a_kernel"].cells[-1]
    streams: dict[str, str] = {}
    for output in cell.outputs:
        if output.output_type == "stream":
            streams[output.name] = streams.get(output.name, "") + output.text
    assert set(streams) == {"stdout"} and not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    assert "Checking the SAVED file tiny.ipynb" in streams["stdout"] and "visible checks 2/2" in streams["stdout"]
    assert "OK: nothing found that costs points." in streams["stdout"]


def test_check_cell_under_the_grader_and_in_its_own_run_is_one_quiet_line(monkeypatch, capsys) -> None:
    def never(*_args, **_kwargs):
        raise AssertionError("the self-check ran")

    monkeypatch.setattr(selfcheck, "check_notebook", never)
    for variable, value in [(selfcheck.CHILD_VARIABLE, "1"), ("NBGRADER_EXECUTION", "autograde"),
                            ("CML_CHECK_LOG", "/tmp/checks.jsonl"), ("CML_GRADING_SEED", "7"),
                            ("CML_NO_PROGRESS", "1")]:
        with monkeypatch.context() as patch:
            for other in (selfcheck.CHILD_VARIABLE, "NBGRADER_EXECUTION", "CML_CHECK_LOG", "CML_GRADING_SEED",
                          "CML_NO_PROGRESS"):
                patch.delenv(other, raising=False)
            patch.setenv(variable, value)
            patch.setenv("JPY_SESSION_NAME", str(REPO / "release" / REAL_ASSIGNMENT / f"{REAL_ASSIGNMENT}.ipynb"))
            started = time.perf_counter()
            selfcheck.check_this_notebook()
            assert time.perf_counter() - started < 0.5
        out, err = capsys.readouterr()
        assert err == "" and out.count("\n") == 1 and out.startswith("self-check:"), (variable, out, err)


def test_check_cell_without_a_notebook_path_says_how_to_check(monkeypatch, capsys) -> None:
    for variable in (selfcheck.CHILD_VARIABLE, "NBGRADER_EXECUTION", "CML_CHECK_LOG", "CML_GRADING_SEED",
                     "CML_NO_PROGRESS", "JPY_SESSION_NAME"):
        monkeypatch.delenv(variable, raising=False)
    selfcheck.check_this_notebook()
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1 and "cml-course check" in out


def test_check_cell_never_raises(monkeypatch, capsys, tmp_path: Path) -> None:
    notebook = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    for variable in (selfcheck.CHILD_VARIABLE, "NBGRADER_EXECUTION", "CML_CHECK_LOG", "CML_GRADING_SEED",
                     "CML_NO_PROGRESS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))

    def broken(*_args, **_kwargs):
        raise RuntimeError("no kernel today")

    monkeypatch.setattr(selfcheck, "check_notebook", broken)
    selfcheck.check_this_notebook()
    out, err = capsys.readouterr()
    assert err == "" and "Checking the SAVED file n.ipynb" in out and "self-check could not run" in out
    assert "cml-course check" in out.splitlines()[-1]


def test_checksum_is_nbgraders() -> None:
    from nbgrader.utils import compute_checksum

    cells = [cell for path in sorted((REPO / "release").glob("*/*.ipynb"))
             for cell in nbformat.read(path, as_version=4).cells if grade_id(cell)]
    edited = copy.deepcopy(cells)
    for cell in edited:
        cell.source += "\n# changed"
        if "points" in cell.metadata.nbgrader:
            cell.metadata.nbgrader.points += 1
    assert [selfcheck.compute_checksum(cell) for cell in cells + edited] == [
        compute_checksum(cell) for cell in cells + edited]
    assert all(selfcheck.compute_checksum(cell) == cell.metadata.nbgrader["checksum"] for cell in cells
               if "checksum" in cell.metadata.nbgrader)


def test_the_command_works_on_a_students_install() -> None:
    """Without the instructor extra (a student's ``pip install cml-course``), ``cml-course check`` is there."""
    from cml.instructor.entry import INSTRUCTOR_IMPORTS

    blocked = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in sorted(INSTRUCTOR_IMPORTS))
    code = blocked + "from cml.instructor.entry import main\nsys.exit(main(['check', 'missing.ipynb']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "no such notebook: missing.ipynb" in result.stderr, result.stderr


def test_kinds_agree_with_the_instructor_tools() -> None:
    from cml.instructor.cells import cell_kind
    from cml.instructor.preprocessors.manifest import KINDS

    cells = [cell for path in sorted((REPO / "release").glob("*/*.ipynb"))
             for cell in nbformat.read(path, as_version=4).cells]
    assert [selfcheck.cell_kind(cell) for cell in cells] == [KINDS.get(cell_kind(cell) or "") for cell in cells]
