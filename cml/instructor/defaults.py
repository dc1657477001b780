"""The one home of the grader's defaults: limits, timeouts and the grading kernels' environment.

Every command, config file and benchmark takes its default from here, so that changing one (the per-cell
timeout, say) changes it everywhere: ``nbgrader_config.py``, ``cml-course grade``, the reference runs and the
described test cases.
"""

from __future__ import annotations

__all__ = [
    "CELL_TIMEOUT_SECONDS",
    "DISK_LIMIT_MB",
    "GRACE_SECONDS",
    "GRADING_ENVIRONMENT",
    "MAX_NOTEBOOK_BYTES",
    "MAX_OUTPUT_BYTES",
    "MEMORY_LIMIT_MB",
    "TIME_LIMIT_SECONDS",
]

CELL_TIMEOUT_SECONDS = 120
"""How long one cell may run before it is interrupted."""
TIME_LIMIT_SECONDS = 900.0
"""How long one submission (all its notebooks) may take."""
MEMORY_LIMIT_MB = 4096
"""Resident memory of a submission's kernel and everything it starts, together."""
DISK_LIMIT_MB = 1024
"""What a sandboxed kernel may write, together: its folder, its temporary files and ``/dev/shm``."""
MAX_OUTPUT_BYTES = 2_000_000
"""Output one cell may produce; more is dropped with a note."""
MAX_NOTEBOOK_BYTES = 50 * 2**20
"""Size of a submitted notebook file; the intake refuses a larger one."""
GRACE_SECONDS = 120
"""How long past a submission's time limit its worker may take before it is replaced; also how long a pool
waits for a worker to appear, and a probe of the kernels' user may run."""

GRADING_ENVIRONMENT = {
    "CML_NO_PROGRESS": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""Environment for grading kernels: progress bars off (tqdm writes to stderr, which zeroes a test cell), and one
BLAS thread per kernel, since kernels run side by side and the course's small matrices gain nothing from more."""
