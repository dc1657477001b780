"""HTML of graded notebooks that runs no student code: the sanitised notebook plus a Content-Security-Policy.

:class:`InertHTMLExporter` is nbconvert's ``HTMLExporter`` with two additions, for every page that shows a
student's notebook (the feedback of ``nbgrader generate_feedback``, the formgrader's manual-grading page through
:mod:`cml.instructor.web.formgrader_guard`):

1. after every preprocessor, the notebook is made inert (:func:`cml.instructor.web.sanitize.sanitize_notebook`);
2. the page carries a Content-Security-Policy that allows exactly the scripts of the *template*: the page is
   rendered a second time around a notebook with no cells, and only the scripts, event handlers, style sheets
   that this skeleton holds are allowed (inline ones by their SHA-256, external ones by their URL's folder).
   Anything a student's notebook adds, should the sanitiser ever miss it, is refused by the browser; and the page
   may connect to nothing but the formgrader's own API (``connect_sources``).

The policy goes into a ``<meta http-equiv>`` at the top of ``<head>`` (so a feedback file opened from disk has
it) and into ``resources["cml_content_security_policy"]`` (the formgrader sends it as a header as well).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import nbformat
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbformat import NotebookNode
from traitlets import Bool, Unicode
from traitlets.config import Config

from cml.instructor.web.sanitize import instructor_notebooks, sanitize_notebook, trusted_markdown

__all__ = ["CONNECT_RESOURCE", "ORIGIN_RESOURCE", "POLICY_RESOURCE", "InertHTMLExporter", "TemplateParts",
           "as_header", "content_security_policy", "feedback_config"]

POLICY_RESOURCE = "cml_content_security_policy"
"""``resources`` key of the policy computed for the page."""
ORIGIN_RESOURCE = "cml_origin"
"""``resources`` key of the page's origin (``http://host:port``), for the template's relative URLs."""
CONNECT_RESOURCE = "cml_connect_sources"
"""``resources`` key of the URLs (prefixes) the page's scripts may send requests to; none by default."""
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_IMAGE_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)", re.IGNORECASE)
_NO_DESCRIPTION = ' alt="No description has been provided for this image"'


class TemplateParts(HTMLParser):
    """What a page's template loads or runs: script and style URLs, inline script texts, event handler texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.script_urls: list[str] = []
        self.style_urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False
        self._script_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.handlers += [value for name, value in values.items() if name.startswith("on")]
        if tag == "script":
            if values.get("src"):
                self.script_urls.append(values["src"])
            else:
                self._in_script, self._script_text = True, []
        elif tag == "link" and "stylesheet" in values.get("rel", "").split() and values.get("href"):
            self.style_urls.append(values["href"])

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self._script_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script:
            self._in_script = False
            self.inline_scripts.append("".join(self._script_text))


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _folder(url: str, origin: str | None) -> str | None:
    """The folder of ``url`` as a CSP source (scheme, host and path up to the last ``/``); ``None`` for a
    relative URL without an origin to resolve it against, or anything but http(s)."""
    absolute = urljoin(origin + "/", url) if origin else url
    parts = urlsplit(absolute)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rsplit('/', 1)[0]}/"


def _asset_roots(folders: list[str]) -> list[str]:
    """Per site, the deepest folder holding all of ``folders``: where the template's style sheets find their fonts
    and pictures (``../fonts/`` beside a style sheet's folder, say)."""
    sites: dict[str, list[str]] = {}
    for folder in folders:
        parts = urlsplit(folder)
        sites.setdefault(f"{parts.scheme}://{parts.netloc}", []).append(parts.path)
    return sorted(site + posixpath.join(posixpath.commonpath(paths), "") for site, paths in sites.items())


def as_header(policy: str) -> str:
    """``policy`` as sent in an HTTP header, which may also say who may frame the page (``<meta>`` may not)."""
    return f"{policy}; frame-ancestors 'self'"


def content_security_policy(template_html: str, origin: str | None = None, connect: tuple[str, ...] = (),
                            header: bool = False) -> str:
    """A policy that lets run exactly the scripts of ``template_html`` (the page around a notebook with no cells).

    ``origin`` resolves the template's relative URLs; ``connect`` lists what scripts may send requests to;
    ``header``: the policy is sent as an HTTP header, where ``frame-ancestors`` is allowed (not in ``<meta>``).
    """
    parts = TemplateParts()
    parts.feed(template_html)
    parts.close()
    script_folders = sorted({folder for url in parts.script_urls if (folder := _folder(url, origin))})
    style_folders = sorted({folder for url in parts.style_urls if (folder := _folder(url, origin))})
    assets = _asset_roots(script_folders + style_folders)
    hashes = sorted({_hash(text) for text in parts.inline_scripts if text.strip()})
    handler_hashes = sorted({_hash(text) for text in parts.handlers})
    scripts = [*script_folders, *hashes, *handler_hashes] + (["'unsafe-hashes'"] if handler_hashes else [])
    directives = {
        "default-src": ["'none'"],
        "script-src": scripts or ["'none'"],
        # Inline styles are the template's (nbconvert inlines its CSS); a student's were removed by the sanitiser,
        # and whatever a style could fetch is limited by img-src and font-src below.
        "style-src": ["'unsafe-inline'", *style_folders],
        "img-src": ["data:", *assets],
        "font-src": ["data:", *assets],
        "connect-src": list(connect) or ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "object-src": ["'none'"],
        "frame-src": ["'none'"],
        "worker-src": ["'none'"],
    }
    policy = "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())
    return as_header(policy) if header else policy


def _use_mathjax(url: str, page: str, template: str) -> tuple[str, str]:
    """``page`` and ``template`` loading MathJax from ``url`` instead of the template's own MathJax script."""
    parts = TemplateParts()
    parts.feed(template)
    for source in parts.script_urls:
        if "mathjax" in urlsplit(source).path.lower():
            query = urlsplit(source).query
            local = url + (f"?{query}" if query and "?" not in url else "")
            for quoted in (f'src="{source}"', f'src="{html.escape(source)}"'):
                page, template = page.replace(quoted, f'src="{local}"'), template.replace(quoted, f'src="{local}"')
    return page, template


def feedback_config() -> Config:
    """nbgrader's feedback template for an ``HTMLExporter``, as ``nbgrader generate_feedback`` sets it."""
    import nbgrader

    formgrader = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
    config = Config()
    config.HTMLExporter.template_name = "feedback"
    config.HTMLExporter.extra_template_basedirs = [str(formgrader / "templates")]
    config.HTMLExporter.extra_template_paths = [str(formgrader / "static" / "node_modules" / "bootstrap" / "dist" / "css")]
    return config


class InertHTMLExporter(HTMLExporter):
    """``HTMLExporter`` whose pages show a sanitised notebook under a policy that admits only the template's scripts."""

    mathjax_url = Unicode("", help="Load MathJax from this URL (its query kept) instead of the one the template "
                                   "names, a CDN: a server with jupyter-server-mathjax keeps working offline.").tag(config=True)

    sanitize = Bool(True, help="Make the notebook inert before rendering it; off only to test that the policy "
                               "alone stops a student's script.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._skeleton = False

    def _preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        if self._skeleton:
            return nb, resources
        nb, resources = super()._preprocess(nb, resources)
        if not self.sanitize:
            return nb, resources
        return sanitize_notebook(nb, trusted_markdown(instructor_notebooks(resources, self.config))), resources

    def _render(self, nb: NotebookNode, resources: dict[str, Any] | None, **kw: Any) -> tuple[str, dict[str, Any]]:
        """``HTMLExporter.from_notebook_node`` without its last pass, which parses the whole page with
        BeautifulSoup (a third of a feedback page's time) to give images without one an ``alt`` text and focus
        to classes that nbgrader's feedback template does not use. The ``alt`` text is given here instead."""
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        self.register_filter("highlight_code", self.filters.get("highlight_code",
                                                                Highlight2HTML(pygments_lexer=lexer, parent=self)))
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata,
                                                                       parent=self, resources=resources))
        page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return _IMAGE_WITHOUT_ALT.sub("<img" + _NO_DESCRIPTION, page), resources

    def from_notebook_node(self, nb: NotebookNode, resources: dict[str, Any] | None = None,
                           **kw: Any) -> tuple[str, dict[str, Any]]:
        page, resources = self._render(nb, resources, **kw)
        # The same page around no cells, with the resources as the preprocessors left them (scores, say).
        skeleton = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.get("metadata", {})))
        self._skeleton = True
        try:
            template, _ = self._render(sanitize_notebook(skeleton), copy.copy(resources), **kw)
        finally:
            self._skeleton = False
        if self.mathjax_url:
            page, template = _use_mathjax(self.mathjax_url, page, template)
        policy = content_security_policy(template, resources.get(ORIGIN_RESOURCE),
                                         tuple(resources.get(CONNECT_RESOURCE, ())))
        resources[POLICY_RESOURCE] = policy
        meta = f'<meta http-equiv="Content-Security-Policy" content="{html.escape(policy)}">'
        match = _HEAD.search(page)
        page = page[:match.end()] + "\n" + meta + page[match.end():] if match else meta + "\n" + page
        return page, resources
