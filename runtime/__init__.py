"""What the inference and retrain consumers share: Kafka clients, topics, dead letters, shutdown,
retry with backoff, and the metrics/health HTTP server."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
