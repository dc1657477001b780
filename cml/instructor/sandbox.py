"""Start a grading kernel in a sandbox: its own session, resource limits, no network, an unprivileged user.

The grading command registers a kernelspec whose ``argv`` is::

    python -m cml.instructor.sandbox -- python -m ipykernel_launcher -f {connection_file}

The launcher reads the policy of the submission being graded (a JSON file named by the environment
variable ``CML_SANDBOX_POLICY``), applies it to itself and then ``exec``s the kernel, which inherits
everything. Each measure is applied where the operating system allows it; what could not be applied is
written to the policy's ``report`` file, so the grading report can say which isolation was in effect.

* a new session and process group, so the whole kernel tree can be killed at once;
* ``RLIMIT_CORE`` 0 (no core dumps from a segfault), ``RLIMIT_FSIZE`` (no file larger than the limit),
  ``RLIMIT_NPROC`` (no fork bomb; only meaningful with a user of its own);
* a network namespace of its own: no interface but a loopback that is down (the kernel talks to the
  grader over Unix sockets, which need no network);
* when started as root: the user id given in the policy, which owns nothing but the kernel's private
  working folder, so other students' files and the gradebook (mode 0600/0700, owned by root) are out
  of reach.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["SandboxPolicy", "POLICY_VARIABLE", "write_kernelspec", "KERNEL_NAME"]

POLICY_VARIABLE = "CML_SANDBOX_POLICY"
KERNEL_NAME = "cml-sandbox"

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 1, 2, 4, 0x4000, 1 << 18


@dataclass
class SandboxPolicy:
    """What the launcher applies before it becomes the kernel."""

    home: str
    """The kernel's private working folder; also its ``HOME`` and the root of its caches."""
    uid: int | None = None
    """Run the kernel as this user (and group) id; only possible when the grader runs as root."""
    isolate_network: bool = True
    max_file_bytes: int = 1 << 30
    max_processes: int = 256
    environment: dict[str, str] = field(default_factory=dict)
    """Variables added to the kernel's environment."""
    hidden_paths: list[str] = field(default_factory=list)
    """Folders covered by an empty read-only folder in the kernel's view of the file system (the course's
    sources with solutions, the class's submissions, the gradebook's folder)."""
    report: str = ""
    """File the launcher writes the measures it could not apply to (one line each)."""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> "SandboxPolicy":
        return cls(**json.loads(Path(path).read_text()))


def write_kernelspec(directory: Path) -> Path:
    """Write the sandbox kernelspec into ``directory/kernels/`` (put ``directory`` on ``JUPYTER_PATH``)."""
    spec_dir = directory / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "cml.instructor.sandbox", "--",
                 sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return directory


def _libc_call(name: str, *arguments: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*arguments) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def _isolate(isolate_network: bool, hidden_paths: list[str]) -> None:
    """Namespaces of one's own: network (nothing reachable) and mounts (``hidden_paths`` covered).

    Unprivileged users need a user namespace first, in which they map themselves to themselves.
    """
    flags = (_CLONE_NEWNET if isolate_network else 0) | (_CLONE_NEWNS if hidden_paths else 0)
    if not flags:
        return
    if os.geteuid() == 0:
        _libc_call("unshare", flags)
    else:
        uid, gid = os.geteuid(), os.getegid()
        _libc_call("unshare", _CLONE_NEWUSER | flags)
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    if hidden_paths:
        libc = ctypes.CDLL(None, use_errno=True)
        # Mounts made here must not propagate back to the grader's view.
        if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount: cannot make / private")
        for path in hidden_paths:
            if os.path.isdir(path) and libc.mount(b"tmpfs", path.encode(), b"tmpfs",
                                                  _MS_RDONLY | _MS_NOSUID | _MS_NODEV, b"size=4k,mode=0555") != 0:
                raise OSError(ctypes.get_errno(), f"mount: cannot hide {path}: {os.strerror(ctypes.get_errno())}")


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            os.lchown(os.path.join(folder, name), uid, uid)


def apply(policy: SandboxPolicy, connection_file: str | None) -> list[str]:
    """Apply ``policy`` to this process; returns the measures that could not be applied."""
    missing = []
    if os.getsid(0) != os.getpid():  # jupyter_client usually starts kernels in a session of their own already
        os.setsid()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (policy.max_file_bytes, policy.max_file_bytes))
    try:
        _isolate(policy.isolate_network, policy.hidden_paths)
    except OSError as error:
        missing.append(f"network and file-system isolation: {error}")
    if policy.uid is not None:
        if os.geteuid() != 0:
            missing.append("unprivileged user: the grader does not run as root")
        else:
            # The kernel must own its working folder (it writes files there) and read its connection file.
            for path in {policy.home, os.getcwd()}:
                _chown_tree(Path(path), policy.uid)
            if connection_file:
                os.chown(connection_file, policy.uid, policy.uid)
            resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_processes, policy.max_processes))
            os.setgroups([])
            os.setgid(policy.uid)
            os.setuid(policy.uid)
    return missing


def _connection_file(command: list[str]) -> str | None:
    return command[command.index("-f") + 1] if "-f" in command[:-1] else None


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: python -m cml.instructor.sandbox -- KERNEL COMMAND...")
    command = argv[argv.index("--") + 1:]
    policy = SandboxPolicy.load(os.environ[POLICY_VARIABLE])
    # Opened before the user changes: the report lies where the kernel's user may not write.
    with open(policy.report or os.devnull, "w") as report:
        missing = apply(policy, _connection_file(command))
        report.write("".join(f"{line}\n" for line in missing))
    environment = {key: value for key, value in os.environ.items() if key != POLICY_VARIABLE}
    environment.update(policy.environment)
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
