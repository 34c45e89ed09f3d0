"""`podium serve` on loopback: a real uvicorn process answers real images as `podium predict` does, and refuses bad
requests with a 4xx while it keeps serving."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from podium.commands.predict import predict
from podium.ship.export import export_run
from tests.conftest import podium_cmd

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bomb(side: int = 20_000) -> bytes:
    """A valid grayscale PNG of side x side black pixels: ~400 MB decoded, a few hundred KB on the wire."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z, rows, parts = zlib.compressobj(9), b"\x00" * (side + 1) * 500, []
    for _ in range(side // 500):
        parts.append(z.compress(rows))
    parts.append(z.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(multiclass_run, tmp_path_factory):
    export = export_run(multiclass_run, out=tmp_path_factory.mktemp("serve") / "export").out
    port = _free_port()
    proc = subprocess.Popen(podium_cmd("serve", str(export), "--port", str(port), "--token", TOKEN,
                                       "--max-body-mb", "1", "--max-pixels", "4000000"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise AssertionError("the server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _expected(run: Path, tmp_path: Path) -> pd.DataFrame:
    predict(run, out=tmp_path / "sub.csv", oof=False)  # the run's TTA (hflip), every fold: as exported
    return pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")


def test_answers_as_podium_predict(server, multiclass_run, tmp_path):
    expected = _expected(multiclass_run, tmp_path)
    images = multiclass_run.parents[1] / "images"
    files = [("files", (f"{i}.png", (images / f"{i}.png").read_bytes(), "image/png")) for i in expected.index]
    many = httpx.post(f"{server}/predict", files=files, headers=AUTH, timeout=60).json()["predictions"]

    def one(ident):  # concurrent single-image requests, raw bodies: micro-batched together by the server
        body = (images / f"{ident}.png").read_bytes()
        return httpx.post(f"{server}/predict", content=body, headers={**AUTH, "Content-Type": "image/png"},
                          timeout=60).json()["predictions"][0]

    with ThreadPoolExecutor(8) as pool:
        singles = list(pool.map(one, expected.index))
    for answers in (many, singles):
        assert len(answers) == len(expected) == 17
        for ident, answer in zip(expected.index, answers):
            row = expected.loc[ident]
            assert answer["label"] == row.idxmax()
            for item in answer["top"]:
                assert abs(item["prob"] - row[item["class"]]) <= 1e-4
    model = httpx.get(f"{server}/model", headers=AUTH).json()
    assert model["output"]["columns"] == list(expected.columns)
    assert httpx.get(f"{server}/docs").status_code == 200


def test_refuses_bad_requests_and_keeps_serving(server, multiclass_run):
    good = (multiclass_run.parents[1] / "images" / "040.png").read_bytes()
    png = {**AUTH, "Content-Type": "image/png"}
    cases = {
        "non-image": (b"this is not an image", png, 415),
        "truncated PNG": (good[: len(good) // 2], png, 400),
        "20000 x 20000 PNG bomb": (png_bomb(), png, 413),
        "oversize body": (b"\x00" * (2 * 1024 * 1024), png, 413),
        "missing token": (good, {"Content-Type": "image/png"}, 401),
        "wrong token": (good, {"Authorization": "Bearer nope", "Content-Type": "image/png"}, 401),
    }
    for what, (body, headers, status) in cases.items():
        answer = httpx.post(f"{server}/predict", content=body, headers=headers, timeout=60)
        assert answer.status_code == status, (what, answer.text)
        assert answer.json()["detail"], what
        assert httpx.get(f"{server}/health", timeout=10).status_code == 200, what
    too_many = [("files", (f"{i}.png", good, "image/png")) for i in range(70)]  # the limit is 64 per request
    answer = httpx.post(f"{server}/predict", files=too_many, headers=AUTH, timeout=60)
    assert answer.status_code == 413 and "64" in answer.json()["detail"]
    bomb = httpx.post(f"{server}/predict", content=png_bomb(), headers=png, timeout=60).json()["detail"]
    assert "20000x20000" in bomb and "before decoding" in bomb
    after = httpx.post(f"{server}/predict", content=good, headers=png, timeout=60)
    assert after.status_code == 200 and after.json()["predictions"][0]["label"]
    health = httpx.get(f"{server}/health").json()
    assert health["refused"] >= len(cases)
