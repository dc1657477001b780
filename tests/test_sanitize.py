"""Graded notebooks render to inert HTML: every hostile vector is neutralised, what grading needs survives.

Each test renders notebooks with nbconvert, the way the formgrader and the feedback do, and compares the page
with the same template around no cells (:func:`hostile_content.active_content`): a sanitised page may add no
script, event handler, frame, form, plug-in, style or URL to it. The unsanitised pages show that the check finds
each vector. Real browsers run the same pages in ``test_formgrader.py``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest
from hostile_content import (
    BUNDLES,
    INERT_WHEN_RENDERED,
    MARKDOWN_CELLS,
    NOTEBOOK_METADATA,
    PNG,
    RAW_CELL,
    WRITTEN_ANSWER,
    active_content,
    add_markdown_vectors,
    with_outputs,
)
from nbconvert import HTMLExporter
from probe_course import source_notebook, student_notebook

from cml.instructor.grading.run import copy_submissions
from cml.instructor.web.inert_html import POLICY_RESOURCE, InertHTMLExporter, content_security_policy, feedback_config
from cml.instructor.preprocessors.intake import prepare_submission
from cml.instructor.cells import grade_id
from cml.instructor.web.sanitize import sanitize_html, sanitize_notebook, trusted_markdown

TEMPLATES = ["classic", "lab"]
# Vectors nbconvert's templates already render inert (they escape the text, show SVG as an image, skip unknown
# types): the sanitiser handles them for other renderers (JupyterLab, other templates).
ESCAPED_BY_NBCONVERT = {"latex", "png-not-an-image", "svg", "unknown-type", "widget-view"}


def _render(nb: nbformat.NotebookNode, template: str) -> tuple[str, str]:
    """The page and the same page around no cells."""
    exporter = HTMLExporter(template_name=template)
    page, _ = exporter.from_notebook_node(nb)
    skeleton, _ = exporter.from_notebook_node(nbformat.v4.new_notebook(metadata=nb.metadata))
    return page, skeleton


def _hostile_submission() -> nbformat.NotebookNode:
    notebook = add_markdown_vectors(student_notebook(True, answer_w=WRITTEN_ANSWER))
    notebook.cells.insert(3, with_outputs(nbformat.v4.new_code_cell("# the student's display cell")))
    return notebook


def _output_notebook(name: str) -> nbformat.NotebookNode:
    data, metadata = BUNDLES[name]
    cell = nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", data=data,
                                                                            metadata=metadata)])
    return nbformat.v4.new_notebook(cells=[cell])


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", list(BUNDLES))
def test_each_output_vector_is_found_and_made_inert(name: str, template: str) -> None:
    notebook = _output_notebook(name)
    if name not in ESCAPED_BY_NBCONVERT:
        assert active_content(*_render(notebook, template)), f"the check does not see {name} unsanitised"
    assert active_content(*_render(sanitize_notebook(notebook), template)) == []


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_hostile_submission_renders_inert(template: str) -> None:
    hostile = _hostile_submission()
    assert len(active_content(*_render(hostile, template))) > 20
    clean = sanitize_notebook(hostile, trusted_markdown([source_notebook(True)]))
    assert active_content(*_render(clean, template)) == []


@pytest.mark.parametrize("name", [*MARKDOWN_CELLS, "written-answer"])
def test_markdown_vectors_are_found_and_made_inert(name: str) -> None:
    cell = MARKDOWN_CELLS.get(name, {"source": WRITTEN_ANSWER})
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(**cell)])
    if name not in INERT_WHEN_RENDERED:
        assert active_content(*_render(notebook, "classic")), name
    assert active_content(*_render(sanitize_notebook(notebook), "classic")) == [], name


def test_what_grading_needs_survives() -> None:
    source = source_notebook(True)
    hostile = _hostile_submission()
    clean = sanitize_notebook(hostile, trusted_markdown([source]))
    # The instructor's markdown cells stay byte for byte; the code and the graded cells' metadata too.
    assert [c.source for c in clean.cells if c.source in trusted_markdown([source])] == \
           [c.source for c in hostile.cells if c.cell_type == "markdown" and c.source in trusted_markdown([source])]
    graded = {grade_id(c): c.metadata["nbgrader"] for c in hostile.cells if grade_id(c) and
              c.metadata["nbgrader"].get("grade_id") == grade_id(c) and "points" in c.metadata["nbgrader"]}
    assert {grade_id(c): c.metadata["nbgrader"] for c in clean.cells if grade_id(c) in graded} == graded
    assert [c.source for c in clean.cells if c.cell_type == "code"] == \
           [c.source for c in hostile.cells if c.cell_type == "code"]
    outputs = next(c for c in clean.cells if c.source == "# the student's display cell").outputs
    assert any(o.get("data", {}).get("image/png") == PNG for o in outputs)
    assert {o.output_type for o in outputs} == {"display_data", "stream", "error"}
    assert next(o for o in outputs if o.output_type == "error").traceback  # tracebacks are kept (escaped later)
    assert any("text/latex" in o.get("data", {}) for o in outputs)
    assert any(o.get("data", {}).get("text/plain") == "shown" for o in outputs)  # other types of a bundle stay
    # The written answer keeps its words and its emphasis, not its script.
    written = next(c for c in clean.cells if grade_id(c) == "answer_w")
    assert "<b>slopes</b>" in written.source and "$2x$" in written.source and "script" not in written.source
    # Pictures in markdown survive as data: images; an SVG one too (an SVG image runs nothing).
    assert "data:image/png;base64," in next(c.source for c in clean.cells if "A figure" in c.source)
    assert "data:image/svg+xml;base64," in next(c.source for c in clean.cells if "My diagram" in c.source)
    assert set(clean.metadata) <= {"kernelspec", "language_info"} and "widgets" not in clean.metadata


def test_tables_and_formatting_stay_in_html_outputs() -> None:
    table = "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td><b>1</b></td></tr></tbody></table>"
    assert sanitize_html(table) == table
    assert sanitize_html('<a href="https://example.org" onclick="x()">doc</a>') == \
        '<a href="https://example.org" rel="noopener noreferrer nofollow">doc</a>'


def test_sanitising_twice_changes_nothing() -> None:
    trusted = trusted_markdown([source_notebook(True)])
    once = sanitize_notebook(_hostile_submission(), trusted)
    assert sanitize_notebook(copy.deepcopy(once), trusted) == once


def test_rendering_inert_markdown_again_changes_nothing() -> None:
    """A sanitised markdown cell is stored as one line of HTML, which markdown renders unchanged."""
    clean = sanitize_notebook(_hostile_submission())
    exporter = HTMLExporter(template_name="classic")
    for cell in clean.cells:
        if cell.cell_type == "markdown":
            rendered = exporter.markdown2html({"cell": cell}, cell.source)
            assert rendered.strip() == cell.source.strip()


def _scored(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """As nbgrader's GetGrades leaves a notebook for the feedback template."""
    for cell in notebook.cells:
        if "nbgrader" in cell.metadata and cell.metadata["nbgrader"].get("grade"):
            cell.metadata["nbgrader"].update(score=1.0, comment=f"Well done <img src=x onerror=alert(1)> {cell.source[:5]}")
    return notebook


def test_feedback_pages_carry_a_policy_that_admits_only_the_template() -> None:
    resources = {"nbgrader": {"notebook": "probe", "score": 1, "max_score": 8, "late_penalty": 0}}
    page, out = InertHTMLExporter(config=feedback_config()).from_notebook_node(_scored(_hostile_submission()),
                                                                              copy.deepcopy(resources))
    policy = out[POLICY_RESOURCE]
    head = page[page.index("<head>"):page.index("</head>")]
    assert head.index('http-equiv="Content-Security-Policy"') < head.index("<script")  # before any script
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    assert directives["connect-src"] == "'none'" and directives["form-action"] == "'none'"
    assert directives["object-src"] == "'none'" and directives["frame-src"] == "'none'"
    plain, _ = HTMLExporter(config=feedback_config()).from_notebook_node(
        _scored(nbformat.v4.new_notebook(metadata=copy.deepcopy(NOTEBOOK_METADATA))), copy.deepcopy(resources))
    assert active_content(page, plain) == [f'<meta {[("content", policy), ("http-equiv", "Content-Security-Policy")]}>']


def test_the_policy_hashes_exactly_the_templates_scripts() -> None:
    template = '<script src="/static/a.js"></script><script>var x = 1;</script><span onclick="go()"></span>'
    policy = content_security_policy(template, origin="http://127.0.0.1:8888", connect=("http://127.0.0.1:8888/api/x/",))
    scripts = dict(part.strip().split(" ", 1) for part in policy.split(";"))["script-src"].split()
    assert scripts[0] == "http://127.0.0.1:8888/static/" and "'unsafe-hashes'" in scripts and len(scripts) == 4
    assert "connect-src http://127.0.0.1:8888/api/x/" in policy
    assert "frame-ancestors" not in policy and "frame-ancestors 'self'" in content_security_policy(template, header=True)


def test_grader_notes_quote_what_the_student_chose_as_text(tmp_path: Path) -> None:
    """The notes at the top of a repaired notebook quote a cell id the student invented: shown, not run."""
    folder = tmp_path / "probe"
    folder.mkdir()
    notebook = student_notebook()
    invented = nbformat.v4.new_code_cell("pass")
    invented.metadata["nbgrader"] = {"grade_id": "<img src=x onerror=document.title=1>", "grade": True, "points": 9}
    notebook.cells.append(invented)
    nbformat.write(notebook, folder / "probe.ipynb")
    report = prepare_submission(folder, {"probe.ipynb": source_notebook()})
    assert any("Grading metadata was removed" in note for note in report.notes)
    notes = nbformat.read(folder / "probe.ipynb", as_version=4).cells[0]
    page, skeleton = _render(nbformat.v4.new_notebook(cells=[notes]), "classic")
    assert active_content(page, skeleton) == [] and "&lt;img src=x onerror=document.title=1&gt;" in page


def test_student_folders_with_markup_in_their_names_are_not_graded(tmp_path: Path) -> None:
    for student in ("ada.lovelace@uni.edu", "<img src=x onerror=alert(1)>", "bob smith"):
        (tmp_path / "in" / student / "probe").mkdir(parents=True)
        nbformat.write(student_notebook(), tmp_path / "in" / student / "probe" / "probe.ipynb")
    notes = copy_submissions(tmp_path / "in", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["ada.lovelace@uni.edu"]
    assert len(notes) == 2 and all("not graded" in note for note in notes)


def test_raw_cells_become_text() -> None:
    """nbconvert cleans raw cells itself (with bleach); the sanitiser does not rely on it."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_raw_cell(RAW_CELL,
                                                                          metadata={"raw_mimetype": "text/html"})])
    clean = sanitize_notebook(notebook)
    assert clean.cells[0].cell_type == "markdown" and "&lt;script&gt;" in clean.cells[0].source
    assert active_content(*_render(clean, "lab")) == []
