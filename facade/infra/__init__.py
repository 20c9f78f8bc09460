"""The local infrastructure of battery-ct: a real Kafka 3.9 broker (KRaft) and moto's S3 server.

`up` starts what is not running yet and returns when both answer; `down` stops exactly the
processes `up` started (their PIDs are recorded in the state directory); `status` says what runs.
"""

from facade.infra.errors import InfraError, MissingToolError
from facade.infra.manager import Infra, down, status, up
from facade.infra.state import InfraState, ServiceRecord

__all__ = ["Infra", "InfraError", "InfraState", "MissingToolError", "ServiceRecord", "down", "status", "up"]
