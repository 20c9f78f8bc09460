"""Ed25519 keys and the signature over a checkpoint's manifest (`manifest.sig`).

Who holds what. The signing (private) key is held only by whoever publishes checkpoints: the
retrain consumer, and an operator's `battery-ct checkpoints import` when it is in the
operator's environment. Every loader (inference consumers, the facade, the retrain consumer
itself) holds only the verification (public) key. Someone who can write to the models bucket
but has not the signing key cannot make a loader accept anything the publisher did not sign.

Key format. A key is a string, fit for an environment variable:
- the base64 of its raw 32 bytes (standard or URL-safe alphabet, padding optional), which is
  what `generate_keypair` returns: the private key is the Ed25519 seed, the public key the
  Ed25519 public key;
- or PEM: PKCS#8 ``-----BEGIN PRIVATE KEY-----`` (unencrypted) for a signing key,
  SubjectPublicKeyInfo ``-----BEGIN PUBLIC KEY-----`` for a verification key (what
  ``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout`` write).
A key that cannot be read raises `InvalidKeyError`, whose message never repeats the key.
Several verification keys (rotation: old and new both trusted for a while) are one string,
separated by commas or white space (`load_verify_keys`).

The signature file is JSON: ``{"algorithm": "ed25519", "key_id": ..., "signature": <base64>}``.
The signed bytes are a fixed domain prefix followed by the manifest file's exact bytes, so a
signature made for something else never verifies as a manifest's. `key_id` (the first 16 hex of
the SHA-256 of the raw public key) is informational: it names the key in refusals and logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from model_core.errors import CheckpointIntegrityError, InvalidKeyError

SIGNATURE_ALGORITHM = "ed25519"
SIGNATURE_DOMAIN = b"battery-ct checkpoint manifest v1\n"
_RAW_KEY_BYTES = 32
_SIGNATURE_BYTES = 64
_KEY_ID_CHARS = 16
_MAX_SIGNATURE_FILE = 4096
_SEPARATORS = re.compile(r"[\s,]+")


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:_KEY_ID_CHARS]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _raw_key(text: str, *, what: str) -> bytes:
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKeyError(f"the {what} is neither base64 nor PEM") from exc
    if len(raw) != _RAW_KEY_BYTES:
        raise InvalidKeyError(f"the {what} decodes to {len(raw)} bytes; an Ed25519 key is {_RAW_KEY_BYTES}")
    return raw


@dataclass(frozen=True, repr=False)
class VerifyKey:
    """An Ed25519 public key that checkpoint signatures are checked against."""

    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return _key_id(self.public)

    def encode(self) -> str:
        """The key as `load_verify_key` reads it: base64 of the raw 32 bytes."""
        return _b64(self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def verifies(self, manifest: bytes, signature: bytes) -> bool:
        """Whether `signature` (64 raw bytes) is this key's over the manifest bytes."""
        try:
            self.public.verify(signature, SIGNATURE_DOMAIN + manifest)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"VerifyKey(key_id={self.key_id!r})"


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An Ed25519 private key that signs manifests at publish time. Its repr shows only its id."""

    private: Ed25519PrivateKey

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.private.public_key())

    @property
    def key_id(self) -> str:
        return self.verify_key.key_id

    def encode(self) -> str:
        """The key as `load_signing_key` reads it: base64 of the raw 32-byte seed. A secret."""
        raw = self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return _b64(raw)

    def sign(self, manifest: bytes) -> bytes:
        """The contents of `manifest.sig` for the manifest file's exact bytes."""
        signature = self.private.sign(SIGNATURE_DOMAIN + manifest)
        document = {"algorithm": SIGNATURE_ALGORITHM, "key_id": self.key_id, "signature": _b64(signature)}
        return (json.dumps(document, sort_keys=True) + "\n").encode()

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


VerifyKeys: TypeAlias = "VerifyKey | Iterable[VerifyKey] | None"
"""What a loader is configured with: one verification key, several (rotation), or none."""


@dataclass(frozen=True)
class KeyPair:
    """A new key pair as strings: `signing_key` (secret: the publisher's environment only) and
    `verify_key` (public: every loader's environment)."""

    signing_key: str = field(repr=False)
    verify_key: str
    key_id: str


def generate_keypair() -> KeyPair:
    """A fresh Ed25519 key pair, each key the base64 of its raw 32 bytes."""
    key = SigningKey(Ed25519PrivateKey.generate())
    return KeyPair(signing_key=key.encode(), verify_key=key.verify_key.encode(), key_id=key.key_id)


def load_signing_key(text: str) -> SigningKey:
    """A signing key from base64 of its 32-byte seed or an unencrypted PKCS#8 PEM.
    Raises `InvalidKeyError` (without repeating the key) when it is neither."""
    stripped = text.strip()
    if not stripped:
        raise InvalidKeyError("the signing key is empty")
    if stripped.startswith("-----BEGIN"):
        if "PUBLIC KEY" in stripped.splitlines()[0]:
            raise InvalidKeyError("a public key was given where the signing (private) key is expected")
        try:
            loaded = serialization.load_pem_private_key(stripped.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidKeyError("the signing key is not a readable, unencrypted PEM private key") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise InvalidKeyError(f"the signing key is a {type(loaded).__name__}, not an Ed25519 key")
        return SigningKey(loaded)
    return SigningKey(Ed25519PrivateKey.from_private_bytes(_raw_key(stripped, what="signing key")))


def load_verify_key(text: str) -> VerifyKey:
    """A verification key from base64 of its 32 raw bytes or a SubjectPublicKeyInfo PEM.
    Raises `InvalidKeyError` when it is neither (and when it is a PEM private key)."""
    stripped = text.strip()
    if not stripped:
        raise InvalidKeyError("the verification key is empty")
    if stripped.startswith("-----BEGIN"):
        if "PRIVATE KEY" in stripped.splitlines()[0]:
            raise InvalidKeyError("a private key was given where the verification (public) key is expected")
        try:
            loaded = serialization.load_pem_public_key(stripped.encode())
        except (ValueError, TypeError) as exc:
            raise InvalidKeyError("the verification key is not a readable PEM public key") from exc
        if not isinstance(loaded, Ed25519PublicKey):
            raise InvalidKeyError(f"the verification key is a {type(loaded).__name__}, not an Ed25519 key")
        return VerifyKey(loaded)
    try:
        return VerifyKey(Ed25519PublicKey.from_public_bytes(_raw_key(stripped, what="verification key")))
    except ValueError as exc:
        raise InvalidKeyError("the verification key is not an Ed25519 public key") from exc


def load_verify_keys(text: str) -> tuple[VerifyKey, ...]:
    """One or more verification keys (base64), separated by commas or white space; a single PEM
    key is accepted too. Raises `InvalidKeyError` for an empty list or any unreadable key."""
    if text.strip().startswith("-----BEGIN"):
        return (load_verify_key(text),)
    keys = tuple(load_verify_key(part) for part in _SEPARATORS.split(text.strip()) if part)
    if not keys:
        raise InvalidKeyError("no verification key given")
    return keys


def trusted_keys(verify_key: VerifyKeys) -> tuple[VerifyKey, ...]:
    """The configured verification keys as a tuple; empty when none is configured."""
    if verify_key is None:
        return ()
    if isinstance(verify_key, VerifyKey):
        return (verify_key,)
    return tuple(verify_key)


class _SignatureFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str
    key_id: str
    signature: str


def check_signature(manifest: bytes, signature: bytes | None, keys: VerifyKeys, *, source: str) -> str | None:
    """Check `manifest.sig` (its bytes, or None when there is none) over the manifest bytes.

    With no verification key configured nothing is checked (development) and None is returned.
    Otherwise returns the id of the key that verified, or raises `CheckpointIntegrityError`:
    ``unsigned`` (no signature), ``bad_signature`` (malformed, or not a valid signature over these
    bytes by the key it names), ``unknown_key`` (signed by a key that is not configured)."""
    trusted = trusted_keys(keys)
    if not trusted:
        return None
    if signature is None:
        raise CheckpointIntegrityError(
            f"unsigned checkpoint: {source} has no signature and a verification key is configured",
            reason="unsigned",
        )
    if len(signature) > _MAX_SIGNATURE_FILE:
        raise CheckpointIntegrityError(f"malformed signature in {source}: too large", reason="bad_signature")
    try:
        document = _SignatureFile.model_validate_json(signature)
        raw = base64.b64decode(document.signature, validate=True)
    except (ValidationError, binascii.Error, ValueError) as exc:
        raise CheckpointIntegrityError(f"malformed signature in {source}", reason="bad_signature") from exc
    if document.algorithm != SIGNATURE_ALGORITHM or len(raw) != _SIGNATURE_BYTES:
        raise CheckpointIntegrityError(
            f"malformed signature in {source}: expected one {SIGNATURE_ALGORITHM} signature", reason="bad_signature"
        )
    for key in trusted:
        if key.verifies(manifest, raw):
            return key.key_id
    ids = ", ".join(key.key_id for key in trusted)
    if document.key_id not in {key.key_id for key in trusted}:
        raise CheckpointIntegrityError(
            f"signature of {source} is by key {document.key_id[:_KEY_ID_CHARS]!r}, not a configured verification "
            f"key ({ids})",
            reason="unknown_key",
        )
    raise CheckpointIntegrityError(f"signature does not match the manifest in {source}", reason="bad_signature")
