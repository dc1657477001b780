"""``cml-course grade`` on a small course and a class of broken and hostile submissions.

Every submission is a real notebook graded by real kernels, in one run with two workers. The course
has three answers with a test cell each (1, 2 and 3 points); the hostile code sits at the start of the
second answer, so a kernel that dies there keeps the first test's point and loses the rest, while a
kernel that survives loses only the second test.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell
from nbgrader.api import Gradebook
from probe_course import CORRECT, source_notebook, student_notebook

from cml.instructor.grading.baseline import autograde
from cml.instructor.grading.run import grade_class
from cml.instructor.preprocessors.feedback import HIDDEN_PLACEHOLDER
from cml.instructor.cells import grade_id
from cml.instructor.course import Course
from cml.instructor.grading.model import Limits

REPO = Path(__file__).resolve().parents[1]
MARKER = f"cml-background-{uuid.uuid4().hex[:8]}"
LIMITS = Limits(cell_timeout=5, time_limit=15, memory_mb=800, max_output_bytes=200_000, disk_mb=64)
DISK_BOMB = """import os
for place in (os.getcwd(), os.environ["HOME"], os.environ["TMPDIR"], "/dev/shm"):
    for index in range(100):  # 3 GB in 8 MB files (each below the per-file limit), whatever fails
        try:
            with open(os.path.join(place, f"junk{index}"), "wb") as stream:
                stream.write(bytes(8 << 20))
        except OSError:
            pass"""
def _hostile_b(code: str) -> str:
    return code + "\n" + CORRECT["answer_b"]


def _snoop(paths: dict[str, Path]) -> str:
    return f'''import os, socket
LEAKS = []
for path in {[str(paths["gradebook"]), str(paths["other"]), str(paths["source"])]!r}:
    try:
        open(path, "rb").read(1)
        LEAKS.append("read " + path)
    except OSError:
        pass
try:
    open({str(paths["gradebook"])!r}, "ab").write(b"garbage")
    LEAKS.append("wrote the gradebook")
except OSError:
    pass
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    LEAKS.append("network")
except OSError:
    pass
# The other workers' private courses (notebooks, gradebook copies) and the gradebook templates lie
# beside this kernel's own folder (.../worker-N/home/work).
scratch = os.path.dirname(os.path.dirname(os.path.dirname(os.getcwd())))
for folder, _, files in os.walk(scratch):
    for name in files:
        path = os.path.join(folder, name)
        if name.endswith((".ipynb", ".db")) and "/home/" not in path:
            try:
                open(path, "rb").read(1)
                LEAKS.append("read " + path)
            except OSError:
                pass
print(LEAKS)
def double(x):
    return 2 * x if not LEAKS else -1'''


def _probe_course(root: Path) -> tuple[Course, Path, Path]:
    course_root = root / "course"
    (course_root / "source" / "probe").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", course_root / "nbgrader_config.py")
    nbformat.write(source_notebook(), course_root / "source" / "probe" / "probe.ipynb")
    return Course(course_root), root / "submitted", root / "work"


def build_class(root: Path) -> tuple[Course, Path, Path]:
    course, submissions, workdir = _probe_course(root)
    course_root = course.root
    paths = {"gradebook": workdir / "gradebook.db", "other": submissions / "ok" / "probe" / "probe.ipynb",
             "source": course_root / "source" / "probe" / "probe.ipynb"}
    blank = 'raise NotImplementedError()'
    notebooks = {
        "ok": student_notebook(),
        "blank": student_notebook(answer_a=blank, answer_b=blank, answer_c=blank),
        "loop": student_notebook(answer_b=_hostile_b("while True:\n    pass")),
        "stubborn": student_notebook(answer_b=_hostile_b(
            "while True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass")),
        "memory": student_notebook(answer_b=_hostile_b("hog = bytearray(3 * 2**30)")),
        "diskbomb": student_notebook(answer_b=_hostile_b(DISK_BOMB)),
        "osexit": student_notebook(answer_b=_hostile_b("os._exit(1)")),
        "quit": student_notebook(answer_b=_hostile_b("exit()")),  # IPython's exit, not sys.exit
        "segfault": student_notebook(answer_b=_hostile_b("import ctypes\nctypes.string_at(0)")),
        "sysexit": student_notebook(answer_b=_hostile_b("sys.exit(3)")),
        "interrupt": student_notebook(answer_b=_hostile_b("raise KeyboardInterrupt")),
        "background": student_notebook(answer_a=CORRECT["answer_a"] + (
            f"\nimport subprocess\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', "
            f"'{MARKER}'], start_new_session=True)\nif os.fork() == 0:\n    time.sleep(600)\n    os._exit(0)")),
        "snoop": student_notebook(answer_a=_snoop(paths)),
        "chatty": student_notebook(answer_a=CORRECT["answer_a"] + "\nfor _ in range(2000):\n    print('x' * 10000)"),
        "edited": student_notebook(answer_b="def triple(x):\n    return 0"),
    }
    slow = notebooks["slow"] = student_notebook()
    for _ in range(5):  # cells a student added, each within the cell timeout, together beyond the time limit
        slow.cells.insert(4, new_code_cell("time.sleep(4)"))
    edited = notebooks["edited"]
    next(c for c in edited.cells if grade_id(c) == "test_b").source = "pass"
    points = notebooks["points"] = student_notebook()
    next(c for c in points.cells if grade_id(c) == "test_a").metadata["nbgrader"]["points"] = 100
    deleted = notebooks["deleted"] = student_notebook()
    deleted.cells = [c for c in deleted.cells if grade_id(c) != "test_c"]
    moved = notebooks["moved"] = student_notebook()
    moved.cells.append(moved.cells.pop(2))  # answer_a moved to the end: test_a would fail in that order
    duplicated = notebooks["duplicated"] = student_notebook()
    duplicated.cells.insert(3, copy.deepcopy(duplicated.cells[2]))
    duplicated.cells[3].id = duplicated.cells[2].id
    huge = notebooks["huge"] = student_notebook()
    huge.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * 20_000_000)]
    for student, notebook in notebooks.items():
        folder = submissions / student / "probe"
        folder.mkdir(parents=True)
        # Written as plain JSON: nbformat would refuse to save the duplicated ids.
        (folder / "probe.ipynb").write_text(json.dumps(notebook))
    (submissions / "renamed" / "probe").mkdir(parents=True)
    nbformat.write(student_notebook(), submissions / "renamed" / "probe" / "probe-Copy1.ipynb")
    (submissions / "broken" / "probe").mkdir(parents=True)
    (submissions / "broken" / "probe" / "probe.ipynb").write_text('{"cells": [ {"cell_type": "code", ')
    (submissions / "missing" / "probe").mkdir(parents=True)
    (submissions / "missing" / "probe" / "notes.txt").write_text("I ran out of time")
    return Course(course_root), submissions, workdir


EXPECTED = {
    # student: (score out of 6, status, words the report must contain)
    "ok": (6, "graded", ""),
    "blank": (0, "graded", ""),
    "loop": (4, "flagged", "answer_b ran longer than 5 s"),
    "stubborn": (1, "flagged", "answer_b ran longer than 5 s and did not stop when interrupted"),
    "slow": (1, "flagged", "time limit exceeded"),
    "memory": (1, "flagged", "memory limit exceeded"),
    "diskbomb": (1, "flagged", "disk limit exceeded"),
    "osexit": (1, "flagged", "exited with code 1"),
    "quit": (6, "graded", ""),  # exit() in a kernel only asks the front end to close it
    "segfault": (1, "flagged", "SIGSEGV"),
    "sysexit": (4, "flagged", "raised SystemExit"),
    "interrupt": (4, "flagged", "raised KeyboardInterrupt"),
    "background": (6, "graded", ""),
    "snoop": (6, "graded", ""),
    "chatty": (6, "graded", ""),
    "edited": (4, "flagged", "'test_b' had been edited"),
    "points": (6, "flagged", "'test_a' was changed"),
    "deleted": (6, "flagged", "'test_c' was restored"),
    "moved": (6, "flagged", "put back in the source order"),
    "duplicated": (6, "flagged", "copy of graded cell 'answer_a'"),
    "huge": (6, "graded", ""),
    "renamed": (6, "flagged", "had been renamed"),
    "broken": (0, "flagged", "not valid JSON"),
    "missing": (0, "flagged", "was not submitted"),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("class")
    course, submissions, workdir = build_class(root)
    run = grade_class(course, submissions, workdir, workers=2, limits=LIMITS, progress=False)
    return run, workdir, {outcome.student: outcome for outcome in run.outcomes}


@pytest.mark.parametrize("student", list(EXPECTED))
def test_every_submission_is_graded_as_far_as_it_can_be(graded, student: str) -> None:
    run, _, outcomes = graded
    score, status, words = EXPECTED[student]
    outcome = outcomes[student]
    if student in ("snoop", "diskbomb") and outcome.isolation_gaps:
        pytest.skip("isolation incomplete on this machine: " + "; ".join(outcome.isolation_gaps))
    row = next(row for row in _rows(run.csv_report) if row["student"] == student)
    assert (float(row["code_score"]), float(row["max_code_score"])) == (score, 6), row
    assert outcome.status == status, outcome.notes
    assert words in " ".join(outcome.notes), outcome.notes


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_the_gradebook_holds_every_grade_and_flags_the_troubled(graded) -> None:
    _, workdir, _outcomes = graded
    with Gradebook(f"sqlite:///{workdir / 'gradebook.db'}") as gradebook:
        for student, (score, status, _) in EXPECTED.items():
            submission = gradebook.find_submission("probe", student)
            assert submission.code_score == score, student
            assert [notebook.flagged for notebook in submission.notebooks] == [status != "graded"], student


def test_nbgrader_reads_the_results(graded) -> None:
    """nbgrader stays the source of truth: its own export works on the workdir."""
    _, workdir, _ = graded
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(workdir / "export.csv")],
                               cwd=workdir, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = {row["student_id"]: row for row in _rows(workdir / "export.csv")}
    assert float(rows["ok"]["score"]) == 6 and float(rows["stubborn"]["score"]) == 1


def test_no_process_outlives_its_submission(graded) -> None:
    survivors = [p for p in psutil.process_iter(["cmdline"]) if MARKER in " ".join(p.info["cmdline"] or [])]
    assert not survivors


def test_reports_say_what_happened_to_whom(graded) -> None:
    run, _, _ = graded
    report = json.loads(run.json_report.read_text())
    assert {entry["student"] for entry in report["submissions"]} == set(EXPECTED)
    entry = next(e for e in report["submissions"] if e["student"] == "memory")
    assert any("memory limit" in note for note in entry["notes"])
    assert {cell["name"] for cell in entry["cells"]} == {"test_a", "test_b", "test_c"}
    assert report["limits"]["memory_mb"] == LIMITS.memory_mb and report["limits"]["disk_mb"] == LIMITS.disk_mb
    bomb = next(e for e in report["submissions"] if e["student"] == "diskbomb")
    if not bomb["isolation_gaps"]:
        assert LIMITS.disk_mb - 2 <= bomb["peak_disk_mb"] <= LIMITS.disk_mb


def test_feedback_shows_results_but_no_hidden_test(graded) -> None:
    _, workdir, _ = graded
    pages = {student: (workdir / "feedback" / student / "probe" / "probe.html") for student in ("ok", "edited")}
    for student, page in pages.items():
        html = page.read_text()
        assert "secret-" not in html and "BEGIN HIDDEN TESTS" not in html, student
        assert "hidden tests: their code is not shown" in html, student
    assert "AssertionError" in pages["edited"].read_text()
    assert HIDDEN_PLACEHOLDER.startswith("# (hidden tests")


def test_the_kernel_saw_nothing_of_the_grader(graded) -> None:
    """The snooping student read neither the gradebook nor another student nor the source, and wrote nothing."""
    _, workdir, outcomes = graded
    if outcomes["snoop"].isolation_gaps:
        pytest.skip("isolation incomplete on this machine: " + "; ".join(outcomes["snoop"].isolation_gaps))
    autograded = nbformat.read(workdir / "autograded" / "snoop" / "probe" / "probe.ipynb", as_version=4)
    printed = "".join(output.get("text", "") for cell in autograded.cells if cell.cell_type == "code"
                      for output in cell.outputs)
    assert "[]" in printed, printed
    with Gradebook(f"sqlite:///{workdir / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("probe", "ok").code_score == 6


def test_plain_nbgrader_gives_the_same_scores(graded, tmp_path: Path) -> None:
    """Where plain ``nbgrader autograde`` can grade a submission, it gives the score the parallel grader gave."""
    run, workdir, _outcomes = graded
    course = Course(workdir.parent / "course")
    students = ("ok", "edited")  # for "edited", nbgrader itself puts the original test back
    subset = tmp_path / "submitted"
    for student in students:
        shutil.copytree(workdir.parent / "submitted" / student, subset / student)
    rows = {row.student: row for row in autograde(course, subset, tmp_path / "plain", ["probe"])}
    ours = {row["student"]: float(row["code_score"]) for row in _rows(run.csv_report)}
    assert {student: rows[student].code_score for student in students} == {s: ours[s] for s in students}


def test_the_grade_command_survives_a_dead_worker(tmp_path: Path) -> None:
    """``cml-course grade`` unsandboxed: a kernel can kill its worker; that submission fails, a new worker grades
    the rest, and the command says so in its exit status.

    Unsandboxed, a kernel can also read the gradebook: the snooping student of the sandboxed class can fail.
    """
    course, submissions, workdir = _probe_course(tmp_path)
    # The worker that started the kernel, as jupyter_client tells every kernel (its parent may be the zygote).
    killer = student_notebook(answer_b="import os, signal\nos.kill(int(os.environ['JPY_PARENT_PID']), signal.SIGKILL)")
    snoop = student_notebook(answer_a=_snoop({"gradebook": workdir / "gradebook.db", "source": course.source,
                                              "other": submissions / "ok" / "probe" / "probe.ipynb"}))
    for student, notebook in (("killer", killer), ("ok", student_notebook()), ("snoop", snoop)):
        (submissions / student / "probe").mkdir(parents=True)
        nbformat.write(notebook, submissions / student / "probe" / "probe.ipynb")
    completed = subprocess.run(
        [sys.executable, "-m", "cml.instructor.cli", "--root", str(course.root), "grade", str(submissions),
         "--workdir", str(workdir), "--workers", "1", "--no-progress", "--no-sandbox", "--cell-timeout", "30",
         "--no-verdicts"],  # the verdicts' reference run would add a kernel and prove nothing here
        capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 1, completed.stdout + completed.stderr  # one submission failed
    assert "graded 3 submissions" in completed.stdout
    rows = {row["student"]: row for row in _rows(next((workdir / "reports").glob("*/grades.csv")))}
    assert rows["killer"]["status"] == "failed" and "grading worker died" in rows["killer"]["notes"]
    assert float(rows["ok"]["code_score"]) == 6
    assert float(rows["snoop"]["code_score"]) == 5  # double() returns -1 once it has found something to read
    assert (workdir / "feedback" / "ok" / "probe" / "probe.html").exists()
