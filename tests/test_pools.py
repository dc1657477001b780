"""The worker pools' one scheduling loop: every job settled once, dead workers replaced within the restart budget."""

from __future__ import annotations

import queue
from collections.abc import Hashable

from cml.instructor.grading.model import Job, Outcome, Status
from cml.instructor.grading.pools import WorkerPool, failed


class _ScriptedPool(WorkerPool):
    """Two workers; the jobs of students named ``crash*`` kill the worker that takes them."""

    def __init__(self, restart_budget: int) -> None:
        super().__init__(time_limit=60, restart_budget=restart_budget)
        self.alive = {0: True, 1: True}
        self.holding: dict[Hashable, Job] = {}

    def idle_workers(self, busy: set[Hashable]) -> list[Hashable]:
        return [worker for worker, alive in self.alive.items() if alive and worker not in busy]

    def start(self, worker: Hashable, job: Job) -> None:
        self.holding[worker] = job

    def wait(self, busy: set[Hashable], timeout: float) -> None:
        pass

    def settle(self, worker: Hashable, job: Job, seconds: float, overdue: bool) -> Outcome | None:
        del self.holding[worker]
        if job.student.startswith("crash"):
            self.alive[worker] = self.replaced()
            return failed(job, "its grading worker died", seconds, worker)
        return Outcome(job.student, job.assignment, worker=worker)


def _run(pool: WorkerPool, students: list[str]) -> dict[str, Outcome]:
    feed: queue.Queue = queue.Queue()
    feed.put([Job(student, "a") for student in students])
    feed.put(None)
    outcomes: dict[str, Outcome] = {}
    pool.run(feed, lambda outcome: outcomes.setdefault(outcome.student, outcome))
    return outcomes


def test_every_job_is_settled_once_and_crashes_cost_only_their_own() -> None:
    outcomes = _run(_ScriptedPool(restart_budget=5), ["crash1", "ok1", "crash2", "ok2", "ok3"])
    assert sorted(outcomes) == ["crash1", "crash2", "ok1", "ok2", "ok3"]
    assert {name for name, outcome in outcomes.items() if outcome.status == Status.FAILED} == {"crash1", "crash2"}


def test_past_the_restart_budget_the_waiting_jobs_fail_with_the_reason() -> None:
    pool = _ScriptedPool(restart_budget=1)
    outcomes = _run(pool, ["crash1", "crash2", "crash3", "ok1", "ok2", "ok3", "ok4"])
    assert len(outcomes) == 7 and pool.restarts > pool.restart_budget
    waiting = [outcome for outcome in outcomes.values() if "the most a run allows" in " ".join(outcome.notes)]
    assert waiting and all(outcome.status == Status.FAILED for outcome in waiting)
    assert all(outcome.status == Status.GRADED for name, outcome in outcomes.items() if name.startswith("ok")
               and outcome not in waiting)
