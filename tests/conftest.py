"""Shared fixtures: the repository as a course, and a scratch course for tests that write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib
import nbformat
import pytest

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the instructor's modules need nbgrader: imported in the fixtures that use them, so the tests
    # of the students' side (cml.checks, cml.device, the benchmarks) also run where only a student's install is,
    # such as the GPU machine of the README's GPU section.
    from cml.instructor.course import Course

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("CML_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def course() -> Course:
    from cml.instructor.course import Course

    return Course(REPO)


MINI_COURSE = '''# %% [markdown]
# A tiny assignment.

# %% solution id=square
def square(x):
    """Square x."""
    ### BEGIN SOLUTION
    secret_value = x * x
    return secret_value
    ### END SOLUTION

# %% tests id=test_square points=1
"""square squares."""
from cml.checks import check_close
check_close("square.visible", square(3.0), 9.0)
### BEGIN HIDDEN TESTS
check_close("square.hidden_negative", square(-2.0), 4.0)
### END HIDDEN TESTS

# %% [markdown] manual id=why points=1
# Because multiplication by itself is the definition of a square.
'''


@pytest.fixture(scope="session")
def mini_course_template(tmp_path_factory: pytest.TempPathFactory, course: Course) -> Path:
    """The mini course with its release, built with nbgrader once per test process."""
    from cml.instructor.authoring.convert import script_to_notebook
    from cml.instructor.authoring.release import generate_release
    from cml.instructor.course import Course

    root = tmp_path_factory.mktemp("mini_course")
    (root / "source" / "mini").mkdir(parents=True)
    nbformat.write(script_to_notebook(MINI_COURSE), root / "source" / "mini" / "mini.ipynb")
    (root / "nbgrader_config.py").write_text((course.root / "nbgrader_config.py").read_text())
    mini = Course(root)
    generate_release(mini, mini.release)
    return root


@pytest.fixture()
def mini_course(tmp_path: Path, mini_course_template: Path) -> Course:
    """A private copy of the mini course (source and release) that a test may change."""
    from cml.instructor.course import Course

    root = tmp_path / "mini_course"
    shutil.copytree(mini_course_template, root)
    return Course(root)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The main job, ``cml-course demo``, run once: it checks the release and grades the example students with
    nbgrader. Tests in several files read its output and its workdir (grades, autograded notebooks, feedback)."""
    workdir = tmp_path_factory.mktemp("demo")
    completed = subprocess.run(
        [sys.executable, "-m", "cml.instructor.cli", "demo", "--workdir", str(workdir)],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )
    return completed, workdir


SHARED_SESSION_FIXTURES = ("demo_run", "mini_course_template")
"""Session fixtures that cost minutes or a nbgrader run: under xdist, their tests are kept on one worker."""

_GROUPS_FOLDER = pytest.StashKey[Path]()


def _test_group(item: pytest.Item) -> str | None:
    """The group of tests that must run on one xdist worker with ``item``, if any.

    The name of an ``xdist_group`` mark; else the first of SHARED_SESSION_FIXTURES that ``item`` uses; else
    its module's name if it uses a fixture of module scope (each worker would otherwise build that fixture anew).
    """
    marks = [mark.args[0] if mark.args else mark.kwargs.get("name", "default")
             for mark in item.iter_markers("xdist_group")]
    if marks:
        return str(marks[0])
    names = getattr(item, "fixturenames", ())
    shared = [name for name in SHARED_SESSION_FIXTURES if name in names]
    if shared:
        return shared[0]
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    for name in names if fixtureinfo is not None else ():
        fixturedefs = fixtureinfo.name2fixturedefs.get(name)
        if fixturedefs and fixturedefs[-1].scope == "module":
            return item.path.name
    return None


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and config.getoption("dist", "no") in ("load", "loadgroup"):
        config.stash[_GROUPS_FOLDER] = Path(tempfile.mkdtemp(prefix="cml-test-groups-"))


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_GROUPS_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Tell each xdist worker where to write the groups of the tests it collected (see below)."""
    folder = node.config.stash.get(_GROUPS_FOLDER, None)
    if folder is not None:
        node.workerinput["cml_test_groups"] = str(folder / f"{node.gateway.id}.json")


RUN_LAST = ("test_cases.py", "test_checks.py", "test_data.py", "test_audio.py", "test_plot_device.py",
            "test_torch_checks.py", "test_intake.py", "test_package.py")
"""Modules run after the others, in this order: many short tests (the cases, then unit tests that start no
kernel), which even out the workers' finishing times. A long test scheduled last keeps the other worker idle."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the modules of RUN_LAST last; on an xdist worker, write ``{test id: group}`` (see :func:`_test_group`)
    for the controller's scheduler."""
    items.sort(key=lambda item: RUN_LAST.index(item.path.name) + 1 if item.path.name in RUN_LAST else 0)
    target = getattr(config, "workerinput", {}).get("cml_test_groups")
    if target:
        groups = {item.nodeid: group for item in items if (group := _test_group(item)) is not None}
        partial = Path(f"{target}.partial")
        partial.write_text(json.dumps(groups))
        partial.replace(target)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Schedule ``-n N`` (``--dist load``, the default) as ``--dist loadgroup`` means to: tests of one group (see
    :func:`_test_group`) run on one worker, so that its shared fixtures are built once; groups go out largest
    first, then the other tests one by one, in their order.

    xdist's own ``loadgroup`` gives no grouping under pytest 9.2 (it renames test ids through a field that pytest
    no longer reads: pytest-xdist issue 1386), and plain ``load`` sent the tests of one module to both workers,
    each of which then built the module's fixtures (the demo, the class grading of test_classgrade) itself.
    """
    folder = config.stash.get(_GROUPS_FOLDER, None)
    if folder is None:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # the workers wrote their files before reporting their collection
                self.groups = {}
                for path in sorted(folder.glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            group = self.groups.get(nodeid)
            return f"group {group}" if group is not None else nodeid

    return SharedFixtureScheduling(config, log)
