"""SASL/SCRAM for the local broker: the users created when its storage is formatted, and its listener settings.

In secure mode the broker has one client listener, SASL_PLAINTEXT with SCRAM-SHA-512, and the
StandardAuthorizer (KRaft's own ACL store, deny unless an ACL allows). Two principals are super
users: `admin` (SCRAM, for setup: topics and ACLs; also the broker's own inter-broker identity) and
`controller` (SASL/PLAIN on the controller listener: SCRAM credentials live in the metadata log, so
the controller listener cannot use them). Every other user is created with its SCRAM credential at
format time (`kafka-storage format --add-scram`) and may do only what its ACLs allow
(`local_stack.kafka_acls`). docker-compose.yml configures the official image the same way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from local_stack.errors import InfraError
from schemas.settings import Settings

MECHANISM = "SCRAM-SHA-512"
LISTENER = "SASL_PLAINTEXT"
ADMIN = "admin"
CONTROLLER = "controller"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Passwords go into `--add-scram '...=[name=N,password=P]'` and into a JAAS line in double quotes.
_PASSWORD = re.compile(r"[A-Za-z0-9._~+/@%^*:-]{8,128}")


def new_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class KafkaSecurity:
    """Who may connect to a secure local broker: `users` (name -> password) besides the two super users."""

    users: Mapping[str, str]
    admin_password: str = field(default_factory=new_password, repr=False)
    controller_password: str = field(default_factory=new_password, repr=False)

    def __post_init__(self) -> None:
        for name, password in {**self.users, ADMIN: self.admin_password, CONTROLLER: self.controller_password}.items():
            if not _NAME.fullmatch(name):
                raise InfraError(f"Kafka user name {name!r}: letters, digits, '.', '_' and '-' only")
            if not _PASSWORD.fullmatch(password):
                raise InfraError(f"the password of Kafka user {name!r}: 8 to 128 of [A-Za-z0-9._~+/@%^*:-]")
        if {ADMIN, CONTROLLER} & set(self.users):
            raise InfraError(f"{ADMIN!r} and {CONTROLLER!r} are the broker's own users")

    def scram_credentials(self) -> dict[str, str]:
        """Every SCRAM user of the broker (the admin included) -> password."""
        return {ADMIN: self.admin_password, **self.users}

    def format_args(self) -> list[str]:
        """The `kafka-storage format` arguments that create the SCRAM users with the cluster's first metadata."""
        args = []
        for name, password in self.scram_credentials().items():
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args

    def listener_properties(self, *, broker_port: int, controller_port: int, host: str = "127.0.0.1") -> str:
        """The broker's listener, SASL and authorizer settings (server.properties lines)."""
        controller = self.controller_password
        return "\n".join(
            [
                f"listeners={LISTENER}://{host}:{broker_port},CONTROLLER://{host}:{controller_port}",
                f"advertised.listeners={LISTENER}://{host}:{broker_port}",
                f"inter.broker.listener.name={LISTENER}",
                f"listener.security.protocol.map={LISTENER}:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
                f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN}" password="{self.admin_password}";',
                "sasl.mechanism.controller.protocol=PLAIN",
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                "listener.name.controller.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{CONTROLLER}" password="{controller}" user_{CONTROLLER}="{controller}";',
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{ADMIN};User:{CONTROLLER}",
                "allow.everyone.if.no.acl.found=false",
            ]
        )

    def settings_of(self, settings: Settings, user: str) -> Settings:
        """`settings` authenticating as `user` (the admin too), what battery-ct's client factories read."""
        password = self.admin_password if user == ADMIN else self.users[user]
        return client_settings(settings, user, password)

    def admin_sasl(self) -> dict[str, str]:
        """aiokafka's authentication arguments for the admin user (the start-up probe, ACL creation)."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": ADMIN,
            "sasl_plain_password": self.admin_password,
        }


def client_settings(settings: Settings, user: str, password: str) -> Settings:
    """`settings` authenticating as `user` with SASL_PLAINTEXT / SCRAM-SHA-512."""
    from pydantic import SecretStr

    return settings.model_copy(
        update={
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_username": user,
            "kafka_password": SecretStr(password),
        }
    )
