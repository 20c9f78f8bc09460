import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from model_core.detector import Detector
from model_core.serving import ModelHolder
from runtime.http import Health
from runtime.metrics import ModelMetrics
from runtime.retry import Abandoned, Backoff
from runtime.served_model import ServedModel
from schemas.model_updates import ModelUpdate


class BadCheckpointError(Exception):
    retriable = False


class FakeRegistry:
    """The registry boundary: versions are directories with a 'good' or 'bad' marker."""

    def __init__(self, current: str | None) -> None:
        self.current: str | None = current
        self.fetched: list[str] = []

    def current_version(self) -> str | None:
        return self.current

    def fetch(self, version: str, dest: Path) -> Path:
        self.fetched.append(version)
        dest.mkdir(parents=True)  # fails if another download already wrote here
        (dest / "kind").write_text("bad" if version.startswith("bad") else "good")
        (dest / "version").write_text(version)
        return dest


class FakeDetector:
    def __init__(self, version: str) -> None:
        self.version, self.threshold, self.image_size = version, 0.25, 64


def load(path: Path) -> Detector:
    if (path / "kind").read_text() == "bad":
        raise BadCheckpointError(f"hash mismatch in {path.name}")
    return cast(Detector, FakeDetector((path / "version").read_text()))


class FakeFeed:
    """The model-updates feed: the updates queued before and after `open`; fails its first `failures` opens."""

    def __init__(self, failures: int = 0) -> None:
        self.queue: asyncio.Queue[ModelUpdate] = asyncio.Queue()
        self.failures, self.opens = failures, 0

    async def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise ConnectionRefusedError("broker down")

    async def updates(self) -> AsyncIterator[ModelUpdate]:
        while True:
            yield await self.queue.get()

    async def close(self) -> None:
        pass


def keeper_for(
    source: FakeRegistry, tmp_path: Path, feed: FakeFeed | None = None
) -> tuple[ServedModel, ModelHolder, CollectorRegistry, Health]:
    registry, health = CollectorRegistry(), Health()
    keeper = ServedModel(
        source,
        feed or FakeFeed(),
        ModelMetrics(registry),
        tmp_path,
        health=health,
        loader=load,
        backoff=Backoff(0.001, 0.002),
        reconnect_s=0.01,
    )
    return keeper, keeper.holder, registry, health


async def test_current_version_serves_and_a_bad_checkpoint_is_refused(tmp_path: Path) -> None:
    source = FakeRegistry("v1")
    keeper, holder, registry, _ = keeper_for(source, tmp_path)
    assert await keeper.wait_for_first_model(asyncio.Event())
    assert keeper.serving_version == "v1"
    assert registry.get_sample_value("battery_ct_model_info", {"version": "v1"}) == 1
    assert registry.get_sample_value("battery_ct_model_threshold") == 0.25

    assert not await keeper.load("bad-v2")
    assert holder.require().version == "v1"
    assert registry.get_sample_value("battery_ct_model_load_failures_total") == 1

    assert await keeper.load("v3")
    assert holder.require().version == "v3"
    assert registry.get_sample_value("battery_ct_model_info", {"version": "v3"}) == 1
    assert registry.get_sample_value("battery_ct_model_info", {"version": "v1"}) is None
    assert await keeper.load("v3")  # already serving: no second fetch
    assert source.fetched == ["v1", "bad-v2", "v3"]


class AppearingRegistry(FakeRegistry):
    """Empty for the first `empty_reads` reads, then `version` is current."""

    def __init__(self, empty_reads: int, version: str | None) -> None:
        super().__init__(None)
        self.reads, self.empty_reads, self.version = 0, empty_reads, version

    def current_version(self) -> str | None:
        self.reads += 1
        return self.version if self.reads > self.empty_reads else None


async def test_without_a_model_it_waits_not_ready_until_stopped(tmp_path: Path) -> None:
    source = AppearingRegistry(3, None)
    keeper, holder, _, health = keeper_for(source, tmp_path)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    assert await keeper.wait_for_first_model(stop, poll_s=0.01) is False
    assert source.reads >= 2
    assert not health.ready
    assert health.reason == "no model in the registry yet"
    assert holder.current is None


async def test_waiting_ends_when_a_model_appears(tmp_path: Path) -> None:
    source = AppearingRegistry(3, "v9")
    keeper, holder, _, _ = keeper_for(source, tmp_path)
    assert await asyncio.wait_for(keeper.wait_for_first_model(asyncio.Event(), poll_s=0.001), timeout=5)
    assert source.reads == 4
    assert holder.require().version == "v9"


async def test_downloads_are_private_and_removed_after_loading(tmp_path: Path) -> None:
    source = FakeRegistry("v1")
    first, _, _, _ = keeper_for(source, tmp_path)
    second, _, _, _ = keeper_for(source, tmp_path)  # another replica on the same host
    assert all(await asyncio.gather(first.load("v1"), second.load("v1")))
    assert source.fetched == ["v1", "v1"]
    assert os.listdir(tmp_path) == []


async def test_a_shutdown_while_loading_is_not_a_refusal(tmp_path: Path) -> None:
    class DownRegistry(FakeRegistry):
        def fetch(self, version: str, dest: Path) -> Path:
            raise ConnectionRefusedError("store down")

    keeper, holder, registry, _ = keeper_for(DownRegistry("v1"), tmp_path)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(Abandoned):
        await keeper.load("v1", stop=stop)
    assert keeper.refused == set()
    assert registry.get_sample_value("battery_ct_model_load_failures_total") == 0
    assert holder.current is None


def update(status: str, version: str) -> ModelUpdate:
    return ModelUpdate(status=status, version=version, current_version=version, threshold=0.5)  # type: ignore[arg-type]


async def test_following_opens_the_feed_then_serves_current_then_applies_promotions_only(tmp_path: Path) -> None:
    feed = FakeFeed(failures=2)  # the broker is down twice: the feed is reopened
    source = FakeRegistry("v1")
    keeper, holder, _, _ = keeper_for(source, tmp_path, feed)
    loop = asyncio.get_running_loop()
    loaded: asyncio.Queue[str] = asyncio.Queue()

    def signalling_load(path: Path) -> Detector:
        detector = load(path)
        loop.call_soon_threadsafe(loaded.put_nowait, detector.version)
        return detector

    seen: list[str] = []
    last_applied = asyncio.Event()

    def hook(update: ModelUpdate) -> None:
        seen.append(update.version)
        if update.version == "end":
            last_applied.set()

    keeper._loader, keeper._on_update = signalling_load, hook
    async with keeper.following():
        assert await asyncio.wait_for(loaded.get(), 5) == "v1"
        assert feed.opens == 3 and keeper.feed_open.is_set()
        await feed.queue.put(update("rejected", "v2"))
        source.current = "v3"  # the retrain consumer promoted it in the registry, then announced it
        await feed.queue.put(update("promoted", "v3"))
        assert await asyncio.wait_for(loaded.get(), 5) == "v3"
        source.current = "bad-v4"
        await feed.queue.put(update("rolled_back", "bad-v4"))  # refused: v3 keeps serving
        await feed.queue.put(update("rejected", "end"))  # updates are applied in order: all done after it
        await asyncio.wait_for(last_applied.wait(), 5)
    assert holder.require().version == "v3"
    assert "bad-v4" in keeper.refused
    assert seen == ["v2", "v3", "bad-v4", "end"]  # every update reaches the hook, in order
    assert source.fetched == ["v1", "v3", "bad-v4"]  # a rejected version is never fetched
    assert not keeper.feed_open.is_set()  # stopped following on leaving the block


async def test_an_update_the_registry_does_not_back_is_refused_and_counted(tmp_path: Path) -> None:
    """A hand-written promotion on the topic: the registry's current version is still v1."""
    feed, source = FakeFeed(), FakeRegistry("v1")
    keeper, holder, registry, _ = keeper_for(source, tmp_path, feed)
    applied = asyncio.Event()
    keeper._on_update = lambda u: applied.set() if u.version == "end" else None
    async with keeper.following():
        await asyncio.wait_for(keeper.first_attempted.wait(), 5)
        await feed.queue.put(update("promoted", "v666"))
        await feed.queue.put(update("rejected", "end"))
        await asyncio.wait_for(applied.wait(), 5)
    assert holder.require().version == "v1"
    assert source.fetched == ["v1"]  # the forged version is never even fetched
    assert registry.get_sample_value("battery_ct_model_updates_refused_total", {"reason": "not_current"}) == 1


async def test_a_version_name_with_a_path_in_it_is_refused_before_any_path_is_built(tmp_path: Path) -> None:
    work = tmp_path / "work"
    source = FakeRegistry("../../escaped")
    keeper, holder, registry, _ = keeper_for(source, work)
    assert not await keeper.load("../../escaped")
    assert not await keeper.load("v1/../../x")
    assert source.fetched == []
    assert await asyncio.to_thread(os.listdir, tmp_path) == []  # nothing created inside or beside the work dir
    assert holder.current is None
    assert registry.get_sample_value("battery_ct_model_updates_refused_total", {"reason": "invalid_version"}) == 2
