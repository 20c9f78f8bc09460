"""The review queue with many verdicts in PostgreSQL: how fast the queue answers.

    python -m benchmarks.review_queue --verdicts 100000 --requests 200

1. a throwaway PostgreSQL server (Debian's package, `local_stack.postgres`) gets `--verdicts`
   verdicts through the review consumer's own store (`reviews.materialise.store_batch`, batches
   of 1,000), about 6 % flagged, over 30 days and 4 recipes, and a few thousand decided;
2. the queue is asked `--requests` times as an operator would: the first page, a recipe, a
   reason, a model version, a day, a deep page (`reviews.queue.queue`, what the page runs);
3. prints one JSON object: the counts, the load time, and p50/p95/max of the answers in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import text

from reviews.database import Database
from reviews.materialise import ConsumedRecord, store_batch
from reviews.queue import QueueFilter, queue
from schemas.verdicts import Verdict

RECIPES = ("21700-nmc", "18650-lfp", "4680-nmc", "21700-lfp")
BATCH = 1000


def _records(first: int, count: int, rng: random.Random, start: datetime) -> list[ConsumedRecord]:
    records = []
    for i in range(first, first + count):
        anomaly = rng.random() < 0.06
        verdict = Verdict(
            scan_id=f"line{i % 3}/cell-{i:07d}",
            image_url=f"s3://scans/line{i % 3}/cell-{i:07d}.tif",
            reconstruction_error=rng.random() / 100,
            anomaly_score=rng.random() + (1 if anomaly else 0),
            is_anomaly=anomaly,
            threshold=1.0,
            model_version=f"v{1 + i * 5 // (first + count + 1):04d}",
            judged_at=start + timedelta(seconds=i * 26),
        )
        payload = verdict.model_dump(mode="json") | {"recipe": RECIPES[i % len(RECIPES)]}
        records.append(ConsumedRecord("ct.verdicts", i % 4, i // 4, json.dumps(payload).encode()))
    return records


def load(database: Database, verdicts: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=30)
    began = time.perf_counter()
    positions: dict[tuple[str, int], int | None] = {}
    for first in range(0, verdicts, BATCH):
        records = _records(first, min(BATCH, verdicts - first), rng, start)
        expected = {(r.topic, r.partition): positions.get((r.topic, r.partition)) for r in records}
        moved = database.run(
            partial(store_batch, group_id="bench", records=records, expected=expected, audit_rate=0.02)
        )
        positions.update(moved)
    return time.perf_counter() - began


def _asks(rng: random.Random, now: datetime) -> list[dict[str, str]]:
    day = (now - timedelta(days=rng.randint(1, 29))).date()
    return [
        {},
        {"recipe": rng.choice(RECIPES)},
        {"reason": rng.choice(["anomaly", "audit"])},
        {"model_version": f"v{rng.randint(1, 5):04d}"},
        {"since": f"{day}", "until": f"{day + timedelta(days=1)}"},
        {"page": str(rng.randint(2, 20))},
    ]


def query_asker(database: Database) -> Callable[[dict[str, str]], None]:
    def ask(params: dict[str, str]) -> None:
        f = QueueFilter.model_validate(params)
        database.run(lambda s: queue(s, f))

    return ask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verdicts", type=int, default=100_000, help="verdicts stored first (default 100000)")
    parser.add_argument("--requests", type=int, default=200, help="queue requests timed (default 200)")
    args = parser.parse_args()

    from local_stack.postgres import start_postgres

    with (
        tempfile.TemporaryDirectory(prefix="battery-ct-bench-") as tmp,
        start_postgres(Path(tmp), durable=True) as server,
    ):
        database = Database.open(server.url)
        load_s = load(database, args.verdicts)
        database.run(lambda s: s.execute(text("ANALYZE")))
        ask = query_asker(database)
        rng = random.Random(11)
        now = datetime.now(UTC)
        times = []
        for _ in range(args.requests // 6 + 1):
            for params in _asks(rng, now):
                began = time.perf_counter()
                ask(params)
                times.append((time.perf_counter() - began) * 1000)
        times.sort()
        total = database.run(lambda s: queue(s, QueueFilter()).total)
    print(
        json.dumps(
            {
                "benchmark": "review_queue",
                "backend": "postgresql",
                "through": "query",
                "verdicts": args.verdicts,
                "queued": total,
                "load_s": round(load_s, 1),
                "requests": len(times),
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                "max_ms": round(times[-1], 1),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
