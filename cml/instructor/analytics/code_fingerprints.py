"""Fingerprints of a code cell that survive renaming, new comments and new layout (MOSS's winnowing).

A cell becomes a list of tokens, read by one regular-expression lexer:

* IPython ``%magic`` and ``!shell`` lines are blanked (line numbers hold);
* comments, whitespace, line breaks and continuations vanish, so layout does not count;
* a string alone on its logical line (at bracket depth 0) is a statement that does nothing, a docstring or a
  comment in disguise: it is dropped;
* every name becomes the placeholder ``V`` except keywords, builtins, attributes (``np.exp`` keeps ``exp``),
  imported module names and keyword-argument names of calls (``sum(axis=0)`` keeps ``axis``). One placeholder
  for all, as MOSS does, rather than one per name numbered by first appearance: a numbering shifts every later
  name when a copier adds one variable at the top, and would hide the rest of the copy;
* strings keep their text (not their quotes); numbers are spelled canonically (``1.`` is ``1.0``, ``0x10`` 16).

Why not ``ast.parse`` and ``ast.unparse``: parsing costs 0.4 to 0.8 ms a 12-line cell on the course machine,
unparsing as much again, which made 1,000 students x 6 assignments x 15 cells take minutes instead of seconds;
the lexer gives the same tokens as an unparsed tree except for redundant parentheses (two tokens each), reads a
cell that does not parse the same way (no separate fallback), and keeps the student's line numbers, which the
side-by-side view marks.

Each run of ``k`` tokens (a k-gram) is hashed: tokens by blake2b (stable, unlike Python's salted ``hash``),
k-grams by a polynomial over the token hashes salted with the cell id, so that the same code in another cell
is another fingerprint. **Winnowing** (Schleimer, Wilkerson and Aiken, SIGMOD 2003) keeps the rightmost
minimum of each window of ``window`` consecutive hashes: any match of at least ``k + window - 1`` tokens
shares at least one kept fingerprint, and matches shorter than ``k`` are noise that never counts. All cells of
a class are hashed and winnowed in one NumPy pass (:func:`segment_kgrams`, :func:`segment_winnow`).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import keyword
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import numpy as np

__all__ = ["KGRAM_TOKENS", "MAX_CELL_CHARS", "PLACEHOLDER", "WINDOW", "CellTokens", "cell_salt", "kgram_hashes",
           "matched_lines", "segment_kgrams", "segment_winnow", "token_hash", "tokenize_cell", "winnow"]

KGRAM_TOKENS = 5
"""Tokens per k-gram: ``x = V . exp (`` is five; shorter runs are too common to mean anything."""
WINDOW = 4
"""Hashes per winnowing window: a match of ``KGRAM_TOKENS + WINDOW - 1 = 8`` tokens is always seen."""
MAX_CELL_CHARS = 200_000
"""A longer cell is read up to here (a student can paste megabytes)."""
PLACEHOLDER = "V"

_KEPT_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist)
_TOKEN = re.compile(r"""
    \n
  | [^\W\d]\w*
  | \*\*=? | //=? | >>=? | <<=? | -> | := | [-+*/%@&|^=<>!]= | [^\s\w\\'"\#]
  | 0[xXoObB][\da-fA-F_]+ | (?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJ]?
  | \'\'\'(?:\\.|[^\\])*?\'\'\' | \"\"\"(?:\\.|[^\\])*?\"\"\" | '(?:\\.|[^'\\\n])*' | "(?:\\.|[^"\\\n])*"
  | \#[^\n]*
""", re.VERBOSE)
"""Line breaks, names, operators, numbers, strings, comments; spaces and stray characters fall between."""
_MAGIC_LINE = re.compile(r"(?m)^[ \t]*[%!].*$")
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_BASE = np.uint64(0x100000001B3)


@dataclass(frozen=True)
class CellTokens:
    """A cell's normalised tokens, their hashes, and the 1-based line of the cell each comes from."""

    texts: tuple[str, ...]
    hashes: np.ndarray
    """``uint64``, one per token (:func:`token_hash`)."""
    lines: np.ndarray
    """The line of each token, when :func:`tokenize_cell` was asked for them (else empty)."""


def tokenize_cell(source: str, *, with_lines: bool = False) -> CellTokens:
    """The normalised tokens of a code cell (see the module docstring), with their lines if asked (the index does
    without them). Never raises."""
    raw = _TOKEN.findall(_MAGIC_LINE.sub("", source[:MAX_CELL_CHARS]))
    normal = _normalise(raw)
    texts = list(filter(None, normal))
    hashes = np.fromiter(map(token_hash, texts), dtype=np.uint64, count=len(texts))
    lines = np.zeros(0, dtype=np.int64)
    if with_lines:
        line_starts = accumulate((text.count("\n") if text[0] in "\n'\"" else 0 for text in raw), initial=1)
        lines = np.array([line for token, line in zip(normal, line_starts) if token], dtype=np.int64)
    return CellTokens(tuple(texts), hashes, lines)


@lru_cache(maxsize=1 << 18)
def _token_normal(text: str) -> str:
    """A token's normal form out of context: "" for a comment, the placeholder for a name not kept."""
    first = text[0]
    if first in "#\n":
        return ""
    if first in "'\"":
        quote = text[:3] if text[:3] in ('"""', "'''") else first
        return "S:" + text[len(quote): len(text) - len(quote)][:80]
    if first.isidentifier():
        return text if text in _KEPT_NAMES else PLACEHOLDER
    if first.isdigit() or (first == "." and len(text) > 1):
        try:
            return repr(ast.literal_eval(text))
        except (ValueError, SyntaxError, MemoryError):
            return text.lower()
    return text


_CONTEXT_TOKENS = frozenset({".", "import", "from", "(", "[", "{", ")", "]", "}", "=", "def", "class"})


def _normalise(raw: list[str]) -> list[str]:
    """The lexer's tokens (line breaks and comments among them) normalised: names to the placeholder except the
    kept ones, strings and numbers spelled canonically; "" for a line break, a comment, a string statement.

    Most tokens are normalised out of context (cached); one pass over the few that set a context (dots,
    brackets, ``=``, strings) restores attribute, import and keyword-argument names and drops string statements.
    """
    normal = [_token_normal(text) for text in raw]
    brackets: list[str] = []  # "call", "def" or "other" for each open bracket
    count = len(raw)
    for index in [index for index, text in enumerate(raw) if text in _CONTEXT_TOKENS or text[0] in "'\""]:
        text = raw[index]
        following = raw[index + 1] if index + 1 < count else "\n"
        if text in (".", "import", "from"):
            if following[0].isidentifier():
                normal[index + 1] = following
        elif text == "(":
            previous = raw[index - 1] if index else ""
            brackets.append("def" if index >= 2 and raw[index - 2] in ("def", "class") else
                            "call" if previous[:1].isidentifier() or previous in (")", "]") else "other")
        elif text in ("[", "{"):
            brackets.append("other")
        elif text in (")", "]", "}"):
            if brackets:
                brackets.pop()
        elif text == "=":
            if brackets and brackets[-1] == "call" and index and raw[index - 1][0].isidentifier():
                normal[index - 1] = raw[index - 1]
        elif text[0] in "'\"" and not brackets and (index == 0 or raw[index - 1] in ("\n", ";")):
            # a string alone on its logical line is a statement that does nothing: a docstring, or a comment
            end = index + 1
            while end < count and raw[end][0] == "#":
                end += 1
            if end == count or raw[end] in ("\n", ";"):
                normal[index] = ""
    return normal


@lru_cache(maxsize=1 << 18)
def token_hash(text: str) -> int:
    """A stable 64-bit hash of a token (blake2b; Python's own ``hash`` of a string changes from run to run)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def cell_salt(cell: str) -> int:
    """What a cell id mixes into its k-gram hashes."""
    return token_hash("\0cell:" + cell)


def segment_kgrams(token_hashes: np.ndarray, lengths: np.ndarray, salts: np.ndarray, k: int = KGRAM_TOKENS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The k-gram hashes of cells laid end to end (``lengths`` tokens each, ``salts`` per cell), and the cell
    index of each; no k-gram straddles two cells, a cell shorter than ``k`` has none."""
    total = len(token_hashes)
    count = total - k + 1
    if count <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    hashes = np.zeros(count, dtype=np.uint64)
    for offset in range(k):
        hashes = hashes * _BASE + token_hashes[offset: offset + count]
    segment = np.repeat(np.arange(len(lengths)), lengths)
    inside = segment[:count] == segment[k - 1:]
    hashes, segment = hashes[inside], segment[:count][inside]
    hashes ^= np.asarray(salts, dtype=np.uint64)[segment]
    # splitmix64's finaliser: the minimum of a window is then a fair random pick
    hashes ^= hashes >> np.uint64(30)
    hashes *= _MIX_1
    hashes ^= hashes >> np.uint64(27)
    hashes *= _MIX_2
    hashes ^= hashes >> np.uint64(31)
    return hashes, segment


def segment_winnow(hashes: np.ndarray, segment: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """The fingerprints winnowing keeps (the rightmost minimum of each window of ``window`` hashes within a cell;
    the minimum of a shorter cell), each once per cell: (fingerprints, their cell index), sorted by cell."""
    if len(hashes) == 0:
        return hashes, segment
    chosen = np.zeros(len(hashes), dtype=bool)
    if len(hashes) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(hashes, window)
        inside = segment[: len(windows)] == segment[window - 1:]
        rightmost_minimum = window - 1 - np.argmin(windows[:, ::-1], axis=1)
        chosen[(np.arange(len(windows)) + rightmost_minimum)[inside]] = True
    first = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    sizes = np.diff(np.r_[first, len(hashes)])
    for start, size in zip(first[sizes < window].tolist(), sizes[sizes < window].tolist()):
        cell = hashes[start: start + size]
        chosen[start + np.flatnonzero(cell == cell.min())[-1]] = True
    fingerprints, owners = hashes[chosen], segment[chosen]
    order = np.lexsort((fingerprints, owners))
    fingerprints, owners = fingerprints[order], owners[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (fingerprints[1:] != fingerprints[:-1]) | (owners[1:] != owners[:-1])
    return fingerprints[keep], owners[keep]


def kgram_hashes(tokens: CellTokens, cell: str = "", k: int = KGRAM_TOKENS) -> np.ndarray:
    """The hash of every k-gram of one cell's tokens, in order (``uint64``)."""
    return segment_kgrams(tokens.hashes, np.array([len(tokens.hashes)]), np.array([cell_salt(cell)], np.uint64),
                          k)[0]


def winnow(hashes: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """The fingerprints winnowing keeps from one cell's k-gram hashes: sorted, each once (``uint64``)."""
    return segment_winnow(hashes, np.zeros(len(hashes), np.int64), window)[0]


def matched_lines(tokens: CellTokens, hashes: np.ndarray, shared: np.ndarray, k: int = KGRAM_TOKENS) -> set[int]:
    """The lines of the cell covered by a k-gram whose hash is in ``shared`` (``hashes`` from :func:`kgram_hashes`)."""
    lines: set[int] = set()
    for start in np.flatnonzero(np.isin(hashes, shared)):
        lines.update(tokens.lines[start: start + k].tolist())
    return lines
