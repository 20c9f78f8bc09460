"""The inference and retrain consumers, and the small Kafka runtime they share."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
