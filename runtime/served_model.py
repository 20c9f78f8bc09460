"""The served model, one protocol for every process that serves one (the inference consumers and
the facade): open the model-updates feed, then read the registry's current version (in that
order, so no update falls between the two), fetch it, verify and load it off the event loop, and
swap it in; then follow the feed. A checkpoint that fails its hash, signature or load check is
refused and counted, and the running model stays. The feed reconnects with backoff when Kafka is
down.

The registry is the only authority on what serves: an update is a hint. A process swaps to the
version an update names only when the registry says, at that moment, that it is current; a forged
or stale update is refused, logged and counted, and the model stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from model_core.detector import Detector
from model_core.serving import ModelHolder
from runtime.dead_letters import error_code
from runtime.http import Health
from runtime.logs import printable
from runtime.metrics import ModelMetrics
from runtime.model_updates import SERVING_STATUSES, UpdateFeed
from runtime.retry import Abandoned, Backoff, is_retriable, retry_transient
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings

log = logging.getLogger(__name__)

Loader = Callable[[Path], Detector]
UpdateHook = Callable[[ModelUpdate], None]


class ModelSource(Protocol):
    """The part of `model_core.registry.Registry` a serving process needs (blocking calls)."""

    def current_version(self) -> str | None: ...

    def fetch(self, version: str, dest: Path) -> Path: ...


# Registry versions (`v<seq>-<hash>`), draft names, and the test's names: no path separators, no
# leading dot, bounded; a version is checked against this before any path or key is built from it.
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_version_name(name: str) -> bool:
    return bool(_VERSION_NAME.fullmatch(name)) and ".." not in name


def detector_loader(settings: Settings) -> Loader:
    """How a process loads a checkpoint directory: the search the settings choose, else its own."""
    return partial(Detector.load, search=settings.detector_search)


def fetch_and_load(source: ModelSource, version: str, work_dir: Path, loader: Loader = Detector.load) -> Detector:
    """Fetch `version` (verified by the registry) and load it; blocking, run it off the event loop.

    The download goes to a private directory: replicas and facades on one host share `work_dir`,
    and a download must never be read while another process writes it. The loaded model lives in
    memory, so the download is removed once it is loaded.
    """
    if not is_version_name(version):
        raise ValueError(f"not a version name: {printable(version)}")
    work_dir.mkdir(parents=True, exist_ok=True)
    download = Path(tempfile.mkdtemp(prefix=f"{version}.", dir=work_dir))
    try:
        return loader(source.fetch(version, download / "checkpoint"))
    finally:
        shutil.rmtree(download, ignore_errors=True)


class ServedModel:
    """Which model serves in this process, kept current by `follow()` (run it as a task).

    Readers take `current` (or `require()`) once per batch or request and keep that object, so a
    swap never changes the model in the middle of one.
    """

    def __init__(
        self,
        source: ModelSource,
        feed: UpdateFeed,
        metrics: ModelMetrics,
        work_dir: Path,
        *,
        health: Health | None = None,
        loader: Loader = Detector.load,
        on_update: UpdateHook | None = None,
        backoff: Backoff = Backoff(initial=0.5, maximum=10.0),
        poll_s: float = 5.0,
        reconnect_s: float = 2.0,
    ) -> None:
        self._source = source
        self._feed = feed
        self._metrics = metrics
        self._work_dir = work_dir
        self._health = health
        self._loader = loader
        self._on_update = on_update
        self._backoff = backoff
        self._poll_s = poll_s
        self._reconnect_s = reconnect_s
        self._lock = asyncio.Lock()
        self.holder = ModelHolder()
        self.refused: set[str] = set()
        self.feed_open = asyncio.Event()  # the feed is open: no update is missed from now on
        self.first_attempted = asyncio.Event()  # the registry's current version was tried at least once
        self._changed = asyncio.Event()  # set (and replaced) at every swap or refusal

    @property
    def current(self) -> Detector | None:
        return self.holder.current

    def require(self) -> Detector:
        """The detector serving now, or `LookupError` when none is loaded yet."""
        return self.holder.require()

    @property
    def serving_version(self) -> str | None:
        current = self.holder.current
        return None if current is None else current.version

    async def load(self, version: str, *, stop: asyncio.Event | None = None, patient: bool = True) -> bool:
        """Fetch, verify and load `version` off the event loop, then serve it. False when refused.

        `patient`: an unavailable object store is retried (until `stop`); otherwise its error is raised.
        """
        if not is_version_name(version):  # before any path is built from it
            self._metrics.model_updates_refused.labels(reason="invalid_version").inc()
            log.error("refused to load a model named %s: not a version name", printable(version))
            return False
        async with self._lock:
            if version == self.serving_version:
                return True
            if version in self.refused:
                return False

            def fetch() -> Awaitable[Detector]:
                return asyncio.to_thread(fetch_and_load, self._source, version, self._work_dir, self._loader)

            try:
                if patient:
                    detector = await retry_transient(
                        fetch, what=f"loading model {version}", stop=stop, backoff=self._backoff
                    )
                else:
                    detector = await fetch()
            except Abandoned:
                raise
            except Exception as exc:
                if is_retriable(exc):
                    raise  # the store is down: not the checkpoint's fault
                self.refused.add(version)
                self._announce_change()
                reason = getattr(exc, "reason", None) or error_code(exc)
                self._metrics.model_load_failures.inc()
                self._metrics.checkpoints_refused.labels(reason=str(reason)).inc()
                log.error("model %s refused (%s), %s keeps serving: %s", version, reason, self.serving_version, exc)
                return False
            previous = self.holder.swap(detector)
            self._announce_change()
            self._metrics.model_serving(detector.version, detector.threshold)
            log.info(
                "model %s serving (threshold %.6g), replacing %s",
                detector.version,
                detector.threshold,
                None if previous is None else previous.version,
            )
            return True

    async def wait_for_version(self, version: str) -> None:
        """Return once `version` serves (bound it with a timeout)."""
        while self.serving_version != version:
            await self._changed.wait()

    async def wait_for_refusal(self, version: str) -> None:
        """Return once `version` has been refused (bound it with a timeout)."""
        while version not in self.refused:
            await self._changed.wait()

    def _announce_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_first_model(self, stop: asyncio.Event, *, poll_s: float | None = None) -> bool:
        """Serve the registry's current version, waiting while there is none; False if stopped first."""
        poll_s = self._poll_s if poll_s is None else poll_s
        announced = False
        while not stop.is_set():
            if self.holder.current is not None:  # a model update may have arrived meanwhile
                return True
            try:
                version = await asyncio.to_thread(self._source.current_version)
            except Exception as exc:  # down or unreadable: asked again after `poll_s`
                version = None
                log.warning("could not read the registry (%s: %s)", type(exc).__name__, exc)
            loaded = version is not None and await self.load(version, stop=stop)
            self.first_attempted.set()
            if loaded:
                return True
            if not announced:
                log.warning("no usable model in the registry yet: waiting for one (train and import a checkpoint)")
                if self._health is not None:
                    self._health.set_not_ready("no model in the registry yet")
                announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
        return self.holder.current is not None

    async def apply(self, update: ModelUpdate) -> None:
        """One update: the hook first (jobs waiting for it), then the swap when another version serves."""
        if self._on_update is not None:
            self._on_update(update)
        if update.status not in SERVING_STATUSES:
            return
        named = update.current_version
        log.info("model update: %s %s, current is now %s", update.status, printable(update.version), printable(named))
        try:
            current = await asyncio.to_thread(self._source.current_version)
            if current != named:
                self._metrics.model_updates_refused.labels(reason="not_current").inc()
                log.error(
                    "model update names %s but the registry's current version is %s: refused, %s keeps serving",
                    printable(named),
                    current,
                    self.serving_version,
                )
                return
            await self.load(named, patient=False)
        except Exception as exc:
            log.warning("could not load %s now (%s); the current model keeps serving", printable(named), exc)

    @contextlib.asynccontextmanager
    async def following(self, *, first_model: bool = True) -> AsyncIterator[None]:
        """`follow()` in a background task for the duration of the block (cancelled and awaited after)."""
        task = asyncio.create_task(self.follow(first_model=first_model), name="model-updates")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_until_following(self, stop: asyncio.Event) -> bool:
        """Wait until the feed is open (no update is missed from then on) or `stop`; True when open."""
        waiters = [asyncio.ensure_future(self.feed_open.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.feed_open.is_set()

    async def follow(self, *, first_model: bool = True) -> None:
        """Follow the feed until cancelled, reconnecting when it fails; with `first_model`, load
        the registry's current version in the background once the feed is open."""
        never = asyncio.Event()
        while True:
            try:
                await self._feed.open()
                self.feed_open.set()
                loading = (
                    asyncio.create_task(self.wait_for_first_model(never), name="first-model") if first_model else None
                )
                try:
                    async for update in self._feed.updates():
                        await self.apply(update)
                finally:
                    if loading is not None:
                        loading.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await loading
                    self.feed_open.clear()
                    await self._feed.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "model updates unavailable (%s: %s); retrying in %.1f s", type(exc).__name__, exc, self._reconnect_s
                )
            await asyncio.sleep(self._reconnect_s)
