"""The demo's retrain step: operators accept normal scans, the retrain consumer answers with a model update.

The accepted scans are uploaded without a scan event (they are not to be judged again), then one
`AcceptedScan` (label normal) each goes to the accepted topic. The model-updates topic is opened
before the first one is sent, so the update that answers them cannot be missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from examples.demo.scans import SimulatedScan
from producers.uploader import Uploader
from schemas.accepted import AcceptedScan
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings


async def accept_and_await_update(
    settings: Settings, scans: Sequence[SimulatedScan], *, timeout_s: float
) -> ModelUpdate:
    """Accept `scans` as normal and return the first ModelUpdate that names one of them
    (promoted or rejected). TimeoutError when none came within `timeout_s`."""
    from runtime.kafka import make_producer
    from runtime.model_updates import open_model_updates, read_model_updates

    updates = await open_model_updates(settings)
    try:
        async with Uploader(settings, publish_events=False, validate=False) as uploader:
            events = [await uploader.upload(scan.png, scan.scan_id, ".png") for scan in scans]
        producer = make_producer(settings)
        await producer.start()
        try:
            for event in events:
                accepted = AcceptedScan(
                    scan_id=event.scan_id,
                    image_url=f"s3://{event.bucket}/{event.key}",
                    label="normal",
                    note="accepted by the battery-ct demo (simulated normal slice)",
                )
                await producer.send_and_wait(settings.topic_accepted, accepted.to_json(), key=event.scan_id.encode())
        finally:
            await producer.stop()
        wanted = {event.scan_id for event in events}
        async with asyncio.timeout(timeout_s):
            async for update in read_model_updates(updates):
                if wanted.intersection(update.scan_ids):
                    return update
        raise TimeoutError("the model-updates topic ended")  # the reader only ends when stopped
    finally:
        await updates.stop()
