from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.errors import NurtureError
from nurture.tracking.tokens import (
    InvalidToken,
    TokenPurpose,
    TokenSigner,
    decode_varints,
    encode_varints,
)

CLICK, OPEN, VIEW = TokenPurpose.CLICK, TokenPurpose.OPEN, TokenPurpose.VIEW
OLD_KEY = "old-secret-0123456789abcdef-0123456789"
NEW_KEY = "new-secret-0123456789abcdef-0123456789"


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner([NEW_KEY])


@given(values=st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=3))
def test_round_trip(values: list[int]) -> None:
    signer = TokenSigner([NEW_KEY])
    for purpose in TokenPurpose:
        assert signer.verify(purpose, signer.sign(purpose, *values)) == tuple(values)


def test_tokens_are_compact_and_url_safe(signer: TokenSigner) -> None:
    token = signer.sign(TokenPurpose.CLICK, 123_456_789)
    assert len(token) <= 28
    assert all(char.isalnum() or char in "-_" for char in token)


def test_the_newest_key_signs_and_every_key_verifies() -> None:
    old = TokenSigner([OLD_KEY])
    rotated = TokenSigner([NEW_KEY, OLD_KEY])
    issued_before_rotation = old.sign(TokenPurpose.UNSUBSCRIBE, 42)
    assert rotated.verify(TokenPurpose.UNSUBSCRIBE, issued_before_rotation) == (42,)
    issued_after = rotated.sign(TokenPurpose.UNSUBSCRIBE, 42)
    assert TokenSigner([NEW_KEY]).verify(TokenPurpose.UNSUBSCRIBE, issued_after) == (42,)
    with pytest.raises(InvalidToken):
        old.verify(TokenPurpose.UNSUBSCRIBE, issued_after)
    with pytest.raises(InvalidToken):
        TokenSigner([NEW_KEY]).verify(TokenPurpose.UNSUBSCRIBE, issued_before_rotation)


@pytest.mark.parametrize("signed_for", list(TokenPurpose))
def test_a_token_only_verifies_for_its_purpose(signer: TokenSigner, signed_for: TokenPurpose) -> None:
    token = signer.sign(signed_for, 7)
    for purpose in TokenPurpose:
        if purpose is signed_for:
            assert signer.verify(purpose, token) == (7,)
        else:
            with pytest.raises(InvalidToken, match=f"not a valid {purpose.value} token"):
                signer.verify(purpose, token)


def test_every_altered_character_is_rejected(signer: TokenSigner) -> None:
    token = signer.sign(TokenPurpose.OPEN, 987_654)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position in range(len(token)):
        for replacement in alphabet:
            altered = token[:position] + replacement + token[position + 1 :]
            if altered != token:
                with pytest.raises(InvalidToken):
                    signer.verify(TokenPurpose.OPEN, altered)


def test_truncated_and_extended_tokens_are_rejected(signer: TokenSigner) -> None:
    token = signer.sign(TokenPurpose.CLICK, 5)
    for length in range(len(token)):
        with pytest.raises(InvalidToken):
            signer.verify(TokenPurpose.CLICK, token[:length])
    with pytest.raises(InvalidToken):
        signer.verify(TokenPurpose.CLICK, token + "A")


@pytest.mark.parametrize("garbage", ["", "not a token", "abc=", "é" * 10, "A" * 500, "####"])
def test_malformed_input_is_rejected_cleanly(signer: TokenSigner, garbage: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        signer.verify(TokenPurpose.VIEW, garbage)
    assert isinstance(caught.value, NurtureError)


def test_keys_must_be_given_and_long_enough() -> None:
    with pytest.raises(ValueError):
        TokenSigner([])
    with pytest.raises(ValueError):
        TokenSigner(["short"])


def test_varints_round_trip_and_reject_negative_values() -> None:
    values = (0, 1, 127, 128, 300, 2**40)
    assert decode_varints(encode_varints(values)) == values
    with pytest.raises(ValueError):
        encode_varints((-1,))
    with pytest.raises(InvalidToken):
        decode_varints(b"\x80")


def test_one_mac_signs_every_purpose_of_a_group(signer: TokenSigner) -> None:
    click, open_, view = signer.sign_group((TokenPurpose.CLICK, TokenPurpose.OPEN, TokenPurpose.VIEW), 99)
    assert (click, open_, view) == tuple(signer.sign(purpose, 99) for purpose in (CLICK, OPEN, VIEW))
    assert len({click, open_, view}) == 3
    unsubscribe, preferences = signer.sign_group((TokenPurpose.UNSUBSCRIBE, TokenPurpose.PREFERENCES), 99)
    assert signer.verify(TokenPurpose.PREFERENCES, preferences) == (99,)
    with pytest.raises(InvalidToken):
        signer.verify(TokenPurpose.PREFERENCES, unsubscribe)
    with pytest.raises(ValueError, match="carry a lead id"):
        signer.sign_group((TokenPurpose.CLICK, TokenPurpose.UNSUBSCRIBE), 99)
