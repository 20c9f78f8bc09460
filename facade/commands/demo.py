"""`battery-ct demo`: the main job end to end on the local infrastructure (logic in `examples.demo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Run the whole system once, on this machine, on simulated CT slices whose truth is known:
start a local Kafka broker and S3 endpoint (or use the ones BATTERY_CT_KAFKA_BOOTSTRAP /
BATTERY_CT_S3_ENDPOINT name), train a first model (progress bar), publish and promote it in the
S3 registry, start the inference, retrain and review consumers and the HTTP facade, stream the
scans by upload and event while the verdicts come in (running precision and recall), accept
normal scans until the retrain consumer publishes a new version, score a few scans with it,
train a model on the repository's real slices, open the review station (the URL and a sign-in
are printed and in the report), write OUT/index.html and stop everything; on a terminal the
services first stay up for the review station until Ctrl-C (--no-keep-open to skip).
Ctrl-C stops everything cleanly at any point. With the defaults it takes about 10 minutes on a
2-core machine; the services' logs are in OUT/logs/.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job end to end on the local infrastructure, with a live view and an HTML report",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scans", type=int, default=240, help="simulated scans to stream and judge")
    parser.add_argument("--defect-share", type=float, default=0.3, help="share of defective scans in the stream")
    parser.add_argument("--train", type=int, default=200, metavar="N", help="normal slices to train the first model on")
    parser.add_argument(
        "--calibration-defects", type=int, default=40, metavar="N", help="defect slices that set the first threshold"
    )
    parser.add_argument(
        "--max-fpr",
        type=float,
        default=0.05,
        help="the first threshold: lowest cut with at most this false-alarm rate on normal validation slices",
    )
    parser.add_argument(
        "--epochs", type=int, default=4, help="most epochs of the first model (short: the retrain continues it)"
    )
    parser.add_argument("--size", type=int, default=256, metavar="PX", help="model resolution (and slice size)")
    parser.add_argument(
        "--retrain-batch",
        type=int,
        default=None,
        metavar="N",
        help="accepted normal scans, and the retrain consumer's batch size (default: BATTERY_CT_RETRAIN_BATCH_SIZE)",
    )
    parser.add_argument("--retrain-epochs", type=int, default=8, help="epochs of the warm-start retraining")
    parser.add_argument("--after", type=int, default=40, metavar="N", help="scans judged after the retrain")
    parser.add_argument("--no-real", action="store_true", help="skip the real-slice section of the report")
    parser.add_argument("--real-epochs", type=int, default=4, help="epochs of the real-slice model")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated slices and the training")
    parser.add_argument("--out", type=Path, default=Path("demo-report"), help="report directory")
    parser.add_argument(
        "--keep-infra", action="store_true", help="leave the Kafka broker and S3 endpoint running afterwards"
    )
    parser.add_argument(
        "--keep-open",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the report, keep the services running for the review station until Ctrl-C "
        "(default: yes on a terminal, no otherwise)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, metavar="S", help="longest wait for verdicts or the model update"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from examples.demo.run import DemoOptions, run_demo
    from schemas.settings import Settings

    settings = Settings()
    retrain_batch = args.retrain_batch if args.retrain_batch is not None else settings.retrain_batch_size
    if args.scans < 1 or not 0 <= args.defect_share <= 1 or args.train < 2 or retrain_batch < 1:
        raise SystemExit("error: --scans and --retrain-batch must be >= 1, --train >= 2, --defect-share in [0, 1]")
    options = DemoOptions(
        scans=args.scans,
        defect_share=args.defect_share,
        train=args.train,
        calibration_defects=args.calibration_defects,
        max_fpr=args.max_fpr,
        epochs=args.epochs,
        size=args.size,
        retrain_batch=retrain_batch,
        retrain_epochs=args.retrain_epochs,
        after=args.after,
        real=not args.no_real,
        real_epochs=args.real_epochs,
        seed=args.seed,
        keep_infra=args.keep_infra,
        keep_open=args.keep_open if args.keep_open is not None else sys.stdin.isatty() and sys.stdout.isatty(),
        timeout_s=args.timeout,
    )
    return run_demo(options, settings, args.out)
