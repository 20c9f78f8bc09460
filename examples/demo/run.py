"""`battery-ct demo` from start to end: infrastructure, first model, services, stream, retrain, report.

Reads top to bottom like the demo: each step prints one line when it starts, its time goes into
the report. Whatever happened (done, failed, Ctrl-C), the `finally` stops the services with
SIGTERM, waits for them, and stops the infrastructure this run started.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from examples.demo.measuring import golden_recipe, measurement_section, publish_recipe
from examples.demo.report import Report, RetrainOutcome, StationSummary, VersionRow, write_report
from examples.demo.scans import simulated_scans
from examples.demo.services import Service, ServiceError, settings_env
from examples.demo.station import StationError, StationLogin, await_verdicts, create_logins, waiting_in_queue
from examples.demo.stream import LiveLine, stream
from local_stack.errors import InfraError
from local_stack.free_ports import free_port
from schemas.settings import Settings

if TYPE_CHECKING:
    from examples.demo.report import ScanFigure
    from examples.demo.scans import SimulatedScan
    from model_core.network import NetworkConfig
    from schemas.recipes import Recipe
    from schemas.verdicts import Verdict


@dataclass(frozen=True)
class DemoOptions:
    scans: int = 240
    defect_share: float = 0.3
    train: int = 200
    calibration_defects: int = 40
    max_fpr: float = 0.05
    epochs: int = 4
    size: int = 256
    retrain_batch: int = 32
    retrain_epochs: int = 8
    after: int = 40
    real: bool = True
    real_epochs: int = 4
    real_copies: int = 40
    figures: int = 24
    seed: int = 7
    keep_infra: bool = False
    keep_open: bool = False  # after the report, the review station stays open until Ctrl-C
    timeout_s: float = 900.0
    network: NetworkConfig | None = field(default=None, compare=False)  # tests pass a tiny one


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    say(f"==> {name}")
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - started


def demo_settings(settings: Settings, run_id: str, work: Path) -> Settings:
    """Topics, groups and buckets of this run's own, so an infrastructure in use keeps its data."""
    return settings.model_copy(
        update={
            "topic_scans": f"demo.{run_id}.scans",
            "topic_verdicts": f"demo.{run_id}.verdicts",
            "topic_accepted": f"demo.{run_id}.accepted",
            "topic_model_updates": f"demo.{run_id}.model-updates",
            "topic_dead_letter": f"demo.{run_id}.dead-letter",
            "topic_control": f"demo.{run_id}.control",
            "inference_group": f"demo-{run_id}-inference",
            "retrain_group": f"demo-{run_id}-retrain",
            "review_group": f"demo-{run_id}-review",
            "review_outbox_group": f"demo-{run_id}-review-outbox",
            "review_database_url": SecretStr(f"sqlite:///{work / 'review.db'}"),
            "transactional_id_prefix": f"demo-{run_id}",
            "bucket_scans": f"demo-{run_id}-scans",
            "bucket_models": f"demo-{run_id}-models",
            "bucket_datasets": f"demo-{run_id}-datasets",
            "bucket_heatmaps": f"demo-{run_id}-heatmaps",
            "checkpoint_dir": work / "checkpoints",
            "heatmaps": True,
        }
    )


def run_demo(options: DemoOptions, base: Settings, out: Path) -> int:
    """The whole demo; returns the exit status (0 done, 1 failed, 130 interrupted)."""
    started_at = datetime.now(UTC)
    # Their chatter (groups, requests, migrations) hides the live line and the demo's own lines.
    for chatty in ("aiokafka", "httpx", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="battery-ct-demo-"))
    run_id = uuid.uuid4().hex[:8]
    services: list[Service] = []
    infra_started = False
    settings = base
    try:
        with timed(timings, "local infrastructure (Kafka broker, S3 endpoint)"):
            from local_stack import up

            infra = up(base, reuse_configured=True)
            infra_started = bool(infra.started)
            settings = demo_settings(infra.apply(base), run_id, work)
            asyncio.run(_create_topics(settings))
        with timed(timings, f"simulated training set ({options.train} normal, {options.calibration_defects} defect)"):
            data = _synth_training_set(options, work / "train")
        with timed(timings, f"training the first model ({options.size} px, up to {options.epochs} epochs)"):
            checkpoint = _train_first_model(options, data, work / "initial")
        with timed(timings, "publishing it to the S3 registry"):
            initial_version = _publish(settings, checkpoint)
            say(f"    serving version {initial_version}")
        with timed(timings, "a recipe from a golden batch (40 good cells measured)"):
            recipe = _golden_recipe(settings, options)
        password = create_logins(settings.review_database_url.get_secret_value())
        with timed(timings, "starting the inference, retrain and review consumers and the API"):
            services = _start_services(settings, options, out / "logs", work)
            for service in services:
                service.wait_ready(timeout_s=180)
                say(f"    {service.name} ready (log {service.log_path})")
        scans = simulated_scans(
            options.scans, options.defect_share, size=options.size, seed=options.seed, prefix=run_id
        )
        with timed(timings, f"streaming {len(scans)} simulated scans (upload + event), verdicts live"):
            live = LiveLine(len(scans), "verdicts")
            verdicts, tally = asyncio.run(
                stream(settings, scans, live, timeout_s=options.timeout_s, recipe=recipe.name if recipe else None)
            )
        retrain = after_tally = after_version = None
        after_verdicts: dict[str, Verdict] = {}
        with timed(timings, f"accepting {options.retrain_batch} normal scans: retraining"):
            accepted = simulated_scans(
                options.retrain_batch, 0.0, size=options.size, seed=options.seed + 1, prefix=f"{run_id}-accepted"
            )
            began = time.monotonic()
            from examples.demo.retrain import accept_and_await_update

            update = asyncio.run(accept_and_await_update(settings, accepted, timeout_s=options.timeout_s))
            retrain = RetrainOutcome(
                status=update.status,
                version=update.version,
                parent=update.parent,
                current_version=update.current_version,
                threshold=update.threshold,
                validation_error=update.new_validation_error,
                reason=update.reason,
                seconds=time.monotonic() - began,
            )
            say(f"    {update.status}: {update.version} (serving {update.current_version}); {update.reason or ''}")
        if options.after > 0:
            with timed(timings, f"streaming {options.after} more scans after the update"):
                more = simulated_scans(
                    options.after,
                    options.defect_share,
                    size=options.size,
                    seed=options.seed + 2,
                    prefix=f"{run_id}-after",
                )
                after_verdicts, after_tally = asyncio.run(
                    stream(
                        settings,
                        more,
                        LiveLine(len(more), "after"),
                        timeout_s=options.timeout_s,
                        recipe=recipe.name if recipe else None,
                    )
                )
                after_version = ", ".join(sorted({v.model_version for v in after_verdicts.values()}))
        notes = [_facade_check(services[-1], settings, scans)] if services else []
        with timed(timings, "the review station: every verdict in its database, its queue signed in"):
            login = StationLogin(services[-1].ready_url.removesuffix("/readyz") + "/review/", password)
            judged = len(verdicts) + len(after_verdicts)
            await_verdicts(settings.review_database_url.get_secret_value(), judged, options.timeout_s)
            station = StationSummary(login.url, login.users, login.password, waiting_in_queue(login))
            say(f"    review station: {login.line()}")
            say(f"    {station.waiting} cells wait for a decision there (flagged, unusable, audit samples)")
        real = None
        if options.real:
            with timed(timings, "real slices: training on the repository's copies, scoring im_1 and im_2"):
                from examples.demo.real_section import real_section

                real = real_section(
                    options.size, epochs=options.real_epochs, copies=options.real_copies, network=options.network
                )
                for probe in real.probes:
                    say(f"    {probe.name}: score {probe.anomaly_score:.3f} (threshold {real.threshold:.3f})")
        measurements = None
        if recipe is not None:
            with timed(timings, "measurements: conformance, a dent profile, a cell end's overhang per angle"):
                measurements = measurement_section(recipe, scans, verdicts, seed=options.seed)
                say(
                    f"    {measurements.conforming} conform, {measurements.failing} out of tolerance, "
                    f"{measurements.unknown} not judged ({recipe.name} v{recipe.version})"
                )
        with timed(timings, "writing the report"):
            report = Report(
                started_at=started_at,
                options={k: v for k, v in asdict(options).items() if k != "network"},
                tally=tally,
                per_type=_per_type(scans, verdicts),
                versions=_versions(settings),
                initial_version=initial_version,
                retrain=retrain,
                after=after_tally,
                after_version=after_version,
                figures=_figures(settings, scans, verdicts, options.figures),
                real=real,
                timings=timings,
                notes=notes,
                station=station,
                measurements=measurements,
            )
            index = write_report(report, out)
        say(f"stream: {tally.summary()}")
        say(f"report: {index.resolve()}")
        if options.keep_open:
            _hold_open(login)
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted: stopping everything")
        return 130
    except (ServiceError, StationError, InfraError, TimeoutError) as exc:
        # What a user can act on (a missing java, a port, a service's log) in one line, no traceback
        say(f"error: {exc or 'timed out waiting for the verdicts or the model update'}")
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _clean_up(services, base, infra_started and not options.keep_infra, work)
        finally:
            signal.signal(signal.SIGINT, previous)


def _hold_open(login: StationLogin) -> None:
    """Keep every service running for the person at the review station, until Ctrl-C."""
    say(f"review station open: {login.line()}")
    say("    decisions there go to the retrain consumer; press Ctrl-C to stop everything")
    try:
        signal.pause()
    except KeyboardInterrupt:
        say("")


def _clean_up(services: list[Service], settings: Settings, stop_infra: bool, work: Path) -> None:
    for service in reversed(services):
        status = service.stop()
        # uvicorn re-raises the SIGTERM it handled after its clean shutdown: -15 is a clean stop too
        how = "cleanly" if status in (0, -signal.SIGTERM) else f"exit status {status}"
        say(f"    stopped {service.name} ({how})")
    if stop_infra:
        from local_stack import down

        down(settings)
    shutil.rmtree(work, ignore_errors=True)


async def _create_topics(settings: Settings) -> None:
    from runtime.topics import ensure_topics, standard_topics

    await ensure_topics(settings, standard_topics(settings))


def _synth_training_set(options: DemoOptions, out: Path) -> Path:
    from producers.simulator import generate_dataset

    generate_dataset(
        out,
        options.train,
        options.calibration_defects,
        options.seed + 100,
        size=options.size,
        progress=sys.stderr.isatty(),
        workers=2,
    )
    return out


def _train_first_model(options: DemoOptions, data: Path, out: Path) -> Path:
    from tqdm import tqdm

    from model_core.imaging import iter_image_files, load_image_file, preprocess
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.thresholds import ThresholdRule
    from model_core.training import EpochProgress, TrainingConfig, train_detector

    def load(directory: Path) -> list[object]:
        paths = sorted(iter_image_files(directory)) if directory.is_dir() else []
        return [preprocess(load_image_file(p, max_pixels=64 * 1024 * 1024), options.size) for p in paths]

    normal, defects = load(data / "normal"), load(data / "defect")
    config = TrainingConfig(
        network=options.network or NetworkConfig(image_size=options.size),
        memory=PatchMemoryConfig.for_image_size(options.size),
        # F1-optimal cuts on a small calibration set flag nearly everything; a bounded false-alarm
        # rate on the normal validation slices keeps the stream's precision meaningful.
        threshold=ThresholdRule(mode="fpr", max_fpr=options.max_fpr),
        epochs=options.epochs,
        seed=options.seed,
    )
    # A bar on a terminal; one line per epoch in a log, where a bar's carriage returns are noise.
    bar = tqdm(
        total=options.epochs, desc="    training", unit="epoch", file=sys.stdout, disable=not sys.stdout.isatty()
    )

    def progress(step: EpochProgress) -> None:
        bar.update(step.epoch - bar.n)
        bar.set_postfix(loss=f"{step.loss:.5f}", val_loss=f"{step.val_loss:.5f}")
        if bar.disable:
            left = round(step.seconds_left)
            say(
                f"    epoch {step.epoch}/{step.epochs} loss {step.loss:.5f} val loss {step.val_loss:.5f} ~{left} s left"
            )

    with bar:
        trained = train_detector(normal, defects or None, config, progress=progress)  # type: ignore[arg-type]
    say(f"    threshold {trained.threshold.threshold:.3f} ({trained.threshold.rule}), {trained.training_seconds:.0f} s")
    return trained.save(out, sample_ids=[f"demo-train-{i}" for i in range(len(normal))])


def _publish(settings: Settings, checkpoint: Path) -> str:
    from facade.commands.checkpoints import open_registry
    from producers.model_updates import publish_model_update
    from schemas.model_updates import ModelUpdate

    registry = open_registry(settings, create=True)
    version = registry.publish(checkpoint, "promoted", reason="the demo's first model")
    update = ModelUpdate.promoted(registry.metadata(version), reason="the demo's first model")
    asyncio.run(publish_model_update(settings, update))
    return version


def _golden_recipe(settings: Settings, options: DemoOptions) -> Recipe | None:
    """The recipe the stream is measured against, set from 40 good cells, in the run's registry."""
    golden = simulated_scans(40, 0.0, size=options.size, seed=options.seed + 3, prefix="golden")
    recipe = golden_recipe(golden)
    if recipe is None:
        say("    the golden cells could not be measured at this size: the stream is not measured")
        return None
    stored = publish_recipe(settings, recipe)
    limits = ", ".join(f"{name} {t.min if t.min is not None else ''}..{t.max if t.max is not None else ''}"
                       for name, t in stored.tolerances.items())  # fmt: skip
    say(f"    recipe {stored.name} v{stored.version}: {limits}")
    return stored


def _start_services(settings: Settings, options: DemoOptions, logs: Path, work: Path) -> list[Service]:
    import os

    base = dict(os.environ)
    inference_port, retrain_port, review_port, api_port = free_port(), free_port(), free_port(), free_port()
    specs: list[tuple[str, str, dict[str, object], list[str]]] = [
        ("inference", f"http://127.0.0.1:{inference_port}/readyz", {"metrics_port": inference_port}, []),
        (
            "retrain",
            f"http://127.0.0.1:{retrain_port}/readyz",
            {
                "metrics_port": retrain_port,
                "retrain_batch_size": options.retrain_batch,
                "retrain_epochs": options.retrain_epochs,
                "retrain_max_age_s": options.timeout_s,
            },
            [],
        ),
        ("review", f"http://127.0.0.1:{review_port}/readyz", {"metrics_port": review_port}, []),
        (
            "api",  # last: the demo's checks talk to services[-1]
            f"http://127.0.0.1:{api_port}/readyz",
            # A demo on one workstation: writes without a key, said out loud; never in production. Its
            # review station is plain HTTP on the loopback, where a Secure cookie is not sent by every browser.
            {
                "api_port": api_port,
                "api_host": "127.0.0.1",
                "allow_anonymous_writes": True,
                "review_secure_cookies": False,
            },
            [],
        ),
    ]
    say(f"    the demo's facade (127.0.0.1:{api_port}) accepts writes without an API key (allow_anonymous_writes)")
    services = []
    for name, ready_url, overrides, args in specs:
        service = Service(name, ready_url, logs / f"{name}.log")
        env = settings_env(settings, base, instance_id=f"demo-{name}", checkpoint_dir=str(work / name), **overrides)
        service.start(env, args)
        services.append(service)
    return services


def _facade_check(api: Service, settings: Settings, scans: list[SimulatedScan]) -> str:
    """One scan through the facade's POST /predict, to show the synchronous path answers too."""
    import json
    import urllib.request

    scan = next((s for s in scans if s.is_defect), scans[0])
    url = api.ready_url.removesuffix("/readyz") + "/predict"
    body = json.dumps({"image_url": f"s3://{settings.bucket_scans}/{scan.scan_id}.png"}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except OSError as exc:
        return f"POST /predict on {scan.scan_id} failed: {exc}"
    return (
        f"POST /predict on {scan.scan_id} (truth: {scan.defect_type or 'normal'}): anomaly_score "
        f"{answer.get('anomaly_score'):.3f}, threshold {answer.get('threshold'):.3f}, is_anomaly "
        f"{answer.get('is_anomaly')}, model {answer.get('model_version')}"
    )


def _per_type(scans: list[SimulatedScan], verdicts: dict[str, Verdict]) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    for scan in scans:
        if scan.defect_type is None or scan.scan_id not in verdicts:
            continue
        found, total = counts.get(scan.defect_type, (0, 0))
        counts[scan.defect_type] = (found + verdicts[scan.scan_id].is_anomaly, total + 1)
    return counts


def _versions(settings: Settings) -> list[VersionRow]:
    from facade.commands.checkpoints import open_registry

    return [
        VersionRow(
            version=r.version,
            status=r.status,
            current=r.current,
            threshold=r.metadata.threshold,
            validation_error=r.metadata.validation_error,
            anomaly_error=r.metadata.anomaly_error,
            parent=r.metadata.parent,
            label=r.metadata.label,
            created_at=r.metadata.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for r in open_registry(settings).list_versions()
    ]


def _figures(
    settings: Settings, scans: list[SimulatedScan], verdicts: dict[str, Verdict], limit: int
) -> list[ScanFigure]:
    """Flagged scans (found defects first, then false alarms) and a few missed defects, with their
    heat maps from the heat-map bucket."""
    from examples.demo.report import ScanFigure, display_png
    from storage.object_store import ObjectStore

    store = ObjectStore.from_settings(settings)
    judged = [(s, verdicts[s.scan_id]) for s in scans if s.scan_id in verdicts]
    found = [(s, v) for s, v in judged if v.is_anomaly and s.is_defect]
    false_alarms = [(s, v) for s, v in judged if v.is_anomaly and not s.is_defect]
    missed = [(s, v) for s, v in judged if not v.is_anomaly and s.is_defect]
    alarms = false_alarms[: limit // 3]  # some of each, so the report shows what a false alarm looks like
    chosen = found[: limit - len(alarms)] + alarms + missed[: max(4, limit // 3)]
    figures = []
    for scan, verdict in chosen:
        heatmap = None
        if verdict.heatmap_url and verdict.heatmap_url.startswith("s3://"):
            bucket, _, key = verdict.heatmap_url.removeprefix("s3://").partition("/")
            heatmap = store.get_bytes(bucket, key, max_bytes=settings.max_object_bytes)
        figures.append(
            ScanFigure(
                scan_id=scan.scan_id,
                truth=f"{scan.defect_type} ({scan.severity})" if scan.is_defect else "normal",
                is_defect=scan.is_defect,
                flagged=verdict.is_anomaly,
                anomaly_score=verdict.anomaly_score,
                threshold=verdict.threshold,
                model_version=verdict.model_version,
                slice_png=display_png(scan.image),
                heatmap_png=heatmap,
                mask_png=display_png(scan.image, scan.mask) if scan.mask is not None else None,
                measured=_measured_words(verdict),
            )
        )
    return figures


def _measured_words(verdict: Verdict) -> str | None:
    """The recipe's verdict on a cell for its card: conforms, or which checks failed and by how much."""
    judged = verdict.conformance
    if judged is None or judged.recipe is None:
        return None
    if judged.conforms is True:
        diameter = (verdict.measurements or {}).get("can.outer_diameter_mm")
        size = f", can {diameter.value:.3f} mm" if diameter is not None and diameter.value is not None else ""
        return f"conforms to {judged.recipe}{size}"
    if judged.conforms is False:
        failed = [c for c in judged.checks if c.passed is False]
        return "out of tolerance: " + "; ".join(f"{c.name} {c.value:.3f}" for c in failed if c.value is not None)
    return f"not judged: {judged.reason}"
