"""`battery-ct checkpoints` against the real S3 endpoint and broker."""

import json
from pathlib import Path

import pytest

from facade.cli import main
from model_core.checkpoint import CheckpointMetadata, verify_checkpoint, write_metadata
from schemas.model_updates import MODEL_UPDATE_KEY, ModelUpdate
from schemas.settings import ENV_PREFIX, Settings
from tests.helpers import consume_until, run_sync

pytestmark = pytest.mark.integration


def checkpoint(root: Path, weights: bytes, threshold: float) -> Path:
    root.mkdir(parents=True)
    (root / "autoencoder.keras").write_bytes(weights)
    write_metadata(root, CheckpointMetadata.create(version=f"trained-{threshold}", threshold=threshold, image_size=64))
    return root


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI reads its settings from the environment: point it at this test's broker, bucket, topics."""
    for name in ("kafka_bootstrap", "s3_endpoint", "s3_access_key", "bucket_models", "topic_model_updates"):
        monkeypatch.setenv(ENV_PREFIX + name.upper(), str(getattr(settings, name)))
    monkeypatch.setenv(ENV_PREFIX + "S3_SECRET_KEY", settings.s3_secret_key.get_secret_value())
    return settings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["checkpoints", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def updates(settings: Settings, count: int) -> list[ModelUpdate]:
    records = run_sync(consume_until(settings, settings.topic_model_updates, count, settle_s=0.3))
    assert all(r.key == MODEL_UPDATE_KEY for r in records)
    return [ModelUpdate.from_json(r.value) for r in records]


def test_import_list_rollback(cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "list")
    assert status == 0 and "no versions" in out

    status, out, _ = run(capsys, "import", str(checkpoint(tmp_path / "a", b"first", 0.2)), "--promote")
    assert status == 0
    first = out.strip()
    assert first.startswith("v0001-")
    [promoted] = updates(cli_env, 1)
    assert (promoted.status, promoted.current_version, promoted.threshold) == ("promoted", first, 0.2)

    status, out, _ = run(capsys, "import", str(checkpoint(tmp_path / "b", b"second", 0.3)), "--promote")
    second = out.strip()
    assert status == 0 and second.startswith("v0002-")

    status, out, _ = run(capsys, "rollback", first, "--reason", "second one misses cracks")
    assert status == 0
    rolled = updates(cli_env, 3)[-1]
    assert (rolled.status, rolled.version, rolled.current_version, rolled.parent) == (
        "rolled_back",
        first,
        first,
        second,
    )
    assert rolled.threshold == 0.2 and rolled.reason == "second one misses cracks"

    status, out, _ = run(capsys, "list", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["version"], x["status"], x["current"], x["threshold"]) for x in lines] == [
        (first, "promoted", True, 0.2),
        (second, "rolled_back", False, 0.3),
    ]
    assert all(x["created_at"] for x in lines)

    status, out, _ = run(capsys, "list")
    assert status == 0
    assert f"* {first}" in out and f"  {second}" in out and "rolled_back" in out

    status, out, _ = run(capsys, "fetch", second, str(tmp_path / "copy"))
    assert status == 0 and verify_checkpoint(tmp_path / "copy").version == second


def test_refusals_are_one_clear_line(cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "rollback", "v0007-3fa2c91b")
    assert status == 1 and "unknown version" in err

    damaged = checkpoint(tmp_path / "damaged", b"weights", 0.1)
    (damaged / "autoencoder.keras").write_bytes(b"changed after training")
    status, out, err = run(capsys, "import", str(damaged))
    assert status == 1 and out == "" and "changed" in err

    status, _, err = run(capsys, "import", str(tmp_path / "nowhere"))
    assert status == 1 and "nowhere" in err
