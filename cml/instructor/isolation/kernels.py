"""The grader's kernel manager: kernels forked from a zygote where one serves, reached in their own file system.

:class:`GradingKernelManager` is jupyter_client's kernel manager with two differences:

* a kernel is forked from the grading process's zygote (:mod:`cml.instructor.isolation.zygote`) when the zygote
  has loaded the modules with the kernel's very environment, and started the ordinary way otherwise;
* a sandboxed kernel with a disk limit makes its Unix sockets, and writes its check log, in a private file system
  that only its own mount namespace shows; the grader reaches them through ``/proc/<launcher>/root``, the
  launcher's view of the file system (``kernel_root``). Without that private file system the same path leads to
  the same files.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Any as AnyTrait

from cml.instructor.isolation.sandbox import POLICY_VARIABLE, SandboxPolicy, kernel_environment
from cml.instructor.isolation.zygote import Zygote, Zygotes

__all__ = ["GradingKernelManager"]

_SANDBOX_LAUNCHER = ["-m", "cml.instructor.isolation.sandbox", "--"]


class _ForkedProcess:
    """What ``LocalProvisioner`` needs of a ``Popen`` for a kernel that is the zygote's child, not ours."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:  # reaped by the zygote, which reports how it ended
                status = self.zygote.exit_status(self.pid)
                self.returncode = status if status is not None else 0
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


def _launch_request(command: list[str]) -> tuple[list[str], bool] | None:
    """``(arguments of ipykernel_launcher, sandboxed)`` for ``python -m ipykernel_launcher ...``, with or without the
    sandbox's launcher in front, run by this interpreter; None for any other command."""
    sandboxed = command[1:4] == _SANDBOX_LAUNCHER and command[0] == sys.executable
    kernel = command[4:] if sandboxed else command
    if kernel[:3] == [sys.executable, "-m", "ipykernel_launcher"] and "-f" in kernel:
        return kernel[3:], sandboxed
    return None


class _ForkingProvisioner(LocalProvisioner):
    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        zygotes: Zygotes | None = self.parent.zygotes
        request = _launch_request(cmd)
        environment = kwargs.get("env")
        if zygotes is None or request is None or environment is None:
            return await super().launch_kernel(cmd, **kwargs)
        arguments, sandboxed = request
        policy_file = environment.get(POLICY_VARIABLE) if sandboxed else None
        if sandboxed and not policy_file:
            return await super().launch_kernel(cmd, **kwargs)
        final = kernel_environment(environment, SandboxPolicy.load(policy_file)) if policy_file else environment
        zygote = zygotes.for_environment(final)
        if zygote is None:
            return await super().launch_kernel(cmd, **kwargs)
        environment = {**environment, "JPY_PARENT_PID": str(os.getpid())}  # as jupyter_client's launcher does
        self.cwd = str(kwargs.get("cwd") or Path.cwd())
        pid = zygote.fork(arguments, self.cwd, environment, policy_file)
        self.process, self.pid, self.pgid = _ForkedProcess(zygote, pid), pid, pid
        return self.connection_info


class GradingKernelManager(AsyncKernelManager):
    """jupyter_client's kernel manager, forking kernels from ``zygotes`` when given (see the module docstring)."""

    zygotes = AnyTrait(None, allow_none=True, help="The grading process's Zygotes; None: every kernel starts afresh."
                       ).tag(config=True)

    kernel_root = ""
    """``/proc/<launcher>/root`` once the kernel is launched: prefix a path of the kernel's to reach it."""

    async def _async_pre_start_kernel(self, **kw: Any):
        if self.provisioner is None and self.zygotes is not None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = _ForkingProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        pid = getattr(self.provisioner, "pid", None)
        if pid:
            self.kernel_root = f"/proc/{pid}/root"
            if self.transport == "ipc":
                self.ip = self.kernel_root + self.ip  # the connection file, written before, keeps the kernel's path
