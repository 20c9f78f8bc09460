"""The job store of /retrain and /anomaly: created, resolved by a model update, awaited, bounded."""

from __future__ import annotations

import asyncio

from facade.api.jobs import JobStore
from schemas.model_updates import ModelUpdate


def update(**fields: object) -> ModelUpdate:
    base: dict[str, object] = {
        "status": "promoted",
        "version": "v2",
        "current_version": "v2",
        "threshold": 0.5,
        "new_validation_error": 0.01,
        "new_anomaly_error": 0.2,
    }
    return ModelUpdate.model_validate(base | fields)


def test_an_update_naming_the_job_finishes_it_with_the_contract_fields() -> None:
    jobs = JobStore()
    job = jobs.create("line1/cell-1", "normal")
    assert jobs.resolve(update(job_ids=[job.job_id])) == [job]
    status = job.status()
    assert status.status == "done"
    assert status.result is not None
    assert status.result.model_version == "v2"
    assert status.result.new_validation_error == 0.01
    assert status.result.new_anomaly_error == 0.2
    assert status.result.threshold == 0.5
    assert status.result.job_id == job.job_id


def test_a_rejected_candidate_reports_the_version_that_still_serves() -> None:
    jobs = JobStore()
    job = jobs.create("c", "defect")
    jobs.resolve(update(status="rejected", version="v3", current_version="v2", scan_ids=["c"]))
    assert job.result is not None
    assert (job.result.status, job.result.model_version) == ("rejected", "v2")


def test_an_update_about_other_scans_leaves_the_job_pending() -> None:
    jobs = JobStore()
    job = jobs.create("mine", "normal")
    assert jobs.resolve(update(job_ids=["someone-else"], scan_ids=["other"])) == []
    assert job.state == "pending"
    assert not job.finished.is_set()


def test_a_finished_job_is_not_overwritten_by_a_later_update() -> None:
    jobs = JobStore()
    job = jobs.create("c", "normal")
    jobs.resolve(update(job_ids=[job.job_id], current_version="v2"))
    jobs.resolve(update(scan_ids=["c"], current_version="v9"))
    assert job.result is not None and job.result.model_version == "v2"


def test_wait_returns_when_resolved_and_times_out_otherwise() -> None:
    async def scenario() -> tuple[bool, bool]:
        jobs = JobStore()
        resolved, idle = jobs.create("a", "normal"), jobs.create("b", "normal")
        loop = asyncio.get_running_loop()
        loop.call_soon(jobs.resolve, update(job_ids=[resolved.job_id]))
        return await jobs.wait(resolved, 5.0), await jobs.wait(idle, 0.01)

    assert asyncio.run(scenario()) == (True, False)


def test_capacity_forgets_finished_jobs_first() -> None:
    jobs = JobStore(capacity=2)
    done = jobs.create("a", "normal")
    jobs.resolve(update(job_ids=[done.job_id]))
    pending = jobs.create("b", "normal")
    newest = jobs.create("c", "normal")
    assert jobs.get(done.job_id) is None
    assert jobs.get(pending.job_id) is pending
    assert jobs.get(newest.job_id) is newest
    assert len(jobs) == 2
