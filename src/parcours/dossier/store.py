"""Where the DMP keeps document bytes: the configured blob store and the key ring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from parcours.config import Settings
from parcours.storage.blobs import BlobStore, LocalBlobStore
from parcours.storage.crypto import KeyRing


@dataclass
class DocumentStore:
    blobs: BlobStore
    keys: KeyRing
    max_document_bytes: int


def open_store(settings: Settings) -> DocumentStore:
    return DocumentStore(
        blobs=open_blob_store(settings),
        keys=KeyRing.load_or_create(settings.keys_dir / "dossier"),
        max_document_bytes=settings.max_document_bytes,
    )


def open_blob_store(settings: Settings) -> BlobStore:
    if not settings.blob_url:
        return LocalBlobStore(settings.data_dir / "blobs")
    parsed = urlparse(settings.blob_url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme == "s3":
        from parcours.storage.s3 import S3BlobStore

        store = S3BlobStore(
            endpoint_url=settings.s3_endpoint,
            bucket=parsed.netloc,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            prefix=parsed.path.strip("/"),
        )
        store.ensure_bucket()
        return store
    raise ValueError(f"PARCOURS_BLOB_URL non pris en charge : {settings.blob_url}")
