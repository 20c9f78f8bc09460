"""Jobs of /retrain and /anomaly: each waits for the model update that includes its scan.

In memory, per facade process: the served model's update hook resolves them, `GET /jobs/{id}` reads
them. Bounded: the oldest finished jobs are forgotten first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from schemas.accepted import Label
from schemas.api import JobState, JobStatus, TrainingResponse
from schemas.base import utc_now
from schemas.model_updates import ModelUpdate


@dataclass
class Job:
    job_id: str
    scan_id: str
    label: Label | None  # None: a rollback
    created_at: datetime = field(default_factory=utc_now)
    state: JobState = "pending"
    result: TrainingResponse | None = None
    error: str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self) -> JobStatus:
        return JobStatus(job_id=self.job_id, status=self.state, result=self.result, error=self.error)


def training_response(update: ModelUpdate, job_id: str) -> TrainingResponse:
    """The contract's answer: the errors of the candidate, and the version and threshold serving now."""
    return TrainingResponse(
        new_validation_error=update.new_validation_error,
        new_anomaly_error=update.new_anomaly_error,
        model_version=update.current_version,
        threshold=update.threshold,
        status=update.status,
        job_id=job_id,
    )


class JobStore:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def create(self, scan_id: str, label: Label | None) -> Job:
        job = Job(job_id=uuid.uuid4().hex, scan_id=scan_id, label=label)
        self._jobs[job.job_id] = job
        self._evict()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def fail(self, job: Job, error: str) -> None:
        job.state, job.error = "failed", error
        job.finished.set()

    def resolve(self, update: ModelUpdate) -> list[Job]:
        """Finish every pending job the update names (by job id, or by scan id for scans accepted
        elsewhere while a job waited for the same scan)."""
        job_ids, scan_ids = set(update.job_ids), set(update.scan_ids)
        finished = []
        for job in self._jobs.values():
            if job.state == "pending" and (job.job_id in job_ids or job.scan_id in scan_ids):
                job.state, job.result = "done", training_response(update, job.job_id)
                job.finished.set()
                finished.append(job)
        return finished

    async def wait(self, job: Job, timeout_s: float) -> bool:
        """True when the job finished within `timeout_s`."""
        try:
            await asyncio.wait_for(job.finished.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def _evict(self) -> None:
        if len(self._jobs) <= self._capacity:
            return
        for job_id in [j.job_id for j in self._jobs.values() if j.state != "pending"]:
            del self._jobs[job_id]
            if len(self._jobs) <= self._capacity:
                return
        while len(self._jobs) > self._capacity:  # all pending: the oldest waiter is given up
            self._jobs.popitem(last=False)
