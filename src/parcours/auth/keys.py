"""Signing keys of the development identity provider, kept under the data directory.

The private key never leaves the instance; the public half is published as a JWKS so that the
verifier treats the development IdP exactly like Pro Santé Connect or FranceConnect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    kid: str

    @property
    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
        }

    @property
    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint: a stable kid that changes only when the key does."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


def _from_private(private_key: ec.EllipticCurvePrivateKey) -> SigningKey:
    provisional = SigningKey(private_key, "")
    return SigningKey(private_key, thumbprint(provisional.public_jwk))


def generate_key() -> SigningKey:
    return _from_private(ec.generate_private_key(ec.SECP256R1()))


def load_or_create(keys_dir: Path, name: str = "dev-idp-es256.pem") -> SigningKey:
    """Load a P-256 key (the development IdP's by default), creating it (mode 0600) on first
    use."""
    path = keys_dir / name
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} n'est pas une clé EC P-256")
        return _from_private(key)
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_pem)
    tmp.replace(path)
    return key
