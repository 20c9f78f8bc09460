"""Every process that serves a model verifies its signature when a verification key is set."""

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from model_core.registry import LocalBlobStore, Registry
from model_core.signing import generate_keypair
from runtime.metrics import ModelMetrics
from runtime.safety import UnsafeSettings, check_safe_to_start, registry_keys
from runtime.served_model import ServedModel
from schemas.settings import Settings
from tests.runtime.test_served_model import FakeFeed


def test_only_a_signing_process_gets_the_signing_key() -> None:
    pair = generate_keypair()
    settings = Settings(signing_key=SecretStr(pair.signing_key), verify_key=pair.verify_key)
    assert set(registry_keys(settings)) == {"verify_key"}
    assert set(registry_keys(settings, sign=True)) == {"signer", "verify_key"}
    assert registry_keys(Settings()) == {}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"verify_key": "not a key"}, "BATTERY_CT_VERIFY_KEY does not hold"),
        ({"verify_key": "  "}, "BATTERY_CT_VERIFY_KEY is set but empty"),
        ({"signing_key": SecretStr("nope")}, "BATTERY_CT_SIGNING_KEY is not"),
    ],
)
def test_a_key_that_does_not_parse_refuses_to_start(fields: dict[str, object], says: str) -> None:
    with pytest.raises(UnsafeSettings, match=says):
        check_safe_to_start(Settings(**fields))  # type: ignore[arg-type]


def test_keygen_prints_a_pair_the_services_accept() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facade.cli", "checkpoints", "keygen"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if not line.startswith("#"))
    settings = Settings(
        signing_key=SecretStr(lines["BATTERY_CT_SIGNING_KEY"]), verify_key=lines["BATTERY_CT_VERIFY_KEY"]
    )
    check_safe_to_start(settings)
    assert set(registry_keys(settings, sign=True)) == {"signer", "verify_key"}


async def test_an_unsigned_checkpoint_is_refused_and_a_signed_one_serves(
    tmp_path: Path, tiny_checkpoints: dict[str, Path]
) -> None:
    pair = generate_keypair()
    keys = registry_keys(Settings(signing_key=SecretStr(pair.signing_key), verify_key=pair.verify_key), sign=True)
    blobs = LocalBlobStore(tmp_path / "bucket")
    unsigned = Registry(blobs).publish(tiny_checkpoints["v1"])  # someone with write access, without the key
    signed = Registry(blobs, **keys).publish(tiny_checkpoints["v2"])

    verifying = Registry(blobs, verify_key=keys["verify_key"])
    metrics_registry = CollectorRegistry()
    served = ServedModel(verifying, FakeFeed(), ModelMetrics(metrics_registry), tmp_path / "work")
    assert not await served.load(unsigned)
    assert metrics_registry.get_sample_value("battery_ct_checkpoints_refused_total", {"reason": "unsigned"}) == 1
    assert served.current is None
    assert await served.load(signed)
    assert served.require().version == signed


def test_the_search_setting_chooses_how_checkpoints_load(tiny_checkpoints: dict[str, Path]) -> None:
    from runtime.served_model import detector_loader

    checkpoint = tiny_checkpoints["v1"]  # trained now: the fast form
    assert detector_loader(Settings())(checkpoint).search == "fast"
    assert detector_loader(Settings(detector_search="exact"))(checkpoint).search == "exact"
