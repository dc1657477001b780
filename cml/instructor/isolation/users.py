"""The unprivileged users grading kernels run as, when the grader runs as root."""

from __future__ import annotations

import subprocess
import sys

from cml.instructor.defaults import GRACE_SECONDS

__all__ = ["DASK_UID_BASE", "LOCAL_UID_BASE", "unprivileged_user_works"]

LOCAL_UID_BASE = 64200
"""Local worker ``i`` runs its kernels as user id ``LOCAL_UID_BASE + i``."""
DASK_UID_BASE = LOCAL_UID_BASE + 1000
"""Grading process ``slot`` of a Dask worker machine runs its kernels as ``DASK_UID_BASE + slot``: apart from the local
pool's users, since the watchdog ends every process of its kernel's user after each submission."""


def unprivileged_user_works(uid: int) -> bool:
    """Can a process running as ``uid`` import the kernel and the course package (is the environment readable)?"""
    try:
        probe = subprocess.run([sys.executable, "-c", "import ipykernel, cml"], user=uid, group=uid, extra_groups=[],
                               cwd="/", capture_output=True, timeout=GRACE_SECONDS, check=False)
    except OSError:  # the interpreter itself is out of reach (a Python installed under /root, say)
        return False
    return probe.returncode == 0
