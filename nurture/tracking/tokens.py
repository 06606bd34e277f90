"""Signed, purpose-bound tokens for the URLs in emails.

A token is ``base64url(payload || tag)`` without padding. The payload is a short sequence of unsigned integers
(a message id, a lead id) encoded as varints; the tag is 16 bytes of a keyed BLAKE2b-512 MAC of the payload.

Purposes come in two groups, by what their tokens carry: the message id (open, click, view online) and the lead
id (unsubscribe, preferences). Each group has its own key, derived from the secret once per process, and each
purpose of a group owns a different 16-byte slice of the group's 64-byte MAC. So an email's five tokens cost
two MACs, not five, and a token still verifies for its purpose only: the slices of one MAC output are
independent, so knowing a click tag tells nothing about the open or view tag of the same message, and the
groups' keys differ, so a lead id token never passes for a message id token.

Keys rotate: the first key signs, every key in the list verifies, so an old key can stay in the list until the
emails signed with it no longer matter.
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
MAC_BYTES = 64  # BLAKE2b-512: room for the tags of up to four purposes of one group
# Longer than any token we make; refusing early keeps hostile input cheap to reject.
MAX_TOKEN_CHARS = 120
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class TokenPurpose(StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    VIEW = "view"


MESSAGE_GROUP = "message"
LEAD_GROUP = "lead"
# purpose -> (group, slice of the group's MAC). Never reorder: issued tokens would stop verifying.
_SLOTS: dict[TokenPurpose, tuple[str, int]] = {
    TokenPurpose.OPEN: (MESSAGE_GROUP, 0),
    TokenPurpose.CLICK: (MESSAGE_GROUP, 1),
    TokenPurpose.VIEW: (MESSAGE_GROUP, 2),
    TokenPurpose.UNSUBSCRIBE: (LEAD_GROUP, 0),
    TokenPurpose.PREFERENCES: (LEAD_GROUP, 1),
}


class InvalidToken(NurtureError):
    """A token is malformed, truncated, altered, signed by an unknown key or meant for another purpose."""


class _Mac:
    """Keyed BLAKE2b-512 with the key block absorbed once: a MAC is a state copy, an update and a digest."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hashlib.blake2b(key=key, digest_size=MAC_BYTES)

    def digest(self, payload: bytes) -> bytes:
        state = self._keyed.copy()
        state.update(payload)
        return state.digest()


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _group_key(secret: bytes, group: str) -> bytes:
    return hmac.digest(secret, f"nurture.tracking.{group}".encode(), "sha256")


def _encode(payload: bytes, tag: bytes) -> str:
    return binascii.b2a_base64(payload + tag, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


class TokenSigner:
    """Signs and verifies tokens. ``keys`` lists the secrets newest first."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        secrets = [_as_bytes(key) for key in keys]
        if not secrets or any(len(secret) < 16 for secret in secrets):
            raise ValueError("TokenSigner needs at least one key of 16 bytes or more")
        groups = {group for group, _ in _SLOTS.values()}
        self._macs: dict[str, list[_Mac]] = {
            group: [_Mac(_group_key(secret, group)) for secret in secrets] for group in groups
        }
        self._signing = {group: macs[0] for group, macs in self._macs.items()}
        # purposes -> (signing MAC, slice bounds of each purpose's tag), worked out on first use.
        self._plans: dict[tuple[TokenPurpose, ...], tuple[_Mac, tuple[tuple[int, int], ...]]] = {}

    def sign(self, purpose: TokenPurpose, *values: int) -> str:
        return self.sign_group((purpose,), *values)[0]

    def sign_group(self, purposes: Sequence[TokenPurpose], *values: int) -> tuple[str, ...]:
        """A token for each of ``purposes`` (all of one group), carrying the same values, from one MAC."""
        key = purposes if type(purposes) is tuple else tuple(purposes)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(key)
        signing, bounds = plan
        payload = encode_varints(values)
        mac = signing.digest(payload)
        return tuple([_encode(payload, mac[start:end]) for start, end in bounds])

    def _plan(self, purposes: tuple[TokenPurpose, ...]) -> tuple[_Mac, tuple[tuple[int, int], ...]]:
        group = _SLOTS[purposes[0]][0]
        bounds = []
        for purpose in purposes:
            purpose_group, slot = _SLOTS[purpose]
            if purpose_group != group:
                raise ValueError(f"{purpose.value} tokens carry a {purpose_group} id, not a {group} id")
            bounds.append((slot * TAG_BYTES, (slot + 1) * TAG_BYTES))
        return self._signing[group], tuple(bounds)

    def verify(self, purpose: TokenPurpose, token: str) -> tuple[int, ...]:
        """The signed values, or ``InvalidToken``."""
        data = _decode(token)
        if len(data) <= TAG_BYTES:
            raise InvalidToken("the token is truncated")
        payload, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        group, slot = _SLOTS[purpose]
        start = slot * TAG_BYTES
        if not any(
            hmac.compare_digest(mac.digest(payload)[start : start + TAG_BYTES], tag) for mac in self._macs[group]
        ):
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
    if len(values) == 1:
        # One id (every token we sign): two or three bytes, spelled out rather than looped over.
        value = values[0]
        if 0 <= value < 0x80:
            return bytes(values)
        if 0 <= value < 0x4000:
            return bytes(((value & 0x7F) | 0x80, value >> 7))
        if 0 <= value < 0x200000:
            return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
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
