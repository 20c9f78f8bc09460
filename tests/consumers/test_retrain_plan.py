"""Batch planning: train on new normals plus replay, validate on earlier holdout, defects only evaluated."""

import hashlib

from consumers.retrain.manifest import DatasetManifest, ManifestEntry, NewScan, add_scan, settle_batch
from consumers.retrain.plan import batch_seed, plan_batch


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def grow(manifest: DatasetManifest, names: list[str], label: str = "normal", start: int = 0) -> DatasetManifest:
    for i, name in enumerate(names):
        manifest, _ = add_scan(
            manifest, NewScan(scan_id=name, sha256=sha(name), label=label, source=f"t/0/{start + i}")
        )
    return manifest


def earlier(count: int = 40) -> DatasetManifest:
    names = [f"old-{i}" for i in range(count)]
    return settle_batch(grow(DatasetManifest(), names), {sha(n) for n in names}, "v1", rejected=False)


def shas(entries: list[ManifestEntry]) -> set[str]:
    return {e.sha256 for e in entries}


def test_without_a_model_every_normal_scan_trains_the_first_one() -> None:
    manifest = grow(DatasetManifest(), [f"n{i}" for i in range(20)])
    plan = plan_batch(manifest, shas(list(manifest.entries.values())), has_model=False, replay_factor=4)
    assert plan.action == "train"
    assert shas(plan.train) == {e.sha256 for e in manifest.entries.values() if not e.holdout}


def test_defects_alone_wait_for_a_first_model() -> None:
    manifest = grow(DatasetManifest(), ["d1"], label="defect")
    assert plan_batch(manifest, {sha("d1")}, has_model=False, replay_factor=4).action == "wait"


def test_new_normals_train_with_replay_and_a_holdout_the_batch_cannot_touch() -> None:
    manifest = grow(earlier(), [f"new-{i}" for i in range(4)], start=100)
    manifest = grow(manifest, ["bad"], label="defect", start=200)
    changed = {sha(f"new-{i}") for i in range(4)}
    plan = plan_batch(manifest, changed, has_model=True, replay_factor=2)
    assert plan.action == "train" and plan.new_normals == 4
    fresh = {s for s in changed if not manifest.entries[s].holdout} or changed
    assert fresh <= shas(plan.train)
    assert len(plan.replay) == round(2 * len(fresh))
    assert not shas(plan.replay) & changed
    assert plan.holdout and not shas(plan.holdout) & changed
    assert not shas(plan.holdout) & shas(plan.train)
    assert all(e.holdout for e in plan.holdout)
    assert shas(plan.defects) == {sha("bad")}


def test_the_replay_sample_is_the_same_when_a_batch_is_redone() -> None:
    manifest = grow(earlier(), ["new-a", "new-b", "new-c"], start=100)
    changed = {sha("new-a"), sha("new-b"), sha("new-c")}
    first = plan_batch(manifest, changed, has_model=True, replay_factor=3)
    again = plan_batch(manifest, changed, has_model=True, replay_factor=3)
    assert [e.sha256 for e in first.replay] == [e.sha256 for e in again.replay]
    assert batch_seed(changed) == batch_seed(set(reversed(sorted(changed))))


def test_quarantined_scans_are_never_replayed() -> None:
    poisoned = [f"poison-{i}" for i in range(10)]
    manifest = grow(earlier(), poisoned, start=100)
    manifest = settle_batch(manifest, {sha(n) for n in poisoned}, "v2", rejected=True)
    manifest = grow(manifest, ["fresh"], start=300)
    plan = plan_batch(manifest, {sha("fresh")}, has_model=True, replay_factor=100)
    assert not shas(plan.train) & {sha(n) for n in poisoned}


def test_new_defects_alone_reevaluate_without_training() -> None:
    manifest = grow(earlier(), ["d1", "d2"], label="defect", start=100)
    plan = plan_batch(manifest, {sha("d1"), sha("d2")}, has_model=True, replay_factor=4)
    assert plan.action == "reevaluate" and plan.train == [] and plan.new_defects == 2
    assert shas(plan.defects) == {sha("d1"), sha("d2")}
    assert plan.holdout and all(e.label == "normal" for e in plan.holdout)


def test_a_batch_of_duplicates_changes_nothing() -> None:
    assert plan_batch(earlier(), set(), has_model=True, replay_factor=4).action == "nothing"
