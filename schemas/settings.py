"""The one configuration object of every battery-ct process, read from BATTERY_CT_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BATTERY_CT_"


class Settings(BaseSettings):
    """Every setting of battery-ct. Frozen: read once at the edge of a process and passed down.

    The README's settings table is generated from this class (``python -m tools.settings_table``), so the
    description of each field is what an operator reads.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers, comma separated")
    topic_scans: str = Field("ct.scans", description="Topic of ScanEvents and MinIO bucket notifications")
    topic_verdicts: str = Field("ct.verdicts", description="Topic the inference consumer publishes Verdicts to")
    topic_accepted: str = Field("ct.accepted", description="Topic of AcceptedScans (operator decisions)")
    topic_model_updates: str = Field("ct.model-updates", description="Topic of ModelUpdates (compacted)")
    topic_dead_letter: str = Field("ct.dead-letter", description="Topic of DeadLetters (poison messages)")
    topic_control: str = Field(
        "ct.control", description="Topic of operator requests (rollbacks) that only the retrain consumer carries out"
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of the scans topic when battery-ct creates it")
    inference_group: str = Field("battery-ct-inference", description="Consumer group of the inference consumers")
    retrain_group: str = Field("battery-ct-retrain", description="Consumer group of the retrain consumer")
    delivery: Literal["exactly-once", "at-least-once"] = Field(
        "exactly-once", description="exactly-once: Kafka transactions; at-least-once: commit after publish"
    )
    transactional_id_prefix: str = Field(
        "battery-ct", description="Prefix of transactional ids (one per consumer instance)"
    )
    instance_id: str = Field(
        "", max_length=100, description="Stable id of this consumer instance (transactional id); empty: the host name"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How the services talk to Kafka; SASL_* authenticates with the user below"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with a SASL_* security protocol)"
    )
    kafka_username: str = Field("", description="Kafka SASL user of this service (one per service; see SECURITY.md)")
    kafka_password: SecretStr | None = Field(None, description="Kafka SASL password of this service")

    # S3 object storage
    s3_endpoint: str = Field("localhost:9000", description="S3 endpoint host:port (MinIO, moto, RustFS, Ceph RGW)")
    s3_access_key: str = Field("battery-ct", description="S3 access key")
    s3_secret_key: SecretStr = Field(SecretStr("battery-ct-secret"), description="S3 secret key")
    s3_secure: bool = Field(False, description="Use HTTPS towards the S3 endpoint")
    s3_region: str = Field("us-east-1", description="S3 region")
    bucket_scans: str = Field("scans", description="Bucket the CT scans are uploaded to")
    bucket_models: str = Field("models", description="Bucket of the checkpoint registry")
    bucket_datasets: str = Field("datasets", description="Bucket of the training dataset (accepted scans)")
    bucket_heatmaps: str = Field("heatmaps", description="Bucket the heat-map PNGs are written to")
    extra_scan_buckets: tuple[str, ...] = Field(
        (),
        description="Buckets besides bucket_scans that scan events and accepted scans may name; an event naming any "
        "other bucket is dead-lettered (bucket_not_allowed)",
    )
    max_object_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest scan object accepted (bytes)")
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Largest decoded image accepted (pixels; checked in the header before decoding): 4096 x 4096 "
        "covers CT slices; a decoded 16-bit slice costs about 6 bytes per pixel",
    )
    volume_max_slices: int = Field(
        2048, ge=1, description="Most slices of a volume (a whole cell) accepted; a longer one is dead-lettered"
    )
    volume_max_voxels: int = Field(
        2048 * 2048 * 2048, ge=1, description="Most voxels of a volume accepted (checked from its header)"
    )
    volume_max_bytes: int = Field(
        8 * 1024**3, ge=1, description="Most bytes of a volume's voxels accepted (checked from its header)"
    )
    decode_budget_pixels: int | None = Field(
        None,
        ge=1,
        description="Pixels a process decodes at once (a flood of large images queues instead of exhausting "
        "memory); unset: 4 x max_image_pixels",
    )

    # Model
    image_size: int = Field(256, ge=16, description="Model input resolution in pixels (square)")
    detector_search: Literal["exact", "fast"] | None = Field(
        None,
        description="The patch memory's search: 'fast' (projected, pruned; what training produces) or 'exact' "
        "(the reference); unset: each checkpoint's own (older checkpoints: exact)",
    )
    epochs: int = Field(40, ge=1, description="Maximum training epochs (early stopping may end sooner)")
    batch_size: int = Field(16, ge=1, description="Micro-batch size of the inference consumer and training")
    batch_linger_ms: int = Field(50, ge=0, description="How long the inference consumer waits to fill a batch")
    heatmaps: bool = Field(False, description="Store a heat-map PNG per verdict and put its URL in the verdict")
    default_recipe: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Recipe of scans whose event names none (unset: such scans are not measured)",
    )
    recipe_refresh_s: float = Field(
        60.0, gt=0, description="How long a service keeps a recipe before it reads the registry's newest again"
    )
    threshold_quantile: float = Field(
        0.99, gt=0, lt=1, description="Quantile of normal validation scores used as threshold (no defects known)"
    )
    threshold_mode: Literal["fpr", "f1"] = Field(
        "fpr",
        description="With known defects: 'fpr' = the most sensitive cut within threshold_max_fpr false alarms on "
        "normal validation scans; 'f1' = the F1-optimal cut (leans to recall when defects outnumber normals)",
    )
    threshold_max_fpr: float = Field(
        0.01, ge=0, lt=1, description="Largest false-alarm rate on normal validation scans (threshold_mode fpr)"
    )
    promotion_tolerance: float = Field(
        0.05, ge=0, description="No known defects: relative rise of the validation error that still allows promotion"
    )
    promotion_auroc_drop: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="With known defects: largest drop of image AUROC (trusted holdout) that still allows promotion",
    )
    retrain_batch_size: int = Field(32, ge=1, description="Accepted scans that trigger a retrain")
    retrain_max_age_s: float = Field(300.0, gt=0, description="Oldest accepted scan before a retrain anyway")
    retrain_epochs: int = Field(8, ge=1, description="Epochs of a warm-start retraining")
    signing_key: SecretStr | None = Field(
        None,
        description="Ed25519 private key that signs published checkpoints (base64 of 32 bytes, or PEM; "
        "`battery-ct checkpoints keygen`); the retrain consumer's alone",
    )
    verify_key: str | None = Field(
        None,
        description="Ed25519 public key(s), comma separated: every loader refuses a checkpoint not signed by "
        "one of them; unset: unsigned checkpoints load (development)",
    )
    checkpoint_dir: Path = Field(
        Path.home() / ".cache" / "battery-ct" / "work", description="Local working directory for checkpoints"
    )

    # HTTP facade and metrics
    api_host: str = Field("127.0.0.1", description="Address the HTTP facade listens on")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP facade")
    api_key: SecretStr | None = Field(
        None,
        description="Mutating endpoints require it in X-API-Key; unset: they are refused (see allow_anonymous_writes)",
    )
    allow_anonymous_writes: bool = Field(
        False,
        description="Without an API key: allow the mutating endpoints (and stored heat maps) anyway; for a demo "
        "on one workstation only. Off: they answer 401 until a key is set",
    )
    api_wait_s: float = Field(120.0, gt=0, description="How long /retrain and /anomaly wait before answering 202")
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body the facade reads (413 past it; bodies are small JSON)"
    )
    api_max_header_bytes: int = Field(16 * 1024, ge=1024, description="Largest request head (431 past it)")
    api_header_timeout_s: float = Field(
        10.0, gt=0, description="A client that has not sent its request headers by then is disconnected"
    )
    api_keep_alive_s: int = Field(5, ge=1, description="Seconds an idle kept-alive connection stays open")
    api_max_concurrent: int = Field(
        64, ge=1, description="Requests the facade works on at once; more get 503 with Retry-After (probes excepted)"
    )
    allowed_http_hosts: tuple[str, ...] = Field(
        (), description="Extra host:port values whose http(s) image URLs are accepted (besides the S3 endpoint)"
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of /metrics and /healthz of a consumer; unset: the service's own "
        "(inference 9100, retrain 9101, review 9102), so they run side by side on one host",
    )
    log_level: str = Field("INFO", description="Python logging level")

    # Review station (battery-ct serve review, the facade's /review pages)
    review_database_url: SecretStr = Field(
        SecretStr(f"sqlite:///{Path.home() / '.cache' / 'battery-ct' / 'review.db'}"),
        description="SQLAlchemy URL of the review database (verdicts, decisions, users): SQLite by default, "
        "postgresql+psycopg://user:password@host/db in a plant; migrated to the newest schema at start",
    )
    review_group: str = Field(
        "battery-ct-review", description="Consumer group of the review consumers (partition assignment only)"
    )
    review_audit_rate: float = Field(
        0.02, ge=0, le=1, description="Share of passed cells put in the review queue for audit (chosen by scan id)"
    )
    review_session_hours: float = Field(12.0, gt=0, description="How long an operator's login lasts")
    review_secure_cookies: bool = Field(
        True, description="Send the review station's cookies over HTTPS only (browsers exempt http://localhost)"
    )
    review_relay: bool = Field(
        True,
        description="This facade publishes the review station's decisions (the outbox relay); with several "
        "facades on one database any may, the newest fences the others",
    )
    review_outbox_group: str = Field(
        "battery-ct-review-outbox",
        description="Group whose committed offset records, in the same Kafka transaction, the decisions published",
    )

    # Local infrastructure (battery-ct infra)
    state_dir: Path = Field(
        Path.home() / ".cache" / "battery-ct" / "infra", description="State, logs and PIDs of battery-ct infra"
    )
    kafka_libs_dir: Path = Field(
        Path.home() / ".cache" / "battery-ct" / "kafka-libs",
        description="Cache of the Kafka broker jars that Maven resolves for battery-ct infra (outside the repo)",
    )

    def decode_budget(self) -> int:
        """Pixels decoding at once in one process."""
        return 4 * self.max_image_pixels if self.decode_budget_pixels is None else self.decode_budget_pixels

    def scan_buckets(self) -> frozenset[str]:
        """The buckets a consumer may read scans from (its allow list)."""
        return frozenset({self.bucket_scans, *self.extra_scan_buckets})

    def metrics_port_of(self, service: ServiceName) -> int:
        """The metrics port of `service`: the setting when given, else the service's own default."""
        return SERVICE_METRICS_PORTS[service] if self.metrics_port is None else self.metrics_port


ServiceName = Literal["inference", "retrain", "review"]
# Distinct defaults, so that `battery-ct serve inference` and `serve retrain` run side by side on one host.
SERVICE_METRICS_PORTS: dict[ServiceName, int] = {"inference": 9100, "retrain": 9101, "review": 9102}
