"""The inference and retrain consumers, and the small Kafka runtime they share."""
