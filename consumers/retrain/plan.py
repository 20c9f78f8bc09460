"""What a batch means for the model: which scans to train on, replay, validate and treat as defects.

Pure: a manifest and the set of scans the batch changed in, a plan out. The training set is the
batch's new normal scans plus a replay sample of earlier ones (so the model extends rather than
forgets); held-out normal scans of earlier batches are never trained on and give the promotion gate
a validation set that a poisoned batch cannot touch; known defects are only ever evaluated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from consumers.retrain.manifest import DatasetManifest, ManifestEntry

Action = Literal["train", "reevaluate", "wait", "nothing"]


@dataclass(frozen=True)
class BatchPlan:
    action: Action
    train: list[ManifestEntry]  # new normal scans (and, bootstrapping, every normal scan) + replay
    replay: list[ManifestEntry]
    holdout: list[ManifestEntry]  # trusted normal validation scans, from earlier batches
    defects: list[ManifestEntry]
    new_normals: int
    new_defects: int


def batch_seed(changed: set[str]) -> int:
    """A seed that is the same when the same batch is redone (the replay sample is reproducible)."""
    digest = hashlib.sha256("".join(sorted(changed)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def plan_batch(manifest: DatasetManifest, changed: set[str], *, has_model: bool, replay_factor: float) -> BatchPlan:
    """Plan the batch that changed `changed` (content hashes) in `manifest`.

    - no model yet: train on every normal scan (bootstrapping); defects alone must wait;
    - new normal scans: warm-start on them plus `replay_factor` times as many earlier ones;
    - new defects only: re-evaluate errors and threshold of the current model, no training.
    """
    live = [e for e in manifest.entries.values() if not e.quarantined]
    new = [e for e in live if e.sha256 in changed]
    earlier = [e for e in live if e.sha256 not in changed]
    new_normals = [e for e in new if e.label == "normal"]
    new_defects = sum(1 for e in new if e.label == "defect")
    defects = _ordered([e for e in live if e.label == "defect"])
    holdout = _ordered([e for e in earlier if e.label == "normal" and e.holdout])

    def plan(action: Action, train: list[ManifestEntry], replay: list[ManifestEntry]) -> BatchPlan:
        return BatchPlan(action, train, replay, holdout, defects, len(new_normals), new_defects)

    if not has_model:
        normals = _ordered([e for e in live if e.label == "normal"])
        trainable = [e for e in normals if not e.holdout] or normals
        return plan("train", trainable, []) if trainable else plan("wait", [], [])
    if new_normals:
        fresh = [e for e in new_normals if not e.holdout] or new_normals
        candidates = _ordered([e for e in earlier if e.label == "normal" and not e.holdout])
        count = min(len(candidates), round(replay_factor * len(fresh)))
        rng = np.random.default_rng(batch_seed(changed))
        picked = sorted(rng.choice(len(candidates), size=count, replace=False).tolist()) if count else []
        replay = [candidates[i] for i in picked]
        return plan("train", _ordered(fresh) + replay, replay)
    if new_defects:
        # Without held-out scans yet, the earlier normal scans are the best reference there is.
        reference = holdout or _ordered([e for e in earlier if e.label == "normal"])
        return BatchPlan("reevaluate", [], [], reference, defects, 0, new_defects)
    return plan("nothing", [], [])


def _ordered(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    return sorted(entries, key=lambda e: e.sha256)
