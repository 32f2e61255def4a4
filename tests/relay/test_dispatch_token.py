"""The dispatch token: what remembering verified tokens must not change."""

import pytest

from relay import dispatch_token

CLAIMS = dispatch_token.DispatchClaims("guid-1", "org-b/l3", 2, "a" * 40)


def test_a_remembered_token_still_expires(settings):
    token = dispatch_token.sign(CLAIMS)
    assert dispatch_token.verify(token) == CLAIMS

    settings.CRCR_DISPATCH_TTL = -1  # every token is now past its dispatch's lifetime

    with pytest.raises(dispatch_token.BadToken, match="expired"):
        dispatch_token.verify(token)


def test_a_remembered_token_is_refused_once_its_key_is_retired(settings):
    token = dispatch_token.sign(CLAIMS)
    assert dispatch_token.verify(token) == CLAIMS
    old = settings.SECRET_KEY

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "k" * 50, [old]
    assert dispatch_token.verify(token) == CLAIMS  # rotated: the old key is a fallback

    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(dispatch_token.BadToken, match="not one of ours"):
        dispatch_token.verify(token)


def test_a_tampered_token_is_refused_every_time():
    token = dispatch_token.sign(CLAIMS)
    payload, signed_at, signature = token.rsplit(":", 2)
    forged = f"{payload}:{signed_at}:{signature[::-1]}"

    for _ in range(2):
        with pytest.raises(dispatch_token.BadToken, match="not one of ours"):
            dispatch_token.verify(forged)
