"""JupyterLab on loopback and headless Chromium, for the tests that drive a real browser.

Chromium comes from Debian (``apt-get install chromium``; ``./course test`` installs it where it can), driven by
Playwright. Without it a browser test is skipped with the reason, except under CI, where it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("CML_SCREENSHOTS", REPO / "build" / "browser"))


def chromium_executable() -> str | None:
    """Debian's Chromium binary (the real one, not the shell wrapper), or ``$CML_CHROMIUM``."""
    candidates = [os.environ.get("CML_CHROMIUM", ""), "/usr/lib/chromium/chromium", shutil.which("chromium") or ""]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``; under CI, fail it (CI must run the browser tests)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test)")
    pytest.skip(reason)


@dataclass
class LabServer:
    url: str
    token: str
    root: Path

    def notebook_url(self, relative_path: Path, workspace: str) -> str:
        """The notebook alone in a fresh workspace (nothing restored from an earlier page)."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{relative_path.as_posix()}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` with the token, as JSON."""
        import json

        with urllib.request.urlopen(f"{self.url}/api/{path}?token={self.token}", timeout=10) as response:
            return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def lab_server(root: Path, state: Path) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 serving ``root`` (also its working folder), with a private token and its config,
    settings and workspaces in ``state``; its log is ``state/server.log``."""
    environment = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
    }
    port, token = _free_port(), secrets.token_hex(16)
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
            cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.3)
        yield LabServer(url, token, root)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Playwright browser on Debian's Chromium (skips the test, or fails it under CI, where there is none)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_executable()
    if executable is None:
        unavailable("Chromium was not found (apt-get install chromium, or set CML_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
