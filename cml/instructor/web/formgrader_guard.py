"""A Jupyter server extension that shows students' notebooks in nbgrader's formgrader without running their code.

nbgrader's manual-grading page (``/formgrader/submissions/<id>/``) renders the autograded notebook with
nbconvert into the instructor's logged-in Jupyter origin. ``cml-course grade`` already stores that notebook
sanitised (:mod:`cml.instructor.web.sanitize`); this extension adds the layers that hold even when a notebook was
graded otherwise (plain ``nbgrader autograde``) or a sanitiser misses something:

* the page is rendered by :class:`~cml.instructor.web.inert_html.InertHTMLExporter` (the notebook sanitised again,
  the student's name escaped, since nbgrader's template writes it unescaped);
* it is sent with a ``Content-Security-Policy`` that admits only the formgrader template's own scripts (by hash
  and by folder), lets scripts send requests only to ``/formgrader/api/``, and forbids forms, frames, plug-ins
  and a changed base URL; and with ``Cross-Origin-Opener-Policy: same-origin``.

The package enables it in every Jupyter server of its environment
(``etc/jupyter/jupyter_server_config.d/cml-course.json``); it changes nothing but that one page.
"""

from __future__ import annotations

import html
import importlib.util
import os
from typing import Any


__all__ = ["guarded_handler_class", "install_guard"]

_EXPORTER_SETTING = "cml_inert_exporter"


def guarded_handler_class(submission_handler: type) -> type:
    """nbgrader's ``SubmissionHandler`` rendering through :class:`InertHTMLExporter` under a strict policy."""

    class GuardedSubmissionHandler(submission_handler):  # type: ignore[misc, valid-type]
        _policy = ""

        @property
        def content_security_policy(self) -> str:
            """The page's policy once its notebook is rendered; before (an error page, say) nothing may run."""
            from cml.instructor.web.inert_html import as_header

            return self._policy or as_header("default-src 'none'")

        def set_default_headers(self) -> None:
            super().set_default_headers()
            self.set_header("Cross-Origin-Opener-Policy", "same-origin")

        @property
        def exporter(self) -> Any:
            return _PageExporter(self)

    return GuardedSubmissionHandler


class _PageExporter:
    """What ``SubmissionHandler.get`` calls as ``self.exporter``: renders one page and sets its policy header."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def from_filename(self, filename: str, resources: dict) -> tuple[str, dict]:
        # Imported here: the extension loads in every Jupyter server, students' included, and nbconvert is slow.
        from cml.instructor.web.inert_html import (
            CONNECT_RESOURCE,
            ORIGIN_RESOURCE,
            POLICY_RESOURCE,
            InertHTMLExporter,
            as_header,
        )
        from cml.instructor.web.sanitize import SOURCE_RESOURCE

        handler = self.handler
        exporter = handler.settings.get(_EXPORTER_SETTING)
        if exporter is None:
            original = handler.settings["nbgrader_exporter"]
            exporter = InertHTMLExporter(config=original.config, template_name=original.template_name,
                                         extra_template_basedirs=list(original.extra_template_basedirs))
            handler.settings[_EXPORTER_SETTING] = exporter
        origin = f"{handler.request.protocol}://{handler.request.host}"
        # nbgrader's page waits for MathJax from a CDN, and offline it never comes: use the server's own if it has one.
        exporter.mathjax_url = _local_mathjax(handler, origin)
        for key in ("student", "first_name", "last_name"):  # written into the page unescaped by nbgrader's template
            if isinstance(resources.get(key), str):
                resources[key] = html.escape(resources[key])
        coursedir = handler.coursedir
        source = os.path.join(coursedir.format_path(coursedir.source_directory, ".", resources["assignment_id"]),
                              f"{resources['notebook_id']}.ipynb")
        resources.update({
            SOURCE_RESOURCE: source,
            ORIGIN_RESOURCE: origin,
            CONNECT_RESOURCE: (_server_url(origin, handler.base_url, "formgrader/api/"),),
        })
        page, resources = exporter.from_filename(filename, resources=resources)
        handler._policy = as_header(resources[POLICY_RESOURCE])
        handler.set_header("Content-Security-Policy", handler._policy)
        return page, resources


def _server_url(origin: str, base_url: str, path: str) -> str:
    """``origin`` + the server's ``base_url`` + ``path`` (a trailing ``/`` kept)."""
    return f"{origin}/" + "/".join(part.strip("/") for part in (base_url, path) if part.strip("/")) + \
        ("/" if path.endswith("/") else "")


def _local_mathjax(handler: Any, origin: str) -> str:
    """The URL of MathJax with its configuration where this server serves it (jupyter-server-mathjax), else ``""``."""
    path, configuration = handler.settings.get("mathjax_url"), handler.settings.get("mathjax_config")
    if not path or not configuration:
        return ""
    return _server_url(origin, "", path) + f"?config={configuration}"


def install_guard(web_app: Any) -> int:
    """Route nbgrader's manual-grading page to the guarded handler; returns how many routes were changed."""
    from nbgrader.server_extensions.formgrader.handlers import SubmissionHandler

    guarded = guarded_handler_class(SubmissionHandler)
    changed = 0
    pending = list(web_app.default_router.rules)
    while pending:
        rule = pending.pop()
        if rule.target is SubmissionHandler:
            rule.target = guarded
            changed += 1
        elif hasattr(rule.target, "rules"):
            pending += rule.target.rules
    return changed


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "cml.instructor.web.formgrader_guard"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Install the guard once every extension has loaded; only log a line where nbgrader is not installed.

    The package enables this extension in every Jupyter server of its environment, a student's too, whose
    install has no nbgrader (it comes with the ``instructor`` extra) and so no formgrader to guard.
    """
    if importlib.util.find_spec("nbgrader") is None:
        serverapp.log.info("cml: nbgrader is not installed, so there is no formgrader page to guard")
        return

    def install() -> None:
        changed = install_guard(serverapp.web_app)
        if changed:
            serverapp.log.info("cml: the formgrader's manual-grading page renders students' notebooks inert")

    # Extensions load in alphabetical order, nbgrader's after this one: install once all have loaded.
    serverapp.io_loop.add_callback(install)
