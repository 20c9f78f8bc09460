"""The image-URL policy: which URLs name a scan in *our* object store, and which are refused.

Accepted (DESIGN): `s3://bucket/key`, `/bucket/key`, and `http(s)://<host:port>/bucket/key` where
host:port is the configured S3 endpoint or one of `allowed_http_hosts`. The result is only a
bucket and a key, which are then read from the configured store: nothing here ever fetches a URL.
Everything else is refused with UrlNotAllowed and a stable `code`, the first rule that fails:

  url_malformed, url_too_long, url_control_chars, url_scheme_not_allowed, url_userinfo,
  url_link_local, url_private_address, url_host_not_allowed, url_traversal, url_bad_bucket,
  url_empty_key, url_key_too_long, url_bucket_not_allowed
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from storage.errors import UrlNotAllowed

if TYPE_CHECKING:
    from schemas.settings import Settings

MAX_URL_LENGTH = 4096
MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")  # a backslash is a path separator to some parsers
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")  # S3: not formatted as an IP address


@dataclass(frozen=True)
class ObjectRef:
    """An object in the configured store."""

    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_image_url(url: str, settings: Settings, *, allowed_buckets: Collection[str] | None = None) -> ObjectRef:
    """The bucket and key an image URL names, or UrlNotAllowed with the reason."""
    if not isinstance(url, str) or not url:
        raise UrlNotAllowed("the image URL is empty", code="url_malformed")
    if len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowed(f"the image URL is longer than {MAX_URL_LENGTH} characters", code="url_too_long")
    if _CONTROL.search(url):
        raise UrlNotAllowed("the image URL contains control characters or a backslash", code="url_control_chars")

    if url.startswith("/") and not url.startswith("//"):
        ref = _split_path(url[1:], decode=True)
    else:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("s3", "http", "https"):
            raise UrlNotAllowed(
                "only s3://bucket/key, /bucket/key or http(s) URLs of the configured object store are accepted",
                code="url_scheme_not_allowed",
            )
        if scheme == "s3":
            # The AWS convention: s3:// URLs carry the key as it is, not percent-encoded.
            bucket, _, key = rest.partition("/")
            ref = _checked(bucket, key)
        else:
            ref = _http_ref(url, settings)

    if allowed_buckets is not None and ref.bucket not in allowed_buckets:
        raise UrlNotAllowed(f"bucket {ref.bucket!r} is not one this service reads", code="url_bucket_not_allowed")
    return ref


def _http_ref(url: str, settings: Settings) -> ObjectRef:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise UrlNotAllowed(f"the image URL cannot be parsed: {exc}", code="url_malformed") from exc
    if "@" in parts.netloc:
        raise UrlNotAllowed("credentials in the image URL are not accepted", code="url_userinfo")
    if not host:
        raise UrlNotAllowed("the image URL has no host", code="url_malformed")
    address = _as_ip(host)
    if address is not None and address.is_link_local:
        raise UrlNotAllowed(f"link-local address {host} is never fetched", code="url_link_local")
    if _host_port(host, port) not in _allowed_hosts(settings):
        if (address is not None and not address.is_global) or host == "localhost" or host.endswith(".localhost"):
            raise UrlNotAllowed(f"{host} is a private or loopback address", code="url_private_address")
        raise UrlNotAllowed(f"{host}:{port} is not the configured object store", code="url_host_not_allowed")
    # Query and fragment (e.g. of a presigned URL) are ignored: the object is read with our own credentials.
    return _split_path(parts.path[1:] if parts.path.startswith("/") else "", decode=True)


def _split_path(path: str, *, decode: bool) -> ObjectRef:
    bucket, _, key = path.partition("/")
    if decode:
        bucket, key = unquote(bucket), unquote(key)
    return _checked(bucket, key)


def _checked(bucket: str, key: str) -> ObjectRef:
    if not _BUCKET.match(bucket) or ".." in bucket or _IP_LIKE.match(bucket) or bucket.startswith("xn--"):
        raise UrlNotAllowed(f"{bucket[:80]!r} is not a valid S3 bucket name", code="url_bad_bucket")
    if not key:
        raise UrlNotAllowed("the image URL names no object key", code="url_empty_key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise UrlNotAllowed(f"the object key is longer than {MAX_KEY_BYTES} bytes", code="url_key_too_long")
    _reject_traversal(key)
    return ObjectRef(bucket=bucket, key=key)


def _reject_traversal(key: str) -> None:
    """No `.`/`..`/empty segments, also after further percent-decoding (`%2e%2e`, `%252e%252e`)."""
    seen = key
    for _ in range(4):
        if _CONTROL.search(seen):
            raise UrlNotAllowed("the object key contains control characters", code="url_control_chars")
        if seen.startswith("/") or any(segment in ("", ".", "..") for segment in seen.split("/")):
            raise UrlNotAllowed("the object key contains '.', '..' or empty path segments", code="url_traversal")
        decoded = unquote(seen)
        if decoded == seen:
            return
        seen = decoded


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literal denotes, including legacy IPv4 forms (`127.1`, `0x7f.0.0.1`, `2130706433`)."""
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _host_port(host: str, port: int) -> str:
    host = host.strip("[]").lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _allowed_hosts(settings: Settings) -> set[str]:
    """host:port of the endpoint (default port by s3_secure) and of allowed_http_hosts (no port: 80 and 443)."""
    allowed: set[str] = set()
    endpoint = [(settings.s3_endpoint, (443,) if settings.s3_secure else (80,))]
    extra = [(entry, (80, 443)) for entry in settings.allowed_http_hosts]
    for entry, default_ports in endpoint + extra:
        parts = urlsplit(f"//{entry.strip()}")
        try:
            ports = (parts.port,) if parts.port else default_ports
        except ValueError:
            continue
        if parts.hostname:
            allowed.update(_host_port(parts.hostname, port) for port in ports)
    return allowed
