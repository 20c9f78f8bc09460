"""The image-URL policy: what names an object in our store, and every way to ask for something else."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.settings import Settings
from storage.errors import UrlNotAllowed
from storage.urls import ObjectRef, parse_image_url

SETTINGS = Settings(s3_endpoint="127.0.0.1:9000", allowed_http_hosts=("minio.internal:9000", "s3.example.com"))


def refused(url: str, settings: Settings = SETTINGS) -> str:
    with pytest.raises(UrlNotAllowed) as caught:
        parse_image_url(url, settings)
    assert caught.value.retriable is False
    return caught.value.code


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://scans/line1/cell-42.png", "scans", "line1/cell-42.png"),
        ("s3://scans/cell 1.png", "scans", "cell 1.png"),
        ("s3://scans/50%25.png", "scans", "50%25.png"),  # s3:// keys are literal
        ("/scans/line1/cell-42.png", "scans", "line1/cell-42.png"),
        ("/scans/cell%201.png", "scans", "cell 1.png"),
        ("http://127.0.0.1:9000/scans/a/b.png", "scans", "a/b.png"),
        ("HTTP://127.0.0.1:9000/scans/a.png", "scans", "a.png"),
        ("http://127.0.0.1:9000/scans/%C3%A9t%C3%A9.png", "scans", "été.png"),
        ("http://127.0.0.1:9000/scans/a.png?X-Amz-Signature=abc", "scans", "a.png"),
        ("http://minio.internal:9000/scans/a.png", "scans", "a.png"),
        ("https://s3.example.com/scans/a.png", "scans", "a.png"),
        ("https://s3.example.com:443/scans/a.png", "scans", "a.png"),
        ("s3://my.bucket-1/x", "my.bucket-1", "x"),
    ],
)
def test_accepted_urls(url: str, bucket: str, key: str) -> None:
    assert parse_image_url(url, SETTINGS) == ObjectRef(bucket=bucket, key=key)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("", "url_malformed"),
        ("file:///etc/passwd", "url_scheme_not_allowed"),
        ("ftp://127.0.0.1:9000/scans/a.png", "url_scheme_not_allowed"),
        ("gopher://127.0.0.1:9000/_x", "url_scheme_not_allowed"),
        ("scans/a.png", "url_scheme_not_allowed"),
        ("//127.0.0.1:9000/scans/a.png", "url_scheme_not_allowed"),
        ("http://evil.example.com/scans/a.png", "url_host_not_allowed"),
        ("http://127.0.0.1:9001/scans/a.png", "url_private_address"),  # loopback, but not the endpoint
        ("http://localhost:9000/scans/a.png", "url_private_address"),  # the endpoint is 127.0.0.1, spelled exactly
        ("http://10.0.0.5/scans/a.png", "url_private_address"),
        ("http://192.168.1.1:9000/scans/a.png", "url_private_address"),
        ("http://[::1]:9000/scans/a.png", "url_private_address"),
        ("http://127.1:9000/scans/a.png", "url_private_address"),
        ("http://2130706433/scans/a.png", "url_private_address"),
        ("http://0x7f.0.0.1/scans/a.png", "url_private_address"),
        ("http://169.254.169.254/latest/meta-data/", "url_link_local"),
        ("http://[fe80::1]/scans/a.png", "url_link_local"),
        ("http://[::ffff:169.254.169.254]/scans/a.png", "url_link_local"),
        ("http://user:pw@127.0.0.1:9000/scans/a.png", "url_userinfo"),
        ("http://127.0.0.1:9000@evil.example.com/scans/a.png", "url_userinfo"),
        ("http://127.0.0.1:notaport/scans/a.png", "url_malformed"),
        ("s3://scans/../models/current.json", "url_traversal"),
        ("s3://scans/a/./b.png", "url_traversal"),
        ("s3://scans/a//b.png", "url_traversal"),
        ("/scans/%2e%2e/models/current.json", "url_traversal"),
        ("/scans/a%2F..%2Fb", "url_traversal"),
        ("s3://scans/%252e%252e/x", "url_traversal"),
        ("http://127.0.0.1:9000/scans/%2E%2E/x", "url_traversal"),
        ("s3://scans/a\nb.png", "url_control_chars"),
        ("s3://scans/a\\..\\b.png", "url_control_chars"),
        ("/scans/a%00.png", "url_control_chars"),
        ("s3://scans/", "url_empty_key"),
        ("s3://scans", "url_empty_key"),
        ("http://127.0.0.1:9000/scans", "url_empty_key"),
        ("s3://Scans/a.png", "url_bad_bucket"),
        ("s3://ab/a.png", "url_bad_bucket"),
        ("s3://-scans/a.png", "url_bad_bucket"),
        ("s3://sc..ans/a.png", "url_bad_bucket"),
        ("s3://192.168.1.1/a.png", "url_bad_bucket"),
        ("s3://xn--scans/a.png", "url_bad_bucket"),
        ("s3://user@scans/a.png", "url_bad_bucket"),
        ("s3://" + "b" * 64 + "/a.png", "url_bad_bucket"),
        ("s3://scans/" + "k" * 1025, "url_key_too_long"),
        ("s3://scans/" + "é" * 513, "url_key_too_long"),  # 1026 bytes in UTF-8
        ("s3://scans/" + "k" * 5000, "url_too_long"),
    ],
)
def test_refused_urls(url: str, code: str) -> None:
    assert refused(url) == code


def test_loopback_is_accepted_when_it_is_the_configured_endpoint() -> None:
    local = Settings(s3_endpoint="localhost:9000")
    assert parse_image_url("http://localhost:9000/scans/a.png", local) == ObjectRef("scans", "a.png")
    assert refused("http://localhost:9001/scans/a.png", local) == "url_private_address"


def test_link_local_is_refused_even_when_configured() -> None:
    odd = Settings(s3_endpoint="169.254.1.1:9000")
    assert refused("http://169.254.1.1:9000/scans/a.png", odd) == "url_link_local"


def test_default_ports_follow_the_scheme() -> None:
    secure = Settings(s3_endpoint="s3.example.com", s3_secure=True)
    assert parse_image_url("https://s3.example.com/scans/a.png", secure).key == "a.png"
    assert refused("http://s3.example.com/scans/a.png", secure) == "url_host_not_allowed"  # port 80, not 443


def test_allowed_buckets_restrict_further() -> None:
    assert parse_image_url("s3://scans/a.png", SETTINGS, allowed_buckets={"scans"}).bucket == "scans"
    with pytest.raises(UrlNotAllowed) as caught:
        parse_image_url("s3://models/current.json", SETTINGS, allowed_buckets={"scans"})
    assert caught.value.code == "url_bucket_not_allowed"


def test_object_ref_url_round_trips() -> None:
    ref = ObjectRef("scans", "line 1/cell.png")
    assert parse_image_url(ref.url, SETTINGS) == ref


_bucket = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,20}[a-z0-9]\Z")
_segment = st.text(alphabet=string.ascii_letters + string.digits + "-_ é", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
_key = st.lists(_segment, min_size=1, max_size=5).map("/".join)


@given(bucket=_bucket, key=_key)
def test_every_plain_s3_url_names_its_bucket_and_key(bucket: str, key: str) -> None:
    assert parse_image_url(f"s3://{bucket}/{key}", SETTINGS) == ObjectRef(bucket, key)


@given(url=st.text(max_size=300))
def test_arbitrary_text_is_refused_or_names_a_safe_object(url: str) -> None:
    """Whatever the input, the outcome is UrlNotAllowed or a valid bucket with a key free of traversal."""
    try:
        ref = parse_image_url(url, SETTINGS)
    except UrlNotAllowed as exc:
        assert exc.code.startswith("url_")
        return
    assert 3 <= len(ref.bucket) <= 63
    assert ref.key and ".." not in ref.key.split("/") and "\x00" not in ref.key


@given(host=st.ip_addresses(), path=_key)
def test_no_other_ip_address_is_accepted(host: object, path: str) -> None:
    text = f"[{host}]" if ":" in str(host) else str(host)
    if text == "127.0.0.1":
        return
    assert refused(f"http://{text}:9000/scans/{path}").startswith("url_")
