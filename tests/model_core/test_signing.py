import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from model_core.errors import CheckpointIntegrityError, InvalidKeyError
from model_core.signing import (
    check_signature,
    generate_keypair,
    load_signing_key,
    load_verify_key,
    load_verify_keys,
)

MANIFEST = b'{"files":{"metadata.json":"00"},"format":1,"version":"draft-x"}'


def test_a_generated_pair_round_trips_as_base64_strings() -> None:
    pair = generate_keypair()
    signer, verify_key = load_signing_key(pair.signing_key), load_verify_key(pair.verify_key)
    assert len(base64.b64decode(pair.signing_key)) == len(base64.b64decode(pair.verify_key)) == 32
    assert signer.encode() == pair.signing_key and verify_key.encode() == pair.verify_key
    assert signer.verify_key.key_id == verify_key.key_id == pair.key_id
    assert check_signature(MANIFEST, signer.sign(MANIFEST), verify_key, source="test") == pair.key_id
    # Secrets never show in a repr or a log line.
    assert pair.signing_key not in repr(pair) and pair.signing_key not in repr(signer)
    # URL-safe alphabet, no padding, surrounding white space: the same key.
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(pair.verify_key)).decode().rstrip("=")
    assert load_verify_key(f"  {urlsafe}\n").key_id == pair.key_id


def test_pem_keys_are_accepted() -> None:
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    signer, verify_key = load_signing_key(private_pem), load_verify_key(public_pem)
    assert check_signature(MANIFEST, signer.sign(MANIFEST), verify_key, source="test") == verify_key.key_id
    assert [k.key_id for k in load_verify_keys(public_pem)] == [verify_key.key_id]
    with pytest.raises(InvalidKeyError, match="private key was given"):
        load_verify_key(private_pem)
    with pytest.raises(InvalidKeyError, match="public key was given"):
        load_signing_key(public_pem)


def test_malformed_keys_are_refused_without_repeating_them() -> None:
    secret = base64.b64encode(b"s" * 31).decode()
    ec_pem = (
        generate_private_key(SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    for bad in (
        "",
        "   ",
        "not base64 !!",
        secret,
        base64.b64encode(b"k" * 64).decode(),
        ec_pem,
        "-----BEGIN PRIVATE KEY-----\nxx",
    ):
        with pytest.raises(InvalidKeyError) as caught:
            load_signing_key(bad)
        assert caught.value.code == "invalid_key" and not caught.value.retriable
        assert (secret not in str(caught.value)) and ("MII" not in str(caught.value))
    for bad in ("", "not base64 !!", secret):
        with pytest.raises(InvalidKeyError):
            load_verify_key(bad)
    with pytest.raises(InvalidKeyError):
        load_verify_keys(" , ")


def test_several_verification_keys_for_rotation() -> None:
    old, new = generate_keypair(), generate_keypair()
    keys = load_verify_keys(f"{old.verify_key}, {new.verify_key}")
    assert [k.key_id for k in keys] == [old.key_id, new.key_id]
    for pair in (old, new):
        assert check_signature(MANIFEST, load_signing_key(pair.signing_key).sign(MANIFEST), keys, source="t")


TRUSTED = generate_keypair()


def refusal(signature: bytes | None, manifest: bytes = MANIFEST) -> CheckpointIntegrityError:
    trusted = load_verify_key(TRUSTED.verify_key)
    with pytest.raises(CheckpointIntegrityError) as caught:
        check_signature(manifest, signature, trusted, source="version v0001-x")
    return caught.value


def test_refusals_say_why() -> None:
    ours, theirs = load_signing_key(TRUSTED.signing_key), load_signing_key(generate_keypair().signing_key)
    assert check_signature(MANIFEST, None, None, source="x") is None  # no key configured: nothing checked

    unsigned = refusal(None)
    assert unsigned.reason == "unsigned" and "unsigned checkpoint" in str(unsigned)

    altered = refusal(ours.sign(MANIFEST), manifest=MANIFEST.replace(b"draft-x", b"draft-y"))
    assert altered.reason == "bad_signature" and "signature does not match the manifest" in str(altered)

    forged = refusal(theirs.sign(MANIFEST))
    assert forged.reason == "unknown_key" and theirs.key_id in str(forged)

    claimed = json.loads(theirs.sign(MANIFEST))
    claimed["key_id"] = ours.key_id  # an attacker's signature that names our key
    spoofed = refusal(json.dumps(claimed).encode())
    assert spoofed.reason == "bad_signature"

    for malformed in (b"", b"{}", b"not json", b'{"algorithm":"rsa","key_id":"a","signature":"AA=="}', b"x" * 10_000):
        assert refusal(malformed).reason == "bad_signature"
    # A signature over the bare bytes (not under our domain prefix) is no manifest signature.
    raw = Ed25519PrivateKey.from_private_bytes(base64.b64decode(TRUSTED.signing_key)).sign(MANIFEST)
    bare = {"algorithm": "ed25519", "key_id": ours.key_id, "signature": base64.b64encode(raw).decode()}
    assert refusal(json.dumps(bare).encode()).reason == "bad_signature"
