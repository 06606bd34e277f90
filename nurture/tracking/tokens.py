"""Signed, purpose-bound tokens for the URLs in emails.

A token is ``base64url(payload || tag)`` without padding. The payload is a short sequence of unsigned integers
(a message id, a lead id) encoded as varints; the tag is the first 16 bytes of HMAC-SHA256 over the payload.
Each purpose signs with its own key derived from the secret, so a token made for clicks never verifies as an
unsubscribe token. Keys rotate: the first key signs, every key in the list verifies, so an old key can stay in
the list until the emails signed with it no longer matter.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from enum import StrEnum

from nurture.errors import NurtureError

TAG_BYTES = 16
# Longer than any token we make; refusing early keeps hostile input cheap to reject.
MAX_TOKEN_CHARS = 120
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_BLOCK = 64  # SHA-256 block size, for the precomputed HMAC pads


class TokenPurpose(StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    VIEW = "view"


class InvalidToken(NurtureError):
    """A token is malformed, truncated, altered, signed by an unknown key or meant for another purpose."""


class _Mac:
    """HMAC-SHA256 with the inner and outer pads hashed once: the same result as ``hmac.digest`` at a third
    of its cost, which matters when every email carries several tokens."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def tag(self, payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


class TokenSigner:
    """Signs and verifies tokens. ``keys`` lists the secrets newest first."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        secrets = [_as_bytes(key) for key in keys]
        if not secrets or any(len(secret) < 16 for secret in secrets):
            raise ValueError("TokenSigner needs at least one key of 16 bytes or more")
        self._macs: dict[TokenPurpose, list[_Mac]] = {
            purpose: [
                _Mac(hmac.digest(secret, f"nurture.tracking.{purpose.value}".encode(), "sha256")) for secret in secrets
            ]
            for purpose in TokenPurpose
        }
        self._signing = {purpose: macs[0] for purpose, macs in self._macs.items()}

    def sign(self, purpose: TokenPurpose, *values: int) -> str:
        payload = encode_varints(values)
        data = payload + self._signing[purpose].tag(payload)
        return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")

    def verify(self, purpose: TokenPurpose, token: str) -> tuple[int, ...]:
        """The signed values, or ``InvalidToken``."""
        data = _decode(token)
        if len(data) <= TAG_BYTES:
            raise InvalidToken("the token is truncated")
        payload, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        if not any(hmac.compare_digest(mac.tag(payload), tag) for mac in self._macs[purpose]):
            raise InvalidToken(f"the token is not a valid {purpose.value} token")
        return decode_varints(payload)


def _decode(token: str) -> bytes:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise InvalidToken("the token is malformed")
    raw = token.encode("ascii")
    try:
        data = binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error:
        raise InvalidToken("the token is malformed") from None
    # Base64 leaves spare bits in the last character; insisting on the canonical spelling means one token,
    # one string, so an altered character can never decode to the same bytes.
    if binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=") != raw:
        raise InvalidToken("the token is malformed")
    return data


def encode_varints(values: Sequence[int]) -> bytes:
    if len(values) == 1 and 0 <= values[0] < 0x80:
        return bytes(values)
    out = bytearray()
    for value in values:
        if value < 0:
            raise ValueError(f"token values must be non-negative integers (got {value})")
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def decode_varints(payload: bytes) -> tuple[int, ...]:
    values: list[int] = []
    value = shift = 0
    for byte in payload:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise InvalidToken("the token payload is malformed")
            continue
        values.append(value)
        value = shift = 0
    if shift:
        raise InvalidToken("the token payload is malformed")
    return tuple(values)
