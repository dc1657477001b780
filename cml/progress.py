"""Progress bars for training loops that behave in JupyterLab, in a terminal and under the grader.

Under the autograder (``CML_NO_PROGRESS=1``) bars are disabled: tqdm writes to stderr, and nbgrader
scores a grade cell zero when anything reaches stderr.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["progress", "progress_disabled"]

T = TypeVar("T")


def progress_disabled() -> bool:
    """Whether bars are switched off by the ``CML_NO_PROGRESS`` environment variable."""
    return os.environ.get("CML_NO_PROGRESS", "") not in ("", "0")


def progress(iterable: Iterable[T], *, description: str | None = None, total: int | None = None,
             **tqdm_options: Any) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar (a widget in notebooks, text elsewhere) unless bars are disabled."""
    if progress_disabled():
        return iter(iterable)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=description, total=total, leave=False, **tqdm_options))
