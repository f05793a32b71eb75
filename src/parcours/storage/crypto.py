"""Encryption at rest: AES-256-GCM per document under an envelope key.

Each document gets its own random data key (DEK). The bytes are encrypted with the DEK, the DEK
is wrapped with a key-encryption key (KEK) from the key ring, and the wrapped DEK and the KEK id
are stored with the document's metadata, not with the bytes. Consequences that motivated this
shape:

- rotating the KEK re-wraps 48-byte DEKs in the database; no document is re-encrypted;
- a stolen blob bucket without the database and the key ring is noise;
- the blob key is bound as associated data, so swapping two ciphertexts between documents
  fails authentication instead of serving the wrong patient's document.

The key ring lives in ``<keys_dir>/dossier/``: one ``kek-<id>.key`` file per KEK (32 random
bytes, base64) and an ``active`` file naming the KEK used for new documents. A deployment mounts
that directory from its secret store; nothing here ever logs a key.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"PCB1"
_NONCE = 12


class DecryptionError(Exception):
    """Ciphertext, wrapped key or associated data do not authenticate."""


@dataclass(frozen=True)
class Sealed:
    """What a caller stores: the ciphertext (blob store) and the wrapped key (database)."""

    ciphertext: bytes
    key_id: str
    wrapped_key: str  # base64(nonce + AES-GCM(KEK, DEK))


class KeyRing:
    def __init__(self, keys: dict[str, bytes], active: str, index_key: bytes) -> None:
        if active not in keys:
            raise ValueError(f"active key {active!r} is not in the key ring")
        self._keys = dict(keys)
        self.active = active
        self.index_key = index_key

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def load_or_create(cls, directory: Path) -> KeyRing:
        """Load the ring; on first use create one KEK and the full-text index key."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        keys = {
            path.stem.removeprefix("kek-"): base64.b64decode(path.read_text().strip())
            for path in sorted(directory.glob("kek-*.key"))
        }
        active_file = directory / "active"
        if not keys:
            key_id = _new_key_file(directory)
            keys[key_id] = base64.b64decode((directory / f"kek-{key_id}.key").read_text())
            _write_secret(active_file, key_id)
        active = active_file.read_text().strip() if active_file.exists() else sorted(keys)[-1]
        index_file = directory / "index.key"
        if not index_file.exists():
            _write_secret(index_file, base64.b64encode(secrets.token_bytes(32)).decode())
        index_key = base64.b64decode(index_file.read_text().strip())
        return cls(keys, active, index_key)

    @classmethod
    def rotate(cls, directory: Path) -> str:
        """Create a new KEK and make it active; older KEKs stay to unwrap existing DEKs."""
        cls.load_or_create(directory)
        key_id = _new_key_file(Path(directory))
        _write_secret(Path(directory) / "active", key_id)
        return key_id

    def seal(self, plaintext: bytes, aad: str) -> Sealed:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(_NONCE)
        body = MAGIC + nonce + AESGCM(dek).encrypt(nonce, plaintext, aad.encode())
        return Sealed(body, self.active, self._wrap(dek, self.active, aad))

    def open(self, ciphertext: bytes, key_id: str, wrapped_key: str, aad: str) -> bytes:
        dek = self._unwrap(key_id, wrapped_key, aad)
        if not ciphertext.startswith(MAGIC) or len(ciphertext) < len(MAGIC) + _NONCE + 16:
            raise DecryptionError("not a parcours ciphertext")
        nonce = ciphertext[len(MAGIC) : len(MAGIC) + _NONCE]
        try:
            return AESGCM(dek).decrypt(nonce, ciphertext[len(MAGIC) + _NONCE :], aad.encode())
        except InvalidTag:
            raise DecryptionError("document ciphertext does not authenticate") from None

    def rewrap(self, key_id: str, wrapped_key: str, aad: str) -> tuple[str, str]:
        """Re-wrap a DEK under the active KEK (key rotation without touching the blob)."""
        dek = self._unwrap(key_id, wrapped_key, aad)
        return self.active, self._wrap(dek, self.active, aad)

    def _wrap(self, dek: bytes, key_id: str, aad: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        wrapped = AESGCM(self._keys[key_id]).encrypt(nonce, dek, b"dek|" + aad.encode())
        return base64.b64encode(nonce + wrapped).decode()

    def _unwrap(self, key_id: str, wrapped_key: str, aad: str) -> bytes:
        kek = self._keys.get(key_id)
        if kek is None:
            raise DecryptionError(f"key {key_id!r} is not in the key ring")
        raw = base64.b64decode(wrapped_key)
        try:
            return AESGCM(kek).decrypt(raw[:_NONCE], raw[_NONCE:], b"dek|" + aad.encode())
        except InvalidTag:
            raise DecryptionError("wrapped key does not authenticate") from None


def _new_key_file(directory: Path) -> str:
    key_id = secrets.token_hex(4)
    _write_secret(
        directory / f"kek-{key_id}.key", base64.b64encode(secrets.token_bytes(32)).decode()
    )
    return key_id


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
