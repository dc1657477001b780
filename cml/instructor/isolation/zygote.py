"""Kernels forked from a process that has already imported an assignment's libraries: the grader's fast kernels.

Every submission starts a fresh kernel, and the notebook's first cells import the same libraries every time:
PyTorch alone takes 2-3 s, JAX and scikit-learn more, a large part of what grading a notebook costs. A *zygote*
process imports them once, with the very environment the kernels get, and every kernel is then ``fork``-ed from
it: a process of its own, which starts as a fresh kernel does (``ipykernel_launcher``), but finds those modules
already in ``sys.modules``. A sandboxed kernel applies its sandbox (:func:`cml.instructor.isolation.sandbox.enter`:
namespaces, private file system, limits, its own user) in its own process right after the fork, exactly as the
sandbox's launcher does before it ``exec``s a fresh kernel.

What a forked kernel shares with the others of its zygote: nothing that runs. The zygote never runs a cell, and
never receives anything from a kernel; each kernel is a separate copy of it, with its own namespaces, folder and
limits. Generators the libraries seed from the OS once per process (Python's ``random``, NumPy's global one) are
reseeded from the OS in each kernel. One thing differs from a fresh interpreter: Python's string-hash seed is the
zygote's, where a fresh interpreter draws its own, so the iteration order of a set of strings is the same in the
kernels of one zygote (it is not a state any submission can set or read).

Only modules imported by the notebook's own cells *before its first answer cell* are preloaded, so every answer
runs with the modules a fresh kernel would have loaded by then (the autodiff guard of :mod:`cml.checks`, for one,
looks at what is imported), and only libraries of a known list (:data:`PRELOADABLE`) that load without side effects
on the kernel; never ``matplotlib.pyplot``, which hooks into IPython when imported. The zygote forks only while it
runs a single thread, and kernels start the ordinary way when it cannot (no ``fork``, a library started a thread, a
kernel environment that is not the zygote's, a kernelspec other than ``python -m ipykernel_launcher``, with or
without the sandbox's launcher in front).
"""

from __future__ import annotations

import ast
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from nbformat import NotebookNode

from cml.instructor.cells import cell_kind

__all__ = ["PRELOADABLE", "Zygote", "Zygotes", "preloadable_modules"]

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
        self._statuses: dict[int, int] = {}
        self._status_pipe, status_end = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, str(_ZYGOTE_SCRIPT), str(status_end), *modules], env=self.environment, cwd="/",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(status_end,),
        )
        os.close(status_end)
        self._ready: bool | None = None
        self.problem = ""
        self.kernels_forked = 0

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def usable(self) -> bool:
        """Whether it loaded its modules running one thread (forking would otherwise be unsafe); waits for it."""
        if self._ready is None:
            reply = json.loads(self._process.stdout.readline() or "{}")
            self._ready = reply.get("threads") == 1
            self.problem = reply.get("error", "" if self._ready else f"{reply.get('threads')} threads after loading")
        return self._ready

    def serves(self, environment: dict[str, str] | None) -> bool:
        """Whether a kernel with ``environment`` may be forked from here (it would have loaded the same modules)."""
        return environment is not None and _compared(environment) == _compared(self.environment) and \
            self.alive and self.usable

    def fork(self, arguments: list[str], cwd: str, environment: dict[str, str], sandbox: str | None = None) -> int:
        """Start ``python -m ipykernel_launcher ARGUMENTS`` in ``cwd`` (inside the sandbox of the policy file
        ``sandbox``, if given); returns its pid (also its process group)."""
        request = {"arguments": arguments, "cwd": cwd, "environment": environment, "sandbox": sandbox}
        with self._lock:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            reply = json.loads(self._process.stdout.readline() or "{}")
        if "pid" not in reply:
            raise RuntimeError(f"the kernel zygote did not fork: {reply.get('error', 'it exited')}")
        self.kernels_forked += 1
        return int(reply["pid"])

    def exit_status(self, pid: int, timeout: float = 2.0) -> int | None:
        """The exit code of the ended kernel ``pid``, as ``Popen.returncode`` gives it (``-N``: killed by signal N);
        None if the zygote has not reported it within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while pid not in self._statuses:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._status_pipe], [], [], left)[0]:
                    return None
                data = os.read(self._status_pipe, 65536)
                if not data:
                    return None
                for line in data.decode().splitlines():
                    ended, status = (int(field) for field in line.split())
                    self._statuses[ended] = os.waitstatus_to_exitcode(status)
            return self._statuses.pop(pid)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stdout.close()
        os.close(self._status_pipe)


class Zygotes:
    """The zygote of one grading process: started for the modules of the assignment being graded, on the first
    kernel that needs it, and replaced when the modules or the kernels' environment change."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and hasattr(os, "fork")
        self.modules: tuple[str, ...] = ()
        self.current: Zygote | None = None
        self.started = 0
        """How many zygotes were started (each one loads the modules once)."""
        self._forked_before = 0

    @property
    def kernels_forked(self) -> int:
        """How many kernels were forked, from every zygote so far."""
        return self._forked_before + (self.current.kernels_forked if self.current is not None else 0)

    def __deepcopy__(self, memo: dict) -> Zygotes:
        return self  # shared, not copied, when traitlets loads it from a configuration

    def use_modules(self, modules: tuple[str, ...]) -> None:
        """The modules the next kernels should find loaded."""
        self.modules = modules

    def for_environment(self, environment: dict[str, str]) -> Zygote | None:
        """A zygote that can fork a kernel with ``environment`` (the kernel's, as it will run), or None."""
        if not self.enabled:
            return None
        if self.current is not None and self.current.modules == self.modules and self.current.serves(environment):
            return self.current
        self.close()
        self.current = Zygote(self.modules, environment)
        self.started += 1
        return self.current if self.current.serves(environment) else None

    def pids(self) -> set[int]:
        """The zygote's process (not its kernels): the watchdog spares it between submissions."""
        return {self.current.pid} if self.current is not None and self.current.alive else set()

    def close(self) -> None:
        if self.current is not None:
            self._forked_before += self.current.kernels_forked
            self.current.close()
            self.current = None
