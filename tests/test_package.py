"""The package imports fast, keeps heavy frameworks lazy, and exports what it lists; a student's install (no
``instructor`` extra) imports it and gets an install hint from ``cml-course``; the extra lists what the instructor's
tools import."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cml.instructor.entry import INSTRUCTOR_IMPORTS

MODULES = ["cml", "cml.checks", "cml.data", "cml.plot", "cml.device", "cml.progress"]
INSTRUCTOR_MODULES = sorted(
    ".".join(path.relative_to(Path(__file__).resolve().parents[1]).with_suffix("").parts).removesuffix(".__init__")
    for path in (Path(__file__).resolve().parents[1] / "cml" / "instructor").rglob("*.py")
    if path.name not in ("__init__.py", "_zygote.py", "__main__.py"))
"""Every module of the instructor's tools (``_zygote.py`` is a script, run by path)."""
STUDENT_MODULES = ["cml.checks", "cml.data", "cml.plot", "cml.tasks", "cml.device", "cml.audio", "cml.progress",
                   "cml.check_log", "cml.gradcheck", "cml.selfcheck"]
ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"scikit-learn": "sklearn", "ipython": "IPython"}
"""Distributions whose top-level import name is not their canonical name with ``-`` written ``_``."""


def test_import_is_lazy() -> None:
    """``import cml`` and the modules every notebook imports load neither torch nor JAX (each costs seconds); the
    time the import takes is a benchmark figure (``benchmarks/run.py``), not a test."""
    code = ("import cml, cml.checks, cml.data, cml.device, cml.progress; import sys; "
            "print('torch' in sys.modules, 'jax' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


@pytest.mark.parametrize("name", MODULES + INSTRUCTOR_MODULES)
def test_every_exported_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.__all__ lists {attribute!r}, which does not exist"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"


def test_unknown_attribute_is_an_error() -> None:
    import cml

    with pytest.raises(AttributeError):
        cml.no_such_module  # noqa: B018


def _run_without(blocked: set[str] | frozenset[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which importing any of the ``blocked`` packages fails as if absent."""
    block = f"import sys\nfor _name in {sorted(blocked)!r}:\n    sys.modules[_name] = None\n"
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, cwd=ROOT)


def test_cml_course_without_the_instructor_extra_says_what_to_install() -> None:
    """A student's install has the ``cml-course`` command but not nbgrader: a hint and status 2, no traceback."""
    result = _run_without({"nbgrader"}, "from cml.instructor.entry import main\nsys.exit(main(['demo']))")
    assert result.returncode == 2, result.stderr
    assert "'nbgrader'" in result.stderr
    assert 'pip install "cml-course[instructor]"' in result.stderr
    assert 'pip install -c constraints.txt -e ".[instructor]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_cml_course_reports_other_missing_modules_as_errors() -> None:
    """A module the instructor extra does not install is a real error, not a missing extra: it is not hidden."""
    result = _run_without({"nbformat"}, "from cml.instructor.entry import main\nsys.exit(main(['demo']))")
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr and "cml-course[instructor]" not in result.stderr


def test_student_modules_import_without_the_instructor_extra() -> None:
    """What the notebooks import works on a student's install, which has none of the instructor extra."""
    result = _run_without(INSTRUCTOR_IMPORTS, f"import {', '.join(STUDENT_MODULES)}")
    assert result.returncode == 0, result.stderr


def test_device_tests_collect_without_the_instructor_extra() -> None:
    """The GPU checks of the README's *GPU* section run where only a student's install is (a GPU machine without
    nbgrader): the shared fixtures import the instructor's modules only when a test asks for them."""
    files = ["tests/test_torch_checks.py", "tests/test_plot_device.py", "tests/test_benchmarks.py"]
    result = _run_without(INSTRUCTOR_IMPORTS, f"import pytest\nsys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                                              f"'--collect-only', '-k', 'cuda or gpu or device', *{files!r}]))")
    assert result.returncode == 0, result.stdout + result.stderr
    collected = re.search(r"(\d+)/\d+ tests collected", result.stdout)
    assert collected and int(collected.group(1)) >= 10 and " error" not in result.stdout, result.stdout


def test_formgrader_guard_only_logs_without_nbgrader() -> None:
    """Every Jupyter server of the environment loads the guard, a student's too: without nbgrader it logs one line."""
    code = """
import logging, types
from cml.instructor.web import formgrader_guard
records = []
log = logging.getLogger("guard")
log.addHandler(type("H", (logging.Handler,), {"emit": lambda self, record: records.append(record)})())
log.setLevel(logging.INFO)
loop = types.SimpleNamespace(add_callback=lambda *args: sys.exit("the guard was scheduled"))
formgrader_guard._load_jupyter_server_extension(types.SimpleNamespace(log=log, io_loop=loop))
assert [record.levelno for record in records] == [logging.INFO], records
"""
    result = _run_without({"nbgrader"}, code)
    assert result.returncode == 0, result.stderr


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as stream:
        return tomllib.load(stream)


def _import_name(requirement: str) -> str:
    """The top-level package a requirement such as ``psycopg[binary]>=3.1`` installs."""
    name = canonicalize_name(Requirement(requirement).name)
    return IMPORT_NAMES.get(name, name.replace("-", "_"))


def _third_party_imports(files: list[Path]) -> set[str]:
    """Top-level packages that ``files`` import, less the standard library and ``cml`` itself."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"cml"}


def _requirement_closure(roots: list[str]) -> set[str]:
    """The import names of ``roots`` and of everything they require, transitively, as installed here."""
    seen: set[str] = set()
    pending = [canonicalize_name(root) for root in roots]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return {_import_name(name) for name in seen}


JUPYTER_STACK = {"nbformat", "nbconvert", "nbclient", "jupyter_client", "traitlets", "ipykernel", "IPython",
                 "sqlalchemy"}
"""Packages ``cml.instructor`` imports without listing them: nbgrader is built on them and pins them itself
(sqlalchemy is its gradebook); all but sqlalchemy come with JupyterLab already. Listing them again would only
add a second, looser pin to keep in step with nbgrader's."""


def test_instructor_extra_lists_what_the_instructor_tools_import() -> None:
    """Every third-party package under ``cml/instructor`` is a base dependency, the extra's, or nbgrader's own."""
    project = _pyproject()["project"]
    base = {_import_name(requirement) for requirement in project["dependencies"]}
    extra = {_import_name(requirement) for requirement in project["optional-dependencies"]["instructor"]}
    imported = _third_party_imports(sorted((ROOT / "cml" / "instructor").rglob("*.py")))
    assert imported - base - extra - JUPYTER_STACK == set()
    assert JUPYTER_STACK <= _requirement_closure(["nbgrader"])
    assert extra <= INSTRUCTOR_IMPORTS, "cml-course would not give its install hint when these are missing"


def test_student_modules_need_only_the_base_dependencies() -> None:
    """The modules under ``cml`` outside ``cml/instructor`` import only what a student's install has."""
    files = [path for path in sorted((ROOT / "cml").rglob("*.py")) if "instructor" not in path.parts]
    requirements = [Requirement(line).name for line in _pyproject()["project"]["dependencies"]]
    assert _third_party_imports(files) - _requirement_closure(requirements) == set()


def _module_imports() -> dict[str, set[tuple[str, str | None]]]:
    """For every module of ``cml``: the ``cml`` modules it imports at module level (outside ``TYPE_CHECKING``), each
    with the name taken from it (``from X import name``) or None (``import X``, ``from package import module``)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    modules = {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
               for path in (root / "cml").rglob("*.py")}
    imports: dict[str, set[tuple[str, str | None]]] = {}
    for name, path in modules.items():
        found: set[tuple[str, str | None]] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found |= {(alias.name, None) for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add((submodule, None) if submodule in modules else (node.module, alias.name))
        imports[name] = found
    return imports


def test_no_module_imports_a_private_name_of_another() -> None:
    private = sorted(f"{module} imports {name} from {source}" for module, found in _module_imports().items()
                     for source, name in found if name and name.startswith("_") and not name.startswith("__"))
    assert not private, private


def test_the_modules_of_cml_import_each_other_without_a_cycle() -> None:
    graph = {module: {source for source, _ in found} for module, found in _module_imports().items()}
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
