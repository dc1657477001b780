"""nbgrader's Execute preprocessor, made to survive the kernel: a dead kernel costs only the cells it did not run.

Plain ``nbgrader autograde`` drops the whole submission when the kernel dies (``os._exit``, ``exit()``,
a segfault, the memory or time limit). :class:`ResilientExecute` instead gives the cell that was running
an error output that names the reason, and every later code cell a "not run" error, so that nbgrader's
own rule (a grade cell with an error scores zero) keeps the points of the cells graded before the crash
and gives zero to the rest. It also caps the output one cell may produce, before it reaches memory,
and collects the check log (:mod:`cml.check_log`) cell by cell, for verdicts given outside the kernel; in a
student's run the hidden tests run without their oracles (:mod:`cml.instructor.oracles`).

What it learns goes into an :class:`ExecutionReport` the caller hands it through the configuration
(``ResilientExecute.report``), as does the source of an outside verdict (``interruption_source``: the
watchdog's, when it killed the kernel), so that no state passes through module globals.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbclient.util import run_sync
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Any as AnyTrait
from traitlets import Bool, Callable, Dict, Enum, Instance, Integer, List, Unicode

from cml.check_log import LOG_VARIABLE
from cml.instructor.cells import cell_kind, grade_id
from cml.instructor.defaults import MAX_OUTPUT_BYTES
from cml.instructor.oracles import hidden_tests_for_kernel

__all__ = ["CHECK_RECORDS", "KERNEL_STOPPED", "NOT_RUN", "ExecutionReport", "ResilientExecute"]

KERNEL_STOPPED = "KernelStopped"
"""``ename`` of the error given to the cell that was running when the kernel stopped."""
NOT_RUN = "NotRun"
"""``ename`` of the error given to the code cells after it (and after a ``stop_after`` cell)."""
CHECK_RECORDS = "cml_check_records"
"""Key of ``resources`` under which the check log of each cell is left: ``{cell index: [record, ...]}``."""
_MAX_LOG_BYTES_PER_CELL = 256 * 2**20


@dataclass
class ExecutionReport:
    """What the execution of one submission's notebooks came to, beyond the notebooks themselves."""

    cell_seconds: float = 0.0
    """Time spent running cells (the part of grading that plain execution would cost as well)."""
    first_answer_seconds: float | None = None
    """From asking for the first notebook's kernel to its first answer cell starting: the kernel's start and the
    imports before the first answer."""
    problems: list[str] = field(default_factory=list)
    """Why the submission is flagged: execution that stopped early, interrupted cells, verdicts that disagree."""
    checks: list[dict] = field(default_factory=list)
    """One record per check of every judged grade cell, for the class report: its status, and a digest and a
    preview of the student's value (:func:`cml.instructor.preprocessors.verdicts.check_results`)."""

    def __deepcopy__(self, memo: dict) -> ExecutionReport:
        return self  # shared, not copied, when traitlets loads it from a configuration


def _no_interruption() -> str | None:
    return None


def _output_size(msg: dict[str, Any]) -> int:
    content = msg.get("content", {})
    size = len(content.get("text", ""))
    for value in content.get("data", {}).values():
        size += len(value) if isinstance(value, str) else len(str(value))
    return size + sum(len(line) for line in content.get("traceback", []))


def _cell_name(cell: NotebookNode, index: int) -> str:
    return grade_id(cell) or f"cell {index + 1}"


def _exit_description(code: int | None) -> str:
    if code is None:
        return "the kernel died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        crash = " (a segmentation fault)" if name == "SIGSEGV" else ""
        return f"the kernel was killed by {name}{crash}"
    return f"the kernel exited with code {code} (os._exit, exit() or quit() in the notebook?)"


class ResilientExecute(Execute):
    """Execute, keeping the results of the cells that ran when the kernel dies or is killed."""

    max_output_bytes = Integer(
        MAX_OUTPUT_BYTES, help="Output a single cell may produce; more is dropped with a note (-1: no limit)."
    ).tag(config=True)

    working_directory = Unicode(
        "", help="Run the kernel here, with a copy of the files beside the notebook, instead of beside the "
                 "notebook: the folder nbgrader writes the graded notebook to stays out of the kernel's reach."
    ).tag(config=True)

    extra_environment = Dict(
        {}, help="Variables added to the kernel's environment (the grading seed, say)."
    ).tag(config=True)

    check_log = Unicode(
        "", help="A file the kernel's checks log their values to (cml.check_log); read after every cell into "
                 "resources['cml_check_records']. Empty: no log."
    ).tag(config=True)

    report = Instance(ExecutionReport, args=(), help="Where the cell time and the problems of this execution go (an "
                      "ExecutionReport the caller reads afterwards).").tag(config=True)

    interruption_source = Callable(_no_interruption, help="Called when the kernel stops: why it was stopped from "
                                   "outside (the watchdog's verdict), or None.").tag(config=True)

    stop_after = List(Unicode(), help="Grade ids: no cell after the last of these in the notebook runs (each scores "
                      "zero as not run). For the instructor's described submissions, which need not run the cells "
                      "after the last one they must lose.").tag(config=True)

    oracles = Enum(["keep", "mark", "withhold"], "keep", help="What the kernel runs of the hidden tests' oracles "
                   "(cml.instructor.oracles): 'keep' the cells as written; 'mark' every oracle for the grader (the "
                   "reference run); 'withhold' them (a student's run: the kernel logs values, the grader judges)."
                   ).tag(config=True)

    probe_integrity = Bool(False, help="Ask the kernel, before the first answer cell and after the last cell, "
                           "whether the functions the tests rely on were replaced (cml.integrity); a replacement is "
                           "reported as a problem.").tag(config=True)

    zygotes = AnyTrait(None, allow_none=True, help="Zygotes to fork kernels from (given to the kernel manager, "
                       "a GradingKernelManager); None: every kernel starts afresh.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> tuple[NotebookNode, Any]:
        self._running_cell = -1
        self._requested = time.perf_counter()
        ids = [grade_id(cell) for cell in nb.cells]
        stops = [index for index, identifier in enumerate(ids) if identifier and identifier in self.stop_after]
        self._last_cell = stops[-1] if stops else len(nb.cells)
        self._final_cell = min(self._last_cell, len(nb.cells) - 1)
        self._captured = False
        self._output_bytes: dict[int, int] = {}
        self._exit_code: int | None = None
        self._log_offset = 0
        if self.check_log and isinstance(resources, dict):
            Path(self.check_log).parent.mkdir(parents=True, exist_ok=True)
            Path(self.check_log).write_bytes(b"")
            resources[CHECK_RECORDS] = {}
        if self.working_directory and isinstance(resources, dict):
            beside = Path(resources.get("metadata", {}).get("path") or ".")
            shutil.copytree(beside, self.working_directory, dirs_exist_ok=True, symlinks=True,
                            ignore=shutil.ignore_patterns("*.ipynb"))
            resources.setdefault("metadata", {})["path"] = self.working_directory
        try:
            return super().preprocess(nb, resources, km)
        except Exception as error:  # noqa: BLE001 - whatever stopped the kernel, grade what ran
            reason = self.interruption_source() or self._describe(error, nb)
            self._close_unfinished_cells(nb, reason)
            self.report.problems.append(reason)
            self.log.warning("Execution stopped in cell %d: %s", self._running_cell, reason)
            return nb, resources

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        if index > self._last_cell:
            if cell.cell_type == "code":
                cell.outputs = [new_output("error", ename=NOT_RUN, evalue="not run: grading stopped before this cell",
                                           traceback=[f"{NOT_RUN}: grading stopped before this cell"])]
            return cell, resources
        self._running_cell = index
        started = time.perf_counter()
        if self.report.first_answer_seconds is None and cell_kind(cell) in ("solution", "manual"):
            self.report.first_answer_seconds = started - self._requested
        if self.probe_integrity and not self._captured and cell_kind(cell) in ("solution", "manual"):
            self._captured = self._ask_kernel("__import__('cml.integrity').integrity.capture()") is not None
        written = cell.source
        if self.oracles != "keep" and cell_kind(cell) == "tests" and cell.cell_type == "code":
            cell.source = hidden_tests_for_kernel(written, withhold=self.oracles == "withhold")
        try:
            result = super().preprocess_cell(cell, resources, index)
        except Exception:
            self._exit_code = self._kernel_exit_code()
            raise
        finally:
            cell.source = written  # the graded notebook keeps the cell as the instructor wrote it
            self.report.cell_seconds += time.perf_counter() - started
            if self.check_log and isinstance(resources, dict) and cell.cell_type == "code":
                resources[CHECK_RECORDS][index] = self._read_check_log()
        if index == self._final_cell and self._captured:
            self._report_replaced_functions()
        return result

    def _ask_kernel(self, expression: str) -> str | None:
        """The ``repr`` of ``expression`` evaluated silently in the kernel (nothing reaches the notebook), or None
        when the kernel does not answer it."""
        try:
            message_id = self.kc.execute("", silent=True, store_history=False, user_expressions={"value": expression})
            reply = self.wait_for_reply(message_id)
            value = (reply or {}).get("content", {}).get("user_expressions", {}).get("value", {})
            return value.get("data", {}).get("text/plain") if value.get("status") == "ok" else None
        except Exception:  # noqa: BLE001 - a kernel that cannot answer is reported by the caller
            return None

    def _report_replaced_functions(self) -> None:
        answer = self._ask_kernel("__import__('cml.integrity').integrity.replaced()")
        try:  # the kernel's answer is the repr of a JSON string; anything else is refused
            replaced = json.loads(ast.literal_eval(answer)) if answer and len(answer) < 100_000 else None
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            replaced = None
        if replaced is None or not isinstance(replaced, list):
            self.report.problems.append("the kernel did not say whether the functions the tests rely on were "
                                        "replaced (its answer was missing or malformed: likely tampering)")
        elif replaced:
            names = ", ".join(str(name)[:80] for name in replaced[:12])
            self.report.problems.append(f"the notebook replaced functions the tests rely on: {names} (likely "
                                        "tampering with the tests)")

    def _read_check_log(self) -> list[dict]:
        """The records the kernel appended since the last cell (malformed lines are dropped: the file is the
        kernel's, so anything may be in it)."""
        try:
            # The kernel may have swapped the file for a link or a pipe: read only a regular file, never block.
            path = getattr(self.km, "kernel_root", "") + self.check_log
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            return []
        with open(descriptor, "rb") as stream:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return []
            stream.seek(self._log_offset)
            data = stream.read(_MAX_LOG_BYTES_PER_CELL)
            self._log_offset = stream.seek(0, os.SEEK_END)
        records = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        environment = dict(self.extra_environment)
        if self.check_log:
            environment[LOG_VARIABLE] = self.check_log
        if environment:
            kwargs["env"] = {**os.environ, **kwargs.get("env", {}), **environment}
        await super().async_start_new_kernel(**kwargs)

    start_new_kernel = run_sync(async_start_new_kernel)

    def on_cell_executed(self, **kwargs: Any) -> None:
        super().on_cell_executed(**kwargs)
        reply = kwargs["execute_reply"]["content"]
        if reply.get("status") != "error":
            return
        where = _cell_name(kwargs["cell"], kwargs["cell_index"])
        if reply.get("ename") == self.error_on_timeout.get("ename"):
            self.report.problems.append(f"{where} ran longer than {self.timeout} s and was interrupted")
        elif reply.get("ename") in ("SystemExit", "KeyboardInterrupt"):
            self.report.problems.append(f"{where} raised {reply['ename']}: the rest of that cell did not run")

    def _kernel_exit_code(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return None if process is None else process.poll()

    def create_kernel_manager(self) -> Any:
        """The kernel manager nbclient would make, given this preprocessor's zygotes when it takes them."""
        manager = super().create_kernel_manager()
        if self.zygotes is not None and hasattr(manager, "zygotes"):
            manager.zygotes = self.zygotes
        return manager

    def _describe(self, error: Exception, nb: NotebookNode) -> str:
        if type(error).__name__ == "DeadKernelError":
            return _exit_description(self._exit_code)
        if type(error).__name__ == "CellTimeoutError" and 0 <= self._running_cell < len(nb.cells):
            return (f"{_cell_name(nb.cells[self._running_cell], self._running_cell)} ran longer than "
                    f"{self.timeout} s and did not stop when interrupted")
        return f"execution failed: {type(error).__name__}: {str(error)[:300]}"

    def _close_unfinished_cells(self, nb: NotebookNode, reason: str) -> None:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or index < self._running_cell:
                continue
            if index == self._running_cell:
                error = new_output("error", ename=KERNEL_STOPPED, evalue=reason,
                                   traceback=[f"{KERNEL_STOPPED}: {reason}"])
                cell.outputs.append(error)
            else:
                cell.outputs = [new_output("error", ename=NOT_RUN, evalue=f"not run: {reason}",
                                           traceback=[f"{NOT_RUN}: this cell did not run, because {reason}"])]

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        if self.max_output_bytes < 0 or msg.get("msg_type") == "error":
            return super().output(outs, msg, display_id, cell_index)
        used = self._output_bytes.get(cell_index, 0)
        if used > self.max_output_bytes:
            return None
        used += _output_size(msg)
        self._output_bytes[cell_index] = used
        if used > self.max_output_bytes:
            note = new_output("stream", name="stdout",
                              text=f"\n[grader: output beyond {self.max_output_bytes} characters was dropped]\n")
            outs.append(note)
            return None
        return super().output(outs, msg, display_id, cell_index)
