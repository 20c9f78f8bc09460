"""The review station in a real headless Chromium (Debian's package, driven by Selenium) against a
real facade (uvicorn in a thread) on the real Kafka broker and S3 endpoint of the session fixtures:
sign in, open the queue and a flagged cell, mark it normal with the `n` key, see it leave the
queue, and exactly one AcceptedScan for it on the accepted topic (published by the facade's
outbox relay); an operator sees no rollback and a forged one is 403.

Screenshots of the queue and a cell page go to $BATTERY_CT_SCREENSHOTS when it names a directory
(docs/review-queue.png and docs/review-cell.png are made so), else to tmp_path.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from facade.api.app import create_app
from model_core.heatmap import render_heatmap_png
from model_core.imaging import decode_image, preprocess
from reviews.database import Database
from reviews.materialise import ConsumedRecord, store_batch
from reviews.people import add_user
from schemas.base import utc_now
from schemas.settings import Settings
from schemas.verdicts import Verdict
from storage.object_store import ObjectStore
from tests.facade.test_api_e2e import ServerThread
from tests.helpers import accepted_for, run_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REAL_SLICES = Path(__file__).parents[2] / "producers" / "data" / "real"
WAIT_S = 30
FLAGGED = "line2/cell-0417"


@dataclass
class Station:
    url: str
    settings: Settings
    database: Database
    versions: list[str]


def heatmap_of(scan: bytes, spot: tuple[float, float]) -> bytes:
    """A heat map as the inference consumer stores it: a blob of evidence over the model's input."""
    image = preprocess(decode_image(scan, max_pixels=1 << 24), 256)
    rows, cols = np.mgrid[0:256, 0:256]
    error = np.exp(-((rows - spot[0]) ** 2 + (cols - spot[1]) ** 2) / (2 * 9.0**2)).astype(np.float32)
    return render_heatmap_png(image, error + 0.02 * np.random.default_rng(0).random((256, 256), dtype=np.float32))


def tiff16(png: bytes) -> bytes:
    """The slice as a 16-bit TIFF, as a CT reconstruction writes it."""
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="TIFF")
    return buffer.getvalue()


def measurements(*, out_of_tolerance: bool) -> dict[str, Any]:
    return {
        "can.outer_diameter_mm": {"value": 21.31 if out_of_tolerance else 21.12, "unit": "mm", "confidence": 0.97},
        "can.wall_min_mm": {"value": 0.241, "unit": "mm", "confidence": 0.95},
        "roll.core_diameter_mm": {"value": 2.42, "unit": "mm", "confidence": 0.9},
        "roll.turns": {"value": 29, "unit": "count", "confidence": 0.9},
        "overhang.min_mm": {"unit": "mm", "reason": "a slice has no end region"},
    }


def conformance(*, out_of_tolerance: bool) -> dict[str, Any]:
    diameter = 21.31 if out_of_tolerance else 21.12
    checks = [
        {
            "name": "can.outer_diameter_mm",
            "value": diameter,
            "unit": "mm",
            "nominal": 21.1,
            "min": 20.95,
            "max": 21.25,
            "passed": not out_of_tolerance,
            "reason": "21.31 is above the maximum 21.25" if out_of_tolerance else None,
        },
        {"name": "can.wall_min_mm", "value": 0.241, "unit": "mm", "min": 0.22, "passed": True},
    ]
    failed = ["can.outer_diameter_mm"] if out_of_tolerance else []
    return {"recipe": "21700", "conforms": not out_of_tolerance, "failed": failed, "checks": checks}


def seed(settings: Settings, store: ObjectStore, database: Database) -> None:
    """A morning on line 2: three flagged cells, one out of tolerance, one unusable, one audit sample."""
    slices = sorted(REAL_SLICES.glob("*.png"))
    now = utc_now().replace(microsecond=0)
    plan: list[tuple[str, dict[str, Any]]] = [
        (FLAGGED, {"is_anomaly": True, "anomaly_score": 0.913, "spot": (92, 150), "tiff": True}),
        ("line2/cell-0409", {"is_anomaly": True, "anomaly_score": 0.702, "spot": (160, 90)}),
        ("line1/cell-0388", {"is_anomaly": True, "anomaly_score": 0.655, "spot": (120, 60), "recipe": "4680"}),
        ("line2/cell-0402", {"conforms": False}),
        ("line1/cell-0371", {"status": "unusable", "reasons": ["motion_blur"], "recipe": "4680"}),
        ("line2/cell-0395", {"audit": True}),
    ]
    records = []
    for offset, ((scan_id, how), path) in enumerate(zip(plan, slices, strict=False)):
        data = path.read_bytes()
        key = f"{scan_id}.tif" if how.get("tiff") else f"{scan_id}.png"
        store.put_bytes(settings.bucket_scans, key, tiff16(data) if how.get("tiff") else data)
        heatmap_url = None
        if "spot" in how:
            heat_key = f"v0002/{scan_id}.png"
            store.put_bytes(settings.bucket_heatmaps, heat_key, heatmap_of(data, how["spot"]), content_type="image/png")
            heatmap_url = f"s3://{settings.bucket_heatmaps}/{heat_key}"
        verdict = Verdict(
            scan_id=scan_id,
            image_url=f"s3://{settings.bucket_scans}/{key}",
            reconstruction_error=0.0042,
            anomaly_score=how.get("anomaly_score", 0.21),
            is_anomaly=how.get("is_anomaly", False),
            threshold=0.5,
            model_version="v0002",
            heatmap_url=heatmap_url,
            judged_at=now - timedelta(minutes=7 * offset + 3),
        )
        extra = {
            "recipe": how.get("recipe", "21700"),
            "status": how.get("status", "judged"),
            "conforms": how.get("conforms", True),
            "reasons": how.get("reasons"),
            "findings": [{"kind": "pore", "slice": 41, "x": how["spot"][1], "y": how["spot"][0], "area_px": 38}]
            if "spot" in how
            else [],
            "measurements": measurements(out_of_tolerance=how.get("conforms") is False),
            "conformance": conformance(out_of_tolerance=how.get("conforms") is False),
        }
        payload = verdict.model_dump(mode="json") | extra
        records.append(ConsumedRecord(settings.topic_verdicts, 0, offset, json.dumps(payload).encode()))
    rate = 1.0  # the one passed cell is the audit sample; every other cell is queued for its own reason
    database.run(lambda s: store_batch(s, settings.review_group, records, {}, audit_rate=rate))


@pytest.fixture
def station(settings: Settings, tiny_checkpoints: dict[str, Path]) -> Iterator[Station]:
    from model_core.registry import Registry
    from storage.registry_store import S3BlobStore

    store = ObjectStore.from_settings(settings)
    for bucket in (settings.bucket_scans, settings.bucket_models, settings.bucket_heatmaps):
        store.ensure_bucket(bucket)
    registry = Registry(S3BlobStore(store, settings.bucket_models))
    versions = [registry.publish(tiny_checkpoints[name]) for name in ("v1", "v2")]
    for version in versions:
        registry.promote(version)
    # The facade migrates the database too; opened first here to seed it before the facade starts.
    database = Database.open(settings.review_database_url.get_secret_value())
    database.run(lambda s: add_user(s, "olga", "operator-pass", "operator"))
    database.run(lambda s: add_user(s, "erik", "engineer-pass", "engineer"))
    seed(settings, store, database)
    server = ServerThread(create_app(settings))
    url = server.start()
    try:
        yield Station(url, settings, database, versions)
    finally:
        server.stop()
        database.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # The screenshots' size exactly, whatever the window decorations of this Chromium.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    named = os.environ.get("BATTERY_CT_SCREENSHOTS")
    if named and Path(named).is_dir():
        return Path(named)
    return tmp_path


def sign_in(driver: WebDriver, station: Station, username: str, password: str) -> None:
    driver.get(f"{station.url}/review/")
    WebDriverWait(driver, WAIT_S).until(lambda d: "/review/login" in d.current_url)
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "span.user"))
    # Secure cookie over http://127.0.0.1: Chromium keeps it (a trustworthy origin), so this is signed in.
    assert driver.find_element(By.CSS_SELECTOR, "span.user").text == username


def queued(driver: WebDriver) -> list[str]:
    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "table.queue a.scan")]


def images_loaded(driver: WebDriver) -> bool:
    return bool(
        driver.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0) && document.images.length > 0"
        )
    )


def test_an_operator_marks_a_flagged_cell_normal_with_the_keyboard(
    station: Station, browser: WebDriver, screenshots: Path
) -> None:
    driver = browser
    sign_in(driver, station, "olga", "operator-pass")
    assert queued(driver)[0] == FLAGGED and len(queued(driver)) == 6
    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")
    driver.save_screenshot(str(screenshots / "review-queue.png"))

    driver.find_element(By.LINK_TEXT, FLAGGED).click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "decide") and images_loaded(d))
    heat = driver.find_element(By.CSS_SELECTOR, "img.heat")
    assert heat.is_displayed()
    ActionChains(driver).send_keys("h").perform()  # the toggle hides the heat map, and shows it again
    assert not heat.is_displayed()
    ActionChains(driver).send_keys("h").perform()
    assert heat.is_displayed()
    driver.save_screenshot(str(screenshots / "review-cell.png"))

    ActionChains(driver).send_keys("n").perform()
    WebDriverWait(driver, WAIT_S).until(lambda d: "normal, decision #" in d.find_element(By.TAG_NAME, "main").text)
    driver.get(f"{station.url}/review/")
    assert FLAGGED not in queued(driver) and len(queued(driver)) == 5

    (accepted,) = run_sync(accepted_for(station.settings, FLAGGED, timeout_s=WAIT_S))
    assert (accepted.label, accepted.reviewed_by) == ("normal", "olga")
    assert accepted.image_url == f"s3://{station.settings.bucket_scans}/{FLAGGED}.tif"
    for path in (screenshots / "review-queue.png", screenshots / "review-cell.png"):
        assert Image.open(path).size == (1280, 800)


def test_an_operator_cannot_roll_back_and_an_engineer_can(station: Station, browser: WebDriver) -> None:
    driver = browser
    sign_in(driver, station, "olga", "operator-pass")
    driver.get(f"{station.url}/review/models")
    assert station.versions[0] in driver.find_element(By.TAG_NAME, "main").text
    assert driver.find_elements(By.CSS_SELECTOR, "button.rollback") == []
    # A hand-made form with the operator's own session token (the page's policy allows no fetch):
    # the server refuses the role, not just the token.
    driver.execute_script(
        """
        const form = document.createElement('form');
        form.method = 'post';
        form.action = arguments[0];
        for (const [name, value] of [['csrf_token', document.querySelector('input[name=csrf_token]').value],
                                     ['confirmed', 'true']]) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value;
            form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
        """,
        f"/review/models/{station.versions[0]}/rollback",
    )
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Engineers only")
    status = driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")
    assert status == 403
    driver.find_element(By.CSS_SELECTOR, "form.who button").click()  # sign out
    WebDriverWait(driver, WAIT_S).until(lambda d: "/review/login" in d.current_url)
    sign_in(driver, station, "erik", "engineer-pass")
    driver.get(f"{station.url}/review/models")
    (button,) = driver.find_elements(By.CSS_SELECTOR, "button.rollback")  # every version but the current one
    assert station.versions[0] in button.text
