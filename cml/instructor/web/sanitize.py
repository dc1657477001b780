"""Make a graded notebook inert before any browser renders it: no student script runs in the instructor's browser.

Everything a grading kernel produced is untrusted (student code can display anything, or patch the display
machinery, so the outputs of the instructor's own cells are untrusted too), and so are the notebook's markdown
cells, attachments and metadata. :func:`sanitize_notebook` rewrites a notebook so that the HTML nbconvert makes
of it (the formgrader's manual-grading page, the students' feedback) holds nothing active:

* **outputs** keep plain text, tracebacks and streams (nbconvert escapes them), PNG and JPEG images whose
  data really is base64 (and numeric sizes), LaTeX (escaped by nbconvert, typeset by MathJax's ``Safe``
  configuration), and HTML after :func:`sanitize_html` (tables, text formatting, images from ``data:`` URLs);
  markdown outputs become sanitised HTML, SVG becomes an ``<img>`` of itself (an SVG image runs no script and
  loads nothing). Every other type (``application/javascript``, widget views, any other ``application/*``)
  is dropped; an output left with nothing to show says what was removed;
* **markdown cells** that are not the instructor's own (byte for byte a markdown cell of the source notebook)
  are rendered the way nbconvert renders them, sanitised, and stored as that HTML, on one line so that
  rendering it again as markdown passes it through unchanged; their attachments (already embedded as
  ``data:`` images by the rendering) go;
* **raw cells** other than the instructor's become markdown cells showing their text;
* **metadata**: cells keep only well-formed nbgrader metadata and a well-formed id, the notebook only the
  kernel's and language's names.

The sanitiser is `ammonia <https://github.com/rust-ammonia/ammonia>`_, through :mod:`nh3`: an allow-list
parser, never a regular expression. :class:`SanitizeNotebook` is the same as an nbgrader preprocessor, for the
end of ``Autograde`` and for ``GenerateFeedback``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat
import nh3
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

__all__ = [
    "SANITISED_CLASS",
    "SOURCE_RESOURCE",
    "SanitizeNotebook",
    "escape_markdown",
    "inert_markdown",
    "instructor_notebooks",
    "sanitize_html",
    "sanitize_notebook",
    "trusted_markdown",
]

SANITISED_CLASS = "cml-sanitised"
"""Class of the ``<div>`` a sanitised markdown cell or output is wrapped in."""
SOURCE_RESOURCE = "cml_source_notebook"
"""``resources`` key that may name the instructor's notebook (its markdown cells are shown as they are)."""

_TAGS = nh3.ALLOWED_TAGS - {"area", "map"}
# No ids: a student's element named like a global of the page would shadow it (DOM clobbering).
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()} | {"*": {"class", "title"}}
_IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]*\Z")
_SAFE_LINK = re.compile(r"(https?:|mailto:)", re.IGNORECASE)
_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_GRADE_ID = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")
_NBGRADER_TYPES = {"grade": bool, "solution": bool, "locked": bool, "task": bool, "points": (int, float),
                   "schema_version": int, "grade_id": str, "checksum": str, "cell_type": str,
                   # added by nbgrader's GetGrades for the feedback
                   "score": (int, float, type(None)), "comment": (str, type(None))}
_KEPT_MIME = ("text/plain", "text/html", "text/latex", "image/png", "image/jpeg")
_IMAGE_SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "src":
        # Only images carried in the page itself: a remote or relative source would be a request the student
        # chose, made from the instructor's browser (to the Jupyter server itself, say).
        return value if tag == "img" and _IMAGE_DATA.match(value) else None
    if attribute in ("href", "cite"):
        return value if _SAFE_LINK.match(value.strip()) else None
    return value


def sanitize_html(markup: str) -> str:
    """``markup`` with only inert HTML left: no script, style, event handler, frame, form, object, SVG or
    MathML element, no ``javascript:`` or relative URL, images only from ``data:`` URLs, no ids.

    >>> sanitize_html('<b onclick="x()">bold</b><img src=x onerror=alert(1)><script>alert(2)</script>')
    '<b>bold</b><img>'
    """
    return nh3.clean(markup, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_attribute_filter,
                     url_schemes={"http", "https", "mailto", "data"}, url_relative="deny",
                     clean_content_tags={"script", "style"},
                     link_rel="noopener noreferrer nofollow")


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def escape_markdown(text: str) -> str:
    """``text`` as markdown that shows exactly ``text``: no markup, link or HTML of its own (file names the
    student chose, say).

    >>> escape_markdown("<b>bold</b>")
    '&lt;b&gt;bold&lt;/b&gt;'
    """
    return html.escape(_MARKDOWN_PUNCTUATION.sub(r"\\\1", text), quote=False)


def _one_line(markup: str) -> str:
    """The same HTML on one line (newlines as character references), wrapped in a ``<div>``: a markdown
    renderer passes such a line through untouched (an HTML block ends only at a blank line)."""
    line = markup.strip().replace("\r", "").replace("\n", "&#10;")
    opening = f'<div class="{SANITISED_CLASS}">'
    if line.startswith(opening) and line.endswith("</div>"):
        return line
    return opening + line + "</div>"


def inert_markdown(source: str, attachments: dict | None = None) -> str:
    """Markdown rendered as nbconvert renders it (attachments embedded), sanitised, as one line of HTML."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=False, attachments=_image_attachments(attachments), embed_images=False)
    try:
        rendered = MarkdownWithMath(renderer=renderer).render(source)
    except Exception:  # noqa: BLE001 - a missing attachment, a pathological nesting: show the text as it is
        rendered = f"<pre>{html.escape(source)}</pre>"
    return _one_line(sanitize_html(rendered))


def _image_attachments(attachments: Any) -> dict:
    if not isinstance(attachments, dict):
        return {}
    kept = {}
    for name, bundle in attachments.items():
        if isinstance(name, str) and isinstance(bundle, dict):
            images = {mime: data for mime, data in bundle.items() if _is_image(mime, data)}
            if images:
                kept[name] = images
    return kept


def _is_image(mime: str, data: Any) -> bool:
    """Base64 of an image of that type (PNG, JPEG; for attachments also SVG, which runs nothing as an image):
    nothing else may reach ``<img src="data:...">``."""
    if mime not in _IMAGE_SIGNATURES and mime != "image/svg+xml":
        return False
    if isinstance(data, list):
        data = "".join(part for part in data if isinstance(part, str))
    if not isinstance(data, str):
        return False
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(_IMAGE_SIGNATURES.get(mime, b""))


def _number(value: Any, kind: type | tuple[type, ...] = int) -> Any:
    """``value`` if it is a number of ``kind`` (never a bool, which Python counts as an int), else ``None``."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return value if isinstance(value, str) else str(value)


def _image_metadata(metadata: Any) -> dict:
    """Only numeric sizes of images survive (nbconvert writes them into the ``<img>`` tag unescaped)."""
    kept: dict = {}
    if not isinstance(metadata, dict):
        return kept
    for mime in ("image/png", "image/jpeg"):
        sizes = metadata.get(mime)
        if isinstance(sizes, dict):
            numeric = {key: sizes[key] for key in ("width", "height") if _number(sizes.get(key), (int, float)) is not None}
            if numeric:
                kept[mime] = numeric
    return kept


def _sanitize_bundle(data: Any) -> tuple[dict, list[str]]:
    """A mime bundle with only inert representations; also the types that were removed."""
    if not isinstance(data, dict):
        return {}, ["malformed output"]
    kept: dict = {}
    removed = []
    for mime, value in data.items():
        if mime in ("image/png", "image/jpeg"):
            if _is_image(mime, value):
                kept[mime] = "".join(_text(value).split())
            else:
                removed.append(f"{mime} (not an image)")
        elif mime == "text/html":
            kept[mime] = _one_line(sanitize_html(_text(value)))
        elif mime == "text/markdown":
            kept.setdefault("text/html", inert_markdown(_text(value)))
        elif mime == "image/svg+xml":
            encoded = base64.b64encode(_text(value).encode()).decode()
            kept.setdefault("text/html", _one_line(f'<img src="data:image/svg+xml;base64,{encoded}">'))
        elif mime in _KEPT_MIME:
            kept[mime] = _text(value)
        else:
            removed.append(str(mime))
    return kept, removed


def _sanitize_output(output: Any) -> NotebookNode | None:
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(output.get("text", "")))
    if kind == "error":
        traceback = output.get("traceback", [])
        return nbformat.v4.new_output("error", ename=_text(output.get("ename", "")), evalue=_text(output.get("evalue", "")),
                                      traceback=[_text(line) for line in traceback] if isinstance(traceback, list) else [])
    if kind in ("display_data", "execute_result"):
        data, removed = _sanitize_bundle(output.get("data", {}))
        if not data:
            data = {"text/plain": f"[output removed by the grader: {', '.join(removed) or 'nothing to show'}]"}
        result = nbformat.v4.new_output(kind, data=data, metadata=_image_metadata(output.get("metadata")))
        if kind == "execute_result":
            result.execution_count = _number(output.get("execution_count"))
        return result
    return None


def _nbgrader_metadata(metadata: Any) -> dict | None:
    if not isinstance(metadata, dict):
        return None
    kept = {key: value for key, value in metadata.items() if key in _NBGRADER_TYPES
            and isinstance(value, _NBGRADER_TYPES[key]) and not (isinstance(value, bool) and _NBGRADER_TYPES[key] is not bool)}
    if "grade_id" in kept and not _GRADE_ID.match(kept["grade_id"]):
        return None
    if kept.get("comment"):
        kept["comment"] = inert_markdown(kept["comment"])  # the feedback renders it as markdown
    return kept


def _sanitize_cell(cell: Any, trusted: frozenset[str]) -> NotebookNode | None:
    if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
        return None
    source = _text(cell.get("source", ""))
    metadata = {}
    nbgrader = _nbgrader_metadata(cell.get("metadata", {}).get("nbgrader") if isinstance(cell.get("metadata"), dict) else None)
    if nbgrader:
        metadata["nbgrader"] = nbgrader
    identifier = cell.get("id")
    identifier = identifier if isinstance(identifier, str) and _CELL_ID.match(identifier) else uuid.uuid4().hex[:12]
    if cell["cell_type"] == "code":
        outputs = [clean for clean in (_sanitize_output(output) for output in cell.get("outputs") or []) if clean]
        return nbformat.v4.new_code_cell(source, id=identifier, metadata=metadata, outputs=outputs,
                                         execution_count=_number(cell.get("execution_count")))
    if cell["cell_type"] == "markdown":
        if source not in trusted:
            source = inert_markdown(source, cell.get("attachments"))
        return nbformat.v4.new_markdown_cell(source, id=identifier, metadata=metadata)
    if source in trusted:
        return nbformat.v4.new_raw_cell(source, id=identifier, metadata=metadata)
    # A raw cell's text goes into the page as it is: shown instead as text, in a markdown cell.
    return nbformat.v4.new_markdown_cell(_one_line(sanitize_html(f"<pre>{html.escape(source)}</pre>")), id=identifier,
                                         metadata=metadata)


def _notebook_metadata(metadata: Any) -> dict:
    kept: dict = {}
    if not isinstance(metadata, dict):
        return kept
    for key, fields in (("kernelspec", ("name", "display_name", "language")), ("language_info", ("name",))):
        section = metadata.get(key)
        if isinstance(section, dict):
            values = {name: section[name] for name in fields if isinstance(section.get(name), str)}
            if values:
                kept[key] = values
    return kept


def trusted_markdown(sources: Iterable[NotebookNode]) -> frozenset[str]:
    """The markdown and raw cell sources of the instructor's notebooks: cells a submission may show as they are."""
    return frozenset(_text(cell.get("source", "")) for notebook in sources for cell in notebook.get("cells", [])
                     if isinstance(cell, dict) and cell.get("cell_type") in ("markdown", "raw"))


def sanitize_notebook(nb: NotebookNode, trusted: frozenset[str] = frozenset()) -> NotebookNode:
    """A copy of ``nb`` that renders to inert HTML (see the module's docstring); ``trusted`` are the markdown
    sources (:func:`trusted_markdown`) that stay as they are."""
    cells = [clean for clean in (_sanitize_cell(cell, trusted) for cell in nb.get("cells", [])) if clean]
    return nbformat.v4.new_notebook(cells=cells, metadata=_notebook_metadata(nb.get("metadata")))


def instructor_notebooks(resources: Any, config: Any = None) -> list[NotebookNode]:
    """The instructor's notebook behind ``resources``: the file ``resources[SOURCE_RESOURCE]`` names, or else, for
    an nbgrader run (``resources["nbgrader"]``), ``source/<assignment>/<notebook>.ipynb`` of its course directory."""
    if not isinstance(resources, dict):
        return []
    path = resources.get(SOURCE_RESOURCE)
    if not path and isinstance(resources.get("nbgrader"), dict):
        from nbgrader.coursedir import CourseDirectory

        info = resources["nbgrader"]
        coursedir = CourseDirectory(config=config)
        folder = coursedir.format_path(coursedir.source_directory, ".", str(info.get("assignment", "")))
        path = Path(folder) / f"{info.get('notebook', '')}.ipynb"
    if path and Path(path).is_file():
        return [nbformat.read(path, as_version=4)]
    return []


class SanitizeNotebook(NbGraderPreprocessor):
    """nbgrader preprocessor: the notebook made inert for any browser (the last step of ``Autograde``, so that the
    autograded notebook the formgrader shows is inert). Markdown cells identical to one of the instructor's
    notebook (:func:`instructor_notebooks`) stay as they are."""

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        clean = sanitize_notebook(nb, trusted_markdown(instructor_notebooks(resources, self.config)))
        nb.clear()
        nb.update(clean)
        return nb, resources
