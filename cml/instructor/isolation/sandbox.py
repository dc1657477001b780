"""Start a grading kernel in a sandbox: namespaces of its own, resource limits, no privileges.

The grading command registers a kernelspec whose ``argv`` is::

    python -m cml.instructor.isolation.sandbox -- python -m ipykernel_launcher -f {connection_file}

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
* a disk limit: with ``disk_limit_bytes``, the private folder (with ``/dev/shm`` inside it) is a file system
  of its own in memory (tmpfs) of that size, seen by the kernel only, filled with a copy of what the grader
  put there. Nothing the kernel writes reaches the machine's disk, and all of it is gone when the kernel's
  processes end. The launcher, left outside as a supervisor, stops the kernel when that file system is full
  and writes why to the policy's ``outcome`` file, with the most it held. The grader reaches the kernel's
  files (its sockets, its check log) through ``/proc/<launcher>/root``
  (:class:`cml.instructor.isolation.kernels.GradingKernelManager`);
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
import select
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["KERNEL_NAME", "POLICY_VARIABLE", "SandboxPolicy", "enter", "kernel_environment", "read_outcome",
           "write_kernelspec"]

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
    disk_limit_bytes: int | None = None
    """Size of the kernel's private file system (its folder and ``/dev/shm``); ``None``: the folder as it is."""
    outcome: str = ""
    """File the supervisor writes, when the kernel has ended, as JSON: ``verdict`` (why it stopped the kernel,
    or ``null``) and ``peak_disk_bytes``."""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> SandboxPolicy:
        return cls(**json.loads(Path(path).read_text()))


def read_outcome(path: str | Path) -> dict:
    """The supervisor's ``outcome`` file: ``{"verdict": str | None, "peak_disk_bytes": int}`` (empty before the
    kernel has ended, or when there is none)."""
    try:
        outcome = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return outcome if isinstance(outcome, dict) else {}


def write_kernelspec(directory: Path) -> Path:
    """Write the sandbox kernelspec into ``directory/kernels/`` (put ``directory`` on ``JUPYTER_PATH``)."""
    spec_dir = directory / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "cml.instructor.isolation.sandbox", "--",
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


class _DiskWatch:
    """The supervisor's view of the kernel's private file system: how full it is, and whether it is full."""

    _SLACK_BYTES = 1 << 20
    """A file system with less room than this counts as full (the kernel's next write would fail)."""

    def __init__(self, policy: SandboxPolicy) -> None:
        self.policy = policy
        self.peak_bytes = 0
        # The private file system is mounted by the kernel's side after the fork: until the folder's device
        # changes, it is still the grader's disk, whose free space says nothing about the kernel.
        self._device = os.stat(policy.home).st_dev if policy.disk_limit_bytes else None

    def sample(self) -> str | None:
        """Measure the file system (keeping the peak); why the kernel must be stopped, if it is full."""
        if self._device is None:
            return None
        try:
            if os.stat(self.policy.home).st_dev == self._device:
                return None
            usage = os.statvfs(self.policy.home)
        except OSError:
            return None
        used = (usage.f_blocks - usage.f_bfree) * usage.f_frsize
        self.peak_bytes = max(self.peak_bytes, used)
        limit_mb = self.policy.disk_limit_bytes / 2**20
        if usage.f_bavail * usage.f_frsize < self._SLACK_BYTES:
            return f"disk limit exceeded: the kernel wrote {used / 2**20:.0f} MB (limit {limit_mb:.0f} MB)"
        if usage.f_files and usage.f_ffree == 0:
            return f"disk limit exceeded: the kernel created {usage.f_files} files and folders (the most it may)"
        return None


def _wait(child: int, watch: _DiskWatch, interval: float = 0.1) -> tuple[int, str | None]:
    """Wait for the kernel to end, killing it (and so its whole namespace) when its file system is full."""
    try:
        ended = os.pidfd_open(child)
    except (AttributeError, OSError):
        ended = None
    verdict = None
    while True:
        if ended is not None:
            select.select([ended], [], [], interval)
        else:
            time.sleep(interval)
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except InterruptedError:
            continue
        if pid:
            watch.sample()  # a last look, for the peak: the file system lives as long as this process
            return status, verdict
        if verdict is None and (verdict := watch.sample()):
            os.kill(child, signal.SIGKILL)


def _supervise(child: int, watch: _DiskWatch, outcome: IO[str]) -> None:
    """Wait for the kernel (process 1 of the new namespace) and leave the way it left; say how in ``outcome``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts reach the kernel through its process group
    status, verdict = _wait(child, watch)
    outcome.write(json.dumps({"verdict": verdict, "peak_disk_bytes": watch.peak_bytes}))
    outcome.close()
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _mount_flags(options: str) -> int:
    return sum(flag for name, flag in _KEPT_MOUNT_FLAGS.items() if name in options.split(","))


def _private_file_system(policy: SandboxPolicy) -> None:
    """Mount a tmpfs of ``disk_limit_bytes`` on the kernel's folder, holding a copy of what was there, with
    ``/dev/shm`` a folder of it; then work where the kernel was started, in the new file system."""
    libc = _libc()
    home = policy.home.encode()
    limit = int(policy.disk_limit_bytes or 0)
    before = os.open(policy.home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        options = f"size={limit},nr_inodes={max(10_000, limit // 8192)},mode=0700".encode()
        _check(libc.mount(b"tmpfs", home, b"tmpfs", _MS_NOSUID | _MS_NODEV, options), "mount: the kernel's folder")
        shutil.copytree(f"/proc/self/fd/{before}", policy.home, symlinks=True, dirs_exist_ok=True)
    finally:
        os.close(before)
    shared = os.path.join(policy.home, ".shm")
    os.makedirs(shared, exist_ok=True)
    os.chmod(shared, 0o1777)
    if os.path.isdir("/dev/shm"):
        _check(libc.mount(shared.encode(), b"/dev/shm", None, _MS_BIND, None), "mount /dev/shm")
    os.chdir(os.getcwd())  # the same path, now in the kernel's own file system


def _lock_file_system(policy: SandboxPolicy) -> list[str]:
    """In the new mount namespace: fresh /proc, private /dev/shm, hidden paths, everything else read-only; returns
    the measures that could not be applied."""
    libc = _libc()
    # Mounts made here must not propagate back to the grader's view.
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount: make / private")
    _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
    for path in policy.hidden_paths:
        if os.path.isdir(path):
            _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                              b"size=4k,mode=0555"), f"mount: hide {path}")
    home = policy.home.encode()
    gaps = []
    if policy.disk_limit_bytes:
        try:
            _private_file_system(policy)
        except OSError as error:
            gaps.append(f"disk limit: {error}")
            policy.disk_limit_bytes = None
    if not policy.disk_limit_bytes:
        if os.path.isdir("/dev/shm"):
            _check(libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=256m,mode=1777"),
                   "mount /dev/shm")
        _check(libc.mount(home, home, None, _MS_BIND | _MS_REC, None), "mount: bind the kernel's folder")
    writable = {os.path.realpath(policy.home), "/dev/shm"}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point, options = fields[4].replace("\\040", " "), fields[5]
        if point in writable or point.startswith(("/proc", "/sys", "/dev")) or "ro" in options.split(","):
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _mount_flags(options)
        _check(libc.mount(None, point.encode(), None, flags, None), f"mount: make {point} read-only")
    return gaps


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


def enter(policy_file: str, connection_file: str | None) -> dict[str, str]:
    """Apply the policy saved in ``policy_file`` to this process; returns the kernel's environment.

    Only the kernel's side returns: the supervisor left outside the namespaces ends inside (``os._exit``) when the
    kernel does. Used by :func:`main`, which then ``exec``s the kernel, and by kernels forked from a zygote
    (:mod:`cml.instructor.isolation.zygote`), which become the kernel without ``exec``: this process must run a
    single thread (``unshare`` refuses others).
    """
    policy = SandboxPolicy.load(policy_file)
    gaps = []
    # Opened first: both lie where the kernel may not write (nor, once the file system is locked, the supervisor).
    report = open(policy.report or os.devnull, "w")
    outcome = open(policy.outcome or os.devnull, "w")
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
        # Made before the fork: the kernel's side may mount its file system before the supervisor runs again.
        watch = _DiskWatch(policy)
        child = os.fork()
        if child:
            report.close()
            _supervise(child, watch, outcome)
        outcome.close()  # the supervisor's alone
        _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        try:
            gaps += _lock_file_system(policy)
        except OSError as error:
            gaps.append(f"file-system isolation: {error}")
    else:
        outcome.close()
    if policy.disk_limit_bytes and not namespaces:
        gaps.append("disk limit: it needs the file-system namespace")
    gap = _drop_privileges(policy, connection_file)
    gaps += [gap] if gap else []
    report.write("".join(f"{line}\n" for line in gaps))
    report.close()
    return kernel_environment(dict(os.environ), policy)


def kernel_environment(environment: dict[str, str], policy: SandboxPolicy) -> dict[str, str]:
    """The environment a kernel started with ``environment`` gets inside the sandbox (what :func:`enter` returns)."""
    return {**{key: value for key, value in environment.items() if key != POLICY_VARIABLE}, **policy.environment}


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: python -m cml.instructor.isolation.sandbox -- KERNEL COMMAND...")
    command = argv[argv.index("--") + 1:]
    environment = enter(os.environ[POLICY_VARIABLE], _connection_file(command))
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
