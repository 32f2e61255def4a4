"""relay/oidc.py's _JWS: PyJWT's base64url segment check, done in C. It must accept and refuse
exactly what PyJWT's own check does, with the same error."""

import base64
import inspect
import random

import jwt
import pytest

from relay import oidc


def _outcome(check, segment: bytes) -> tuple[str, object]:
    try:
        return "decoded", check(segment, "crypto")
    except jwt.DecodeError as exc:
        return "refused", str(exc)


def _corpus() -> list[bytes]:
    rng = random.Random(20261206)  # noqa: S311 (a fixed test corpus, not a secret)
    segments: list[bytes] = [b"", b"=", b"==", b"===", b"A", b"A=", b"AA", b"AA=", b"AA==", b"!!!!"]
    for length in range(40):
        raw = bytes(rng.randrange(256) for _ in range(length))
        padded = base64.urlsafe_b64encode(raw)
        plain = padded.rstrip(b"=")
        segments += [plain, padded, plain + b"!!!!", plain + b"=" * 3, plain + b"="]
        if plain:
            segments += [
                plain[:-1],  # may leave a length of 1 mod 4
                plain[:1] + b"=" + plain[1:],  # padding inside
                plain[:-1] + b"+",  # the standard alphabet's characters
                plain[:-1] + b"/",
                plain + b" ",
                plain + b"\n",
                plain[:-1] + "é".encode(),
                # the last character with stray low bits: a non-canonical encoding
                plain[:-1] + bytes([b"AQgh"[rng.randrange(4)]]),
            ]
    alphabet = b"ABCxyz019-_+/=! \x00\xff"
    for _ in range(2000):
        segments.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(12))))
    return segments


@pytest.mark.parametrize("chunk", range(4))
def test_same_answers_as_pyjwt(chunk):
    corpus = _corpus()[chunk::4]
    ours = oidc._JWS._decode_base64url_segment
    theirs = jwt.PyJWS._decode_base64url_segment
    differ = [s for s in corpus if _outcome(ours, s) != _outcome(theirs, s)]
    assert differ == []
    assert {_outcome(ours, s)[0] for s in corpus} == {"decoded", "refused"}


def test_the_decoder_uses_it():
    """If PyJWT stopped reaching the hook (renamed it, called it other than through the
    instance, or decoded through something other than `_jws`), the override would silently
    stop mattering: fail instead. PyJWT's own check would still run, so this guards speed, not
    safety; it reads PyJWT's source because the path is PyJWT's, not ours."""
    assert callable(jwt.PyJWS.__dict__["_decode_base64url_segment"].__func__)
    load = inspect.getsource(jwt.PyJWS._load)
    assert load.count("self._decode_base64url_segment(") == 3  # header, payload, signature
    assert "self._jws.decode_complete(" in inspect.getsource(jwt.PyJWT.decode_complete)
    assert isinstance(oidc._decoder._jws, oidc._JWS)


def test_junk_after_a_valid_signature_is_refused(rsa_token):
    token, key = rsa_token
    assert oidc._decoder.decode(token, key, algorithms=["RS256"], audience="a")["sub"] == "x"
    for bad in (token + "!!!!", token + "=", token[:-1] + "+"):
        with pytest.raises(jwt.DecodeError, match="Invalid crypto padding"):
            oidc._decoder.decode(bad, key, algorithms=["RS256"], audience="a")


@pytest.fixture(scope="module")
def rsa_token():
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode({"sub": "x", "aud": "a"}, key, algorithm="RS256"), key.public_key()
