"""The detector as a pure library: decoding, the Keras model, training, scoring, thresholds, registry.

No Kafka, S3 or HTTP imports here: callers hand in bytes and arrays and get results back.
"""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
