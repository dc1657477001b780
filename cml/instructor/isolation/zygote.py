"""Kernels forked from a process that has already imported an assignment's libraries (for the test cases).

Each described case starts a fresh kernel, and the notebook's first cells import the same libraries every
time: PyTorch alone takes 2-3 s, JAX and scikit-learn more, a large part of what a case costs. A *zygote*
process imports them once, with the very environment the kernels get, and every kernel is then
``fork``-ed from it: a process of its own, which starts as a fresh kernel does (``ipykernel_launcher``),
but finds those modules already in ``sys.modules``. Nothing else is shared: the zygote never runs a
cell, and each kernel is a separate copy of it. (NumPy's global generator is reseeded from the OS in
each kernel, as at import; Python's string-hash seed is the zygote's, where a fresh interpreter draws
its own, so the iteration order of a set of strings is the same in the kernels of one zygote.)

Only modules imported by the notebook's own cells *before its first answer cell* are preloaded, so every
answer runs with the modules a fresh kernel would have loaded by then (the autodiff guard of
:mod:`cml.checks`, for one, looks at what is imported), and only libraries of a known list
(:data:`PRELOADABLE`) that load without side effects on the kernel; never ``matplotlib.pyplot``, which
hooks into IPython when imported. The zygote forks only while it runs a single thread, and kernels start
the ordinary way when it cannot (no ``fork``, a library started a thread, a kernel environment that is not
the zygote's, a kernelspec other than ``python -m ipykernel_launcher``).

Like the JAX cache of :mod:`cml.instructor.testing.cases`, this is for the instructor's own described submissions
only; students are graded by nbgrader, one fresh kernel each.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from cml.instructor.course import cell_kind

__all__ = ["PRELOADABLE", "Zygote", "forked_kernel_manager", "preloadable_modules"]

PRELOADABLE = frozenset({"numpy", "scipy", "sklearn", "torch", "jax", "threadpoolctl"})
"""Top-level packages a zygote may import: heavy to load, and nothing in them depends on the kernel."""

_ZYGOTE_SCRIPT = Path(__file__).with_name("_zygote.py")
"""Run as a script, not as a module of this package: the zygote imports nothing a fresh kernel would not."""
_NOT_COMPARED = ("JPY_", "PYTEST_CURRENT_TEST")
"""Variables that differ from kernel to kernel and that no library reads when imported: what the kernel manager
sets (its pid, the session name) and the name of the running test. A kernel still gets their values."""


def preloadable_modules(notebook: NotebookNode) -> tuple[str, ...]:
    """The modules the notebook imports before its first answer cell, in order, that :data:`PRELOADABLE` allows."""
    from IPython.core.inputtransformer2 import TransformerManager

    modules: list[str] = []
    for cell in notebook.cells:
        if cell_kind(cell) in ("solution", "manual"):
            break
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(TransformerManager().transform_cell(cell.source))  # magics become Python
        except SyntaxError:
            continue
        for node in tree.body:
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            modules += [name for name in names if name.split(".")[0] in PRELOADABLE and name not in modules]
    return tuple(modules)


def _compared(environment: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in environment.items() if not key.startswith(_NOT_COMPARED)}


class Zygote:
    """A process that has imported ``modules`` under ``environment`` and forks kernels on request."""

    def __init__(self, modules: tuple[str, ...], environment: dict[str, str]) -> None:
        self.modules = modules
        # As jupyter_client's launcher tells a kernel, and ipykernel reads when imported: this process starts kernels.
        self.environment = {**environment, "JPY_PARENT_PID": str(os.getpid())}
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, str(_ZYGOTE_SCRIPT), *modules], env=self.environment, cwd="/",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        reply = json.loads(self._process.stdout.readline() or "{}")
        self.usable = reply.get("threads") == 1
        """False when a module started a thread while loading (forking would then be unsafe) or loading failed."""
        self.problem = reply.get("error", "" if self.usable else f"{reply.get('threads')} threads after loading")
        self.kernels_forked = 0

    def serves(self, environment: dict[str, str] | None) -> bool:
        """Whether a kernel with ``environment`` may be forked from here (it would have loaded the same modules)."""
        return self.usable and self._process.poll() is None and environment is not None and \
            _compared(environment) == _compared(self.environment)

    def fork(self, arguments: list[str], cwd: str, environment: dict[str, str]) -> int:
        """Start ``python -m ipykernel_launcher ARGUMENTS`` in ``cwd``; returns its pid (also its pgid)."""
        with self._lock:
            self._process.stdin.write(json.dumps({"arguments": arguments, "cwd": cwd,
                                                  "environment": environment}) + "\n")
            self._process.stdin.flush()
            reply = json.loads(self._process.stdout.readline() or "{}")
        if "pid" not in reply:
            raise RuntimeError(f"the kernel zygote did not fork: {reply.get('error', 'it exited')}")
        self.kernels_forked += 1
        return int(reply["pid"])

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stdout.close()


class _ForkedProcess:
    """What ``LocalProvisioner`` needs of a ``Popen`` for a kernel that is the zygote's child, not ours.

    The zygote reaps its children at once, so a pid that no longer exists is a kernel that has ended.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0  # the exit status went to the zygote
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _launcher_arguments(command: list[str]) -> list[str] | None:
    """The arguments of a ``python -m ipykernel_launcher ...`` command run by this interpreter, else None."""
    if command[:3] == [sys.executable, "-m", "ipykernel_launcher"] and "-f" in command:
        return command[3:]
    return None


def forked_kernel_manager(zygote: Zygote) -> type:
    """A kernel manager class (for ``NotebookClient(kernel_manager_class=...)``) that forks from ``zygote``."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner

    class ForkedProvisioner(LocalProvisioner):
        async def launch_kernel(self, cmd: list[str], **kwargs: Any):
            arguments = _launcher_arguments(cmd)
            environment = kwargs.get("env")
            if arguments is None or not zygote.serves(environment):
                return await super().launch_kernel(cmd, **kwargs)
            environment = {**environment, "JPY_PARENT_PID": str(os.getpid())}  # as jupyter_client's launcher does
            self.cwd = str(kwargs.get("cwd") or Path.cwd())
            pid = zygote.fork(arguments, self.cwd, environment)
            self.process, self.pid, self.pgid = _ForkedProcess(pid), pid, pid
            return self.connection_info

    class ForkedKernelManager(AsyncKernelManager):
        async def _async_pre_start_kernel(self, **kw: Any):
            if self.provisioner is None:
                self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
                self.provisioner = ForkedProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                     parent=self)
            return await super()._async_pre_start_kernel(**kw)

    return ForkedKernelManager
