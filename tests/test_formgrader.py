"""The instructor's side, in a real browser: hostile submissions in nbgrader's formgrader and in the feedback.

A small class (the probe assignment with a written answer) is graded by ``cml-course grade``: an honest student
with a figure, one whose code displays every hostile output and hooks every later cell, one whose markdown,
written answer, raw cell and metadata carry script, one who renamed the notebook to markup, and a student folder
named with markup. JupyterLab then serves the graded course on loopback, as the README's step 6 says, and
headless Chromium, logged in as the instructor, opens each submission in the manual-grading view.

No student script may run: the page's title stays, ``window.cmlPwned`` stays undefined, the page sends no request
to the server's API but the formgrader's own, and the server has no new terminal, kernel or session. The honest
figure renders, and the instructor grades the written answer in the page and finds the grade in
``nbgrader export``. The hostile students' feedback files are opened too, and a feedback page rendered without
the sanitiser shows that its Content-Security-Policy alone stops the same script. Screenshots go to
``build/browser/``.
"""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_support import SCREENSHOTS, LabServer, headless_chromium, lab_server
from hostile_content import FILE_NAME, PWNED, WRITTEN_ANSWER, add_markdown_vectors, output_cell_code, with_outputs
from nbformat.v4 import new_code_cell
from nbgrader.api import Gradebook
from probe_course import source_notebook, student_notebook
from test_sanitize import _scored

from cml.instructor.grading.run import grade_class
from cml.instructor.web.inert_html import InertHTMLExporter, feedback_config
from cml.instructor.course import Course
from cml.instructor.grading.model import Limits

FIGURE = "import matplotlib.pyplot as plt\nplt.plot([0, 1, 2], [0, 1, 4])\nplt.title('squares')\nplt.show()"
UNSAFE_STUDENT = "<img src=x onerror=alert(1)>"
HOSTILE = ("outputs", "markdown", "renamed")


def _submissions(folder: Path) -> None:
    honest = student_notebook(True)
    honest.cells.insert(3, new_code_cell(FIGURE))
    outputs = student_notebook(True)
    outputs.cells.insert(3, new_code_cell(output_cell_code()))
    notebooks = {"honest": (honest, "probe.ipynb"), "outputs": (outputs, "probe.ipynb"),
                 "markdown": (add_markdown_vectors(student_notebook(True, answer_w=WRITTEN_ANSWER)), "probe.ipynb"),
                 "renamed": (student_notebook(True), FILE_NAME), UNSAFE_STUDENT: (student_notebook(True), "probe.ipynb")}
    for student, (notebook, name) in notebooks.items():
        (folder / student / "probe").mkdir(parents=True)
        (folder / student / "probe" / name).write_text(json.dumps(notebook))  # nbformat would refuse the tags


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("formgrader")
    course_root = root / "course"
    (course_root / "source" / "probe").mkdir(parents=True)
    (course_root / "nbgrader_config.py").write_text((Path(__file__).parents[1] / "nbgrader_config.py").read_text())
    nbformat.write(source_notebook(True), course_root / "source" / "probe" / "probe.ipynb")
    _submissions(root / "submitted")
    workdir = root / "work"
    run = grade_class(Course(course_root), root / "submitted", workdir, workers=2, progress=False, verdicts=False,
                      limits=Limits(cell_timeout=60, time_limit=300, memory_mb=2000))
    return workdir, run


@pytest.fixture(scope="module")
def lab(graded: tuple[Path, Any]) -> Iterator[LabServer]:
    workdir, _ = graded
    with lab_server(workdir, workdir.parent / "lab-state") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as chromium:
        yield chromium


def _submission_ids(workdir: Path) -> dict[str, str]:
    with Gradebook(f"sqlite:///{workdir / 'gradebook.db'}") as gradebook:
        return {student.id: gradebook.find_submission_notebook("probe", "probe", student.id).id
                for student in gradebook.students}


def _server_activity(lab: LabServer) -> dict[str, int]:
    return {what: len(lab.api(what)) for what in ("terminals", "kernels", "sessions")}


def _log_in(context: Any, lab: LabServer) -> None:
    """Log in with the token on the server's login page, as an instructor would: the formgrader's own requests
    rely on the login cookie."""
    page = context.new_page()
    page.goto(f"{lab.url}/login")
    page.fill("input[name=password]", lab.token)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    page.close()


class _Watched:
    """A page with every request and console message recorded."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append(message.text))

    def settle(self) -> None:
        """Give any handler (``onerror``, ``ontoggle``, a meta refresh) the time to fire."""
        self.page.wait_for_load_state("load")
        self.page.wait_for_timeout(1500)

    def assert_no_script_ran(self, what: str) -> None:
        assert self.page.title() != PWNED, f"{what}: a student's script set the title"
        assert self.page.evaluate("() => window.cmlPwned") is None, f"{what}: a student's script ran"


def test_the_class_was_graded_and_the_unsafe_id_refused(graded: tuple[Path, Any]) -> None:
    workdir, run = graded
    scores = {outcome.student: outcome.code_total() for outcome in run.outcomes}
    assert scores == {"honest": 6, "outputs": 6, "markdown": 6, "renamed": 6}, [o.notes for o in run.outcomes]
    assert any("not graded" in note and "onerror" in note for note in run.run_notes)


def test_no_student_script_runs_in_the_manual_grading_view(graded: tuple[Path, Any], lab: LabServer,
                                                           browser: Any) -> None:
    workdir, _ = graded
    ids = _submission_ids(workdir)
    before = _server_activity(lab)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    _log_in(context, lab)
    try:
        for student in (*HOSTILE, "honest"):
            watched = _Watched(context)
            response = watched.page.goto(f"{lab.url}/formgrader/submissions/{ids[student]}/")
            watched.settle()
            watched.page.screenshot(path=SCREENSHOTS / f"formgrader-{student}.png", full_page=True)
            assert response.status == 200
            policy = response.headers["content-security-policy"]
            scripts = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
            assert "'unsafe-inline'" not in scripts and "frame-ancestors 'self'" in policy
            watched.assert_no_script_ran(student)
            api = [url for url in watched.requests if "/api/" in url and "/formgrader/api/" not in url]
            assert api == [], f"{student}: the page asked the server's API for {api}"
            # The formgrader's own scripts ran: they loaded the grades and show the autograded score.
            assert watched.page.locator("#answer_w").count() == 1
            watched.page.wait_for_function("() => document.querySelector('#test_a').placeholder === '1'",
                                           timeout=10_000)
            watched.page.close()
    finally:
        context.close()
    assert _server_activity(lab) == before


@contextmanager
def _manual_grading_page(browser: Any, lab: LabServer, workdir: Path, student: str) -> Iterator[Any]:
    """The instructor, logged in, on ``student``'s submission in the manual-grading view, its grades loaded."""
    context = browser.new_context()
    try:
        _log_in(context, lab)
        page = context.new_page()
        page.goto(f"{lab.url}/formgrader/submissions/{_submission_ids(workdir)[student]}/")
        page.wait_for_function("() => document.querySelector('#test_a').placeholder === '1'", timeout=10_000)
        yield page
    finally:
        context.close()


def test_honest_figures_render_in_the_formgrader(graded: tuple[Path, Any], lab: LabServer, browser: Any) -> None:
    with _manual_grading_page(browser, lab, graded[0], "honest") as page:
        figure = page.locator("img[src^='data:image/png']").first
        assert figure.evaluate("img => img.naturalWidth") > 100


def test_the_instructor_grades_a_written_answer(graded: tuple[Path, Any], lab: LabServer, browser: Any) -> None:
    """In the page of the student whose written answer carries script: the score is saved and exported."""
    workdir, _ = graded
    with _manual_grading_page(browser, lab, workdir, "markdown") as page:
        score = page.locator("#answer_w")
        with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT") as saved:
            score.fill("1.5")
            score.press("Enter")
        assert saved.value.status == 200
        page.screenshot(path=SCREENSHOTS / "formgrader-manual-grade.png", full_page=True)
    export = workdir / "export.csv"
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(export)], cwd=workdir,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with open(export) as stream:
        rows = {row["student_id"]: row for row in csv.DictReader(stream)}
    assert float(rows["markdown"]["score"]) == 7.5 and float(rows["markdown"]["max_score"]) == 8


def test_feedback_runs_no_student_script(graded: tuple[Path, Any], browser: Any) -> None:
    workdir, _ = graded
    context = browser.new_context()
    try:
        for student in (*HOSTILE, "honest"):
            feedback = workdir / "feedback" / student / "probe" / "probe.html"
            watched = _Watched(context)
            watched.page.goto(feedback.as_uri())
            watched.settle()
            watched.page.screenshot(path=SCREENSHOTS / f"feedback-{student}.png", full_page=True)
            watched.assert_no_script_ran(f"feedback of {student}")
            if student == "honest":
                assert watched.page.locator("img[src^='data:image/png']").first.evaluate("i => i.naturalWidth") > 100
            watched.page.close()
    finally:
        context.close()


def test_the_policy_alone_stops_the_script(tmp_path: Path, browser: Any) -> None:
    """A feedback page of the hostile notebook rendered *without* the sanitiser: unguarded, its script runs;
    under the policy computed from the template, it does not, and the browser reports what it refused."""
    hostile = add_markdown_vectors(student_notebook(True, answer_w=WRITTEN_ANSWER))
    hostile.cells.insert(3, with_outputs(new_code_cell("# display cell")))
    resources = {"nbgrader": {"notebook": "probe", "score": 6, "max_score": 8, "late_penalty": 0}}
    exporter = InertHTMLExporter(config=feedback_config(), sanitize=False)
    guarded, _ = exporter.from_notebook_node(_scored(copy.deepcopy(hostile)), copy.deepcopy(resources))
    unguarded = guarded.replace('http-equiv="Content-Security-Policy"', 'data-policy-removed="1"', 1)
    results = {}
    for name, page_html in (("unguarded", unguarded), ("guarded", guarded)):
        path = tmp_path / f"{name}.html"
        path.write_text(page_html)
        watched = _Watched(browser.new_context())
        watched.page.goto(path.as_uri())
        watched.settle()
        results[name] = (watched.page.title(), watched.page.evaluate("() => window.cmlPwned"), watched.console)
        watched.page.screenshot(path=SCREENSHOTS / f"feedback-unsanitised-{name}.png")
        watched.page.context.close()
    assert results["unguarded"][0] == PWNED and results["unguarded"][1], "the unsanitised page should be hostile"
    title, pwned, console = results["guarded"]
    assert title != PWNED and pwned is None
    assert any("Content Security Policy" in message for message in console), console
