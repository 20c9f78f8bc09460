"""The review queue with many verdicts in PostgreSQL: how fast the queue page answers.

    python -m benchmarks.review_queue --verdicts 100000 --requests 300

1. a throwaway PostgreSQL server (Debian's package, `local_stack.postgres`) gets `--verdicts`
   verdicts through the review consumer's own store (`reviews.materialise.store_batch`, batches
   of 1,000), about 6 % flagged, over 30 days and 4 recipes, and a few thousand decided;
2. the facade runs as its own process (`battery-ct serve api`, its relay off, no broker needed
   for the pages) on that database; an operator signs in through the login form;
3. the queue page is asked `--requests` times as an operator would, over HTTP with the session's
   cookie: the first page, a recipe, a reason, a model version, a day, a deep page; then the same
   filters straight to the query (`reviews.queue.queue`), to see what the page adds;
4. prints one JSON object: the counts, the load time, and p50/p95/max in ms of the page and of
   the query.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import text

from facade.web.client import sign_in, waiting
from facade.web.forms import QueueQuery
from local_stack.free_ports import free_port
from reviews.database import Database
from reviews.materialise import ConsumedRecord, store_batch
from reviews.people import add_user
from reviews.queue import QueueFilter, queue
from schemas.settings import ENV_PREFIX
from schemas.verdicts import Verdict

RECIPES = ("21700-nmc", "18650-lfp", "4680-nmc", "21700-lfp")
BATCH = 1000
PASSWORD = "a benchmark password"


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
    """The queue page's query strings (dates are whole days, `until` included)."""
    day = (now - timedelta(days=rng.randint(1, 29))).date()
    return [
        {},
        {"recipe": rng.choice(RECIPES)},
        {"reason": rng.choice(["anomaly", "audit"])},
        {"model_version": f"v{rng.randint(1, 5):04d}"},
        {"since": f"{day}", "until": f"{day}"},
        {"page": str(rng.randint(2, 20))},
    ]


def query_asker(database: Database) -> Callable[[dict[str, str]], None]:
    def ask(params: dict[str, str]) -> None:
        f = QueueQuery.model_validate(params).to_filter()
        database.run(lambda s: queue(s, f))

    return ask


def page_asker(client: httpx.Client, station_url: str) -> Callable[[dict[str, str]], None]:
    def ask(params: dict[str, str]) -> None:
        answer = client.get(station_url, params=params)
        if answer.status_code != 200 or "waiting</span>" not in answer.text:
            raise RuntimeError(f"the queue page answered {answer.status_code} to {params}")

    return ask


def timed_asks(ask: Callable[[dict[str, str]], None], requests: int, seed: int = 11) -> list[float]:
    """`requests` asks (the same sequence for every `ask` of one seed), each one's time in ms, sorted."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    times: list[float] = []
    while len(times) < requests:
        for params in _asks(rng, now)[: requests - len(times)]:
            began = time.perf_counter()
            ask(params)
            times.append((time.perf_counter() - began) * 1000)
    return sorted(times)


def summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
        "max_ms": round(times[-1], 1),
    }


@contextmanager
def facade_on(database_url: str, logs: Path) -> Iterator[str]:
    """`battery-ct serve api` on the database, on a free loopback port; the station's URL."""
    port = free_port()
    nowhere = free_port()  # no broker and no S3: the pages need neither, the facade retries them aside
    env = dict(os.environ) | {
        f"{ENV_PREFIX}REVIEW_DATABASE_URL": database_url,
        f"{ENV_PREFIX}REVIEW_RELAY": "false",
        f"{ENV_PREFIX}REVIEW_SECURE_COOKIES": "false",
        f"{ENV_PREFIX}KAFKA_BOOTSTRAP": f"127.0.0.1:{nowhere}",
        f"{ENV_PREFIX}S3_ENDPOINT": f"127.0.0.1:{nowhere}",
        f"{ENV_PREFIX}LOG_LEVEL": "ERROR",
    }
    command = [sys.executable, "-m", "facade.cli", "serve", "api", "--host", "127.0.0.1", "--port", str(port)]
    with (logs / "facade.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/review/"
    try:
        deadline = time.monotonic() + 120
        while True:  # the login page answering is the condition; each probe is a real request
            if process.poll() is not None:
                tail = (logs / "facade.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the facade exited at start:\n{tail}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{url}login", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the facade did not serve the review station within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verdicts", type=int, default=100_000, help="verdicts stored first (default 100000)")
    parser.add_argument("--requests", type=int, default=300, help="queue pages timed, and as many queries (300)")
    args = parser.parse_args()

    from local_stack.postgres import start_postgres

    with (
        tempfile.TemporaryDirectory(prefix="battery-ct-bench-") as tmp,
        start_postgres(Path(tmp), durable=True) as server,
    ):
        database = Database.open(server.url)
        load_s = load(database, args.verdicts)
        database.run(lambda s: s.execute(text("ANALYZE")))
        database.run(lambda s: add_user(s, "bench", PASSWORD, "operator"))
        with facade_on(server.url, Path(tmp)) as station, httpx.Client(timeout=60) as client:
            first = sign_in(client, station, "bench", PASSWORD)
            page_asker(client, station)({})  # the first request warms the facade's templates and pool
            pages = timed_asks(page_asker(client, station), args.requests)
        queries = timed_asks(query_asker(database), args.requests)
        total = database.run(lambda s: queue(s, QueueFilter()).total)
    print(
        json.dumps(
            {
                "benchmark": "review_queue",
                "backend": "postgresql",
                "verdicts": args.verdicts,
                "queued": total,
                "queued_on_page": waiting(first),
                "load_s": round(load_s, 1),
                "requests": len(pages),
                "page": summary(pages),
                "query": summary(queries),
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
