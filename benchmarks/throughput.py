"""Throughput of the inference pipeline against the bare model, on the same images in the same run.

Needs a running broker and S3 endpoint (`eval "$(battery-ct infra up --env)"`), then:

    python -m benchmarks.throughput --scans 1000 --size 256

1. simulates `--scans` slices, uploads them to a fresh scans bucket;
2. bare model: the same detector on the same preprocessed images, in batches of `--batch-size`
   (the ceiling: no Kafka, no S3, no decoding);
3. pipeline: the inference consumer in this process, every event published at once, until the last
   verdict is read back (read_committed); event-to-verdict latency per scan. With `--paced F` the
   events are published at F times the bare model's rate instead (each event stamped when it is
   sent), so that p50/p99 show the latency of a pipeline that keeps up, not of a queue draining;
   the throughput is then the publish rate, and `ratio` is left out;
4. naive: one message at a time, sequential fetch, decode, model call and publish.

Prints one JSON line: pipeline_scans_per_s, bare_model_scans_per_s, ratio, p50_ms, p99_ms,
naive_scans_per_s, and what it ran with. The machine may be shared: the bare model is timed again
right after the pipeline (`bare_model_after_scans_per_s`; `ratio` uses the mean of the two) and
the 1-minute load average is reported at the start and end of each phase (`load`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from schemas.scans import ScanEvent
from schemas.settings import Settings
from schemas.verdicts import Verdict

log = logging.getLogger("benchmarks.throughput")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=1000, help="scans through the pipeline (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="slice and model size in pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="micro-batch size (default 16)")
    parser.add_argument(
        "--naive-scans", type=int, default=200, help="scans for the naive loop (default 200; 0: skip it)"
    )
    parser.add_argument(
        "--distinct", type=int, default=100, help="distinct simulated slices, reused under new keys (default 100)"
    )
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: train a quick one)")
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        help="publish at this fraction of the bare model's rate (e.g. 0.7); default 0: all at once",
    )
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


# -- inputs -----------------------------------------------------------------------------------------


def simulated_pngs(count: int, size: int, seed: int) -> list[bytes]:
    """16-bit grayscale PNGs of simulated normal slices (as a CT machine would deliver them)."""
    from producers.simulator import random_normal_slice

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image, _mask = random_normal_slice(rng, size)
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint16)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def quick_checkpoint(size: int, work: Path, seed: int) -> Path:
    """A detector trained for one epoch: its accuracy is irrelevant here, its cost is the real one."""
    from model_core.imaging import decode_image, preprocess
    from model_core.training import train_detector

    slices = [
        preprocess(decode_image(png, max_pixels=size * size * 4), size) for png in simulated_pngs(16, size, seed + 1)
    ]
    return train_detector(np.stack(slices), None, _config_for(size)).save(work / "checkpoint", source="bench")


def _config_for(size: int) -> Any:
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.training import TrainingConfig

    return TrainingConfig(
        network=NetworkConfig(image_size=size), memory=PatchMemoryConfig.for_image_size(size), epochs=1
    )


class CheckpointSource:
    """A registry of one version: the checkpoint directory given."""

    def __init__(self, checkpoint: Path, version: str) -> None:
        self._checkpoint, self._version = checkpoint, version

    def current_version(self) -> str | None:
        return self._version

    def fetch(self, version: str, dest: Path) -> Path:
        shutil.copytree(self._checkpoint, dest)
        return dest


# -- measurements -----------------------------------------------------------------------------------


def bare_model(detector: Any, images: np.ndarray, batch_size: int) -> float:
    detector.score_batch(images[:batch_size])  # trace the compiled function outside the timing
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        detector.score_batch(images[start : start + batch_size])
    return len(images) / (time.perf_counter() - started)


async def read_verdicts(settings: Settings, count: int, *, within_s: float) -> list[tuple[float, Verdict]]:
    """(arrival wall time, verdict) for the first `count` committed verdicts."""
    consumer = AIOKafkaConsumer(
        settings.topic_verdicts,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[tuple[float, Verdict]] = []
    try:
        async with asyncio.timeout(within_s):
            while len(out) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    now = time.time()
                    out.extend((now, Verdict.from_json(r.value)) for r in batch)
    finally:
        await consumer.stop()
    return out


async def publish(settings: Settings, keys: list[str], *, rate: float = 0.0) -> None:
    """The keys' events, all at once, or `rate` per second on a fixed schedule; each event is
    stamped as it is sent, so event-to-verdict starts when the scan is announced."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        for index, key in enumerate(keys):
            if rate > 0 and (wait := started + index / rate - loop.time()) > 0:
                await asyncio.sleep(wait)  # the schedule of a paced load, not a wait for an event
            (event,) = events_for(settings, [key])
            await producer.send(settings.topic_scans, event.to_json(), key=event.scan_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def events_for(settings: Settings, keys: list[str]) -> list[ScanEvent]:
    now = datetime.now(UTC)
    return [
        ScanEvent(scan_id=key.removesuffix(".png"), bucket=settings.bucket_scans, key=key, created_at=now)
        for key in keys
    ]


async def pipeline(
    settings: Settings, source: CheckpointSource, keys: list[str], *, rate: float = 0.0
) -> tuple[float, list[float], float]:
    """(scans per second, event-to-verdict latencies in ms, fraction of the time the model was busy)."""
    from consumers.inference.service import InferenceService

    service = InferenceService(settings, source=source)
    task = asyncio.create_task(service.run())
    try:
        # One scan first: the model is loaded and traced and the group joined before the clock starts.
        await publish(settings, keys[:1])
        await read_verdicts(settings, 1, within_s=300)
        model_s_before = model_seconds(service)
        started = time.time()
        publishing = asyncio.create_task(publish(settings, keys[1:], rate=rate))
        arrived = await read_verdicts(settings, len(keys), within_s=1800)
        busy_s = model_seconds(service) - model_s_before
        await publishing
    finally:
        service.stop.set()
        await task
    timed = [(at, v) for at, v in arrived if v.scan_id != events_for(settings, keys[:1])[0].scan_id]
    elapsed = max(at for at, _ in timed) - started
    latencies = [(at - v.event_time.timestamp()) * 1000 for at, v in timed if v.event_time is not None]
    return len(timed) / elapsed, latencies, busy_s / elapsed


def model_seconds(service: Any) -> float:
    value = service.registry.get_sample_value("battery_ct_stage_seconds_sum", {"stage": "model"})
    return float(value or 0.0)


async def naive(settings: Settings, store: Any, detector: Any, keys: list[str]) -> float:
    """One message at a time: fetch, decode, score one image, publish and wait, next."""
    from model_core.imaging import decode_image, preprocess

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        started = time.perf_counter()
        for event in events_for(settings, keys):
            data = await store.aget_bytes(event.bucket, event.key, max_bytes=settings.max_object_bytes)
            image = preprocess(decode_image(data, max_pixels=settings.max_image_pixels), detector.image_size)
            (score,) = detector.score_batch(image[None])
            await producer.send_and_wait(
                settings.topic_verdicts + "-naive", json.dumps({"id": event.scan_id, "s": score.anomaly_score}).encode()
            )
        return len(keys) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from model_core.detector import Detector
    from model_core.imaging import decode_image, preprocess
    from runtime.topics import TopicSpec, ensure_topics, standard_topics
    from storage.object_store import ObjectStore

    tag = uuid.uuid4().hex[:8]
    settings = Settings().model_copy(
        update={
            "topic_scans": f"bench-{tag}.scans",
            "topic_verdicts": f"bench-{tag}.verdicts",
            "topic_dead_letter": f"bench-{tag}.dead-letter",
            "topic_control": f"bench-{tag}.control",
            "topic_model_updates": f"bench-{tag}.model-updates",
            "topic_accepted": f"bench-{tag}.accepted",
            "inference_group": f"bench-{tag}",
            "instance_id": f"bench-{tag}",
            "bucket_scans": f"bench-{tag}",
            "batch_size": args.batch_size,
            "metrics_port": 0,
        }
    )
    work = Path(tempfile.mkdtemp(prefix="battery-ct-bench-"))
    try:
        settings = settings.model_copy(update={"checkpoint_dir": work})
        log.info("simulating %d distinct slices of %d px for %d scans", args.distinct, args.size, args.scans)
        # Simulating is slow and irrelevant to the measurement: distinct slices are reused under new keys.
        distinct = simulated_pngs(min(args.distinct, args.scans), args.size, args.seed)
        pngs = [distinct[i % len(distinct)] for i in range(args.scans)]
        checkpoint = args.checkpoint or quick_checkpoint(args.size, work, args.seed)
        detector = Detector.load(checkpoint)

        store = ObjectStore.from_settings(settings)
        await asyncio.to_thread(store.ensure_bucket, settings.bucket_scans)
        keys = [f"scan-{i:05d}.png" for i in range(len(pngs))]
        slots = asyncio.Semaphore(16)

        async def upload(key: str, data: bytes) -> None:
            async with slots:
                await store.aput_bytes(settings.bucket_scans, key, data)

        log.info("uploading")
        await asyncio.gather(*(upload(k, d) for k, d in zip(keys, pngs, strict=True)))
        await ensure_topics(settings, [*standard_topics(settings), TopicSpec(settings.topic_verdicts + "-naive")])

        log.info("bare model")
        images = np.stack(
            [preprocess(decode_image(p, max_pixels=settings.max_image_pixels), detector.image_size) for p in pngs]
        )
        load = {"bare_start": os.getloadavg()[0]}
        bare_before = bare_model(detector, images, args.batch_size)
        load["bare_end"] = os.getloadavg()[0]

        log.info("pipeline")
        rate = args.paced * bare_before
        load["pipeline_start"] = os.getloadavg()[0]
        pipeline_rate, latencies, model_busy = await pipeline(
            settings, CheckpointSource(checkpoint, detector.version), keys, rate=rate
        )
        load["pipeline_end"] = os.getloadavg()[0]
        log.info("bare model again")
        bare_after = bare_model(detector, images, args.batch_size)
        load["bare_after_end"] = os.getloadavg()[0]
        bare = (bare_before + bare_after) / 2

        if args.naive_scans:
            log.info("naive loop")
        naive_rate = await naive(settings, store, detector, keys[: args.naive_scans]) if args.naive_scans else None
        result: dict[str, Any] = {
            "pipeline_scans_per_s": round(pipeline_rate, 2),
            "bare_model_scans_per_s": round(bare_before, 2),
            "bare_model_after_scans_per_s": round(bare_after, 2),
            "ratio": round(pipeline_rate / bare, 3),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "naive_scans_per_s": None if naive_rate is None else round(naive_rate, 2),
            "model_busy_fraction": round(model_busy, 3),
            "scans": args.scans,
            "naive_scans": min(args.naive_scans, args.scans),
            "image_size": detector.image_size,
            "batch_size": args.batch_size,
            "delivery": settings.delivery,
            "cpus": os.cpu_count(),
            "load": {phase: round(value, 2) for phase, value in load.items()},
        }
        if rate > 0:
            # Paced, the pipeline can go no faster than the events come: its rate says nothing of the ceiling.
            del result["ratio"]
            result.update(paced=args.paced, publish_scans_per_s=round(rate, 2))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    result = asyncio.run(run(parse_args(argv)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
