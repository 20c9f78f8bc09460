"""kill -9 of the facade between a decision and its publish: after the restart the decision reaches
the accepted topic exactly once.

The facade runs as its own process (`battery-ct serve api`) on the real broker, with the review
database in a SQLite file. The first facade runs without its outbox relay, so the decision is
stored (with its outbox row, in one transaction) and certainly not yet published when the process
gets SIGKILL; that is the window the outbox exists for. The restarted facade, relay on, publishes
it; a third start publishes the next decision and nothing of the first again.
"""

from __future__ import annotations

import html
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from facade.web.client import csrf_token, sign_in
from reviews.database import Database
from reviews.materialise import store_batch
from reviews.people import add_user
from reviews.relay import pending
from schemas.settings import Settings
from tests.helpers import accepted_for, env_of, run_sync
from tests.reviews.conftest import verdict_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATTERY_CT = Path(sys.executable).with_name("battery-ct")
FLAGGED = "line3/cell-0815"
NEXT = "line3/cell-0816"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FacadeProcess:
    """`battery-ct serve api` in a subprocess; `kill` is SIGKILL, `stop` is SIGTERM."""

    def __init__(self, settings: Settings, log: Path, *, relay: bool) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = env_of(settings, review_relay=relay)
        self.process = subprocess.Popen(
            [str(BATTERY_CT), "serve", "api", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_serving(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:  # the port answering is the condition; each probe is a real request
            assert self.process.poll() is None, "the facade exited at start"
            try:
                if httpx.get(f"{self.url}/review/login", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the facade did not start serving"
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, and the graceful shutdown uvicorn then does (it exits by the signal it caught)."""
        self.process.terminate()
        assert self.process.wait(timeout=60) in (0, -signal.SIGTERM)


@pytest.fixture
def facades() -> Iterator[list[FacadeProcess]]:
    started: list[FacadeProcess] = []
    yield started
    for facade in started:
        if facade.process.poll() is None:
            facade.kill()


def decide_normal(url: str, scan_id: str) -> str:
    """Sign in as an operator and mark `scan_id` normal through the pages' own forms; the flash text."""
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as browser:
        sign_in(browser, f"{url}/review/", "olga", "operator-pass")
        cell = browser.get(f"/review/cells/{scan_id}")
        assert cell.status_code == 200
        decided = browser.post(
            f"/review/cells/{scan_id}/decisions", data={"csrf_token": csrf_token(cell), "label": "normal"}
        )
        assert decided.status_code == 200, decided.text
        return decided.text


def test_a_decision_stored_before_a_kill_9_is_published_once_after_the_restart(
    settings: Settings, tmp_path: Path, facades: list[FacadeProcess]
) -> None:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    settings = settings.model_copy(
        update={"review_database_url": SecretStr(url), "review_secure_cookies": False, "metrics_port": 0}
    )
    database = Database.open(url)
    database.run(lambda s: add_user(s, "olga", "operator-pass", "operator"))
    cells = [verdict_record(0, FLAGGED, anomaly=True), verdict_record(1, NEXT, anomaly=True)]
    database.run(lambda s: store_batch(s, "g", cells, {}, audit_rate=0))
    log = tmp_path / "facade.log"

    def start(*, relay: bool) -> FacadeProcess:
        facade = FacadeProcess(settings, log, relay=relay)
        facades.append(facade)
        facade.wait_serving()
        return facade

    first = start(relay=False)
    assert "normal, decision #1" in html.unescape(decide_normal(first.url, FLAGGED))
    assert len(database.run(pending)) == 1  # stored with its outbox row, not published
    first.kill()

    second = start(relay=True)
    (accepted,) = run_sync(accepted_for(settings, FLAGGED, timeout_s=60))
    assert (accepted.label, accepted.reviewed_by) == ("normal", "olga")
    assert accepted.image_url == f"s3://scans/{FLAGGED}.png"
    second.stop()
    assert database.run(pending) == []

    third = start(relay=True)  # its relay reconciles with the bookmark: the first decision went out
    decide_normal(third.url, NEXT)
    assert len(run_sync(accepted_for(settings, NEXT, timeout_s=60))) == 1  # the relay is running
    third.stop()
    assert len(run_sync(accepted_for(settings, FLAGGED, timeout_s=60))) == 1, log.read_text()[-3000:]
