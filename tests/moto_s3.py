"""A real S3 API on loopback for the mirror's tests: moto's server on 127.0.0.1 at a free port, started and stopped
by the fixture, reached through s3fs with dummy credentials (in this process's environment, so the `podium`
subprocesses a test starts reach it too)."""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """The endpoint URL of a fresh moto S3 server with the bucket 'podium' created; stopped after the test."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import fsspec

    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("podium")
    yield endpoint
    # moto keeps its buckets in the process, across servers: emptied for the next test
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    server.stop()
