#!/bin/sh
# One-shot MinIO setup, run by the minio-init service with the mc image: the buckets, one account and
# policy per service (least privilege), and the bucket notification that turns every upload to the
# scans bucket into an event on the scans topic (MinIO's notify_kafka target "PRIMARY" is configured
# on the server by environment variables in docker-compose.yml). Safe to run again: every step is
# idempotent, and a changed secret or policy in .env / here replaces the old one.
#
#   uploader   writes scans
#   inference  reads scans and models, writes heat maps
#   retrain    reads scans, reads and writes datasets and models (the registry, its lease)
#   facade     reads scans and models, writes heat maps (/predict with "heatmap": true, API key only);
#              the accepted scans it publishes go to Kafka, not to a bucket
# Every account may list (and HEAD) the buckets it uses; none may create, delete or configure one.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${S3_UPLOADER_ACCESS_KEY:?}" "${S3_UPLOADER_SECRET_KEY:?}" "${S3_INFERENCE_ACCESS_KEY:?}" "${S3_INFERENCE_SECRET_KEY:?}"
: "${S3_RETRAIN_ACCESS_KEY:?}" "${S3_RETRAIN_SECRET_KEY:?}" "${S3_FACADE_ACCESS_KEY:?}" "${S3_FACADE_SECRET_KEY:?}"
ALIAS=local
ARN="arn:minio:sqs::PRIMARY:kafka"
SCANS="$BATTERY_CT_BUCKET_SCANS" MODELS="$BATTERY_CT_BUCKET_MODELS"
DATASETS="$BATTERY_CT_BUCKET_DATASETS" HEATMAPS="$BATTERY_CT_BUCKET_HEATMAPS"

mc alias set "$ALIAS" "http://minio:9000" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

for bucket in "$SCANS" "$MODELS" "$DATASETS" "$HEATMAPS"; do
    mc mb --ignore-existing "$ALIAS/$bucket"
done

# A policy statement: `allow ACTIONS RESOURCE...` with ACTIONS like "s3:GetObject" and RESOURCE a
# bucket ("scans") or its objects ("scans/*").
allow() {
    actions="$1"
    shift
    resources=""
    for resource in "$@"; do
        resources="$resources${resources:+,}\"arn:aws:s3:::$resource\""
    done
    printf '{"Effect":"Allow","Action":[%s],"Resource":[%s]}' "$actions" "$resources"
}
LIST='"s3:GetBucketLocation","s3:ListBucket"'
READ='"s3:GetObject"'
WRITE='"s3:PutObject"'
READ_WRITE='"s3:GetObject","s3:PutObject","s3:DeleteObject"'

# account NAME ACCESS_KEY SECRET_KEY STATEMENT...: the account, its policy battery-ct-NAME, attached.
account() {
    name="$1" access_key="$2" secret_key="$3"
    shift 3
    case "$secret_key" in
        change-me*)
            echo "minio-init: the secret key of $name is still the placeholder of .env.example; set it in .env" >&2
            exit 2
            ;;
    esac
    statements=""
    for statement in "$@"; do
        statements="$statements${statements:+,}$statement"
    done
    policy="${POLICY_DIR:-/tmp}/battery-ct-$name.json"
    printf '{"Version":"2012-10-17","Statement":[%s]}\n' "$statements" > "$policy"
    mc admin user add "$ALIAS" "$access_key" "$secret_key"
    mc admin policy create "$ALIAS" "battery-ct-$name" "$policy"
    # Attaching an attached policy is an error to mc: only attach what is missing.
    if ! mc admin user info "$ALIAS" "$access_key" | grep -q "battery-ct-$name"; then
        mc admin policy attach "$ALIAS" "battery-ct-$name" --user "$access_key"
    fi
}

account uploader "$S3_UPLOADER_ACCESS_KEY" "$S3_UPLOADER_SECRET_KEY" \
    "$(allow "$LIST" "$SCANS")" \
    "$(allow "$WRITE" "$SCANS/*")"
account inference "$S3_INFERENCE_ACCESS_KEY" "$S3_INFERENCE_SECRET_KEY" \
    "$(allow "$LIST" "$SCANS" "$MODELS" "$HEATMAPS")" \
    "$(allow "$READ" "$SCANS/*" "$MODELS/*")" \
    "$(allow "$WRITE" "$HEATMAPS/*")"
account retrain "$S3_RETRAIN_ACCESS_KEY" "$S3_RETRAIN_SECRET_KEY" \
    "$(allow "$LIST" "$SCANS" "$DATASETS" "$MODELS")" \
    "$(allow "$READ" "$SCANS/*")" \
    "$(allow "$READ_WRITE" "$DATASETS/*" "$MODELS/*")"
account facade "$S3_FACADE_ACCESS_KEY" "$S3_FACADE_SECRET_KEY" \
    "$(allow "$LIST" "$SCANS" "$MODELS" "$HEATMAPS")" \
    "$(allow "$READ" "$SCANS/*" "$MODELS/*")" \
    "$(allow "$WRITE" "$HEATMAPS/*")"

# Only object creation: a delete or a metadata change must not be judged as a new scan.
if ! mc event list "$ALIAS/$BATTERY_CT_BUCKET_SCANS" "$ARN" | grep -q "$ARN"; then
    mc event add "$ALIAS/$BATTERY_CT_BUCKET_SCANS" "$ARN" --event put
fi
mc event list "$ALIAS/$BATTERY_CT_BUCKET_SCANS"
echo "minio-init: buckets, one account and policy per service, and the scans notification are in place"
