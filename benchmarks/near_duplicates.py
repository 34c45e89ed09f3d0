"""Near-duplicate search of `podium data check`: hash speed, pair-search speed and the default distance.

On Fashion-MNIST's 60,000 training images (decoded once into memory, so only hashing is timed):
  hash       podium's sketch per image (pHash by PIL resize to 32x32 + two small matmuls with a DCT basis, and a
             16x16 thumbnail), beside the `imagehash` package's phash (PIL resize + scipy DCT) when importable
  pairs      all-pairs Hamming distances <= d in blocks with numpy's popcount: seconds, and how many pairs each d
             proposes; then how many the thumbnail correlation (>= 0.99) confirms
  planted    1,000 images copied with a 10-25% brightness gain and noise (sigma 6): the share of copies each d
             proposes, and the share the two steps (d <= 6, correlation >= 0.99) report
  check      `podium data check` end to end on the decoded competition folder, with and without the search

    make fashion-mnist && .venv/bin/python benchmarks/near_duplicates.py

Writes benchmarks/results/near_duplicates.json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.data.datasets import load_fashion_mnist
from podium.data.leakage import NEAR_DUP_DISTANCE, near_duplicate_pairs, near_pairs, sketch

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "near_duplicates.json"
FOLDER = HERE / "work" / "fashion-mnist"  # written by benchmarks/fashion_mnist.py (podium datasets make fashion-mnist)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def hash_all(images: list[Image.Image], fn) -> np.ndarray:
    return np.array([fn(im) for im in images], dtype=np.uint64)


def imagehash_phash():
    try:
        import imagehash
    except ImportError:
        return None
    return lambda im: int(str(imagehash.phash(im)), 16)


def planted(images: np.ndarray, n: int, seed: int = 0) -> list[Image.Image]:
    """n copies, each brightened by 10-25% and given Gaussian noise (sigma 6 grey levels)."""
    rng = np.random.default_rng(seed)
    out = []
    for x in images[:n].astype(np.float32):
        y = x * rng.uniform(1.1, 1.25) + rng.normal(0, 6, x.shape)
        out.append(Image.fromarray(np.clip(y, 0, 255).astype(np.uint8)))
    return out


def main() -> None:
    train_x = load_fashion_mnist()[0]
    images = [Image.fromarray(x) for x in train_x]
    res: dict = {"benchmark": "near_duplicates", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_images": len(images),
                 "loadavg_before": os.getloadavg()}
    sketches, sec = timed(lambda: [sketch(im) for im in images])
    hashes = np.array([s.phash for s in sketches], dtype=np.uint64)
    res["hash_seconds"] = {"podium sketch (pHash + thumbnail)": round(sec, 2)}
    other = imagehash_phash()
    if other is not None:
        theirs, sec = timed(hash_all, images, other)
        res["hash_seconds"]["imagehash.phash"] = round(sec, 2)
    print(f"hash 60,000 images: {res['hash_seconds']}", flush=True)

    (i, j, d), sec = timed(near_pairs, hashes, 8)
    res["pair_search_seconds_d8"] = round(sec, 2)
    _, sec4 = timed(near_pairs, hashes, 4)
    res["pair_search_seconds_d4"] = round(sec4, 2)
    res["pairs_within"] = {str(k): int((d <= k).sum()) for k in range(0, 9, 2)}
    (i, j, d, c), sec = timed(near_duplicate_pairs, sketches, NEAR_DUP_DISTANCE)
    res["confirmed_pairs_default"] = int(len(i))
    res["two_step_seconds_default"] = round(sec, 2)
    print(f"pair search: {sec4:.1f} s at d<=4, {res['pair_search_seconds_d8']:.1f} s at d<=8; pairs proposed within d: "
          f"{res['pairs_within']}; confirmed at d<={NEAR_DUP_DISTANCE}: {len(i)} ({sec:.1f} s)", flush=True)

    copies = [sketch(im) for im in planted(train_x, 1000)]
    gap = np.bitwise_count(np.array([s.phash for s in copies], dtype=np.uint64) ^ hashes[:1000])
    res["planted_proposed"] = {str(k): float((gap <= k).mean()) for k in range(0, 9, 2)}
    i, j, _, _ = near_duplicate_pairs(sketches[:1000] + copies, NEAR_DUP_DISTANCE)
    res["planted_reported"] = float(len({(a, b) for a, b in zip(i, j) if b == a + 1000}) / 1000)
    print(f"planted copies proposed within d: {res['planted_proposed']}; reported: {res['planted_reported']}",
          flush=True)

    if (FOLDER / "train.csv").exists():
        from podium.config import from_dict
        from podium.data.check import check_data

        cfg = from_dict({"data": {"train_csv": str(FOLDER / "train.csv"), "image_dir": str(FOLDER / "images")},
                         "cv": {"folds_file": str(FOLDER / "folds.csv")}})
        res["check_seconds"] = {}
        for name, dist in (("no near-dup search", -1), (f"near-dup search d<={NEAR_DUP_DISTANCE}", NEAR_DUP_DISTANCE)):
            report, sec = timed(check_data, cfg, dist)
            res["check_seconds"][name] = round(sec, 1)
            shown = [p for p in report.leakage if p.kind == "near-duplicate"]
            more = (int(shown[-1].where.split()[0])
                    if shown and shown[-1].where.endswith("more near-duplicate pairs") else 0)
            res.setdefault("check_near_duplicate_findings", {})[name] = len(shown) - (1 if more else 0) + more
        print(f"podium data check on 60,000 images: {res['check_seconds']}", flush=True)
    res["loadavg_after"] = os.getloadavg()
    res = write_results(RESULTS, res)


if __name__ == "__main__":
    main()
