"""Grading on a Dask cluster into a PostgreSQL gradebook gives what grading on one machine gives.

A scheduler and two workers run as separate processes on loopback (``dask scheduler``, ``dask worker``), and a
PostgreSQL server runs from a temporary folder. The same class of probe submissions is graded by the local
process pool into SQLite and by the cluster into PostgreSQL, both sandboxed; every score and status must agree,
and nbgrader must find the grades in PostgreSQL. Another test kills a worker of a local Dask cluster; a last
one checks how files travel between the parent and the workers.

PostgreSQL comes from Debian (``apt-get install postgresql``; ``./course test`` installs it where it can).
Without its programs the test is skipped with the reason, except under CI, where it fails.
"""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import psycopg
import pytest
from distributed import Client
from nbgrader.api import Gradebook
from probe_course import source_notebook, student_notebook

from cml.instructor.grading import run as classgrade
from cml.instructor.grading import cluster as cluster_module
from cml.instructor.grading.run import GradingRun, grade_class
from cml.instructor.grading.cluster import pack_files, unpack_files
from cml.instructor.course import Course
from cml.instructor.isolation.watchdog import kill_processes
from cml.instructor.grading.model import Limits, Outcome

REPO = Path(__file__).resolve().parents[1]
LIMITS = Limits(cell_timeout=10, time_limit=60, memory_mb=800, max_output_bytes=200_000)
EXPECTED = {
    # student: (score out of 6, status)
    "ok": (6, "graded"),
    "blank": (0, "graded"),
    "wrong": (4, "graded"),  # triple() is wrong: the 2-point test fails
    "osexit": (1, "flagged"),  # the kernel exits at the start of the second answer
    "missing": (0, "flagged"),  # no notebook handed in
}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the cluster test)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_programs() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), or ``$CML_POSTGRES_BIN``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda path: int(Path(path).parts[4]))
    folder = os.environ.get("CML_POSTGRES_BIN") or (str(Path(found[-1]).parent) if found else "")
    return Path(folder) if folder and (Path(folder) / "pg_ctl").exists() else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 with an empty database ``grades``, run as ``postgres`` when we are root."""
    programs = _postgres_programs()
    if programs is None:
        _unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    owner = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("no user 'postgres' to run the PostgreSQL server as (it refuses to run as root)")
        owner = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    folder = Path(tempfile.mkdtemp(prefix="cml-postgres-"))
    if owner:
        os.chown(folder, owner["user"], owner["group"])
    port, data = _free_port(), folder / "data"

    def run(*command: str) -> None:
        completed = subprocess.run([str(programs / command[0]), *command[1:]], cwd=folder, capture_output=True,
                                   text=True, timeout=120, check=False, **owner)
        assert completed.returncode == 0, completed.stdout + completed.stderr

    try:
        run("initdb", "-D", str(data), "-U", "grader", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        run("pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off", "start")
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="grader", dbname="postgres",
                                 autocommit=True) as connection:
                connection.execute("CREATE DATABASE grades")
            yield f"postgresql://grader@127.0.0.1:{port}/grades"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    """Kill a process and everything below it (a worker's nanny, the worker, its kernels)."""
    try:
        root = psutil.Process(process.pid)
        kill_processes(root.children(recursive=True) + [root])
    except psutil.Error:
        pass
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1; its address."""
    logs = tmp_path_factory.mktemp("dask")
    dask = [sys.executable, "-m", "dask"]
    address = f"tcp://127.0.0.1:{_free_port()}"
    commands = [[*dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"]]
    commands += [[*dask, "worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                  "--no-dashboard", "--name", f"grader-{index}", "--local-directory", str(logs / f"worker-{index}")]
                 for index in range(2)]
    processes = []
    try:
        for index, command in enumerate(commands):
            with open(logs / f"process-{index}.log", "w") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


def _write_class(root: Path, notebooks: dict[str, nbformat.NotebookNode]) -> tuple[Course, Path]:
    course_root = root / "course"
    (course_root / "source" / "probe").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", course_root / "nbgrader_config.py")
    nbformat.write(source_notebook(), course_root / "source" / "probe" / "probe.ipynb")
    for student, notebook in notebooks.items():
        folder = root / "submitted" / student / "probe"
        folder.mkdir(parents=True)
        if notebook is not None:
            nbformat.write(notebook, folder / "probe.ipynb")
    return Course(course_root), root / "submitted"


def _class(root: Path) -> tuple[Course, Path]:
    blank = "raise NotImplementedError()"
    return _write_class(root, {
        "ok": student_notebook(),
        "blank": student_notebook(answer_a=blank, answer_b=blank, answer_c=blank),
        "wrong": student_notebook(answer_b="def triple(x):\n    return 0"),
        "osexit": student_notebook(answer_b="import os\nos._exit(1)"),
        "missing": None,
    })


def _scores(outcome: Outcome) -> dict[str, float | None]:
    return {f"{notebook['name']}/{grade['name']}": grade["auto_score"]
            for notebook in outcome.payload.get("notebooks", []) for grade in notebook["grades"]}


def test_the_cluster_and_postgresql_give_the_single_machine_grades(tmp_path: Path, scheduler: str,
                                                                    postgres_url: str) -> None:
    """One test, so that the cluster, the database and the two runs are made once even when the tests of this
    module are spread over several pytest workers."""
    course, submissions = _class(tmp_path)
    # Other test modules may grade sandboxed classes at the same time, as the users from LOCAL_UID_BASE on;
    # the single-machine run here takes other ones.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classgrade, "LOCAL_UID_BASE", classgrade.LOCAL_UID_BASE + 100)
        single = grade_class(course, submissions, tmp_path / "single", workers=2, limits=LIMITS, progress=False)
    cluster = grade_class(course, submissions, tmp_path / "cluster", limits=LIMITS, progress=False,
                          cluster=scheduler, db_url=postgres_url)
    _check_same_grades(single, cluster)
    _check_files(tmp_path / "cluster")
    _check_postgresql(postgres_url, tmp_path / "cluster")
    _check_export(tmp_path / "cluster")


def _check_same_grades(single: GradingRun, cluster: GradingRun) -> None:
    assert [(o.student, o.status, _scores(o)) for o in cluster.outcomes] == \
        [(o.student, o.status, _scores(o)) for o in single.outcomes]
    assert {o.student: (o.code_total(), o.status) for o in cluster.outcomes} == EXPECTED, \
        {o.student: o.notes for o in cluster.outcomes}
    assert any("the Dask cluster at tcp://127.0.0.1" in note for note in cluster.run_notes), cluster.run_notes
    # Kernels run as unprivileged users on the workers where they do on one machine (where that user can run
    # this Python), else as the grader's user with no privileges; both runs say which.
    as_grader = any("grader's user" in note for note in single.run_notes)
    assert {as_grader} == {any("grader's user" in gap for gap in o.isolation_gaps) for o in cluster.outcomes}


def _check_files(workdir: Path) -> None:
    """The workers' autograded notebooks, feedback and logs are in the workdir; no SQLite gradebook is."""
    for student in ("ok", "wrong"):
        assert (workdir / "feedback" / student / "probe" / "probe.html").is_file()
        assert (workdir / "autograded" / student / "probe" / "probe.ipynb").is_file()
        assert (workdir / "logs" / "probe" / f"{student}.log").read_text()
    html = (workdir / "feedback" / "wrong" / "probe" / "probe.html").read_text()
    assert "secret-" not in html and "AssertionError" in html
    assert not (workdir / "gradebook.db").exists()


def _check_postgresql(postgres_url: str, workdir: Path) -> None:
    with Gradebook(postgres_url) as gradebook:
        for student, (score, status) in EXPECTED.items():
            submission = gradebook.find_submission("probe", student)
            assert submission.code_score == score, student
            assert [notebook.flagged for notebook in submission.notebooks] == [status != "graded"], student
    config = workdir / "nbgrader_config.py"
    assert postgres_url in config.read_text() and config.stat().st_mode & 0o077 == 0


def _check_export(workdir: Path) -> None:
    """The workdir's config names the database: plain ``nbgrader export`` finds the grades there."""
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(workdir / "export.csv")],
                               cwd=workdir, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with open(workdir / "export.csv") as stream:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(stream)}
    assert rows == {student: float(score) for student, (score, _) in EXPECTED.items()}


def test_a_dead_dask_worker_fails_its_submission_only(tmp_path: Path) -> None:
    """On a local Dask cluster of one worker, unsandboxed, a kernel kills its worker: that submission fails, the
    restarted worker grades the next one."""
    # The process that started the kernel, as jupyter_client tells every kernel (its parent may be the zygote).
    killer = student_notebook(answer_b="import os, signal\nos.kill(int(os.environ['JPY_PARENT_PID']), signal.SIGKILL)")
    course, submissions = _write_class(tmp_path, {"killer": killer, "ok": student_notebook()})
    run = grade_class(course, submissions, tmp_path / "work", workers=1, limits=LIMITS, sandbox=False,
                      progress=False, cluster="local", verdicts=False)
    outcomes = {outcome.student: outcome for outcome in run.outcomes}
    assert outcomes["killer"].status == "failed", outcomes["killer"].notes
    assert "Dask worker" in " ".join(outcomes["killer"].notes)
    assert (outcomes["ok"].status, outcomes["ok"].code_total()) == ("graded", 6), outcomes["ok"].notes
    with Gradebook(f"sqlite:///{tmp_path / 'work' / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("probe", "ok").code_score == 6


def test_files_travel_as_bytes_and_stay_inside_their_folder(tmp_path: Path) -> None:
    """What a task ships and brings back: plain files only (no link, so nothing outside the folder is read), and
    nothing written outside the target folder."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.bin").write_bytes(b"\x00x")
    (tmp_path / "a" / "secret").symlink_to("/etc/passwd")
    (tmp_path / "top.txt").write_text("t")
    files = pack_files(tmp_path, ["a", "top.txt", "absent"])
    assert files == {"a/b/x.bin": b"\x00x", "top.txt": b"t"}
    unpack_files(files, tmp_path / "copy", mode=0o600)
    assert pack_files(tmp_path / "copy", ["a", "top.txt"]) == files
    assert (tmp_path / "copy" / "top.txt").stat().st_mode & 0o777 == 0o600
    for path in ("../escape", "/tmp/escape", "a/../../escape"):
        with pytest.raises(ValueError):
            unpack_files({path: b""}, tmp_path / "copy")
    assert set(cluster_module.__all__) <= set(dir(cluster_module))
