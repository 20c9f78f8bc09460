"""ObjectStore: S3 operations against the real endpoint of the session fixtures, and its error mapping."""

from __future__ import annotations

import io
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3
from minio.error import S3Error

from local_stack.free_ports import free_port
from local_stack.processes import stop
from local_stack.s3 import start_moto
from schemas.settings import Settings
from storage.errors import ObjectForbidden, ObjectMissing, ObjectTooLarge, StorageError, StoreUnavailable
from storage.object_store import ObjectStore, map_s3_error


def s3_error(code: str, status: int) -> S3Error:
    response = urllib3.HTTPResponse(body=b"", status=status)
    return S3Error(response, code, "message", "/b/k", "req", "host")


# -- error mapping (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "kind", "retriable"),
    [
        ("NoSuchKey", 404, ObjectMissing, False),
        ("NoSuchBucket", 404, ObjectMissing, False),
        ("AccessDenied", 403, ObjectForbidden, False),  # least privilege: poison, never retried (issue 13)
        ("InvalidAccessKeyId", 403, StoreUnavailable, True),
        ("InternalError", 500, StoreUnavailable, True),
        ("SlowDown", 503, StoreUnavailable, True),
        ("InvalidArgument", 400, StorageError, False),
    ],
)
def test_s3_errors_map_to_typed_errors(code: str, status: int, kind: type[StorageError], retriable: bool) -> None:
    error = map_s3_error(s3_error(code, status), "s3://b/k")
    assert type(error) is kind
    assert error.retriable is retriable
    assert "s3://b/k" in str(error)


def test_error_codes_are_stable_names() -> None:
    assert ObjectMissing("x").code == "object_missing"
    assert ObjectTooLarge("x").code == "object_too_large"
    assert StoreUnavailable("x").code == "store_unavailable"
    assert map_s3_error(s3_error("InvalidArgument", 400), "w").code == "s3_invalid_argument"


class _GrowingObject:
    """A fake SDK client whose object is larger than its stat said (replaced between stat and read)."""

    def stat_object(self, *, bucket_name: str, object_name: str) -> Any:
        return SimpleNamespace(size=10)

    def get_object(self, *, bucket_name: str, object_name: str) -> Any:
        body = io.BytesIO(b"x" * 1000)
        return SimpleNamespace(read=body.read, close=lambda: None, release_conn=lambda: None)


def test_the_read_itself_is_capped_at_max_bytes() -> None:
    store = ObjectStore(endpoint="127.0.0.1:1", access_key="a", secret_key="b")
    store._client = _GrowingObject()  # type: ignore[assignment]
    with pytest.raises(ObjectTooLarge):
        store.get_bytes("b", "k", max_bytes=100)


# -- against the real endpoint ----------------------------------------------------------------


@pytest.mark.integration
def test_missing_object_and_bucket_are_object_missing(settings: Settings, object_store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        object_store.get_bytes(settings.bucket_scans, "nothing.png", max_bytes=10)  # no bucket yet
    object_store.ensure_bucket(settings.bucket_scans)
    with pytest.raises(ObjectMissing) as caught:
        object_store.get_bytes(settings.bucket_scans, "nothing.png", max_bytes=10)
    assert caught.value.retriable is False
    assert object_store.exists(settings.bucket_scans, "nothing.png") is False
    assert object_store.list_keys(settings.bucket_scans) == []


@pytest.mark.integration
def test_an_object_over_max_bytes_is_refused_before_reading(settings: Settings, object_store: ObjectStore) -> None:
    object_store.ensure_bucket(settings.bucket_scans)
    object_store.put_bytes(settings.bucket_scans, "big.png", b"x" * 2048)

    with pytest.raises(ObjectTooLarge) as caught:
        object_store.get_bytes(settings.bucket_scans, "big.png", max_bytes=2047)
    assert caught.value.retriable is False
    assert len(object_store.get_bytes(settings.bucket_scans, "big.png", max_bytes=2048)) == 2048


@pytest.mark.integration
def test_binary_content_and_unicode_keys_survive(settings: Settings, object_store: ObjectStore) -> None:
    object_store.ensure_bucket(settings.bucket_datasets)
    data = bytes(range(256)) * 64
    key = "line 1/été/cell #1+2.tif"
    object_store.put_bytes(settings.bucket_datasets, key, data, content_type="image/tiff")
    assert object_store.get_bytes(settings.bucket_datasets, key, max_bytes=len(data)) == data
    assert object_store.list_keys(settings.bucket_datasets, "line 1/") == [key]


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    record, process = start_moto(tmp_path, port=free_port())
    yield record.endpoint, process
    if record.pid is not None:
        stop(record.pid, record.start_ticks)
    process.poll()


@pytest.mark.integration
def test_a_stopped_endpoint_is_store_unavailable(own_moto: tuple[str, subprocess.Popen[bytes]]) -> None:
    endpoint, process = own_moto
    store = ObjectStore(endpoint=endpoint, access_key="a", secret_key="b", connect_timeout_s=1.0)
    store.ensure_bucket("scans")
    store.put_bytes("scans", "a.png", b"png")

    process.terminate()
    process.wait(timeout=30)

    for call in (
        lambda: store.get_bytes("scans", "a.png", max_bytes=10),
        lambda: store.put_bytes("scans", "b.png", b"png"),
        lambda: store.exists("scans", "a.png"),
        lambda: store.list_keys("scans"),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.retriable is True


def test_an_endpoint_that_never_answers_times_out_as_store_unavailable() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        store = ObjectStore(endpoint=endpoint, access_key="a", secret_key="b", read_timeout_s=0.5)
        with pytest.raises(StoreUnavailable):
            store.get_bytes("scans", "a.png", max_bytes=10)


async def test_async_twins_map_errors_too() -> None:
    store = ObjectStore(endpoint=f"127.0.0.1:{free_port()}", access_key="a", secret_key="b", connect_timeout_s=0.5)
    with pytest.raises(StoreUnavailable):
        await store.aget_bytes("scans", "a.png", max_bytes=10)
