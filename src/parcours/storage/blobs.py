"""Blob store: where document bytes live, behind a four-method interface.

The relational store keeps metadata; bytes (already encrypted by ``storage.crypto``) go to a
blob store so that they can move to object storage without touching the services. Two
implementations: local files (the embedded default) and S3-compatible object storage
(``storage.s3``). Keys are opaque ASCII strings chosen by the caller (``[a-z0-9/_-]``), with a
patient-derived prefix so that a deployment can later shard buckets by patient.

Writes are whole-object and idempotent; there is no partial update. A service that writes blobs
before committing its database transaction deletes them again if the transaction fails
(compensation), so a refused submission leaves no blob behind.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"[a-z0-9][a-z0-9/_\-]{0,250}")


class BlobNotFound(KeyError):
    """The key names no stored object."""


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key or "//" in key:
        raise ValueError(f"invalid blob key: {key!r}")
    return key


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def keys(self) -> list[str]:
        """Every stored key (used by tests, the orphan sweep and the rotation tool)."""
        ...

    def keys_older_than(self, seconds: float) -> list[str]:
        """Keys last written more than ``seconds`` ago: the orphan sweep must leave alone the
        bytes of a publication whose row is not committed yet."""
        ...


class LocalBlobStore:
    """One file per blob under ``root``; writes go through a temporary file and ``os.replace``
    so a crash never leaves a half-written object under its final name."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is: without this, a power cut
        # after the database commit could leave a row pointing at a blob that never landed.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def keys_older_than(self, seconds: float) -> list[str]:
        horizon = time.time() - seconds
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-") and p.stat().st_mtime < horizon
        )
