"""What making graded notebooks inert costs, per notebook, old and new side by side (figures, not pass/fail).

    python benchmarks/sanitize_cost.py [--from WORKDIR] [--repeats 5] [ASSIGNMENT ...]

Takes executed notebooks with their real outputs (figures, widgets, tables): the raw executed solutions, which
it makes by running each source notebook once (as nbval does), or with ``--from`` the autograded notebooks of a
graded course folder (``course_work`` after ``./course demo``). For each it times:

* ``sanitize``: :func:`cml.instructor.web.sanitize.sanitize_notebook` alone (the step added at the end of autograding);
* ``feedback``: the feedback page with nbconvert's ``HTMLExporter`` and nbgrader's feedback template (before)
  against :class:`cml.instructor.web.inert_html.InertHTMLExporter` (now: sanitised, plus the template rendered once
  more around no cells for its Content-Security-Policy).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.instructor.web.inert_html import InertHTMLExporter, feedback_config  # noqa: E402
from cml.instructor.course import Course  # noqa: E402
from cml.instructor.web.sanitize import sanitize_notebook, trusted_markdown  # noqa: E402


def _as_graded(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Scores and comments on the graded cells, as nbgrader's GetGrades leaves them for the feedback template."""
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell.metadata["nbgrader"].update(score=cell.metadata["nbgrader"].get("points", 0), comment=None)
    return notebook


def executed_notebooks(course: Course, assignments: list[str], graded: Path | None) -> list[tuple[str, Path, dict]]:
    """(assignment, source path, executed notebook) for each notebook."""
    from nbclient import NotebookClient

    found = []
    for assignment in assignments:
        for source in course.notebooks(assignment):
            if graded is not None:
                for path in sorted((graded / "autograded").glob(f"*/{assignment}/{source.name}")):
                    found.append((assignment, source, nbformat.read(path, as_version=4)))
                continue
            notebook = course.read(source)
            started = time.perf_counter()
            NotebookClient(notebook, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(source.parent)}}).execute()
            print(f"  executed {source.relative_to(course.root)} in {time.perf_counter() - started:.1f} s")
            found.append((assignment, source, notebook))
    return found


def _interleaved(functions: list, repeats: int) -> list[float]:
    """The best time of each function over ``repeats`` rounds, the functions taking turns within a round (so that
    the machine's drift affects them alike)."""
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            started = time.perf_counter()
            function()
            times[index].append(time.perf_counter() - started)
    return [min(column) for column in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignments", nargs="*")
    parser.add_argument("--from", dest="graded", type=Path, help="a graded course folder (its autograded/ notebooks)")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args(argv)
    course = Course(REPO)
    notebooks = executed_notebooks(course, arguments.assignments or course.assignments(), arguments.graded)
    config = feedback_config()
    from nbconvert import HTMLExporter

    before, inert = HTMLExporter(config=config), InertHTMLExporter(config=config)
    print(f"\n{'notebook':<28} {'cells':>5} {'outputs':>8} {'MB':>6} {'sanitize':>9} "
          f"{'feedback before':>16} {'feedback now':>13} {'added':>7}")
    rows = []
    for assignment, source, notebook in notebooks:
        trusted = trusted_markdown([course.read(source)])
        resources = {"nbgrader": {"notebook": source.stem, "score": 1, "max_score": 1, "late_penalty": 0}}
        graded = _as_graded(copy.deepcopy(notebook))
        sanitize, old, new = _interleaved([lambda: sanitize_notebook(notebook, trusted),
                                           lambda: before.from_notebook_node(graded, copy.deepcopy(resources)),
                                           lambda: inert.from_notebook_node(graded, copy.deepcopy(resources))],
                                          arguments.repeats)
        size = len(nbformat.writes(notebook)) / 2**20
        outputs = sum(len(cell.get("outputs", [])) for cell in notebook.cells)
        rows.append((sanitize, old, new))
        print(f"{assignment:<28} {len(notebook.cells):>5} {outputs:>8} {size:>6.2f} {sanitize * 1000:>7.0f} ms "
              f"{old * 1000:>13.0f} ms {new * 1000:>10.0f} ms {100 * (new - old) / old:>6.0f}%")
    if rows:
        sanitize, old, new = (statistics.mean(column) for column in zip(*rows))
        print(f"{'mean':<28} {'':>5} {'':>8} {'':>6} {sanitize * 1000:>7.0f} ms {old * 1000:>13.0f} ms "
              f"{new * 1000:>10.0f} ms {100 * (new - old) / old:>6.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
