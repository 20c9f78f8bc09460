"""`battery-ct demo` end to end, small: 64 px, a tiny network, 16 scans, a retrain of 4 accepted scans,
on the session's real Kafka broker and S3 endpoint, with the four services as real subprocesses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examples.demo.run import DemoOptions, run_demo
from model_core.network import NetworkConfig
from model_core.registry import Registry
from schemas.settings import Settings
from storage.object_store import ObjectStore
from storage.registry_store import S3BlobStore

pytestmark = pytest.mark.integration  # about 30 s: the service subprocesses import TensorFlow

SCANS = 16


def test_small_demo_writes_a_report_with_counts_versions_and_images(
    infra_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = DemoOptions(
        scans=SCANS,
        defect_share=0.5,
        train=10,
        calibration_defects=4,
        epochs=1,
        size=64,
        retrain_batch=4,
        retrain_epochs=1,
        after=4,
        real_epochs=1,
        real_copies=4,
        figures=6,
        timeout_s=240,
        network=NetworkConfig(image_size=64, depth=2, base_filters=4),
    )
    out = tmp_path / "report"
    base = infra_settings.model_copy(update={"checkpoint_dir": tmp_path / "work"})

    assert run_demo(options, base, out) == 0

    printed = capsys.readouterr().out
    assert f"verdicts {SCANS}/{SCANS}" in printed
    assert f"report: {(out / 'index.html').resolve()}" in printed
    text = (out / "index.html").read_text()
    assert f"scored scans<b>{SCANS}</b>" in text
    counts = {kind: re.search(rf"(\d+) {kind}</td>", text) for kind in ("TP", "FN", "FP", "TN")}
    tp, fn, fp, tn = (int(match.group(1)) if match else -1 for match in counts.values())
    assert tp + fn == SCANS // 2 and fp + tn == SCANS // 2
    # the first model and the retrain's candidate (promoted or rejected, the report says which)
    versions = set(re.findall(r"<td>(v\d{4}-[0-9a-f]{8,64})</td>", text))
    assert len(versions) == 2
    assert re.search(r'<b class="(ok|bad)">(promoted|rejected)</b> version <b>v0002-', text)
    images = re.findall(r'<img src="(images/[^"]+)"', text)
    assert any("heatmap" in name for name in images)
    assert sum("real-im_2" in name for name in images) == 2
    for name in images:
        assert (out / name).stat().st_size > 100
    assert "POST /predict on" in text and "failed" not in text.split("POST /predict on", 1)[1][:200]
    # The review station got every verdict; its queue, signed in over HTTP, holds at least the flagged cells
    station = re.search(r"review station: (http://127\.0\.0\.1:\d+/review/) \(sign in as operator or engineer", printed)
    assert station is not None, printed
    waiting = re.search(r"(\d+) cells wait for a decision there", printed)
    assert waiting is not None and int(waiting.group(1)) >= tp + fp > 0
    assert f'<a href="{station.group(1)}">' in text and f"{waiting.group(1)} cells wait for a decision" in text
    # The stream was measured against a recipe set from a golden batch (at 64 px, perhaps not judged)
    assert "<h2>Measurements against the recipe</h2>" in text
    assert re.search(r"recipe demo-21700 v1: ", printed) or "could not be measured at this size" in printed
    # The services were stopped, and their logs kept
    for name in ("inference", "retrain", "review"):
        assert f"stopped {name} (cleanly)" in printed
    assert (out / "logs" / "inference.log").stat().st_size > 0
    # The registry lives in the run's own bucket, so a shared infrastructure's buckets are left alone
    run_id = re.search(r"<b>([0-9a-f]{8})-\d{4}</b>", text)
    assert run_id is not None
    store = ObjectStore.from_settings(infra_settings)
    registry = Registry(S3BlobStore(store, f"demo-{run_id.group(1)}-models"), owner="test")
    assert {r.version for r in registry.list_versions()} == versions
