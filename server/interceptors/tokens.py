"""Bearer JWTs: verification (the auth interceptor) and development minting (`smartstart token`).

Keys come from configuration only: an ES256/RS256 PEM public key, a JWKS file (key chosen by
the token's `kid`), and HS256 with a shared secret only when SMARTSTART_JWT_DEV_SECRET is set.
The algorithm is fixed by the key, never taken on trust from the token header.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.config import Settings
from server.core.context import KNOWN_ROLES, Principal
from server.core.errors import Reason, Unauthenticated

HS256 = "HS256"


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # a cryptography public key or the HS256 secret
    algorithm: str


def _algorithm_of(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ES256"
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RS256"
    raise ValueError(f"unsupported JWT public key type {type(public_key).__name__}")


def _load_pem_public_key(path: str) -> _Key:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    return _Key(key, _algorithm_of(key))


def _load_jwks(path: str) -> dict[str, _Key]:
    keys: dict[str, _Key] = {}
    for jwk in jwt.PyJWKSet.from_dict(json.loads(Path(path).read_text())).keys:
        if jwk.key_id is None:
            continue
        algorithm = jwk.algorithm_name if jwk.algorithm_name in {"ES256", "RS256"} else None
        keys[jwk.key_id] = _Key(jwk.key, algorithm or _algorithm_of(jwk.key))
    return keys


def roles_of(claim: object) -> frozenset[str]:
    """Known roles from the `roles` claim; unknown names are dropped, not errors."""
    if not isinstance(claim, list):
        return frozenset()
    return frozenset(r for r in claim if isinstance(r, str) and r in KNOWN_ROLES)


VERIFIED_CACHE_SIZE = 4096


class TokenVerifier:
    def __init__(
        self,
        *,
        public_key: _Key | None = None,
        jwks: Mapping[str, _Key] | None = None,
        dev_secret: str = "",
        issuer: str = "",
        audience: str = "",
        leeway_s: int = 30,
    ) -> None:
        self._public_key = public_key
        self._jwks = dict(jwks or {})
        self._dev_secret = dev_secret
        self._issuer = issuer or None
        self._audience = audience or None
        self._leeway = leeway_s
        # token → (principal, valid until): a service token is verified once, not per call
        # (an ES256 check costs ~0.1 ms here). Only verified tokens enter; `exp` still rules.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        return cls(
            public_key=(
                _load_pem_public_key(settings.jwt_public_key_file)
                if settings.jwt_public_key_file
                else None
            ),
            jwks=_load_jwks(settings.jwt_jwks_file) if settings.jwt_jwks_file else None,
            dev_secret=settings.jwt_dev_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s,
        )

    @property
    def configured(self) -> bool:
        return bool(self._public_key or self._jwks or self._dev_secret)

    def _key_for(self, header: Mapping[str, Any]) -> _Key:
        alg = header.get("alg")
        kid = header.get("kid")
        if alg == HS256:
            if self._dev_secret:
                return _Key(self._dev_secret, HS256)
        elif isinstance(kid, str) and kid in self._jwks:
            return self._jwks[kid]
        elif self._public_key is not None:
            return self._public_key
        raise Unauthenticated("invalid bearer token: no key for it")

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated (TOKEN_EXPIRED when expired) else."""
        hit = self._verified.get(token)
        if hit is not None:
            principal, valid_until = hit
            if time.time() <= valid_until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]  # expired: the full check below says so
        principal, expires_at = self._verify_signature_and_claims(token)
        self._verified[token] = (principal, expires_at + self._leeway)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify_signature_and_claims(self, token: str) -> tuple[Principal, float]:
        try:
            key = self._key_for(jwt.get_unverified_header(token))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("bearer token expired", reason=Reason.TOKEN_EXPIRED) from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid bearer token: {exc}") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthenticated("invalid bearer token: no subject")
        principal = Principal(user_id=sub, roles=roles_of(claims.get("roles")))
        return principal, float(claims["exp"])


def mint_token(
    *,
    sub: str,
    roles: Iterable[str],
    ttl_s: int,
    key: Any,
    algorithm: str,
    issuer: str = "",
    audience: str = "",
    kid: str | None = None,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": list(roles),
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def mint_dev_token(settings: Settings, *, sub: str, roles: Iterable[str], ttl_s: int) -> str:
    """A development token signed with the configured development key."""
    if settings.jwt_dev_private_key_file:
        private_key = serialization.load_pem_private_key(
            Path(settings.jwt_dev_private_key_file).read_bytes(), password=None
        )
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            algorithm = "ES256"
        elif isinstance(private_key, rsa.RSAPrivateKey):
            algorithm = "RS256"
        else:
            raise ValueError("SMARTSTART_JWT_DEV_PRIVATE_KEY_FILE must hold an EC or RSA key")
        return mint_token(
            sub=sub,
            roles=roles,
            ttl_s=ttl_s,
            key=private_key,
            algorithm=algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    if settings.jwt_dev_secret:
        return mint_token(
            sub=sub,
            roles=roles,
            ttl_s=ttl_s,
            key=settings.jwt_dev_secret,
            algorithm=HS256,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    raise ValueError(
        "no development signing key: set SMARTSTART_JWT_DEV_SECRET or "
        "SMARTSTART_JWT_DEV_PRIVATE_KEY_FILE"
    )
