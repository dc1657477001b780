"""The student's view, in a real browser: JupyterLab on loopback, driven by headless Chromium.

A student's copy of a *release* notebook (its exercises filled in, as a student hands it in) is
opened in JupyterLab 4 and run from the Run menu. The test checks that every cell ran without an
error, that figures rendered, that the interactive explorer rendered as a live widget, that moving
one of its sliders and pressing *Train* change its figure, and saves screenshots to
``build/browser/`` (or ``$CML_SCREENSHOTS``).

Chromium comes from Debian (:mod:`browser_support`). Without it the test is skipped with the reason, except
under CI, where it fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from browser_support import REPO, SCREENSHOTS, LabServer, headless_chromium, lab_server

from cml.instructor.course import Course
from cml.instructor.testing.submissions import Case, write_submission

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

# (assignment, number of figures the completed notebook shows at least)
NOTEBOOKS = [("01_neuron", 6), ("02_backprop", 6)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 with a private token, settings and workspace, serving a student folder."""
    root = tmp_path_factory.mktemp("student")
    settings = root / ".lab" / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell (no virtual scrolling), so that the page holds the whole notebook.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    with lab_server(root, root / ".lab") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as chromium:
        yield chromium


PROMPTS = """() => {
    const panels = [...document.querySelectorAll('.jp-NotebookPanel')].filter(p => !p.classList.contains('lm-mod-hidden'));
    if (panels.length !== 1) return null;
    return [...panels[0].querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim());
}"""
ALL_CELLS_RAN = f"() => {{ const p = ({PROMPTS})(); return p !== null && p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t)); }}"
SOME_CELL_RAN = f"() => {{ const p = ({PROMPTS})(); return p !== null && p.some(t => t !== '[ ]:'); }}"


def _run_all_cells(page: Any) -> None:
    """Run → Run All Cells, as a student would; once more if the notebook did not start (a missed click)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(2):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function(SOME_CELL_RAN, timeout=20_000, polling=250)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    try:
        page.wait_for_function(ALL_CELLS_RAN, timeout=300_000, polling=500)
    except PlaywrightTimeout:
        pytest.fail(f"not every cell ran; the prompts read {page.evaluate(PROMPTS)}")



@pytest.mark.parametrize(("assignment", "min_figures"), NOTEBOOKS, ids=[n[0] for n in NOTEBOOKS])
def test_student_runs_release_notebook_in_jupyterlab(
    lab: LabServer, browser: Any, assignment: str, min_figures: int
) -> None:
    course = Course(REPO)
    student_case = Case("student", assignment, "a student who completed every exercise", base="solution")
    (notebook_path,) = write_submission(student_case, course, lab.root / assignment)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(lab.notebook_url(notebook_path.relative_to(lab.root), workspace=assignment))
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)

        _run_all_cells(page)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)

        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert errors.count() == 0, "cells wrote errors:\n" + "\n".join(errors.all_inner_texts())[:2000]
        figures = page.locator(".jp-RenderedImage img")
        assert figures.count() >= min_figures, f"only {figures.count()} figures rendered"
        assert figures.first.evaluate("img => img.naturalWidth") > 100

        explorer = page.locator(".cml-explorer")
        assert explorer.count() == 1, "the explorer widget did not render"
        explorer.scroll_into_view_if_needed()
        picture = explorer.locator(".cml-explorer-figure")
        page.wait_for_function("img => img.naturalWidth > 0", arg=picture.element_handle())
        start_pixels = explorer.screenshot(path=SCREENSHOTS / f"{assignment}-explorer-start.png")

        # Drag the first data slider (number of points) to the right, as a student would with the mouse.
        first_source = picture.get_attribute("src")
        handle = explorer.locator(".widget-slider .noUi-handle").first
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + 60, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
        page.wait_for_function("([img, old]) => img.src !== old", arg=[picture.element_handle(), first_source])
        moved_pixels = explorer.screenshot(path=SCREENSHOTS / f"{assignment}-explorer-slider-moved.png")
        assert moved_pixels != start_pixels, "the explorer looks the same after moving a slider"

        moved_source = picture.get_attribute("src")
        explorer.get_by_role("button", name="Train").click()
        page.wait_for_function("([img, old]) => img.src !== old", arg=[picture.element_handle(), moved_source])
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        trained_pixels = explorer.screenshot(path=SCREENSHOTS / f"{assignment}-explorer-trained.png")
        assert trained_pixels != moved_pixels, "the explorer looks the same after training"
        page.screenshot(path=SCREENSHOTS / f"{assignment}-page.png")

        page.keyboard.press("Control+s")
        page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)
    except Exception:
        page.screenshot(path=SCREENSHOTS / f"{assignment}-failure.png")
        raise
    finally:
        page.close()

    saved = nbformat.read(notebook_path, as_version=4)
    code_cells = [cell for cell in saved.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells), "some cells were not run"
    assert not [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
    explorer_outputs = [o for cell in code_cells for o in cell.outputs if WIDGET_MIME in o.get("data", {})]
    assert len(explorer_outputs) == 1 and "image/png" in explorer_outputs[0].data
