"""Object storage at the edge: the S3 client wrapper, image-URL policy and the S3 backend of the registry."""
