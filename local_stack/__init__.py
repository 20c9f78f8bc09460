"""The local infrastructure of battery-ct: a real Kafka 3.9 broker (KRaft) and moto's S3 server.

For development, the tests' session fixtures and the demo (`battery-ct infra up|down|status`); in
docker compose the official Kafka image and MinIO take their place. `up` starts what is not running
yet and returns when both answer; `down` stops exactly the processes `up` started (their PIDs are
recorded in the state directory); `status` says what runs. The broker's Maven pom, configuration
template and logging configuration are package data (`broker/`), read through importlib.resources.

Secure mode, for the tests of least privilege: `local_stack.kafka.start_kafka(..., security=
KafkaSecurity(users={...}), acls=service_acls(settings))` starts a broker with SASL/SCRAM-SHA-512,
the StandardAuthorizer, one SCRAM user per entry and battery-ct's service ACLs
(`kafka_security`, `kafka_acls`); compose configures its broker the same way.
"""

from local_stack.errors import InfraError, MissingToolError
from local_stack.kafka_acls import Acl, create_acls, service_acls
from local_stack.kafka_security import KafkaSecurity
from local_stack.manager import Infra, down, status, up
from local_stack.state import InfraState, ServiceRecord

__all__ = [
    "Acl",
    "Infra",
    "InfraError",
    "InfraState",
    "KafkaSecurity",
    "MissingToolError",
    "ServiceRecord",
    "create_acls",
    "down",
    "service_acls",
    "status",
    "up",
]

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
