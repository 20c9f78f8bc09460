"""The review database's schema, the materialised cells, the queue, decisions, people and figures,
on both backends."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reviews.database import Database
from reviews.decisions import DecisionLabel, DecisionRequest, OverrideRequired, UnknownCell, decide
from reviews.materialise import OffsetConflict, audited, store_batch, stored_offsets
from reviews.people import InvalidUser, add_user, authenticate, close_session, csrf_matches, open_session, signed_in
from reviews.queue import QueueFilter, cell_detail, queue, summary
from reviews.stats import NO_RECIPE, daily, models_by_recipe
from reviews.tables import Base, Cell, OutboxMessage, RejectedVerdict, VerdictRecord
from schemas.accepted import AcceptedScan
from tests.reviews.conftest import T0, verdict_record

GROUP = "review-test"


def test_the_migrations_create_exactly_the_tables_of_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_migrating_twice_changes_nothing(database: Database) -> None:
    from reviews.database import migrate

    migrate(database.engine)
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_batch_is_stored_with_its_offsets_and_a_stale_one_is_refused(database: Database) -> None:
    batch = [verdict_record(i, anomaly=i % 2 == 0) for i in range(4)]
    moved = database.run(lambda s: store_batch(s, GROUP, batch, {("ct.verdicts", 0): None}, audit_rate=0))
    assert moved == {("ct.verdicts", 0): 4}
    assert database.run(lambda s: stored_offsets(s, GROUP, [("ct.verdicts", 0)])) == {("ct.verdicts", 0): 4}
    # A consumer that still thinks the partition is new (a zombie after a rebalance) stores nothing.
    with pytest.raises(OffsetConflict):
        database.run(lambda s: store_batch(s, GROUP, batch, {("ct.verdicts", 0): None}, audit_rate=0))
    with pytest.raises(OffsetConflict):
        database.run(lambda s: store_batch(s, GROUP, batch, {("ct.verdicts", 0): 2}, audit_rate=0))
    assert database.run(lambda s: s.scalar(select(func.count()).select_from(VerdictRecord))) == 4
    following = [verdict_record(4), verdict_record(5, scan_id="scan-0", minutes=99, anomaly=True)]
    database.run(lambda s: store_batch(s, GROUP, following, {("ct.verdicts", 0): 4}, audit_rate=0))
    cell = database.run(lambda s: s.get(Cell, "scan-0"))
    assert cell is not None and cell.verdicts == 2 and cell.judged_at == T0 + timedelta(minutes=99)


def test_an_older_verdict_read_late_is_history_only(database: Database) -> None:
    newer = verdict_record(0, scan_id="cell", minutes=10, anomaly=True)
    older = verdict_record(1, scan_id="cell", minutes=1, anomaly=False)
    database.run(lambda s: store_batch(s, GROUP, [newer, older], {}, audit_rate=0))
    detail = database.run(lambda s: cell_detail(s, "cell"))
    assert detail is not None and detail.cell.is_anomaly and len(detail.history) == 2
    assert [v.judged_at for v in detail.history] == sorted(v.judged_at for v in detail.history)


def test_a_record_that_is_not_a_verdict_is_kept_with_its_reason(database: Database) -> None:
    from reviews.materialise import ConsumedRecord

    bad = [
        ConsumedRecord("ct.verdicts", 0, 0, b"{not json"),
        ConsumedRecord("ct.verdicts", 0, 1, json.dumps({"schema_version": "9.0"}).encode()),
        ConsumedRecord("ct.verdicts", 0, 2, None),
        verdict_record(3),
    ]
    database.run(lambda s: store_batch(s, GROUP, bad, {}, audit_rate=0))
    rejected = database.run(lambda s: s.scalars(select(RejectedVerdict).order_by(RejectedVerdict.offset)).all())
    assert [r.offset for r in rejected] == [0, 1, 2]
    assert "invalid verdict" in rejected[0].reason and "major version 9" in rejected[1].reason
    assert database.run(lambda s: stored_offsets(s, GROUP, [("ct.verdicts", 0)])) == {("ct.verdicts", 0): 4}


def test_the_queue_holds_flagged_unusable_out_of_tolerance_and_audited_cells_newest_first(database: Database) -> None:
    records = [
        verdict_record(0, anomaly=True, recipe="21700-a"),
        verdict_record(1, status="unusable", reasons=["blank_frame"], recipe="21700-a"),
        verdict_record(2, conforms=False, reasons=["can.wall_min_mm"], recipe="4680-b"),
        *[verdict_record(i, recipe="4680-b") for i in range(3, 200)],
    ]
    database.run(lambda s: store_batch(s, GROUP, records, {}, audit_rate=0.05))
    page = database.run(lambda s: queue(s, QueueFilter(page_size=200)))
    reasons = {c.scan_id: c.queue_reason for c in page.cells}
    assert reasons["scan-0"] == "anomaly" and reasons["scan-1"] == "unusable"
    assert reasons["scan-2"] == "out_of_tolerance"
    audited_scans = {f"scan-{i}" for i in range(3, 200) if audited(f"scan-{i}", 0.05)}
    assert {s for s, r in reasons.items() if r == "audit"} == audited_scans
    assert 1 <= len(audited_scans) <= 30  # about 5 % of 197
    assert [c.judged_at for c in page.cells] == sorted((c.judged_at for c in page.cells), reverse=True)
    assert page.total == 3 + len(audited_scans)

    only = database.run(lambda s: queue(s, QueueFilter(recipe="21700-a")))
    assert {c.scan_id for c in only.cells} == {"scan-0", "scan-1"}
    flagged = database.run(lambda s: queue(s, QueueFilter(reason="anomaly")))
    assert [c.scan_id for c in flagged.cells] == ["scan-0"]
    window = database.run(
        lambda s: queue(s, QueueFilter(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)))
    )
    assert {c.scan_id for c in window.cells} == {"scan-1", "scan-2"}
    by_day = QueueFilter.model_validate({"since": f"{T0.date()}", "until": f"{T0.date() + timedelta(days=1)}"})
    assert database.run(lambda s: queue(s, by_day)).total == page.total
    paged = database.run(lambda s: queue(s, QueueFilter(page=2, page_size=2)))
    assert paged.pages == -(-page.total // 2) and len(paged.cells) == 2
    assert database.run(lambda s: summary(s, QueueFilter()))[1].recipes == ["21700-a", "4680-b"]
    counts, found = database.run(lambda s: summary(s, QueueFilter(recipe="4680-b")))
    assert counts == {"out_of_tolerance": 1, "audit": len(audited_scans)}
    assert found.recipes == ["21700-a", "4680-b"] and found.model_versions == ["v0001"]
    early, _ = database.run(lambda s: summary(s, QueueFilter(until=T0 + timedelta(minutes=2))))
    assert early == {"anomaly": 1, "unusable": 1}


def _user(database: Database, name: str = "olga", role: str = "operator") -> None:
    database.run(lambda s: add_user(s, name, "a long password", role))  # type: ignore[arg-type]


def test_a_decision_leaves_the_queue_and_writes_one_accepted_scan_to_the_outbox(database: Database) -> None:
    _user(database)
    database.run(lambda s: store_batch(s, GROUP, [verdict_record(0, anomaly=True)], {}, audit_rate=0))
    request = DecisionRequest(label="normal", comment="tab edge, not a pore")
    made = database.run(lambda s: decide(s, "scan-0", request, username="olga", topic_accepted="ct.accepted"))
    assert database.run(lambda s: queue(s, QueueFilter())).total == 0
    outbox = database.run(lambda s: s.scalars(select(OutboxMessage)).all())
    assert len(outbox) == 1 and outbox[0].decision_id == made.id and outbox[0].topic == "ct.accepted"
    accepted = AcceptedScan.from_json(outbox[0].value)
    assert (accepted.scan_id, accepted.label, accepted.reviewed_by) == ("scan-0", "normal", "olga")
    assert accepted.image_url == "s3://scans/scan-0.png" and accepted.note == "tab edge, not a pore"


def test_a_second_decision_must_confirm_the_override_of_the_first(database: Database) -> None:
    _user(database, "olga")
    _user(database, "piet")
    database.run(lambda s: store_batch(s, GROUP, [verdict_record(0, anomaly=True)], {}, audit_rate=0))
    first = database.run(
        lambda s: decide(s, "scan-0", DecisionRequest(label="normal"), username="olga", topic_accepted="a")
    )
    defect = DecisionRequest(label="defect", kind="pore")
    with pytest.raises(OverrideRequired) as raised:
        database.run(lambda s: decide(s, "scan-0", defect, username="piet", topic_accepted="a"))
    assert raised.value.current.id == first.id and raised.value.current.username == "olga"
    confirmed = defect.model_copy(update={"replaces": first.id})
    second = database.run(lambda s: decide(s, "scan-0", confirmed, username="piet", topic_accepted="a"))
    assert second.overrides_id == first.id
    detail = database.run(lambda s: cell_detail(s, "scan-0"))
    assert detail is not None and [d.label for d in detail.decisions] == ["normal", "defect"]
    assert detail.current_decision is not None and detail.current_decision.kind == "pore"
    assert len(database.run(lambda s: s.scalars(select(OutboxMessage)).all())) == 2


def test_unusable_publishes_nothing_and_unknown_cells_or_kinds_are_refused(database: Database) -> None:
    _user(database)
    database.run(lambda s: store_batch(s, GROUP, [verdict_record(0, anomaly=True)], {}, audit_rate=0))
    database.run(lambda s: decide(s, "scan-0", DecisionRequest(label="unusable"), username="olga", topic_accepted="a"))
    assert database.run(lambda s: s.scalars(select(OutboxMessage)).all()) == []
    with pytest.raises(UnknownCell):
        database.run(lambda s: decide(s, "nope", DecisionRequest(label="normal"), username="olga", topic_accepted="a"))
    with pytest.raises(ValueError, match="unknown defect kind"):
        DecisionRequest(label="defect", kind="gremlin")
    with pytest.raises(ValueError, match="defects only"):
        DecisionRequest(label="normal", kind="pore")


def test_people_sign_in_with_their_password_and_sessions_end(database: Database) -> None:
    _user(database, "erik", "engineer")
    with pytest.raises(InvalidUser):
        database.run(lambda s: add_user(s, "erik", "another password", "operator"))
    with pytest.raises(InvalidUser, match="at least"):
        database.run(lambda s: add_user(s, "short", "abc", "operator"))
    assert database.run(lambda s: authenticate(s, "erik", "wrong password")) is None
    assert database.run(lambda s: authenticate(s, "nobody", "a long password")) is None
    user = database.run(lambda s: authenticate(s, "erik", "a long password"))
    assert user is not None and user.password_hash.startswith("$argon2")
    token, person = database.run(lambda s: open_session(s, user, hours=1))
    seen = database.run(lambda s: signed_in(s, token))
    assert seen == person and seen.is_engineer
    assert (
        csrf_matches(person, person.csrf_token)
        and not csrf_matches(person, "forged")
        and not csrf_matches(person, None)
    )
    later = T0.now(T0.tzinfo) + timedelta(hours=2)
    assert database.run(lambda s: signed_in(s, token, now=later)) is None
    database.run(lambda s: close_session(s, token))
    assert database.run(lambda s: signed_in(s, token)) is None
    assert database.run(lambda s: signed_in(s, "made-up-token")) is None


def _decide(session: Session, *, scan: str, label: DecisionLabel) -> None:
    decide(session, scan, DecisionRequest(label=label), username="olga", topic_accepted="a")


def test_daily_figures_give_the_detectors_precision_in_production(database: Database) -> None:
    _user(database)
    records = [verdict_record(i, anomaly=i < 4, recipe="21700-a") for i in range(10)]
    database.run(lambda s: store_batch(s, GROUP, records, {}, audit_rate=0))
    decided: list[tuple[str, DecisionLabel]] = [("scan-0", "defect"), ("scan-1", "defect"), ("scan-2", "normal")]
    for scan, label in decided:
        database.run(partial(_decide, scan=scan, label=label))
    (day,) = database.run(lambda s: daily(s, days=3, now=T0 + timedelta(hours=1)))
    assert (day.recipe, day.day, day.judged, day.flagged) == ("21700-a", T0.date(), 10, 4)
    assert (day.confirmed_defects, day.false_alarms) == (2, 1)
    assert day.precision == pytest.approx(2 / 3)


def test_each_recipe_names_the_model_of_its_latest_verdict(database: Database) -> None:
    records = [
        verdict_record(0, recipe="21700-a", model_version="v0001"),
        verdict_record(1, recipe="21700-a", model_version="v0002"),
        verdict_record(2, recipe="21700-a", model_version="v0002"),
        verdict_record(3, recipe="4680-b", model_version="v0001"),
        verdict_record(4),
    ]
    database.run(lambda s: store_batch(s, GROUP, records, {}, audit_rate=0))
    by_recipe = database.run(models_by_recipe)
    assert [(r.recipe, r.model_version, r.cells) for r in by_recipe] == [
        (NO_RECIPE, "v0001", 1),
        ("21700-a", "v0002", 2),
        ("4680-b", "v0001", 1),
    ]
    assert by_recipe[1].judged_at == T0 + timedelta(minutes=2)
