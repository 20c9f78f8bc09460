"""The bucket notification MinIO publishes to Kafka for an upload, byte for byte as the server
writes it (a `PUT` on a bucket subscribed with `mc event add ... --event put`)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from urllib.parse import quote_plus


def minio_put_notification(bucket: str, key: str, data: bytes, *, user: str = "battery-ct") -> bytes:
    """MinIO's event for `key` uploaded to `bucket`: the top-level `EventName` and `Key` (bucket/key,
    not encoded) that MinIO adds for Kafka targets, and one S3 record whose object key is
    URL-query-encoded (`/` as %2F, a space as +), as MinIO's `url.QueryEscape` leaves it."""
    now = datetime.now(UTC)
    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
    sequencer = f"{int(now.timestamp() * 1e9):X}"
    event = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": user},
                "requestParameters": {"principalId": user, "region": "", "sourceIPAddress": "172.18.0.9"},
                "responseElements": {
                    "x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
                    "x-amz-request-id": sequencer,
                    "x-minio-deployment-id": "3f4e2a1c-8d6b-4c2e-9a57-0b6c1d2e3f40",
                    "x-minio-origin-endpoint": "http://172.18.0.3:9000",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": user},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key),
                        "size": len(data),
                        "eTag": etag,
                        "contentType": "image/png",
                        "userMetadata": {"content-type": "image/png"},
                        "sequencer": sequencer,
                    },
                },
                "source": {"host": "172.18.0.9", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.95"},
            }
        ],
    }
    return json.dumps(event, separators=(",", ":")).encode()
