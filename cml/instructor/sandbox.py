"""Start a grading kernel in a sandbox: namespaces of its own, resource limits, no privileges.

The grading command registers a kernelspec whose ``argv`` is::

    python -m cml.instructor.sandbox -- python -m ipykernel_launcher -f {connection_file}

The launcher reads the policy of the submission being graded (a JSON file named by the environment
variable ``CML_SANDBOX_POLICY``), applies it and then ``exec``s the kernel. Each measure is applied where
the operating system allows it; what could not be applied is written to the policy's ``report`` file,
so the grading report can say which isolation was in effect.

* resource limits: no core dumps, no file larger than ``max_file_bytes``;
* a PID namespace: the kernel is process 1 of its own namespace, sees no other process on the machine,
  and when it ends every process it started ends with it. The launcher stays outside as a small
  supervisor that passes the kernel's exit status (or the signal that killed it) on to the grader;
* a network namespace: no interface but a loopback that is down (the kernel talks to the grader over
  Unix sockets, which need no network);
* a mount namespace: the whole file system read-only but for the kernel's private folder, a private
  ``/dev/shm``, and the ``hidden_paths`` (the course's sources, the class's submissions, the gradebook's
  folder, the other workers' folders) covered by empty folders;
* no privileges: the user id ``uid`` when the grader runs as root and that user can run Python, else
  the grader's own user with every capability dropped (so it can neither undo the mounts nor write
  anywhere outside its folder).

An unprivileged grader gets the namespaces through a user namespace of its own.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["KERNEL_NAME", "POLICY_VARIABLE", "SandboxPolicy", "write_kernelspec"]

POLICY_VARIABLE = "CML_SANDBOX_POLICY"
KERNEL_NAME = "cml-sandbox"

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 8, 32, 4096
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
_KEPT_MOUNT_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC, "noatime": 1024,
                     "nodiratime": 2048, "relatime": 1 << 21}
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


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
    def load(cls, path: str | Path) -> SandboxPolicy:
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


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _enter_namespaces(policy: SandboxPolicy) -> None:
    """New PID, mount and (if asked) network namespaces; through a user namespace when not root."""
    flags = _CLONE_NEWPID | _CLONE_NEWNS | (_CLONE_NEWNET if policy.isolate_network else 0)
    if os.geteuid() == 0:
        _check(_libc().unshare(flags), "unshare")
        return
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc().unshare(_CLONE_NEWUSER | flags), "unshare")
    # Map ourselves to ourselves, so files keep their owner inside the namespace.
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def _supervise(child: int) -> None:
    """Wait for the kernel (process 1 of the new namespace) and leave the way it left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts reach the kernel through its process group
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _mount_flags(options: str) -> int:
    return sum(flag for name, flag in _KEPT_MOUNT_FLAGS.items() if name in options.split(","))


def _lock_file_system(policy: SandboxPolicy) -> None:
    """In the new mount namespace: fresh /proc, private /dev/shm, hidden paths, everything else read-only."""
    libc = _libc()
    # Mounts made here must not propagate back to the grader's view.
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount: make / private")
    _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
    if os.path.isdir("/dev/shm"):
        _check(libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=256m,mode=1777"),
               "mount /dev/shm")
    for path in policy.hidden_paths:
        if os.path.isdir(path):
            _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                              b"size=4k,mode=0555"), f"mount: hide {path}")
    home = policy.home.encode()
    _check(libc.mount(home, home, None, _MS_BIND | _MS_REC, None), "mount: bind the kernel's folder")
    writable = {os.path.realpath(policy.home), "/dev/shm"}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point, options = fields[4].replace("\\040", " "), fields[5]
        if point in writable or point.startswith(("/proc", "/sys", "/dev")) or "ro" in options.split(","):
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _mount_flags(options)
        _check(libc.mount(None, point.encode(), None, flags, None), f"mount: make {point} read-only")


def _drop_privileges(policy: SandboxPolicy, connection_file: str | None) -> str | None:
    """Become ``policy.uid`` (root only), or keep the user and drop every capability; returns a gap, if any."""
    libc = _libc()
    gap = None
    if policy.uid is not None and os.geteuid() == 0:
        # The kernel must own its folder (it writes files there) and read its connection file.
        os.chown(policy.home, policy.uid, policy.uid)
        for folder, folders, files in os.walk(policy.home):
            for name in folders + files:
                os.lchown(os.path.join(folder, name), policy.uid, policy.uid)
        if connection_file:
            os.chown(connection_file, policy.uid, policy.uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_processes, policy.max_processes))
        os.setgroups([])
        os.setgid(policy.uid)
        os.setuid(policy.uid)
    else:
        if policy.uid is not None:
            gap = "unprivileged user: the grader does not run as root"
        for capability in range(64):
            if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                break
        header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()
        _check(libc.capset(header, data), "capset")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    return gap


def _connection_file(command: list[str]) -> str | None:
    return command[command.index("-f") + 1] if "-f" in command[:-1] else None


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: python -m cml.instructor.sandbox -- KERNEL COMMAND...")
    command = argv[argv.index("--") + 1:]
    policy = SandboxPolicy.load(os.environ[POLICY_VARIABLE])
    gaps = []
    # Opened first: the report lies where the kernel may not write.
    report = open(policy.report or os.devnull, "w")
    if os.getsid(0) != os.getpid():  # jupyter_client usually starts kernels in a session of their own already
        os.setsid()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (policy.max_file_bytes, policy.max_file_bytes))
    try:
        _enter_namespaces(policy)
        namespaces = True
    except OSError as error:
        gaps.append(f"namespaces (process, network, file system): {error}")
        namespaces = False
    if namespaces:
        # If the grading worker dies, the supervisor dies with it, and the kernel (below) with the supervisor.
        _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        child = os.fork()
        if child:
            report.close()
            _supervise(child)
        _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        try:
            _lock_file_system(policy)
        except OSError as error:
            gaps.append(f"file-system isolation: {error}")
    gap = _drop_privileges(policy, _connection_file(command))
    gaps += [gap] if gap else []
    report.write("".join(f"{line}\n" for line in gaps))
    report.close()
    environment = {key: value for key, value in os.environ.items() if key != POLICY_VARIABLE}
    environment.update(policy.environment)
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
