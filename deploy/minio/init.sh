#!/bin/sh
# One-shot MinIO setup, run by the minio-init service with the mc image: the battery-ct account,
# the buckets, and the bucket notification that turns every upload to the scans bucket into an
# event on the scans topic (MinIO's notify_kafka target "PRIMARY" is configured on the server by
# environment variables in docker-compose.yml). Safe to run again: every step is idempotent.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${BATTERY_CT_S3_ACCESS_KEY:?}" "${BATTERY_CT_S3_SECRET_KEY:?}"
ALIAS=local
ARN="arn:minio:sqs::PRIMARY:kafka"

mc alias set "$ALIAS" "http://minio:9000" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

for bucket in "$BATTERY_CT_BUCKET_SCANS" "$BATTERY_CT_BUCKET_MODELS" "$BATTERY_CT_BUCKET_DATASETS" \
    "$BATTERY_CT_BUCKET_HEATMAPS"; do
    mc mb --ignore-existing "$ALIAS/$bucket"
done

# The services' own account, limited to read/write (no admin rights).
mc admin user add "$ALIAS" "$BATTERY_CT_S3_ACCESS_KEY" "$BATTERY_CT_S3_SECRET_KEY"
mc admin policy attach "$ALIAS" readwrite --user "$BATTERY_CT_S3_ACCESS_KEY" 2>/dev/null || true

# Only object creation: a delete or a metadata change must not be judged as a new scan.
if ! mc event list "$ALIAS/$BATTERY_CT_BUCKET_SCANS" "$ARN" | grep -q "$ARN"; then
    mc event add "$ALIAS/$BATTERY_CT_BUCKET_SCANS" "$ARN" --event put
fi
mc event list "$ALIAS/$BATTERY_CT_BUCKET_SCANS"
echo "minio-init: buckets, account and the scans notification are in place"
