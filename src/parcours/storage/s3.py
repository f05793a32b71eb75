"""Blob store on S3-compatible object storage (SeaweedFS, MinIO, Ceph RGW, AWS S3).

The same contract as ``LocalBlobStore``: keys are checked with ``check_key`` before any request,
so an invalid key never reaches the network and both stores refuse the same keys. ``prefix`` lets
several deployments (or test runs) share one bucket without seeing each other's objects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from parcours.storage.blobs import BlobNotFound, check_key

# Self-hosted servers answer at one host name, not ``<bucket>.<host>``: path-style addressing
# avoids needing wildcard DNS. Whole-object writes are idempotent, so retrying them is safe; the
# timeouts bound how long a request can hang on an unreachable server.
_CONFIG = Config(
    s3={"addressing_style": "path"},
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
)

# Shared so that the service model is parsed once, not per store; a lock because sessions (unlike
# the clients they make) are not thread-safe.
_SESSION = boto3.session.Session()
_SESSION_LOCK = threading.Lock()

_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_NO_KEY = {"NoSuchKey", "404", "NotFound"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """One object per blob, named ``prefix + key`` in ``bucket``."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        prefix: str = "",
    ) -> None:
        self.bucket = bucket
        self.region = region
        # Normalised to end with "/" so that keys() can strip it and a prefix "a" never matches
        # the objects of a neighbour prefix "ab".
        self.prefix = check_key(prefix.rstrip("/")) + "/" if prefix else ""
        with _SESSION_LOCK:
            self._client: Any = _SESSION.client(
                "s3",
                endpoint_url=endpoint_url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
                config=_CONFIG,
            )

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def ensure_bucket(self) -> None:
        """Create the bucket on first start so that a fresh server needs no manual setup step."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if _code(error) not in _NO_BUCKET:
                raise
        extra: dict[str, Any] = {}
        if self.region != "us-east-1":  # AWS rejects an explicit us-east-1 constraint
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as error:
            # Another process created it between our check and our request.
            if _code(error) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def get(self, key: str) -> bytes:
        name = self._name(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _code(error) in _NO_KEY:
                raise BlobNotFound(key) from None
            raise
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def delete(self, key: str) -> None:
        """S3 already answers 204 for a missing key, which gives the idempotence we promise."""
        self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def keys(self) -> list[str]:
        return sorted(key for key, _ in self._listing())

    def keys_older_than(self, seconds: float) -> list[str]:
        horizon = datetime.now(UTC) - timedelta(seconds=seconds)
        return sorted(key for key, modified in self._listing() if modified < horizon)

    def _listing(self) -> Iterator[tuple[str, datetime]]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", ()):
                yield item["Key"][len(self.prefix) :], item["LastModified"]
