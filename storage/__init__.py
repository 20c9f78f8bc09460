"""Object storage at the edge: the S3 client wrapper, image-URL policy and the S3 backend of the registry."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
