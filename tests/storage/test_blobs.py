"""One contract for every blob store: the local files and S3 (against a real SeaweedFS server).

A service must not be able to tell the stores apart, so each test runs on both; the S3 store gets
a fresh key prefix per test in the session's shared bucket.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from parcours.storage.blobs import BlobNotFound, BlobStore, LocalBlobStore
from parcours.storage.s3 import S3BlobStore
from tests.storage.conftest import S3Server


def _s3_store(server: S3Server, prefix: str, bucket: str | None = None) -> S3BlobStore:
    return S3BlobStore(
        server.endpoint_url,
        bucket or server.bucket,
        server.access_key,
        server.secret_key,
        prefix=prefix,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    # Looked up lazily so that the local half never waits for the server.
    server: S3Server = request.getfixturevalue("seaweedfs")
    return _s3_store(server, prefix=f"t-{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize(
    "data",
    [b"", b"x", bytes(range(256)), os.urandom(5 * 1024 * 1024)],
    ids=["empty", "one-byte", "all-byte-values", "5MB"],
)
def test_put_then_get_returns_the_same_bytes(store: BlobStore, data: bytes) -> None:
    store.put("ab/cd/ef", data)
    assert store.get("ab/cd/ef") == data


def test_put_overwrites(store: BlobStore) -> None:
    store.put("k1", b"first version, longer")
    store.put("k1", b"second")
    assert store.get("k1") == b"second"
    assert store.keys() == ["k1"]


def test_get_missing_raises_blob_not_found(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.get("nothing/here")
    store.put("nothing/else", b"x")
    with pytest.raises(BlobNotFound):
        store.get("nothing/here")


def test_delete_is_idempotent(store: BlobStore) -> None:
    store.delete("never-written")
    store.put("k1", b"x")
    store.delete("k1")
    store.delete("k1")
    with pytest.raises(BlobNotFound):
        store.get("k1")
    assert store.keys() == []


def test_keys_lists_exactly_what_was_put(store: BlobStore) -> None:
    assert store.keys() == []
    written = ["ab/cd/ef", "ab/cd/eg", "ab/x", "z", "0_a-b"]
    for key in written:
        store.put(key, key.encode())
    assert store.keys() == sorted(written)
    store.delete("ab/cd/ef")
    assert store.keys() == sorted(set(written) - {"ab/cd/ef"})


def test_keys_older_than_leaves_out_fresh_writes(store: BlobStore) -> None:
    store.put("ab/old", b"x")
    time.sleep(2.2)  # S3 LastModified is truncated to the second
    store.put("ab/new", b"y")
    assert store.keys_older_than(1.1) == ["ab/old"]
    assert store.keys_older_than(3600) == []
    assert store.keys_older_than(-60) == ["ab/new", "ab/old"]


@pytest.mark.parametrize("key", ["../x", "A B", "", "/abs", "a//b", "a/../b", "-lead", "é"])
@pytest.mark.parametrize("operation", ["put", "get", "delete"])
def test_invalid_keys_are_refused(store: BlobStore, operation: str, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        if operation == "put":
            store.put(key, b"x")
        elif operation == "get":
            store.get(key)
        else:
            store.delete(key)
    assert store.keys() == []


# S3 only: what the local store has no equivalent for.


def test_s3_prefixes_isolate_stores_sharing_a_bucket(seaweedfs: S3Server) -> None:
    base = f"t-{uuid.uuid4().hex[:12]}"
    short, longer = _s3_store(seaweedfs, base + "a"), _s3_store(seaweedfs, base + "ab")
    short.put("k", b"short")
    longer.put("k", b"longer")
    assert short.keys() == ["k"]
    assert longer.keys() == ["k"]
    assert short.get("k") == b"short"


def test_s3_keys_follow_pagination(seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _s3_store(seaweedfs, f"t-{uuid.uuid4().hex[:12]}")
    written = sorted(f"p/{i % 3}/k{i}" for i in range(7))
    for key in written:
        store.put(key, b"x")
    # Pages of two objects exercise continuation tokens without writing a thousand objects.
    client = store._client
    original = client.get_paginator

    def small_pages(name: str) -> Any:
        paginator = original(name)
        paginate = paginator.paginate
        paginator.paginate = lambda **kw: paginate(PaginationConfig={"PageSize": 2}, **kw)
        return paginator

    monkeypatch.setattr(client, "get_paginator", small_pages)
    assert store.keys() == written


def test_s3_ensure_bucket_creates_it_once(seaweedfs: S3Server) -> None:
    bucket = f"parcours-new-{uuid.uuid4().hex[:8]}"
    store = _s3_store(seaweedfs, prefix="", bucket=bucket)
    store.ensure_bucket()
    store.ensure_bucket()
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert store.keys() == ["k"]


def test_s3_invalid_prefix_is_refused(seaweedfs: S3Server) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        _s3_store(seaweedfs, prefix="../escape")
