"""What every file the class analytics write for a person to open shares: the pages' policy and the CSVs' guard.

The pages (the class report, the similarity report) hold student text and run no script at all; the CSVs hold
student text too, and a spreadsheet must not run any of it as a formula.
"""

from __future__ import annotations

__all__ = ["FORMULA_STARTS", "PAGE_POLICY", "spreadsheet_safe"]

PAGE_POLICY = "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"
"""The Content-Security-Policy of every analytics page: no scripts, no requests, images inline or beside it."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters by which a spreadsheet reads a text cell as a formula."""


def spreadsheet_safe(text: str) -> str:
    """``text`` prefixed with ``'`` when a spreadsheet would read it as a formula (it starts with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return); other text unchanged."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
