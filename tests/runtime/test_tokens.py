"""TokenVerifier's cache of verified tokens: a saving, never a loophole."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from server.core.errors import Reason, Unauthenticated
from server.interceptors import tokens
from server.interceptors.tokens import TokenVerifier, _algorithm_of, _Key, mint_token


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier(key: ec.EllipticCurvePrivateKey) -> TokenVerifier:
    public = key.public_key()
    return TokenVerifier(public_key=_Key(public, _algorithm_of(public)), leeway_s=0)


def test_a_cached_token_is_not_verified_again(
    verifier: TokenVerifier, key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint_token(sub="svc", roles=["system"], ttl_s=60, key=key, algorithm="ES256")
    first = verifier.verify(token)
    checks: list[str] = []
    real = tokens.jwt.decode
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: checks.append("x") or real(*a, **k))
    assert verifier.verify(token) == first
    assert checks == []


def test_a_cached_token_still_expires(
    verifier: TokenVerifier, key: ec.EllipticCurvePrivateKey
) -> None:
    token = mint_token(sub="svc", roles=["system"], ttl_s=1, key=key, algorithm="ES256")
    assert verifier.verify(token).user_id == "svc"
    time.sleep(1.1)
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    assert err.value.effective_reason is Reason.TOKEN_EXPIRED


def test_bad_tokens_are_never_cached(
    verifier: TokenVerifier, key: ec.EllipticCurvePrivateKey
) -> None:
    foreign = ec.generate_private_key(ec.SECP256R1())
    token = mint_token(sub="svc", roles=["admin"], ttl_s=60, key=foreign, algorithm="ES256")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(token)


def test_the_cache_is_bounded(
    verifier: TokenVerifier, key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    for i in range(10):
        verifier.verify(mint_token(sub=f"u{i}", roles=[], ttl_s=60, key=key, algorithm="ES256"))
    assert len(verifier._verified) == 3
