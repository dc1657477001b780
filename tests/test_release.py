"""release/ is exactly what nbgrader makes of source/, leaks nothing, and the source notebooks are well formed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from cml.instructor.authoring.convert import notebook_to_script, script_to_notebook
from cml.instructor.cells import cell_kind, grade_id
from cml.instructor.course import Course
from cml.instructor.authoring.release import find_leaks, generate_release, release_differences

CHECK_CALL = re.compile(r"""\bcheck_\w+\(\s*f?(?P<quote>["'])(?P<id>[^"']+)(?P=quote)""")


def test_course_has_assignments(course: Course) -> None:
    assert {"01_neuron", "03_mlp_from_scratch"} <= set(course.assignments())


def test_release_matches_a_fresh_build(demo_run) -> None:
    """The demo builds a fresh release with nbgrader and compares it with release/ (release_differences); one
    build serves both. That the comparison catches stale and stray files is tested on the mini course below."""
    completed, _ = demo_run
    problems = [line for line in completed.stdout.splitlines() if line.startswith("PROBLEM") and "release" in line]
    assert "release/ matches source/ and leaks nothing" in completed.stdout, (
        "run `./course release` and commit release/:\n" + "\n".join(problems) + completed.stderr[-2000:])


def test_release_leaks_nothing(course: Course) -> None:
    assert find_leaks(course) == []


def _source_notebooks(course: Course) -> list[Path]:
    return [path for assignment in course.assignments() for path in course.notebooks(assignment)]


def test_notebooks_are_stored_without_outputs(course: Course) -> None:
    for path in _source_notebooks(course) + sorted(course.release.rglob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path} stores outputs"


def test_grade_cells_are_well_formed(course: Course) -> None:
    for path in _source_notebooks(course):
        notebook = nbformat.read(path, as_version=4)
        ids = [grade_id(cell) for cell in notebook.cells if grade_id(cell)]
        assert len(ids) == len(set(ids)), f"{path}: duplicate grade ids"
        check_ids: list[str] = []
        n_tests = 0
        for cell in notebook.cells:
            kind = cell_kind(cell)
            if kind in ("tests", "manual"):
                assert float(cell.metadata.nbgrader.get("points", 0)) > 0, f"{path}:{grade_id(cell)} has no points"
            if kind != "tests":
                continue
            n_tests += 1
            tree = ast.parse(cell.source)
            docstring = ast.get_docstring(tree)
            assert docstring, f"{path}:{grade_id(cell)}: a test cell starts with a docstring saying what it checks"
            asserts = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
            assert not asserts, f"{path}:{grade_id(cell)}: use cml.checks, not bare assert"
            check_ids += [match.group("id") for match in CHECK_CALL.finditer(cell.source)]
            assert CHECK_CALL.search(cell.source), f"{path}:{grade_id(cell)}: no cml check call"
        assert n_tests >= 5, f"{path}: too few graded test cells"
        duplicates = sorted({name for name in check_ids if check_ids.count(name) > 1})
        assert not duplicates, f"{path}: check ids used twice: {duplicates}"


def test_authoring_round_trip_preserves_real_notebooks(course: Course) -> None:
    for path in _source_notebooks(course):
        notebook = nbformat.read(path, as_version=4)
        rebuilt = script_to_notebook(notebook_to_script(notebook))
        assert [c.cell_type for c in rebuilt.cells] == [c.cell_type for c in notebook.cells]
        assert [c.source for c in rebuilt.cells] == [c.source for c in notebook.cells]
        assert [c.metadata.get("nbgrader") for c in rebuilt.cells] == [
            c.metadata.get("nbgrader") for c in notebook.cells
        ]


def test_leak_detector_accepts_a_clean_release_and_catches_leaks(mini_course: Course) -> None:
    assert find_leaks(mini_course) == []
    released_path = mini_course.release / "mini" / "mini.ipynb"
    released = nbformat.read(released_path, as_version=4)
    for leaked_line in ("    secret_value = x * x", 'check_close("square.hidden_negative", square(-2.0), 4.0)',
                        "### BEGIN SOLUTION", "Because multiplication by itself is the definition of a square."):
        tampered = nbformat.from_dict(released)
        tampered.cells[1].source += "\n" + leaked_line
        nbformat.write(tampered, released_path)
        assert find_leaks(mini_course), f"a release showing {leaked_line!r} was not flagged"
    nbformat.write(released, released_path)


def test_release_differences_detect_stale_and_stray_files(mini_course: Course, tmp_path: Path) -> None:
    fresh = generate_release(mini_course, tmp_path / "fresh")
    assert release_differences(mini_course, fresh) == []
    (mini_course.release / "mini" / "stray.txt").write_text("left behind")
    released_path = mini_course.release / "mini" / "mini.ipynb"
    notebook = nbformat.read(released_path, as_version=4)
    notebook.cells[0].source = "edited by hand"
    nbformat.write(notebook, released_path)
    differences = release_differences(mini_course, fresh)
    assert any("stray.txt" in line for line in differences)
    assert any("out of date" in line for line in differences)
