"""Shipping a run: `podium serve` under load on loopback, and ONNX Runtime vs PyTorch on CPU.

1. serve: trains podium_cnn on `podium demo`'s digits (fold 0, a few epochs, 32 px grayscale), exports it (no
   TTA), starts `podium serve` in its own process on a free loopback port, and sends --requests single-image POSTs
   (raw PNG bodies, real test images) from --concurrency concurrent clients, bounded by --max-seconds. Records errors
   (any non-200 or wrong class), requests/s, p50/p99 latency, the server's RSS before and after.
2. runtimes: podium_cnn (32 px, 3 channels) and efficientnet_lite0 (224 px) with random weights, eager PyTorch vs
   the same network exported to ONNX, on CPU with --threads threads each: single-image latency (median of
   --reps) and batch-32 throughput (images/s).

    python benchmarks/serve.py --requests 10000 --concurrency 32 --max-seconds 300
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "serve.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_run(root: Path, epochs: int) -> tuple[Path, Path]:
    """`podium demo`'s digits competition and config (podium_cnn, 32 px grayscale), fold 0 only."""
    from podium.commands.demo import demo_config
    from podium.commands.train import train
    from podium.data.scenarios.digits import write_digits_competition

    write_digits_competition(root / "data")
    cfg = demo_config(root, epochs)
    train(cfg, folds=[0])
    return Path(cfg.output_dir) / cfg.name, root / "data"


async def load(url: str, bodies: list[bytes], labels: list[str], requests: int, concurrency: int,
               max_seconds: float) -> dict:
    import httpx

    latencies, errors, sent = [], 0, 0
    stop = time.perf_counter() + max_seconds

    async def client(c: httpx.AsyncClient, worker: int):
        nonlocal errors, sent
        while sent < requests and time.perf_counter() < stop:
            i = sent % len(bodies)
            sent += 1
            t = time.perf_counter()
            try:
                r = await c.post(f"{url}/predict", content=bodies[i], headers={"Content-Type": "image/png"})
                ok = r.status_code == 200 and r.json()["predictions"][0]["label"] == labels[i]
            except Exception:  # noqa: BLE001 - any failure is an error of the server under load
                ok = False
            latencies.append(time.perf_counter() - t)
            errors += not ok

    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        await asyncio.gather(*(client(c, w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    ms = sorted(x * 1000 for x in latencies)
    return {"requests": len(ms), "errors": errors, "seconds": round(wall, 1), "req_per_s": round(len(ms) / wall, 1),
            "p50_ms": round(ms[len(ms) // 2], 1), "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1)}


def serve_bench(args, work: Path) -> dict:
    import httpx
    import pandas as pd
    import psutil

    from podium.commands.predict import predict
    from podium.ship.export import export_run

    run, root = trained_run(work / "digits", args.epochs)
    export = export_run(run, tta="none", out=work / "export").out
    predict(run, tta="none", out=work / "sub.csv", oof=False)  # labels the server must give back
    expected = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
    test = pd.read_csv(root / "test.csv", dtype=str)
    images = root / "images"
    files = {p.stem: p for p in images.iterdir()}
    bodies = [files[i].read_bytes() for i in test["id"]]
    labels = [expected.loc[i].idxmax() for i in test["id"]]
    port = _free_port()
    cmd = [sys.executable, "-c", "from podium.cli import main; main()", "serve", str(export), "--port", str(port),
           "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        asyncio.run(load(url, bodies, labels, 200, args.concurrency, 60))  # warm-up: first calls, allocations
        rss_before = psutil.Process(proc.pid).memory_info().rss
        result = asyncio.run(load(url, bodies, labels, args.requests, args.concurrency, args.max_seconds))
        rss_after = psutil.Process(proc.pid).memory_info().rss
        health = httpx.get(f"{url}/health").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {**result, "asked": args.requests, "concurrency": args.concurrency, "max_seconds": args.max_seconds,
            "rss_before_mb": round(rss_before / 2**20, 1), "rss_after_mb": round(rss_after / 2**20, 1),
            "mean_batch": round(health["images"] / max(1, health["batches"]), 2), "server_threads": args.threads,
            "model": "podium_cnn", "image_size": 32, "test_images": len(bodies)}


def runtime_bench(name: str, size: int, threads: int, reps: int, work: Path) -> dict:
    import onnxruntime as ort
    import torch

    from podium.config import ModelConfig
    from podium.models import create_model
    from podium.ship.graph import RunGraph, export_onnx

    torch.set_num_threads(threads)
    net = create_model(ModelConfig(name=name, pretrained=False), num_classes=10, in_chans=3, image_size=size).eval()
    graph = RunGraph([net], torch.zeros(3), torch.ones(3), [], "mean_probs", lambda z: z.softmax(1)).eval()
    path = work / f"{name}.onnx"
    t = time.perf_counter()
    exporter = export_onnx(graph, path, size, 3)
    export_s = time.perf_counter() - t
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    batch = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)

    def timed(fn, x, n):
        fn(x)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    with torch.inference_mode():
        def torch_fn(x):
            return graph(torch.from_numpy(x))

        def ort_fn(x):
            return session.run(None, {"images": x})[0]

        diff = float(np.abs(torch_fn(batch).numpy() - ort_fn(batch)).max())
        out = {"image_size": size, "threads": threads, "exporter": exporter, "export_s": round(export_s, 1),
               "max_abs_diff": diff}
        for label, fn in (("pytorch", torch_fn), ("onnxruntime", ort_fn)):
            out[f"{label}_single_ms"] = round(timed(fn, one, reps) * 1000, 2)
            out[f"{label}_batch32_images_per_s"] = round(32 / timed(fn, batch, max(3, reps // 5)), 1)
    out["speedup_single"] = round(out["pytorch_single_ms"] / out["onnxruntime_single_ms"], 2)
    out["speedup_batch32"] = round(out["onnxruntime_batch32_images_per_s"] / out["pytorch_batch32_images_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000, help="requests to send (stops earlier at --max-seconds)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-seconds", type=float, default=300.0, help="bound on the load phase")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the served digits run")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for each runtime and the server's model")
    ap.add_argument("--reps", type=int, default=50, help="timed repetitions per runtime measurement")
    ap.add_argument("--skip-serve", action="store_true", help="only the runtime comparison")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="podium-bench-serve-") as tmp:
        work = Path(tmp)
        runtimes = {name: runtime_bench(name, size, args.threads, args.reps, work)
                    for name, size in (("podium_cnn", 32), ("efficientnet_lite0", 224))}
        served = None if args.skip_serve else serve_bench(args, work)
    print(f"{'model':<20}{'PyTorch 1 img ms':>18}{'ORT 1 img ms':>14}{'PyTorch b32 img/s':>19}{'ORT b32 img/s':>15}")
    for name, r in runtimes.items():
        print(f"{name:<20}{r['pytorch_single_ms']:>18}{r['onnxruntime_single_ms']:>14}"
              f"{r['pytorch_batch32_images_per_s']:>19}{r['onnxruntime_batch32_images_per_s']:>15}")
    if served:
        print(f"serve: {served['requests']} requests ({served['asked']} asked) at concurrency {served['concurrency']}: "
              f"{served['errors']} errors, {served['req_per_s']} req/s, p50 {served['p50_ms']} ms, p99 "
              f"{served['p99_ms']} ms, RSS {served['rss_before_mb']} -> {served['rss_after_mb']} MB, mean batch "
              f"{served['mean_batch']}")
    write_results(RESULTS, {"benchmark": "serve", "runtimes": runtimes, "serve": served})


if __name__ == "__main__":
    main()
