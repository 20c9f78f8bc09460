"""`battery-ct checkpoints list | import | fetch | rollback`: the checkpoint registry in the models bucket."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_core.registry import Registry, VersionRecord
    from schemas.model_updates import ModelUpdate
    from schemas.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "checkpoints",
        help="list, import, fetch and roll back model versions in the registry",
        description=(
            "The checkpoint registry in the models bucket (BATTERY_CT_BUCKET_MODELS). Versions are immutable "
            "and named v<sequence>-<content hash>; one of them is current (served by every consumer)."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every version, oldest first; * marks the current one")
    listing.add_argument(
        "--json", action="store_true", help="one JSON line per version: version, status, current, threshold, created_at"
    )
    listing.set_defaults(handler=_list)

    importing = actions.add_parser(
        "import",
        help="publish a checkpoint directory (from `battery-ct train`) as a new version",
        description=(
            "Verify the checkpoint's file hashes and publish it as a new immutable version (the same content "
            "again gives the version it already has). Prints the version. With --promote it becomes current "
            "and a ModelUpdate tells every consumer to load it."
        ),
    )
    importing.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint directory")
    importing.add_argument("--promote", action="store_true", help="make it the current version and broadcast that")
    importing.set_defaults(handler=_import)

    fetching = actions.add_parser("fetch", help="download a version into a new directory (its hashes verified)")
    fetching.add_argument("version", metavar="VERSION")
    fetching.add_argument("dest", type=Path, metavar="DIR", help="target directory (must not exist or be empty)")
    fetching.set_defaults(handler=_fetch)

    rolling = actions.add_parser(
        "rollback",
        help="serve an earlier version again and broadcast it",
        description=(
            "Make VERSION current again after verifying its files, mark the version it replaces rolled_back, and "
            "publish a ModelUpdate (status rolled_back) so every consumer and facade switches to it."
        ),
    )
    keygen = actions.add_parser(
        "keygen",
        help="print a new checkpoint signing key pair (Ed25519)",
        description=(
            "Print a new key pair as environment lines: BATTERY_CT_SIGNING_KEY (give it to the retrain consumer "
            "alone) and BATTERY_CT_VERIFY_KEY (give it to every service; several, comma separated, during a "
            "rotation). See docs/SECURITY.md."
        ),
    )
    keygen.set_defaults(handler=_keygen)

    rolling.add_argument("version", metavar="VERSION")
    rolling.add_argument("--reason", default=None, help="why (kept in the registry and the ModelUpdate)")
    rolling.set_defaults(handler=_rollback)


def _keygen(args: argparse.Namespace) -> int:
    from model_core.signing import generate_keypair

    pair = generate_keypair()
    print(f"# key id {pair.key_id}: the signing key is a secret, for the retrain consumer only")
    print(f"BATTERY_CT_SIGNING_KEY={pair.signing_key}")
    print(f"BATTERY_CT_VERIFY_KEY={pair.verify_key}")
    return 0


def open_registry(settings: Settings, *, create: bool = False) -> Registry:
    from model_core.registry import Registry
    from runtime.safety import registry_keys
    from storage.object_store import ObjectStore
    from storage.registry_store import S3BlobStore

    store = ObjectStore.from_settings(settings)
    if create:
        store.ensure_bucket(settings.bucket_models)
    keys = registry_keys(settings, sign=settings.signing_key is not None)  # an operator's import signs with it
    return Registry(
        S3BlobStore(store, settings.bucket_models), owner=f"cli-{settings.instance_id or 'operator'}", **keys
    )


def record_line(record: VersionRecord) -> dict[str, Any]:
    return {
        "version": record.version,
        "status": record.status,
        "current": record.current,
        "threshold": record.metadata.threshold,
        "created_at": record.metadata.created_at.isoformat(),
        "parent": record.metadata.parent,
        "label": record.metadata.label,
        "validation_error": record.metadata.validation_error,
        "anomaly_error": record.metadata.anomaly_error,
    }


def format_table(records: list[VersionRecord]) -> str:
    header = f"  {'VERSION':<16} {'STATUS':<12} {'THRESHOLD':>10} {'VAL ERROR':>10}  {'CREATED (UTC)':<19}  LABEL"
    rows = [header]
    for r in records:
        meta = r.metadata
        error = "-" if meta.validation_error is None else f"{meta.validation_error:.4g}"
        created = meta.created_at.strftime("%Y-%m-%d %H:%M:%S")
        mark = "*" if r.current else " "
        label = meta.label or ""
        rows.append(
            f"{mark} {r.version:<16} {r.status:<12} {meta.threshold:>10.4g} {error:>10}  {created:<19}  {label}"
        )
    return "\n".join(rows)


def guarded(action: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the registry's and the store's errors into one line on stderr and exit status 1 or 2."""

    def run(args: argparse.Namespace) -> int:
        from model_core.errors import ModelCoreError
        from schemas.settings import Settings
        from storage.errors import StorageError

        try:
            return action(args, Settings())
        except ModelCoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except StorageError as exc:
            print(f"error: the S3 endpoint failed: {exc}", file=sys.stderr)
            return 2

    return run


@guarded
def _list(args: argparse.Namespace, settings: Settings) -> int:
    records = open_registry(settings).list_versions()
    if args.json:
        for record in records:
            print(json.dumps(record_line(record)))
    elif records:
        print(format_table(records))
    else:
        print(f"no versions in s3://{settings.bucket_models} yet: train one and `battery-ct checkpoints import` it")
    return 0


@guarded
def _import(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.model_updates import ModelUpdate

    registry = open_registry(settings, create=True)
    version = registry.publish(args.checkpoint, "promoted" if args.promote else "candidate")
    print(version)
    if args.promote:
        update = ModelUpdate.promoted(
            registry.metadata(version), reason=f"imported from {args.checkpoint} and promoted"
        )
        return _broadcast(settings, update)
    return 0


@guarded
def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    print(open_registry(settings).fetch(args.version, args.dest))
    return 0


@guarded
def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.model_updates import ModelUpdate

    registry = open_registry(settings)
    previous = registry.rollback(args.version, reason=args.reason)
    print(f"{args.version} is current again (was {previous or 'none'})", file=sys.stderr)
    return _broadcast(settings, ModelUpdate.rolled_back(registry.metadata(args.version), previous, reason=args.reason))


def _broadcast(settings: Settings, update: ModelUpdate) -> int:
    from producers.model_updates import publish_model_update

    try:
        asyncio.run(publish_model_update(settings, update))
    except Exception as exc:  # the registry changed; only the announcement failed
        print(
            f"error: the registry now serves {update.current_version}, but announcing it on "
            f"{settings.topic_model_updates} failed ({exc}); consumers pick it up when they restart",
            file=sys.stderr,
        )
        return 1
    return 0
