"""A person's decision about a cell: stored with who, when and why, and, for a training label, an
AcceptedScan written to the outbox in the same transaction (`reviews.relay` publishes it once).

Two operators on one cell: the second must name the decision they override (`replaces`), so no
one overwrites a decision they have not seen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from reviews.queue import DecisionView
from reviews.tables import Cell, Decision, OutboxMessage
from schemas.accepted import AcceptedScan
from schemas.base import utc_now

DecisionLabel = Literal["defect", "normal", "unusable"]
DEFECT_KINDS = (
    "pore",
    "inclusion",
    "crack",
    "fold",
    "delamination",
    "missing_layer",
    "core_collapse",
    "can_dent",
    "other",
)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    label: DecisionLabel
    kind: str | None = Field(None, max_length=32, description="the defect's kind (defects only)")
    comment: str | None = Field(None, max_length=2000)
    replaces: int | None = Field(None, description="the decision this one overrides, as the operator saw it")

    @model_validator(mode="after")
    def _kind_of_defects_only(self) -> DecisionRequest:
        if self.kind is not None and self.label != "defect":
            raise ValueError("a kind is given for defects only")
        if self.kind is not None and self.kind not in DEFECT_KINDS:
            raise ValueError(f"unknown defect kind {self.kind!r} (one of {', '.join(DEFECT_KINDS)})")
        return self


class UnknownCell(LookupError):  # noqa: N818
    pass


class OverrideRequired(RuntimeError):  # noqa: N818 (a state shown to the operator, who confirms)
    """The cell has a decision the request did not name: show it and ask to confirm the override."""

    def __init__(self, current: DecisionView) -> None:
        super().__init__(f"{current.username} already decided {current.label} (decision {current.id})")
        self.current = current


def decide(
    session: Session, scan_id: str, request: DecisionRequest, *, username: str, topic_accepted: str
) -> DecisionView:
    """Store the decision and its outbox message; raises UnknownCell or OverrideRequired."""
    cell = session.get(Cell, scan_id, with_for_update=True)
    if cell is None:
        raise UnknownCell(scan_id)
    if cell.decision_id is not None and request.replaces != cell.decision_id:
        current = session.get(Decision, cell.decision_id)
        assert current is not None
        raise OverrideRequired(DecisionView.model_validate(current))
    now = utc_now()
    decision = Decision(
        scan_id=scan_id,
        username=username,
        label=request.label,
        kind=request.kind,
        comment=request.comment or None,
        decided_at=now,
        overrides_id=cell.decision_id,
        model_version=cell.model_version,
    )
    session.add(decision)
    session.flush()
    cell.decision_id = decision.id
    cell.decided_label = request.label
    cell.in_queue = False
    if request.label != "unusable":  # an unusable scan teaches the model nothing
        accepted = AcceptedScan(
            scan_id=scan_id,
            image_url=cell.image_url,
            label=request.label,
            kind=request.kind,
            note=request.comment or None,
            reviewed_by=username,
            accepted_at=now,
        )
        session.add(
            OutboxMessage(
                decision_id=decision.id,
                topic=topic_accepted,
                key=scan_id.encode(),
                value=accepted.to_json(),
                created_at=now,
                published_at=None,
            )
        )
    return DecisionView.model_validate(decision)
