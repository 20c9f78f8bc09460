"""Kafka ACLs: battery-ct's least-privilege policy (one user per service) and its creation through the admin API.

`service_acls(settings)` says what each service's user may do on the topics, groups and
transactional ids that `settings` names; `create_acls(connection, acls)` creates them, connected as
a super user (`runtime.kafka.connection_config(admin_settings)`, or the local broker's admin), with
CreateAcls requests (aiokafka 0.14's admin client has no create_acls). Only allows: the broker's
StandardAuthorizer denies whatever no ACL allows. READ and WRITE imply DESCRIBE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from local_stack.errors import InfraError
from schemas.settings import Settings


class Resource(IntEnum):
    """Kafka's resource type codes."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class Operation(IntEnum):
    """Kafka's ACL operation codes."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    IDEMPOTENT_WRITE = 12


_PATTERN = {"literal": 3, "prefixed": 4}
_ALLOW = 3

Pattern = Literal["literal", "prefixed"]


@dataclass(frozen=True)
class Acl:
    """`user` may do `operation` on the resource `name` (a prefix of names when `pattern` is prefixed)."""

    user: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = "literal"

    def describe(self) -> str:
        which = f"{self.name}*" if self.pattern == "prefixed" else self.name
        return f"User:{self.user} {self.operation.name} {self.resource.name.lower()} {which}"


SERVICE_USERS = ("uploader", "minio", "inference", "retrain", "facade", "review")


def _topics(user: str, operation: Operation, *topics: str) -> list[Acl]:
    return [Acl(user, Resource.TOPIC, topic, operation) for topic in topics]


def _group(user: str, group_id: str) -> list[Acl]:
    """Join `group_id` and commit its offsets (also inside a transaction)."""
    return [Acl(user, Resource.GROUP, group_id, Operation.READ)]


def _transactions(user: str, prefix: str) -> list[Acl]:
    """Use every transactional id that starts with `prefix`."""
    return [Acl(user, Resource.TRANSACTIONAL_ID, prefix, Operation.WRITE, "prefixed")]


def transactional_prefix(settings: Settings, group_id: str) -> str:
    """What every transactional id of the consumers of `group_id` starts with (runtime.kafka.transactional_id)."""
    return f"{settings.transactional_id_prefix}-{group_id}-"


def service_acls(settings: Settings) -> list[Acl]:
    """The ACLs of battery-ct's services: each user may do what its service does, nothing else.

    - uploader, minio (the bucket notification): produce to the scans topic;
    - inference: consume the scans topic in its group; produce verdicts and dead letters in
      transactions; read model updates;
    - retrain: consume accepted scans and control requests (rollbacks) in its group; produce model
      updates and dead letters in transactions;
    - facade: produce accepted scans and control requests; read model updates (never produce them);
      publish the review station's decisions in transactions, each recording its progress as the
      review outbox group's offset on the accepted topic (reviews.relay);
    - review: consume verdicts in its group (partition assignment; its offsets live in the database).
    Every user may DESCRIBE every battery-ct topic: each service's start-up `ensure_topics` lists
    them and creates only the missing ones (with no CREATE right, none may be missing).
    """
    s = settings
    every_topic = (
        s.topic_scans,
        s.topic_verdicts,
        s.topic_accepted,
        s.topic_model_updates,
        s.topic_dead_letter,
        s.topic_control,
    )
    read, write = Operation.READ, Operation.WRITE
    acls: list[Acl] = []
    for user in SERVICE_USERS:
        acls += _topics(user, Operation.DESCRIBE, *every_topic)
    acls += _topics("uploader", write, s.topic_scans)
    acls += _topics("minio", write, s.topic_scans)
    acls += _topics("inference", read, s.topic_scans, s.topic_model_updates)
    acls += _group("inference", s.inference_group)
    acls += _topics("inference", write, s.topic_verdicts, s.topic_dead_letter)
    acls += _transactions("inference", transactional_prefix(s, s.inference_group))
    acls += _topics("retrain", read, s.topic_accepted, s.topic_control)
    acls += _group("retrain", s.retrain_group)
    acls += _topics("retrain", write, s.topic_model_updates, s.topic_dead_letter)
    acls += _transactions("retrain", transactional_prefix(s, s.retrain_group))
    acls += _topics("facade", write, s.topic_accepted, s.topic_control)
    acls += _topics("facade", read, s.topic_model_updates)
    # The review station's decisions: published with their progress in one transaction (reviews.relay).
    acls += _topics("facade", read, s.topic_accepted)  # the outbox's progress is an offset on it
    acls += _group("facade", s.review_outbox_group)
    acls += _transactions("facade", transactional_prefix(s, s.review_outbox_group))
    acls += _topics("review", read, s.topic_verdicts)
    acls += _group("review", s.review_group)
    return acls


async def create_acls(connection: Mapping[str, Any], acls: Iterable[Acl], *, timeout_s: float = 60.0) -> int:
    """Create `acls` (idempotent: an existing ACL is left as it is); returns how many.

    `connection`: aiokafka's connection arguments (bootstrap_servers, security_protocol, sasl_*) of a
    user allowed to alter the cluster's ACLs.
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.admin import CreateAclsRequest

    wanted = list(dict.fromkeys(acls))
    where = connection.get("bootstrap_servers")
    client = AIOKafkaClient(**connection, client_id="battery-ct-acls")
    try:
        async with asyncio.timeout(timeout_s):
            await client.bootstrap()
            node = client.get_random_node()
            for acl in wanted:
                request = CreateAclsRequest(
                    acl.resource, acl.name, _PATTERN[acl.pattern], f"User:{acl.user}", "*", acl.operation, _ALLOW
                )
                response = await client.send(node, request)
                _raise_for(acl, response.creation_responses)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise InfraError(f"creating the Kafka ACLs at {where} failed: {exc!r}") from exc
    finally:
        await client.close()
    return len(wanted)


def _raise_for(acl: Acl, results: Sequence[tuple[int, str | None]]) -> None:
    for code, message in results:
        if code:
            raise InfraError(f"the broker refused the ACL {acl.describe()}: error {code} {message or ''}".rstrip())


def acl_table(acls: Iterable[Acl]) -> list[str]:
    """`user | resource | name | operations` rows, one per user and resource (docs/DEPLOY.md shows them)."""
    rows: dict[tuple[str, Resource, str], list[str]] = {}
    for acl in acls:
        which = f"{acl.name}* (prefixed)" if acl.pattern == "prefixed" else acl.name
        rows.setdefault((acl.user, acl.resource, which), []).append(acl.operation.name)
    return [f"{user} | {kind.name.lower()} | {name} | {', '.join(ops)}" for (user, kind, name), ops in rows.items()]
