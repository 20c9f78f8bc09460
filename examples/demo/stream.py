"""The scan stream: upload simulated scans with their events, read the verdicts, show a live line.

Verdicts are read from the verdicts topic with `read_committed` and no consumer group (the demo
only watches). The live line is one line rewritten in place on a terminal; when stdout is not a
terminal (a log, CI) it prints a new line every tenth of the stream instead.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from examples.demo.scans import SimulatedScan
from examples.demo.tally import StreamTally
from producers.uploader import Uploader
from schemas.settings import Settings
from schemas.verdicts import Verdict


class LiveLine:
    """The tally on one updating line (terminal) or as periodic lines (anything else)."""

    def __init__(self, total: int, label: str, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.total = total
        self.label = label
        self.tty = self.out.isatty()
        self.every = max(1, total // 10)
        self._printed = -1

    def show(self, tally: StreamTally, *, final: bool = False) -> None:
        line = f"{self.label} {tally.total}/{self.total} | {tally.summary()}"
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
            self.out.flush()
        elif (final or tally.total % self.every == 0) and tally.total != self._printed:
            print(line, file=self.out, flush=True)
            self._printed = tally.total


async def upload_scans(settings: Settings, scans: Sequence[SimulatedScan], recipe: str | None = None) -> None:
    """Each scan to the scans bucket, then its ScanEvent (naming `recipe` and the scan's pixel
    size) to the scans topic (the producer's order)."""
    async with Uploader(settings, validate=False) as uploader:
        for scan in scans:
            await uploader.upload(scan.png, scan.scan_id, ".png", recipe=recipe, pixel_mm=scan.pixel_mm)


async def collect_verdicts(
    settings: Settings,
    scans: Sequence[SimulatedScan],
    live: LiveLine,
    *,
    timeout_s: float,
    tally: StreamTally | None = None,
) -> dict[str, Verdict]:
    """The first verdict of every scan in `scans` (others on the topic are skipped), tallied
    against the truth as they arrive. Raises TimeoutError when some are still missing after `timeout_s`."""
    from runtime.kafka import make_consumer

    truth = {scan.scan_id: scan.is_defect for scan in scans}
    tally = tally if tally is not None else StreamTally()
    verdicts: dict[str, Verdict] = {}
    consumer = make_consumer(settings, settings.topic_verdicts, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while len(verdicts) < len(truth):
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        if record.value is None:
                            continue
                        verdict = Verdict.from_json(record.value)
                        if verdict.scan_id not in truth or verdict.scan_id in verdicts:
                            continue
                        verdicts[verdict.scan_id] = verdict
                        tally.add(is_defect=truth[verdict.scan_id], flagged=verdict.is_anomaly)
                        live.show(tally)
    finally:
        await consumer.stop()
    live.show(tally, final=True)
    return verdicts


async def stream(
    settings: Settings, scans: Sequence[SimulatedScan], live: LiveLine, *, timeout_s: float, recipe: str | None = None
) -> tuple[dict[str, Verdict], StreamTally]:
    """Upload `scans` (of `recipe`) while reading their verdicts; returns the verdicts and the tally."""
    tally = StreamTally()
    reader = asyncio.create_task(collect_verdicts(settings, scans, live, timeout_s=timeout_s, tally=tally))
    try:
        await upload_scans(settings, scans, recipe)
        return await reader, tally
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
