"""Messages of the control topic: what an operator asks of the retrain consumer, the single writer
of the registry and of the model-updates topic (the facade may ask, never write those itself)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.base import Message, utc_now


class RollbackRequest(Message):
    """Serve `version` again. The retrain consumer moves the registry's pointer and answers with a
    `rolled_back` ModelUpdate whose `job_ids` name `request_id`."""

    request_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    version: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(None, max_length=2000)
    requested_at: datetime = Field(default_factory=utc_now)
