"""The sandbox's disk limit, on its own: a kernel's writes land in a file system of its own, in memory, of the
limit's size; the supervisor stops it when that is full, and nothing of it is left anywhere afterwards.

The launcher runs a plain Python program in place of a kernel, as the grading worker would start a kernel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cml.instructor.isolation.sandbox import POLICY_VARIABLE, SandboxPolicy, read_outcome

WRITER = """import os, sys, time
print(os.listdir("."), flush=True)  # what the grader put into the private folder is there
written = 0
for place in (".", os.environ["TMPDIR"], "/dev/shm"):
    for index in range(50):  # 400 MB, far beyond the limit
        try:
            with open(os.path.join(place, f"junk{index}"), "wb") as stream:
                stream.write(bytes(8 << 20))
            written += 8
        except OSError:
            pass
print("wrote", written, "MB", flush=True)
time.sleep(60)  # the supervisor stops it here, if the writing was quicker than the supervisor's look (0.1 s)
"""


def _launch(policy: SandboxPolicy, folder: Path, code: str) -> subprocess.CompletedProcess:
    policy.save(folder / "policy.json")
    return subprocess.run([sys.executable, "-m", "cml.instructor.isolation.sandbox", "--", sys.executable, "-c", code],
                          cwd=policy.home, env={**os.environ, POLICY_VARIABLE: str(folder / "policy.json")},
                          capture_output=True, text=True, timeout=120, check=False)


def _mounts() -> set[str]:
    return set(Path("/proc/self/mounts").read_text().splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux namespaces")
def test_a_disk_bomb_is_stopped_at_the_limit_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    (home / "given.txt").write_text("from the grader")
    policy = SandboxPolicy(home=str(home), environment={"TMPDIR": str(home / "tmp")},
                           report=str(tmp_path / "gaps.txt"), outcome=str(tmp_path / "outcome.json"),
                           disk_limit_bytes=32 << 20)
    mounts_before = _mounts()
    completed = _launch(policy, tmp_path, WRITER)
    gaps = Path(policy.report).read_text()
    if gaps:
        pytest.skip("the sandbox is incomplete on this machine: " + gaps)
    assert "given.txt" in completed.stdout, completed.stdout + completed.stderr
    written = re.search(r"wrote (\d+) MB", completed.stdout)
    assert written is None or int(written.group(1)) <= 32  # writes beyond the limit failed
    assert completed.returncode == -9  # killed, as the grader learns from the kernel's exit
    outcome = read_outcome(policy.outcome)
    assert outcome["verdict"].startswith("disk limit exceeded: the kernel wrote 3")
    assert 31 << 20 <= outcome["peak_disk_bytes"] <= 32 << 20
    # Nothing reached the grader's disk or stayed mounted: the folder holds what the grader put there.
    assert sorted(p.name for p in home.rglob("*")) == ["given.txt", "tmp"]
    assert _mounts() == mounts_before
    assert not list(Path("/dev/shm").glob("junk*"))  # the grader's /dev/shm was not the kernel's


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux namespaces")
def test_a_kernel_within_the_limit_is_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    policy = SandboxPolicy(home=str(home), report=str(tmp_path / "gaps.txt"), outcome=str(tmp_path / "outcome.json"),
                           disk_limit_bytes=32 << 20)
    completed = _launch(policy, tmp_path, "open('small', 'wb').write(bytes(4 << 20)); print('done')")
    if Path(policy.report).read_text():
        pytest.skip("the sandbox is incomplete on this machine: " + Path(policy.report).read_text())
    assert completed.returncode == 0 and "done" in completed.stdout, completed.stderr
    outcome = json.loads(Path(policy.outcome).read_text())
    assert outcome["verdict"] is None and 4 << 20 <= outcome["peak_disk_bytes"] < 8 << 20
    assert list(home.iterdir()) == []
