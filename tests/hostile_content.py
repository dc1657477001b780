"""What a hostile student can put into a graded notebook to run script in whoever opens it.

Every payload runs :data:`ATTACK_JS`, which leaves three traces if it runs: the page's title becomes
:data:`PWNED`, ``window.top.cmlPwned`` is set, and it asks the Jupyter server for a new terminal (the attack of
the issue this defends against). The vectors cover kernel outputs (what ``display`` can show, with its metadata,
and outputs of the instructor's own cells, via a hook), markdown and raw cells, attachments, cell and notebook
metadata, and names the grader writes into its notes.

:func:`output_cell_code` is the code a submission runs to produce the outputs; :func:`with_outputs` puts the same
outputs on a cell directly, for tests without a kernel.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections import Counter
from html.parser import HTMLParser

import nbformat
from nbformat import NotebookNode

PWNED = "PWNED-by-a-student"
ATTACK_JS = (
    f"document.title='{PWNED}';try{{window.top.document.title='{PWNED}'}}catch(e){{}};"
    "window.top.cmlPwned=(window.top.cmlPwned||0)+1;"
    "fetch('/api/terminals',{method:'POST',headers:{'X-XSRFToken':"
    "((document.cookie.match(/_xsrf=([^;]+)/)||[])[1]||'')}})"
)
"""Script with single quotes only, so that it fits inside double-quoted HTML attributes."""


def _png(width: int = 2, height: int = 2) -> str:
    """A real (grey) PNG of ``width`` x ``height``, base64."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00"
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


PNG = _png()
HANDLER = f'onerror="{ATTACK_JS}"'
SVG = (f'<svg xmlns="http://www.w3.org/2000/svg" onload="{ATTACK_JS}"><script>{ATTACK_JS}</script>'
       f'<foreignObject><img xmlns="http://www.w3.org/1999/xhtml" src="x" {HANDLER}/></foreignObject></svg>')

BUNDLES: dict[str, tuple[dict, dict]] = {
    # name: (mime bundle, output metadata)
    "html-img-onerror": ({"text/html": f'<img src="x" {HANDLER}>'}, {}),
    "html-script": ({"text/html": f"<script>{ATTACK_JS}</script>"}, {}),
    "javascript": ({"application/javascript": ATTACK_JS, "text/plain": "js"}, {}),
    "widget-view": ({"application/vnd.jupyter.widget-view+json": {"model_id": "0" * 32, "version_major": 2,
                                                                  "version_minor": 0}, "text/plain": "widget"}, {}),
    "svg": ({"image/svg+xml": SVG}, {}),
    "markdown-output": ({"text/markdown": f'<img src="x" {HANDLER}> and [a link](javascript:{ATTACK_JS})'}, {}),
    "iframe": ({"text/html": f'<iframe srcdoc="<script>{ATTACK_JS}</script>"></iframe>'
                             f'<iframe src="javascript:{ATTACK_JS}"></iframe><iframe src="/lab"></iframe>'}, {}),
    "png-not-an-image": ({"image/png": f'"><img src="x" {HANDLER}>', "text/plain": "png"}, {}),
    "png-metadata": ({"image/png": PNG}, {"image/png": {"width": f'1"><img src="x" {HANDLER}>', "height": 1}}),
    "latex": ({"text/latex": f'</div><img src="x" {HANDLER}>'}, {}),
    "html-kitchen-sink": ({"text/html": (
        f'<a href="javascript:{ATTACK_JS}">click</a>'
        '<form action="/api/terminals" method="post"><button>go</button></form>'
        f'<meta http-equiv="refresh" content="0;url=javascript:{ATTACK_JS}">'
        '<base href="http://203.0.113.1/">'
        f'<object data="javascript:{ATTACK_JS}"></object><embed src="javascript:{ATTACK_JS}">'
        f'<math><mtext><table><mglyph><style><img src="x" {HANDLER}></style></mglyph></table></mtext></math>'
        f'<div style="background:url(javascript:{ATTACK_JS})">styled</div>'
        '<link rel="stylesheet" href="/api/terminals"><img src="/api/terminals">'
        f'<details open ontoggle="{ATTACK_JS}">x</details>')}, {}),
    "html-isolated": ({"text/html": f'<img src="x" {HANDLER}>'}, {"text/html": {"isolated": True}}),
    "unknown-type": ({"application/x-cml-evil": ATTACK_JS, "text/x-evil": f"<script>{ATTACK_JS}</script>",
                      "text/plain": "shown"}, {}),
}
"""Outputs a kernel can be made to produce: ``display(bundle, metadata=metadata, raw=True)``."""


def output_cell_code() -> str:
    """A code cell that displays every bundle, makes every later cell (the instructor's tests too) display one,
    prints script, and raises an error whose name and message are markup."""
    bundles = json.dumps(BUNDLES)
    return f'''from IPython.display import display
import json as _json
for _name, (_data, _metadata) in _json.loads({bundles!r}).items():
    display(_data, metadata=_metadata, raw=True)
get_ipython().events.register("post_run_cell", lambda result: display(
    {{"text/html": {f'<img src="x" {HANDLER}>'!r}, "text/plain": "hooked"}}, raw=True))
print({f"<script>{ATTACK_JS}</script>"!r})
try:
    raise type({f'<img src=x {HANDLER}>'!r}, (Exception,), {{}})({f"<script>{ATTACK_JS}</script>"!r})
except Exception as error:
    get_ipython().showtraceback()
'''


MARKDOWN_CELLS: dict[str, dict] = {
    "img-onerror": {"source": f'A note with a picture: <img src="x" {HANDLER}>'},
    "link-frame-svg-object": {"source": f"[Click for my answer](javascript:{ATTACK_JS}) <iframe src=\"/lab\"></iframe>"
                                        f"<svg><script>{ATTACK_JS}</script></svg><object data=\"/api/terminals\"></object>"},
    "svg-attachment": {"source": "My diagram: ![diagram](attachment:diagram.svg)",
                       "attachments": {"diagram.svg": {"image/svg+xml": base64.b64encode(SVG.encode()).decode()}}},
    "png-attachment-details": {"source": "A figure: ![plot](attachment:plot.png) <details open ontoggle=\""
                                         + ATTACK_JS + "\">more</details>",
                               "attachments": {"plot.png": {"image/png": PNG}}},
    "math-and-entities": {"source": f'$$ x \\href{{javascript:{ATTACK_JS}}}{{y}} $$ '
                                    f'<a href="jav&#x09;ascript:{ATTACK_JS}">x</a>'},
}
"""Markdown cells a student can add (their sources and attachments)."""
INERT_WHEN_RENDERED = {"svg-attachment"}
"""Markdown vectors nbconvert already renders inert (an attached SVG becomes an image)."""

WRITTEN_ANSWER = (f"The derivative is $2x$, because <b>slopes</b> double. <img src=\"x\" {HANDLER}>"
                  f"<script>{ATTACK_JS}</script>")
"""A written answer (graded by hand) with script in it."""

RAW_CELL = f"<script>{ATTACK_JS}</script><img src=x {HANDLER}>"
CELL_METADATA = {"tags": ["<img src=x onerror=document.title=1>"], "jupyter": {"source_hidden": False},
                 "nbgrader": {"grade_id": f'"><img src=x {HANDLER}>', "solution": True}}
NOTEBOOK_METADATA = {"title": f"<script>{ATTACK_JS}</script>",
                     "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                              "version_minor": 0,
                                                                              "evil": f"</script><script>{ATTACK_JS}"}},
                     "language_info": {"name": f"<script>{ATTACK_JS}</script>"}}
FILE_NAME = "<img src=x onerror=document.title=1>.ipynb"
"""A notebook file name with markup (no ``/``): the grader's note about renaming quotes it."""


def add_markdown_vectors(notebook: NotebookNode) -> NotebookNode:
    """Add the hostile markdown and raw cells and metadata to a student's notebook (before its last cell)."""
    cells = [nbformat.v4.new_markdown_cell(**cell) for cell in MARKDOWN_CELLS.values()]
    cells.append(nbformat.v4.new_raw_cell(RAW_CELL, metadata={"raw_mimetype": "text/html"}))
    code = nbformat.v4.new_code_cell("pass")
    code.metadata.update(CELL_METADATA)
    cells.append(code)
    notebook.cells[-1:-1] = cells
    notebook.metadata.update(NOTEBOOK_METADATA)
    return notebook


def with_outputs(cell: NotebookNode) -> NotebookNode:
    """The outputs :func:`output_cell_code` produces, put on ``cell`` directly (for tests without a kernel)."""
    cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)
                    for data, metadata in BUNDLES.values()]
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=f"<script>{ATTACK_JS}</script>\n"))
    cell.outputs.append(nbformat.v4.new_output("error", ename=f"<img src=x {HANDLER}>",
                                               evalue=f"<script>{ATTACK_JS}</script>",
                                               traceback=[f"<script>{ATTACK_JS}</script>"]))
    return cell


_ACTIVE_TAGS = {"script", "iframe", "frame", "object", "embed", "applet", "base", "form", "link", "style", "svg",
                "math", "meta", "template"}
_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "srcdoc", "background", "poster"}


class _ActiveParts(HTMLParser):
    """Everything in a page that could run script or make a request: elements, handlers, URLs, style."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: Counter[str] = Counter()
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _ACTIVE_TAGS:
            self.parts[f"<{tag} {sorted((name, value) for name, value in attrs)}>"] += 1
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on"):
                self.parts[f"handler {name}={value}"] += 1
            elif name == "style":
                self.parts[f"style={value}"] += 1
            elif name in _URL_ATTRIBUTES and value and not value.startswith(("#", "data:image/")):
                self.parts[f"{tag} {name}={value}"] += 1
        if tag == "script":
            self._script = []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.parts["script text: " + "".join(self._script)] += 1
            self._script = None


def active_content(page: str, template: str) -> list[str]:
    """What ``page`` has that could run script or make a request and the ``template`` (the same page around no
    cells) does not have: empty for an inert page."""
    found, expected = _ActiveParts(), _ActiveParts()
    found.feed(page)
    expected.feed(template)
    return sorted((found.parts - expected.parts).elements())
