"""The review station's pages with fakes at the boundary (object store, registry, Kafka) and a real
review database (SQLite in tmp_path; the decision and queue test on PostgreSQL too): sign-in,
CSRF, redirects, the queue and its filters, decisions and overrides, images, models and rollback."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from facade.api.app import create_app
from facade.api.services import Services
from reviews.database import Database
from reviews.decisions import DecisionRequest, decide
from reviews.materialise import ConsumedRecord, store_batch, stored_offsets
from reviews.people import add_user
from reviews.queue import cell_detail
from reviews.tables import OutboxMessage
from schemas.accepted import AcceptedScan
from schemas.control import RollbackRequest
from schemas.settings import Settings
from tests.facade.test_api_app import FakeCatalog, FakeKafka, FakeStore, fake_services, png_bytes

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
GROUP = "review-web-test"
TOPIC = "ct.verdicts"
PASSWORDS = {"olga": "operator-pass", "erik": "engineer-pass", "omar": "operator-two"}


@dataclass
class FakeRelay:
    """Stands in for the outbox relay: counts wake-ups, publishes nothing."""

    wakes: int = 0

    def wake(self) -> None:
        self.wakes += 1

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def close(self) -> None:
        return None


@dataclass
class Station:
    client: TestClient
    database: Database
    store: FakeStore
    kafka: FakeKafka
    catalog: FakeCatalog
    relay: FakeRelay
    settings: Settings
    offset: int = 0
    scans: list[str] = field(default_factory=list)

    def seed(self, *verdicts: dict[str, Any], audit_rate: float = 0.0) -> None:
        """Store verdicts as the review consumer would, each at the next offset of one partition."""
        records = []
        for v in verdicts:
            records.append(ConsumedRecord(TOPIC, 0, self.offset, json.dumps(v).encode()))
            self.offset += 1
        key = (TOPIC, 0)

        def store(session: Session) -> None:
            expected = stored_offsets(session, GROUP, [key]).get(key)
            store_batch(session, GROUP, records, {key: expected}, audit_rate=audit_rate)

        self.database.run(store)

    def login(self, username: str, *, next_path: str | None = None) -> httpx.Response:
        page = self.client.get("/review/login", params={"next": next_path} if next_path else None)
        token = csrf_of(page.text)
        form = {"username": username, "password": PASSWORDS[username], "csrf_token": token}
        if next_path:
            form["next"] = next_path
        answer: httpx.Response = self.client.post("/review/login", data=form, follow_redirects=False)
        return answer

    def csrf(self, path: str = "/review/") -> str:
        return csrf_of(self.client.get(path).text)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def verdict(scan_id: str, *, minutes: int = 0, anomaly: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "scan_id": scan_id,
        "image_url": f"s3://scans/{scan_id}.png",
        "reconstruction_error": 0.01,
        "anomaly_score": 0.9 if anomaly else 0.1,
        "is_anomaly": anomaly,
        "threshold": 0.5,
        "model_version": "v2",
        "judged_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


def add_people(session: Session) -> None:
    add_user(session, "olga", PASSWORDS["olga"], "operator")
    add_user(session, "omar", PASSWORDS["omar"], "operator")
    add_user(session, "erik", PASSWORDS["erik"], "engineer")


def open_station(tmp_path: Path, database_url: str | None = None, **settings_fields: Any) -> Iterator[Station]:
    settings = Settings(
        checkpoint_dir=tmp_path,
        api_wait_s=2.0,
        allow_anonymous_writes=True,
        review_database_url=SecretStr(database_url or f"sqlite:///{tmp_path / 'review.db'}"),
        **settings_fields,
    )
    store, catalog, relay = FakeStore(), FakeCatalog(), FakeRelay()
    kafka = FakeKafka(settings, catalog=catalog)

    factory = fake_services(store, catalog, kafka, relay_factory=lambda _settings, _database: relay)
    app = create_app(settings, registry=CollectorRegistry(), services_factory=factory)
    # https: the session cookie is Secure, as a plant's facade sends it.
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        services = cast(Services, app.state.services)
        assert client.portal is not None
        client.portal.call(asyncio.wait_for, services.served.first_attempted.wait(), 10)
        database = services.review.database
        if database is not None:
            database.run(add_people)
        yield Station(client, cast(Database, database), store, kafka, catalog, relay, settings)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    yield from open_station(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_station(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Station]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    yield from open_station(tmp_path, url)


def listed(html: str) -> list[str]:
    return re.findall(r'<a class="scan" href="[^"]+">([^<]+)</a>', html)


# Signing in


def test_every_page_needs_a_login_and_remembers_where_it_was_going(station: Station) -> None:
    for path in ("/review/", "/review/stats", "/review/models", "/review/cells/line1/cell-1?reason=anomaly"):
        answer = station.client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        location = urlsplit(answer.headers["location"])
        assert location.path == "/review/login"
        assert parse_qs(location.query)["next"] == [path]
    assert station.client.get("/review", follow_redirects=False).headers["location"] == "/review/"


def test_sign_in_sets_a_strict_http_only_secure_cookie_and_goes_where_it_was_going(station: Station) -> None:
    answer = station.login("olga", next_path="/review/stats")
    assert (answer.status_code, answer.headers["location"]) == (303, "/review/stats")
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("review_session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite", "max-age"} <= flags
    assert "samesite=strict" in cookie.lower() and f"max-age={12 * 3600}" in cookie.lower()
    page = station.client.get("/review/stats")
    assert page.status_code == 200
    assert "olga" in page.text and "operator" in page.text and "Signed in as olga" in page.text


def test_a_wrong_password_is_refused_and_no_session_is_opened(station: Station) -> None:
    token = csrf_of(station.client.get("/review/login").text)
    answer = station.client.post(
        "/review/login", data={"username": "olga", "password": "nope-nope", "csrf_token": token}
    )
    assert answer.status_code == 401
    assert "Wrong user name or password" in answer.text
    assert "review_session" not in answer.cookies
    assert station.client.get("/review/", follow_redirects=False).status_code == 303


def test_a_post_without_its_csrf_token_is_403(station: Station) -> None:
    station.seed(verdict("cell-1", anomaly=True))
    login_page = station.client.get("/review/login")
    forged = station.client.post("/review/login", data={"username": "olga", "password": PASSWORDS["olga"]})
    assert forged.status_code == 403 and "security token" in forged.text
    wrong = {"username": "olga", "password": PASSWORDS["olga"], "csrf_token": csrf_of(login_page.text) + "x"}
    assert station.client.post("/review/login", data=wrong).status_code == 403
    station.login("olga")
    for data in ({"label": "normal"}, {"label": "normal", "csrf_token": "forged"}):
        answer = station.client.post("/review/cells/cell-1/decisions", data=data)
        assert answer.status_code == 403, data
    assert station.client.post("/review/logout", data={}).status_code == 403
    detail = station.database.run(lambda s: cell_detail(s, "cell-1"))
    assert detail is not None and detail.decisions == []


@pytest.mark.parametrize(
    "target", ["https://evil.example/review/", "//evil.example/review/", "/\\evil.example", "/docs", "javascript:x"]
)
def test_sign_in_never_redirects_off_the_review_station(station: Station, target: str) -> None:
    answer = station.login("olga", next_path=target)
    assert (answer.status_code, answer.headers["location"]) == (303, "/review/")


def test_sign_out_ends_the_session(station: Station) -> None:
    station.login("olga")
    answer = station.client.post("/review/logout", data={"csrf_token": station.csrf()}, follow_redirects=False)
    assert answer.headers["location"] == "/review/login"
    assert station.client.get("/review/", follow_redirects=False).status_code == 303


# The queue and the cell


def seed_mixed(station: Station) -> None:
    station.seed(
        verdict("a-flagged", minutes=1, anomaly=True, recipe="21700"),
        verdict("b-tolerance", minutes=2, recipe="21700", conforms=False),
        verdict("c-unusable", minutes=3, recipe="4680", status="unusable", reasons=["blurred"]),
        verdict("d-flagged-old-model", minutes=4, anomaly=True, recipe="4680", model_version="v1"),
        verdict("e-yesterday", minutes=-24 * 60, anomaly=True, recipe="4680"),
    )
    station.seed(verdict("f-audit", minutes=5, recipe="21700"), audit_rate=1.0)
    station.seed(verdict("g-passed", minutes=6, recipe="21700"))


def test_the_queue_lists_newest_first_with_counts_and_filters(station: Station) -> None:
    seed_mixed(station)
    station.login("olga")
    page = station.client.get("/review/")
    assert listed(page.text) == [
        "f-audit",
        "d-flagged-old-model",
        "c-unusable",
        "b-tolerance",
        "a-flagged",
        "e-yesterday",
    ]
    assert "6 waiting" in page.text and "Flagged <b>3</b>" in page.text
    today = T0.date().isoformat()

    def shown(**params: str) -> list[str]:
        answer = station.client.get("/review/", params=params)
        assert answer.status_code == 200, answer.text
        return listed(answer.text)

    assert shown(reason="anomaly") == ["d-flagged-old-model", "a-flagged", "e-yesterday"]
    assert shown(reason="out_of_tolerance") == ["b-tolerance"]
    assert shown(reason="unusable") == ["c-unusable"]
    assert shown(reason="audit") == ["f-audit"]
    assert shown(recipe="4680") == ["d-flagged-old-model", "c-unusable", "e-yesterday"]
    assert shown(model_version="v1") == ["d-flagged-old-model"]
    assert shown(since=today, until=today, reason="anomaly", recipe="") == ["d-flagged-old-model", "a-flagged"]
    assert shown(until=(T0 - timedelta(days=1)).date().isoformat()) == ["e-yesterday"]
    assert station.client.get("/review/", params={"reason": "bogus"}).status_code == 422
    assert station.client.get("/review/", params={"since": "yesterday"}).status_code == 422


def test_the_queue_pages_through_many_cells(station: Station) -> None:
    station.seed(*(verdict(f"cell-{i:03d}", minutes=i, anomaly=True) for i in range(55)))
    station.login("olga")
    first = station.client.get("/review/")
    assert len(listed(first.text)) == 50 and listed(first.text)[0] == "cell-054"
    assert "Page 1 of 2" in first.text
    second = station.client.get("/review/", params={"page": 2})
    assert listed(second.text) == [f"cell-{i:03d}" for i in range(4, -1, -1)]


def test_the_cell_page_shows_verdict_findings_measurements_and_the_decision_keys(station: Station) -> None:
    station.seed(
        verdict(
            "line1/cell-7",
            anomaly=True,
            heatmap_url="s3://heatmaps/v2/line1/cell-7.png",
            findings=[{"kind": "pore", "slice": 12, "area_px": 31}],
            recipe="21700",
            measurements={
                "can.outer_diameter_mm": {"value": 21.3, "unit": "mm"},
                "roll.turns": {"value": 34, "unit": "count"},
                "overhang.min_mm": {"unit": "mm", "reason": "no end region in the slice"},
            },
            conforms=False,
            conformance={
                "recipe": "21700",
                "conforms": False,
                "failed": ["can.outer_diameter_mm"],
                "checks": [
                    {
                        "name": "can.outer_diameter_mm",
                        "value": 21.3,
                        "unit": "mm",
                        "min": 20.95,
                        "max": 21.25,
                        "passed": False,
                        "reason": "21.3 is above the maximum 21.25",
                    }
                ],
            },
        )
    )
    station.login("olga")
    page = station.client.get("/review/cells/line1/cell-7")
    assert page.status_code == 200, page.text
    text = page.text
    assert "0.9" in text and "0.5" in text and "v2" in text
    assert "pore" in text and "31" in text
    assert "21.3 mm" in text and "20.95 … 21.25" in text and 'class="bad"' in text and "roll.turns" in text
    assert "21.3 is above the maximum 21.25" in text and "no end region in the slice" in text
    for key in ("d", "n", "u", "c", "h"):
        assert f"<kbd>{key}</kbd>" in text
    assert 'src="/review/cells/line1/cell-7/heatmap"' in text and 'src="/review/static/review.js"' in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert station.client.get("/review/cells/nope").status_code == 404


def test_a_decision_is_stored_published_through_the_outbox_and_the_cell_leaves_the_queue(
    any_station: Station,
) -> None:
    station = any_station
    station.seed(verdict("cell-1", minutes=1, anomaly=True), verdict("cell-2", minutes=2, anomaly=True))
    station.login("olga")
    assert listed(station.client.get("/review/").text) == ["cell-2", "cell-1"]
    token = station.csrf("/review/cells/cell-2")
    answer = station.client.post(
        "/review/cells/cell-2/decisions",
        data={"csrf_token": token, "label": "normal", "kind": "crack", "comment": " false alarm ", "queue": ""},
        follow_redirects=False,
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/review/cells/cell-1")
    following = station.client.get(answer.headers["location"])
    assert "cell-2: normal, decision #" in following.text and "Next: cell-1" in following.text
    assert listed(station.client.get("/review/").text) == ["cell-1"]
    assert station.relay.wakes == 1
    (message,) = station.database.run(lambda s: s.scalars(select(OutboxMessage)).all())
    accepted = AcceptedScan.from_json(message.value)
    assert (message.topic, message.key) == (station.settings.topic_accepted, b"cell-2")
    assert (accepted.label, accepted.kind, accepted.note, accepted.reviewed_by) == (
        "normal",
        None,
        "false alarm",
        "olga",
    )
    # The last cell: back to the (now empty) queue.
    last = station.client.post(
        "/review/cells/cell-1/decisions",
        data={"csrf_token": token, "label": "defect", "kind": "pore"},
        follow_redirects=False,
    )
    assert last.headers["location"] == "/review/"
    assert "The queue is empty" in station.client.get("/review/").text


def test_the_next_cell_stays_within_the_filtered_queue(station: Station) -> None:
    seed_mixed(station)
    station.login("olga")
    page = station.client.get("/review/cells/a-flagged", params={"reason": "anomaly"})
    assert 'name="queue" value="reason=anomaly"' in page.text
    answer = station.client.post(
        "/review/cells/a-flagged/decisions",
        data={"csrf_token": csrf_of(page.text), "label": "unusable", "queue": "reason=anomaly"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/review/cells/d-flagged-old-model?reason=anomaly"
    assert station.database.run(lambda s: s.scalars(select(OutboxMessage)).all()) == []  # unusable teaches nothing


def test_a_second_decision_needs_a_confirmed_override(station: Station) -> None:
    station.seed(verdict("cell-1", anomaly=True))
    station.login("olga")
    station.client.post(
        "/review/cells/cell-1/decisions", data={"csrf_token": station.csrf(), "label": "defect", "kind": "crack"}
    )
    station.client.cookies.clear()
    station.login("omar")
    token = station.csrf()
    answer = station.client.post(
        "/review/cells/cell-1/decisions", data={"csrf_token": token, "label": "normal", "comment": "no crack"}
    )
    assert answer.status_code == 409
    assert "olga" in answer.text and "defect" in answer.text and "Override decision #1" in answer.text
    assert 'name="replaces" value="1"' in answer.text
    confirmed = station.client.post(
        "/review/cells/cell-1/decisions",
        data={"csrf_token": csrf_of(answer.text), "label": "normal", "comment": "no crack", "replaces": "1"},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    detail = station.database.run(lambda s: cell_detail(s, "cell-1"))
    assert detail is not None
    assert [(d.username, d.label, d.overrides_id) for d in detail.decisions] == [
        ("olga", "defect", None),
        ("omar", "normal", 1),
    ]
    history = station.client.get("/review/cells/cell-1").text
    assert "Already decided <b>normal</b>" in history and "#1" in history


def test_an_unknown_cell_or_a_bad_decision_is_a_page_not_a_crash(station: Station) -> None:
    station.seed(verdict("cell-1", anomaly=True))
    station.login("olga")
    token = station.csrf()
    assert (
        station.client.post("/review/cells/nope/decisions", data={"csrf_token": token, "label": "normal"}).status_code
        == 404
    )
    bad = station.client.post("/review/cells/cell-1/decisions", data={"csrf_token": token, "label": "maybe"})
    assert bad.status_code == 422 and "Decision not understood" in bad.text
    kind = station.client.post(
        "/review/cells/cell-1/decisions", data={"csrf_token": token, "label": "defect", "kind": "x"}
    )
    assert kind.status_code == 422


# Images


def tiff16(size: int = 96) -> bytes:
    ramp = np.linspace(0, 65535, size * size).reshape(size, size).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="TIFF")
    return buffer.getvalue()


def test_images_need_a_login_and_come_as_png(station: Station) -> None:
    station.store.objects[("scans", "line1/cell-1.png")] = tiff16()
    station.store.objects[("heatmaps", "v2/line1/cell-1.png")] = png_bytes()
    station.store.objects[("heatmaps", "v2/not-a-png.png")] = b"<script>alert(1)</script>"
    station.seed(
        verdict("line1/cell-1", anomaly=True, heatmap_url="s3://heatmaps/v2/line1/cell-1.png"),
        verdict("cell-2", anomaly=True, heatmap_url="s3://heatmaps/v2/not-a-png.png"),
        verdict("cell-3", anomaly=True, heatmap_url="s3://models/current.json"),
    )
    for tail in ("image", "heatmap"):
        refused = station.client.get(f"/review/cells/line1/cell-1/{tail}", follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"].startswith("/review/login")
    station.login("olga")
    image = station.client.get("/review/cells/line1/cell-1/image")
    assert (image.status_code, image.headers["content-type"]) == (200, "image/png")
    decoded = Image.open(io.BytesIO(image.content))
    assert decoded.mode == "L" and decoded.size == (768, 768)
    heat = station.client.get("/review/cells/line1/cell-1/heatmap")
    assert heat.status_code == 200 and heat.content == png_bytes()
    assert station.client.get("/review/cells/cell-2/heatmap").status_code == 422
    assert station.client.get("/review/cells/cell-3/heatmap").status_code == 400  # not the heat-map bucket
    assert station.client.get("/review/cells/cell-2/image").status_code == 404  # no such object


# Models and rollback


def test_an_operator_sees_no_rollback_and_a_forged_one_is_403(station: Station) -> None:
    station.login("olga")
    page = station.client.get("/review/models")
    assert page.status_code == 200 and "v1" in page.text and "current" in page.text
    assert "Roll back to" not in page.text and "Only engineers roll back" in page.text
    token = station.csrf("/review/models")
    for data in ({"csrf_token": token}, {"csrf_token": token, "confirmed": "true"}):
        answer = station.client.post("/review/models/v1/rollback", data=data)
        assert answer.status_code == 403 and "Engineers only" in answer.text
    assert station.kafka.sent == [] and station.catalog.current == "v2"


def test_the_models_page_names_the_model_of_each_recipes_latest_verdict(station: Station) -> None:
    station.seed(
        verdict("a-1", recipe="21700", model_version="v1"),
        verdict("a-2", minutes=5, recipe="21700"),
        verdict("b-1", minutes=9, recipe="4680", model_version="v1"),
    )
    station.login("olga")
    page = station.client.get("/review/models")
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>\s*<td><b>([^<]+)</b>( <span class=\"chip current\">)?", page.text)
    assert [(recipe, version, bool(chip)) for recipe, version, chip in rows] == [
        ("21700", "v2", True),
        ("4680", "v1", False),
    ]


def test_an_engineer_rolls_back_after_confirming(station: Station) -> None:
    station.login("erik")
    page = station.client.get("/review/models")
    assert "Roll back to v1" in page.text and "Roll back to v2" not in page.text
    token = csrf_of(page.text)
    confirm = station.client.post("/review/models/v1/rollback", data={"csrf_token": token})
    assert confirm.status_code == 200 and "Yes, roll back to v1" in confirm.text
    assert station.kafka.sent == []
    done = station.client.post("/review/models/v1/rollback", data={"csrf_token": token, "confirmed": "true"})
    assert done.status_code == 200, done.text
    assert "Rolled back to v1" in done.text
    ((topic, key, value),) = station.kafka.sent
    request = RollbackRequest.from_json(value)
    assert (topic, key, request.version) == (station.settings.topic_control, b"v1", "v1")
    assert request.reason is not None and "erik" in request.reason
    again = station.client.post("/review/models/v1/rollback", data={"csrf_token": token, "confirmed": "true"})
    assert again.status_code == 409 and "already the current version" in again.text


# Statistics and a database that is not there


def test_the_statistics_page_draws_the_trend_as_inline_svg(station: Station) -> None:
    seed_mixed(station)
    confirmed = DecisionRequest(label="defect")
    station.database.run(lambda s: decide(s, "a-flagged", confirmed, username="olga", topic_accepted="ct.accepted"))
    station.login("olga")
    page = station.client.get("/review/stats")
    assert page.status_code == 200
    assert page.text.count("<svg") == 2 and "<polyline" in page.text
    assert "21700" in page.text and "4680" in page.text and "100 %" in page.text


def test_without_its_database_the_review_station_is_503_and_the_api_serves_on(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    for station in open_station(tmp_path, f"sqlite:///{blocked / 'review.db'}"):
        answer = station.client.get("/review/")
        assert answer.status_code == 503
        assert "review database cannot be opened" in answer.text
        assert station.client.get("/healthz").status_code == 200
        assert station.client.get("/checkpoints").status_code == 200
