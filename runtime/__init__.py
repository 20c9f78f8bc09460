"""What the inference and retrain consumers share: Kafka clients, topics, dead letters, shutdown,
retry with backoff, and the metrics/health HTTP server."""
