"""Watch the processes a grading kernel starts: memory, wall-clock time, and no survivors.

A grading worker declares itself a *child subreaper*, so every process its kernel starts, even one
that detaches (double fork, ``setsid``), stays below it in the process tree. While a submission is
graded, :class:`KernelWatchdog` sums the resident memory of that tree a few times a second and kills
the tree when the sum passes the memory limit or the submission passes its time limit; afterwards
it kills whatever is left (background processes, forked children) and reaps it.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Collection

import psutil

__all__ = ["KernelWatchdog", "become_subreaper", "descendants", "kill_descendants", "kill_processes"]

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children (Linux); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(spare: Collection[int] = ()) -> list[psutil.Process]:
    """Every process below this one, but the processes ``spare`` (their own descendants included)."""
    return [process for process in psutil.Process().children(recursive=True) if process.pid not in spare]


def kill_descendants(uid: int | None = None, spare: Collection[int] = ()) -> int:
    """SIGKILL every process below this one but ``spare`` (and, if given, every process of user ``uid``) and reap
    them. Returns how many were still running (zombies waiting to be reaped do not count).
    """
    victims = descendants(spare)
    if uid is not None and uid != os.getuid():
        victims += [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    running = {process.pid for process in victims if _running(process)}
    kill_processes(victims)
    _reap_zombies()
    return len(running)


def kill_processes(processes: list[psutil.Process]) -> None:
    """SIGKILL each process (gone ones are skipped) and wait up to 5 s for them to end."""
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)


class KernelWatchdog:
    """Enforce a memory limit (summed over all descendants) and a wall-clock limit while in the ``with`` block.

    ``verdict`` says why the tree was killed (``None`` if it was not); ``peak_bytes`` is the largest
    total resident memory seen. ``spare`` names processes of the grader's own that are neither counted nor killed
    (the kernels' zygote, which outlives submissions); the kernels it forks are.
    """

    def __init__(self, memory_limit_bytes: int | None, time_limit_seconds: float | None, *,
                 uid: int | None = None, interval: float = 0.1,
                 spare: Callable[[], Collection[int]] = frozenset) -> None:
        self.spare = spare
        self.memory_limit_bytes = memory_limit_bytes
        self.time_limit_seconds = time_limit_seconds
        self.uid = uid
        self.interval = interval
        self.verdict: str | None = None
        self.peak_bytes = 0
        self.leftover_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="kernel-watchdog", daemon=True)

    def __enter__(self) -> KernelWatchdog:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.leftover_processes = kill_descendants(self.uid, self.spare())

    def _resident_bytes(self, processes: list[psutil.Process]) -> int:
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _watch(self) -> None:
        # Listing the tree scans all of /proc; reading the memory of known processes is cheap. So the tree is
        # listed once a second (a new process is counted within a second) and measured every interval.
        processes: list[psutil.Process] = []
        listed = 0.0
        while not self._stop.wait(self.interval):
            if time.monotonic() - listed >= 1.0:
                processes, listed = descendants(self.spare()), time.monotonic()
            used = self._resident_bytes(processes)
            self.peak_bytes = max(self.peak_bytes, used)
            if self.memory_limit_bytes is not None and used > self.memory_limit_bytes:
                self.verdict = (f"memory limit exceeded: the kernel used {used / 2**20:.0f} MB "
                                f"(limit {self.memory_limit_bytes / 2**20:.0f} MB)")
            elif self.time_limit_seconds is not None and time.monotonic() - self._started > self.time_limit_seconds:
                self.verdict = f"time limit exceeded: the submission ran longer than {self.time_limit_seconds:g} s"
            if self.verdict:
                kill_descendants(self.uid, self.spare())
                return
