"""Leakage checks of `podium data check` that need the folds file: groups spanning folds, near-duplicates.

Both make a CV score lie. S1/S4 split by image and put pictures of one person in train and validation: the model
recognised the person, not the label. A group (cv.group_col) found in two folds of the persisted folds file says
the split does that. Near-duplicates (the same picture re-encoded, brightened, slightly noised) in different folds
do the same without any group column; identical pictures are already reported by check.py (`duplicate-image`)
and are left out here.

Near-duplicates are found in two steps, both from what check.py computes while it reads each image anyway. A 64-bit
perceptual hash (pHash: the signs of the 8x8 lowest DCT frequencies of the picture shrunk to 32x32 grey, relative
to their median) proposes every pair within --near-dup-distance bits, compared all-pairs in blocks with numpy's
popcount; the correlation of the two 16x16 grey thumbnails (blind to brightness and contrast) then confirms it. The
hash alone cannot tell apart two different low-resolution pictures of one kind of thing: on Fashion-MNIST, 650,000
pairs lie within 6 bits, only 836 of them correlate above 0.99, and so do all the brightened and noised copies
the hash proposes.
60,000 images take seconds (benchmarks/near_duplicates.py measures it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from podium.config import Config
from podium.data.sources import Table
from podium.data.splits import folds_path, read_folds
from podium.errors import Problem, fmt_list

HASH_SIDE = 32  # the picture is shrunk to 32x32 grey before the DCT
HASH_LOW = 8  # the 8x8 lowest frequencies give the 64 bits
THUMB_SIDE = 16  # side of the grey thumbnail kept per image (256 bytes) to confirm a candidate pair
NEAR_DUP_DISTANCE = 6  # default of --near-dup-distance: most differing hash bits for a candidate pair (negative: off);
#                        bits come in pairs (half of them are set), so 6 and 7 are the same; 6 finds 97% of the copies
NEAR_DUP_CORRELATION = 0.99  # thumbnails' correlation that confirms a candidate as a near-duplicate
SHOWN = 20  # findings listed one by one for each kind; the rest are counted in one more line
BLOCK = 256  # rows of the pairwise XOR per step: 256 x 60,000 x 8 bytes = 123 MB at most
PAIR_CHUNK = 65536  # candidate pairs whose thumbnails are correlated per step (2 x 64 MB of float32)

# orthonormal DCT-II basis rows 0..7 over 32 samples: low = B @ x @ B.T is the 8x8 corner of the 2-D DCT
_k, _n = np.meshgrid(np.arange(HASH_LOW), np.arange(HASH_SIDE), indexing="ij")
_BASIS = (np.cos(np.pi * (2 * _n + 1) * _k / (2 * HASH_SIDE)) * np.sqrt(2 / HASH_SIDE)).astype(np.float32)
_BASIS[0] /= np.sqrt(2)


class Sketch(NamedTuple):
    phash: int  # 64-bit perceptual hash
    thumb: np.ndarray  # THUMB_SIDE x THUMB_SIDE grey thumbnail, uint8


def sketch(img: Image.Image) -> Sketch:
    """What the near-duplicate search keeps of a decoded image (any mode): its pHash and a grey thumbnail.
    pHash: which of the 64 lowest DCT frequencies lie above the median of the 63 non-constant ones."""
    grey = img.convert("L")
    small = np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR), dtype=np.float32)
    low = (_BASIS @ small @ _BASIS.T).ravel()
    bits = low > np.median(low[1:])
    thumb = np.asarray(grey.resize((THUMB_SIDE, THUMB_SIDE), Image.BOX), dtype=np.uint8)
    return Sketch(int(np.packbits(bits).view(">u8")[0]), thumb)


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair i < j whose 64-bit hashes differ in at most max_distance bits, as (i, j, distance) arrays."""
    h = np.asarray(hashes, dtype=np.uint64)
    out_i, out_j, out_d = [], [], []
    for start in range(0, len(h), BLOCK):
        rows = h[start:start + BLOCK]
        dist = np.bitwise_count(rows[:, None] ^ h[None, start:])  # the block against itself and everything after
        i, j = np.nonzero(dist <= max_distance)
        keep = j > i  # upper triangle: each pair once, no self-pairs
        out_i.append(i[keep] + start)
        out_j.append(j[keep] + start)
        out_d.append(dist[i[keep], j[keep]])
    if not out_i:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.uint8)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def _unit_rows(thumbs: np.ndarray) -> np.ndarray:
    """Each thumbnail centred and scaled to length 1, so a dot product is a correlation (0 for a flat picture)."""
    x = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def near_duplicate_pairs(sketches: list[Sketch], max_distance: int, min_corr: float = NEAR_DUP_CORRELATION
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j within max_distance hash bits whose thumbnails correlate >= min_corr: (i, j, distance, corr)."""
    i, j, dist = near_pairs(np.array([s.phash for s in sketches], dtype=np.uint64), max_distance)
    unit = _unit_rows(np.stack([s.thumb for s in sketches])) if sketches else np.zeros((0, 1), np.float32)
    corr = np.concatenate([np.einsum("ij,ij->i", unit[i[k:k + PAIR_CHUNK]], unit[j[k:k + PAIR_CHUNK]])
                           for k in range(0, len(i), PAIR_CHUNK)] or [np.zeros(0, np.float32)])
    keep = corr >= min_corr
    return i[keep], j[keep], dist[keep], corr[keep]


def _capped(found: list[Problem], kind: str, what: str) -> list[Problem]:
    if len(found) <= SHOWN:
        return found
    more = Problem(kind, f"{len(found) - SHOWN} more {what}",
                   "not listed one by one (the first ones above show the pattern)")
    return found[:SHOWN] + [more]


def read_current_folds(cfg: Config) -> tuple[str, dict[str, int]] | None:
    """(path, id -> fold) of the persisted folds file, or None when there is none yet."""
    path = folds_path(cfg)
    if not path.exists():
        return None
    folds = read_folds(path)
    return str(path), dict(zip(folds["id"].astype(str), folds["fold"].astype(int)))


def groups_across_folds(train: pd.DataFrame, folds: dict[str, int], group_col: str, source: str,
                        n_ids: int = 3) -> list[Problem]:
    """Each group (train column `group`) whose images sit in more than one fold, with a few ids per fold."""
    frame = train.assign(fold=train["id"].map(folds)).dropna(subset=["fold", "group"])
    found = []
    for group, rows in frame.groupby("group", sort=True):
        if rows["fold"].nunique() < 2:
            continue
        per_fold = "; ".join(f"fold {int(k)}: {fmt_list(r['id'], n_ids)}" for k, r in rows.groupby("fold"))
        found.append(Problem(
            "group-across-folds", f"{source}: {group_col} '{group}'",
            f"in {rows['fold'].nunique()} folds ({per_fold}): validation sees a {group_col} training saw, so CV "
            f"overstates. Set cv.strategy: group (or stratified_group) and run `podium split CONFIG --overwrite`",
        ))
    return found


def near_duplicates_across_folds(train: Table, sketches: dict[str, Sketch | None], digests: dict[str, str | None],
                                 folds: dict[str, int] | None, max_distance: int) -> list[Problem]:
    """Near-duplicate train pictures in different folds (any pair when there is no folds file yet), leaving out
    identical pictures (check.py's duplicate-image) and pairs of one group (group-across-folds covers those)."""
    frame = train.frame[train.frame["path"].map(lambda p: isinstance(p, str) and sketches.get(p) is not None)]
    frame = frame.drop_duplicates("path").reset_index(drop=True)  # a file listed twice is a duplicate-id problem
    i, j, dist, corr = near_duplicate_pairs([sketches[p] for p in frame["path"]], max_distance)
    ids, rows = frame["id"].to_numpy(), frame["row"].to_numpy()
    digest = pd.factorize(frame["path"].map(digests))[0]
    keep = digest[i] != digest[j]
    fold = frame["id"].map(folds or {}).fillna(-1).to_numpy(dtype=int)
    if folds:
        keep &= (fold[i] != fold[j]) & (fold[i] >= 0) & (fold[j] >= 0)
    if "group" in frame:
        group = frame["group"].to_numpy()
        keep &= group[i] != group[j]
    found = []
    for a, b, d, c in sorted(zip(i[keep], j[keep], dist[keep], corr[keep]), key=lambda t: (-t[3], t[0], t[1])):
        place = f"in folds {fold[a]} and {fold[b]}" if folds else "no folds file yet: they can land in two folds"
        found.append(Problem(
            "near-duplicate", f"{train.source} rows {rows[a]}, {rows[b]}",
            f"'{ids[a]}' and '{ids[b]}' are near-duplicates (hash {d}/64 bits apart, thumbnails correlate {c:.3f}), "
            f"{place}: give them one cv.group_col value or drop one (--near-dup-distance sets the search radius)",
        ))
    return found


def leakage_findings(cfg: Config, train: Table, sketches: dict[str, Sketch | None], digests: dict[str, str | None],
                     max_distance: int = NEAR_DUP_DISTANCE) -> list[Problem]:
    """Every leakage finding that involves folds: groups spanning folds, near-duplicates across folds."""
    current = read_current_folds(cfg)
    found: list[Problem] = []
    if current is not None and cfg.cv.group_col:
        spans = groups_across_folds(train.frame, current[1], cfg.cv.group_col, current[0])
        found += _capped(spans, "group-across-folds", f"{cfg.cv.group_col} values span folds")
    if max_distance >= 0:
        pairs = near_duplicates_across_folds(train, sketches, digests, current[1] if current else None, max_distance)
        found += _capped(pairs, "near-duplicate", "near-duplicate pairs")
    return found
