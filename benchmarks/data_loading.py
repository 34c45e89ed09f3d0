"""Images per second delivered to the training loop: ImageFolder + PIL vs podium's decode cache.

    python benchmarks/data_loading.py            # 5,000 images, ~3 minutes on 2 cores
    python benchmarks/data_loading.py --n 1000   # a quick run

Data: N generated 256x256 RGB images, half PNG and half JPEG, in 10 class folders (ImageFolder's layout),
written once under benchmarks/work/ and reused.
(a) torchvision ImageFolder, PIL decoding and ToTensor per item, through a DataLoader at each worker count
    (persistent workers, so worker start-up is not counted against it); the best count is the baseline.
(b) podium: build_cache once (timed, from an empty cache folder), then batch_loader over CachedDataset, as
    podium's training reads it; a fresh process, so its RSS is its own.
(c) for reference, the same dataset reading the memmap by fancy indexing instead of pread: faster once
    every page is mapped, but RSS grows with the cache (the pages count as file-backed RSS).
Each mode runs the same batch size and shuffled order; the figure is the median epoch. The machine may be
shared: compare modes through the ratios measured in one run. Results: benchmarks/results/data_loading.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work"
RESULTS = ROOT / "results" / "data_loading.json"
SIDE = 256  # px: generated images and the cache
CLASSES = 10
JPEG_QUALITY = 90


# ---------------------------------------------------------------------------------------------- data


def _make_image(args: tuple[int, str]) -> None:
    """A smooth random scene with shapes and sensor-like noise, so PNG and JPEG sizes are photo-like."""
    import cv2
    from PIL import Image

    seed, path = args
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = tuple(int(c) for c in rng.integers(0, SIDE, 2))
        cv2.circle(img, center, int(rng.integers(10, 80)), colour, thickness=-1)
    noisy = img.astype(np.int16) + rng.normal(0, 4, img.shape).round().astype(np.int16)  # sigma 4 grey levels
    out = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    out.save(path, quality=JPEG_QUALITY) if path.endswith(".jpg") else out.save(path)


def generate(n: int) -> Path:
    """benchmarks/work/images-<n>/class_<k>/<i>.(png|jpg); made once, reused while its marker matches."""
    root = WORK / f"images-{n}"
    marker = root / "complete.json"
    spec = {"n": n, "side": SIDE, "classes": CLASSES, "jpeg_quality": JPEG_QUALITY, "version": 1}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root
    shutil.rmtree(root, ignore_errors=True)
    jobs = []
    for i in range(n):
        folder = root / f"class_{i % CLASSES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((i, str(folder / f"{i:06d}.{'png' if i % 2 == 0 else 'jpg'}")))
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_make_image, jobs, chunksize=64))
    print(f"generated {n:,} images in {time.perf_counter() - t:.0f} s under {root}", file=sys.stderr)
    marker.write_text(json.dumps(spec))
    return root


# ------------------------------------------------------------------------------------------- measures


def _status_mb() -> dict[str, float]:
    """This process's resident memory (MB) from /proc/self/status: total, anonymous, file-backed."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in fields:
                out[fields[key]] = int(line.split()[1]) / 1024  # kB -> MB (MiB)
    return out


def _epochs(loader, epochs: int) -> list[float]:
    """img/s of each full pass; the batch is only touched, as a loop handing it to a model would."""
    rates = []
    for _ in range(epochs):
        t, n = time.perf_counter(), 0
        for x, _y in loader:
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t))
    return rates


def measure_imagefolder(root: Path, workers: list[int], batch: int, epochs: int) -> dict:
    import torch
    from torchvision import datasets, transforms

    # One intra-op thread: DataLoader workers set this themselves, and with 0 workers two threads on two
    # busy cores made ToTensor ~4x slower here. Every worker count gets its best setting.
    torch.set_num_threads(1)
    ds = datasets.ImageFolder(str(root), transform=transforms.ToTensor())
    for p, _ in ds.samples:  # warm the page cache, so neither mode pays for the first disk read
        Path(p).read_bytes()
    out = {}
    for w in workers:
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=w,
                                             persistent_workers=w > 0, generator=torch.Generator().manual_seed(0))
        rates = _epochs(loader, epochs)
        out[w] = {"img_per_s": float(np.median(rates)), "epochs": rates}
        print(f"(a) ImageFolder+PIL, {w} worker(s): {out[w]['img_per_s']:,.0f} img/s", file=sys.stderr)
        del loader
    return out


def measure_podium(root: Path, batch: int, epochs: int, variant: str) -> dict:
    """Runs in its own process (see main): build the cache, then read it as training does."""
    import torch
    from torchvision import datasets

    from podium.data.cache import CachedDataset, batch_loader, build_cache

    torch.set_num_threads(1)  # the reading loop is single-threaded; keep torch from spreading its copies
    samples = datasets.ImageFolder(str(root)).samples
    paths, targets = [p for p, _ in samples], np.array([t for _, t in samples])
    cache_dir = WORK / f"cache-{len(paths)}"
    result: dict = {"rss_mb_before": _status_mb()}
    if variant == "pread":  # the cache is built (and timed) once, by the first podium measurement
        shutil.rmtree(cache_dir, ignore_errors=True)
        t = time.perf_counter()
        build_cache(paths, SIDE, "resize", 3, cache_dir, progress=False)
        result["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cache = build_cache(paths, SIDE, "resize", 3, cache_dir, progress=False)
    result["reuse_s"] = time.perf_counter() - t
    assert cache.reused
    images = cache.images if variant == "pread" else np.asarray(cache.images)  # ndarray view: fancy indexing
    ds = CachedDataset(images, targets, np.arange(len(paths)))
    assert (ds._file is not None) == (variant == "pread")
    loader = batch_loader(ds, batch, shuffle=True, seed=0)
    rates = _epochs(loader, epochs)
    result |= {"img_per_s": float(np.median(rates)), "epochs": rates}
    peak = {"rss": 0.0, "anon": 0.0, "file": 0.0}
    for x, _y in loader:  # one more pass, sampling memory after every batch (kept out of the timing)
        peak = {k: max(v, _status_mb()[k]) for k, v in peak.items()}
    result["peak_mb_while_iterating"] = peak
    return result


def _in_subprocess(root: Path, batch: int, epochs: int, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--_podium", variant, "--_root", str(root), "--batch-size", str(batch),
           "--epochs", str(epochs)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"podium measurement failed:\n{done.stderr}")
    return json.loads(done.stdout)


def _machine() -> dict:
    import PIL
    import torch
    import torchvision

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu": model,
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "platform": platform.platform()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="images to generate and read")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="timed passes of podium's loader (median reported)")
    ap.add_argument("--baseline-epochs", type=int, default=2, help="timed passes of ImageFolder per worker count")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="ImageFolder worker counts to try")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--_podium", choices=["pread", "fancy"], help=argparse.SUPPRESS)
    ap.add_argument("--_root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._podium:
        print(json.dumps(measure_podium(args._root, args.batch_size, args.epochs, args._podium)))
        return

    started = time.time()
    load_before = os.getloadavg()
    root = generate(args.n)
    podium = _in_subprocess(root, args.batch_size, args.epochs, "pread")
    print(f"(b) podium cache: {podium['img_per_s']:,.0f} img/s, build {podium['build_s']:.1f} s", file=sys.stderr)
    baseline = measure_imagefolder(root, args.workers, args.batch_size, args.baseline_epochs)
    fancy = _in_subprocess(root, args.batch_size, args.epochs, "fancy")
    best_w = max(baseline, key=lambda w: baseline[w]["img_per_s"])
    best = baseline[best_w]["img_per_s"]
    ratio = podium["img_per_s"] / best

    rows = [(f"(a) ImageFolder + PIL, {w} worker(s)", baseline[w]["img_per_s"], "") for w in args.workers]
    rows += [("(b) podium cache (pread, in-process)", podium["img_per_s"],
              "rss {rss:.0f} MB (anon {anon:.0f}, file {file:.0f})".format(**podium["peak_mb_while_iterating"])),
             ("(c) memmap fancy indexing (reference)", fancy["img_per_s"],
              "rss {rss:.0f} MB (anon {anon:.0f}, file {file:.0f})".format(**fancy["peak_mb_while_iterating"]))]
    print(f"\n{args.n:,} images {SIDE}x{SIDE}, batch {args.batch_size}, {os.cpu_count()} CPUs")
    print(f"{'mode':42} {'img/s':>9}  peak memory while iterating")
    for name, rate, mem in rows:
        print(f"{name:42} {rate:9,.0f}  {mem}")
    print(f"build (one time): {podium['build_s']:.1f} s ({args.n / podium['build_s']:,.0f} img/s); "
          f"reuse: {podium['reuse_s'] * 1000:.0f} ms")
    print(f"ratio (b)/(a best, {best_w} workers): {ratio:.1f}x  (target >= 20x); "
          f"(c)/(a): {fancy['img_per_s'] / best:.1f}x")

    result = {
        "benchmark": "data_loading",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"n_images": args.n, "side_px": SIDE, "formats": "half PNG, half JPEG (quality 90)",
                     "classes": CLASSES, "batch_size": args.batch_size, "podium_epochs": args.epochs,
                     "baseline_epochs": args.baseline_epochs, "baseline_workers": args.workers,
                     "cache": {"image_size": SIDE, "resize": "resize", "channels": 3}},
        "machine": _machine() | {"loadavg_1min_start": load_before[0], "loadavg_1min_end": os.getloadavg()[0]},
        "imagefolder_pil": {str(w): v for w, v in baseline.items()} | {"best_workers": best_w, "best_img_per_s": best},
        "podium_cache": podium,
        "memmap_fancy_indexing": fancy,
        "ratio_podium_over_imagefolder": ratio,
        "target_ratio": 20,
        "wall_s": time.time() - started,
    }
    write_results(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
