"""``cml-course``: :func:`cml.instructor.cli.main`, or an install hint where the instructor extra is missing.

A student's ``pip install cml-course`` installs the package and this command but not nbgrader and the other
instructor tools (the ``instructor`` extra). Run there, the command would end in a traceback about a missing
module; this entry point says instead which module is missing and what to install.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["INSTRUCTOR_IMPORTS", "INSTALL_HINT", "main"]

INSTRUCTOR_IMPORTS = frozenset({
    "nbgrader",
    "nh3",
    "jupyter_server_mathjax",
    "distributed",
    "dask",
    "psycopg",
    "psutil",
    "sqlalchemy",
    "alembic",
})
"""Top-level import names that only the ``instructor`` extra installs (its packages and what they bring)."""

INSTALL_HINT = (
    'Install the instructor extra:\n'
    '    pip install "cml-course[instructor]"\n'
    'or, from a clone of the repository:\n'
    '    pip install -c constraints.txt -e ".[instructor]"'
)


def _missing_instructor_package(error: ModuleNotFoundError) -> str | None:
    """The top-level package of the module ``error`` names when the instructor extra installs it, else ``None``."""
    package = (error.name or "").partition(".")[0]
    return package if package in INSTRUCTOR_IMPORTS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cml-course`` with ``argv``; 2, with an install hint on stderr, when the instructor extra is missing.

    ``cml-course check NOTEBOOK`` is the students' command: it needs no instructor tool, so it runs without them.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["check"]:
        from cml import selfcheck

        return selfcheck.main(arguments[1:], prog="cml-course check")
    try:
        from cml.instructor import cli
    except ModuleNotFoundError as error:
        missing = _missing_instructor_package(error)
        if missing is None:
            raise
        print(f"cml-course: the instructor tools need the package {missing!r}, which is not installed ({error}).\n"
              f"{INSTALL_HINT}", file=sys.stderr)
        return 2
    return cli.main(None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
