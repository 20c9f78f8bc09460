import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facade.commands.upload import upload_files
from producers.uploader import Uploader, UploadRefused, scan_id_for
from schemas.scans import ScanEvent
from schemas.settings import Settings
from storage.object_store import ObjectStore
from tests.helpers import consume_until


def png_bytes(seed: int, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 65535, (size, size), dtype=np.uint16)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_scan_ids_are_readable_unique_and_stable() -> None:
    one, other = png_bytes(1), png_bytes(2)
    assert scan_id_for("cell 42 (slice).png", one) == scan_id_for("cell 42 (slice).png", one)
    assert scan_id_for("cell 42 (slice).png", one).startswith("cell-42-slice-")
    assert scan_id_for("a.png", one) != scan_id_for("a.png", other)
    assert scan_id_for("a.tif", one, prefix="line1/").startswith("line1/a-")
    assert scan_id_for("...png", one).startswith("scan-")
    with pytest.raises(UploadRefused):
        scan_id_for("a.png", one, prefix="../")


@pytest.mark.integration
async def test_upload_stores_the_object_then_announces_it(settings: Settings, object_store: ObjectStore) -> None:
    data = png_bytes(3)
    async with Uploader(settings) as uploader:
        event = await uploader.upload(data, "line1/cell-7", ".PNG", recipe="21700-nmc", pixel_mm=0.034)
        with pytest.raises(UploadRefused) as caught:
            await uploader.upload(b"just text, not a scan", "line1/cell-8", ".png")
        assert caught.value.code == "image_not_an_image"
        with pytest.raises(UploadRefused):
            await uploader.upload(data, "line1/cell-9", ".gif")

    assert event.key == "line1/cell-7.png" and event.image_url == f"s3://{settings.bucket_scans}/line1/cell-7.png"
    assert (event.recipe, event.pixel_mm) == ("21700-nmc", 0.034)
    assert object_store.get_bytes(settings.bucket_scans, event.key, max_bytes=1 << 20) == data
    assert object_store.list_keys(settings.bucket_scans) == ["line1/cell-7.png"]  # the refused ones never landed
    records = await consume_until(settings, settings.topic_scans, 1, settle_s=0.5)
    assert len(records) == 1
    assert records[0].key == b"line1/cell-7"
    assert ScanEvent.from_json(records[0].value) == event


@pytest.mark.integration
async def test_cli_uploads_the_good_files_and_reports_the_bad(
    settings: Settings, object_store: ObjectStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(4))
    (tmp_path / "b.tif").write_bytes(b"")
    (tmp_path / "c.png").write_bytes(png_bytes(5)[:200])  # truncated
    files = [tmp_path / "a.png", tmp_path / "b.tif", tmp_path / "c.png", tmp_path / "missing.png"]

    status = await upload_files(settings, files, prefix="run1/", events=False, jobs=2)

    out, err = capsys.readouterr()
    assert status == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in lines] == [str(tmp_path / "a.png")]
    assert lines[0]["scan_id"].startswith("run1/a-")
    assert lines[0]["image_url"] == f"s3://{settings.bucket_scans}/{lines[0]['scan_id']}.png"
    assert "image_empty" in err or "empty" in err
    assert "truncated" in err and "missing.png" in err
    assert object_store.list_keys(settings.bucket_scans) == [f"{lines[0]['scan_id']}.png"]


@pytest.mark.integration
async def test_cli_without_a_reachable_store_fails_clearly(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(6))
    unreachable = settings.model_copy(update={"s3_endpoint": "127.0.0.1:9"})
    assert await upload_files(unreachable, [tmp_path / "a.png"], events=False) == 2
