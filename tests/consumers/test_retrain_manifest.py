"""The dataset manifest: keyed by content hash, replays and duplicates do not grow it."""

import hashlib

from consumers.retrain.manifest import (
    DatasetManifest,
    NewScan,
    add_scan,
    is_holdout,
    object_key,
    settle_batch,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def scan(scan_id: str, content: str, label: str = "normal", offset: int = 0, job_id: str | None = None) -> NewScan:
    return NewScan(scan_id=scan_id, sha256=sha(content), label=label, source=f"ct.accepted/0/{offset}", job_id=job_id)


def test_a_new_scan_is_added_under_its_content_hash() -> None:
    manifest, change = add_scan(DatasetManifest(), scan("cell-1", "a"))
    assert change == "new"
    entry = manifest.entries[sha("a")]
    assert entry.scan_ids == ("cell-1",) and entry.label == "normal"
    assert entry.object_key == object_key(sha("a")) and entry.object_key.endswith(sha("a"))
    assert manifest.size_by_label() == {"normal": 1, "defect": 0}


def test_a_replayed_message_at_a_later_offset_is_a_duplicate() -> None:
    manifest, _ = add_scan(DatasetManifest(), scan("cell-1", "a", offset=1))
    manifest, change = add_scan(manifest, scan("cell-1", "a", offset=7))
    assert change == "duplicate"
    assert manifest.size_by_label() == {"normal": 1, "defect": 0}


def test_the_same_bytes_under_another_scan_id_do_not_grow_the_dataset() -> None:
    manifest, _ = add_scan(DatasetManifest(), scan("cell-1", "a", offset=1))
    manifest, change = add_scan(manifest, scan("cell-2", "a", offset=2))
    assert change == "duplicate"
    assert manifest.entries[sha("a")].scan_ids == ("cell-1", "cell-2")
    assert len(manifest.entries) == 1


def test_the_same_message_again_is_new_so_a_redone_batch_retrains() -> None:
    # The manifest was saved, then the process died before the offsets were committed.
    manifest, _ = add_scan(DatasetManifest(), scan("cell-1", "a", offset=3))
    manifest = settle_batch(manifest, {sha("a")}, "v1", rejected=False)
    manifest, change = add_scan(manifest, scan("cell-1", "a", offset=3))
    assert change == "new"


def test_a_relabelled_scan_takes_the_latest_label() -> None:
    manifest, _ = add_scan(DatasetManifest(), scan("cell-1", "a", offset=1))
    manifest, change = add_scan(manifest, scan("cell-1", "a", label="defect", offset=2))
    assert change == "relabelled"
    assert manifest.size_by_label() == {"normal": 0, "defect": 1}
    assert not manifest.entries[sha("a")].holdout  # defects are never part of the normal holdout


def test_a_rejected_batch_quarantines_its_normal_scans_but_keeps_defects() -> None:
    manifest = DatasetManifest()
    manifest, _ = add_scan(manifest, scan("n", "a", offset=1))
    manifest, _ = add_scan(manifest, scan("d", "b", label="defect", offset=2))
    settled = settle_batch(manifest, {sha("a"), sha("b")}, "v9", rejected=True)
    assert settled.entries[sha("a")].quarantined and not settled.entries[sha("b")].quarantined
    assert {e.added_in for e in settled.entries.values()} == {"v9"}
    assert settled.size_by_label() == {"normal": 0, "defect": 1}


def test_the_manifest_round_trips_through_json() -> None:
    manifest, _ = add_scan(DatasetManifest(), scan("cell-1", "a"))
    assert DatasetManifest.from_json(manifest.to_json()) == manifest


def test_about_one_normal_scan_in_seven_is_held_out() -> None:
    held = sum(is_holdout(sha(str(i))) for i in range(2000))
    assert 200 < held < 380
