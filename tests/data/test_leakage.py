"""Leakage checks: groups spanning folds and near-duplicate pictures across folds, on planted cases."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from podium.config import from_dict
from podium.data import leakage
from podium.data.check import check_data
from podium.data.leakage import near_duplicate_pairs, near_pairs, sketch


def _picture(seed: int, size: int = 48) -> np.ndarray:
    """A distinct picture with structure at several scales (smooth blobs + a few bars), RGB."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    img = np.asarray(coarse).astype(np.float32)
    for _ in range(3):
        y, x = rng.integers(0, size - 12, 2)
        img[y:y + 12, x:x + 4] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _near_copy(img: np.ndarray, seed: int) -> np.ndarray:
    """Brightened by 15% and noised (sigma 5 grey levels): a re-shot or re-encoded copy."""
    rng = np.random.default_rng(seed)
    return np.clip(img * 1.15 + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _sketch(a: np.ndarray):
    return sketch(Image.fromarray(a))


def _distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_near_copies_are_found_and_distinct_pictures_are_not(monkeypatch):
    monkeypatch.setattr(leakage, "PAIR_CHUNK", 5)  # candidate pairs correlated in many chunks
    originals = [_picture(s) for s in range(12)]
    copies = [_near_copy(img, 100 + s) for s, img in enumerate(originals)]
    sketches = [_sketch(x) for x in originals + copies]
    for s in range(12):
        assert _distance(sketches[s].phash, sketches[12 + s].phash) <= leakage.NEAR_DUP_DISTANCE
    i, j, _, corr = near_duplicate_pairs(sketches, leakage.NEAR_DUP_DISTANCE)
    assert sorted(zip(i.tolist(), j.tolist())) == [(s, 12 + s) for s in range(12)]  # each copy, nothing else
    assert (corr >= leakage.NEAR_DUP_CORRELATION).all()
    i, j, _, corr = near_duplicate_pairs(sketches, 64, min_corr=-1.0)  # every pair proposed, every pair correlated
    assert len(i) == 24 * 23 // 2 and (corr[j != i + 12] < leakage.NEAR_DUP_CORRELATION).all()
    grey = Image.fromarray(originals[0]).convert("L")
    assert sketches[0].phash == sketch(grey).phash  # the hash reads the grey picture, whatever the mode
    flat = _sketch(np.full((20, 20, 3), 90, np.uint8))
    assert len(near_duplicate_pairs(
        [flat, _sketch(np.full((20, 20, 3), 200, np.uint8))], 64)[0]) == 0  # flat: no pattern


def test_pair_search_matches_brute_force_across_blocks(monkeypatch):
    monkeypatch.setattr(leakage, "BLOCK", 7)  # many blocks, pairs straddling their edges
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (40, 3)).astype(np.uint64)
    near = base ^ flips[:, 0] ^ flips[:, 1] ^ flips[:, 2]  # at most 3 bits away from its original
    hashes = np.concatenate([base, near[:20]])
    i, j, d = near_pairs(hashes, 3)
    want = {(a, b, _distance(int(hashes[a]), int(hashes[b]))) for a in range(60) for b in range(a + 1, 60)
            if _distance(int(hashes[a]), int(hashes[b])) <= 3}
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == want
    assert {(k, 40 + k) for k in range(20)} <= {(a, b) for a, b, _ in want}


def _competition(root, folds: dict[str, int], group_col: str | None = "person"):
    """12 distinct pictures (4 persons x 3) plus planted copies, a hand-written folds file, a config."""
    img = root / "images"
    img.mkdir(parents=True)
    rows = []
    for k in range(12):
        Image.fromarray(_picture(k)).save(img / f"im{k:02d}.png")
        rows.append((f"im{k:02d}", "ab"[k % 2], f"person{k // 3}"))
    Image.fromarray(_near_copy(_picture(4), 7)).save(img / "near4.png")  # near-copy of im04 (person1), another person
    rows.append(("near4", "a", "person9"))
    Image.fromarray(_picture(5)).save(img / "same5.png")  # identical to im05: duplicate-image, not near-duplicate
    rows.append(("same5", "b", "person8"))
    pd.DataFrame(rows, columns=["id", "label", "person"]).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": list(folds), "fold": list(folds.values())}).to_csv(root / "folds.csv", index=False)
    cv = {"n_folds": 2, "folds_file": str(root / "folds.csv")} | ({"group_col": group_col} if group_col else {})
    raw = {"data": {"train_csv": str(root / "train.csv"), "image_dir": str(img)}, "cv": cv}
    (root / "cfg.yaml").write_text(yaml.safe_dump(raw))
    return from_dict(raw), root / "cfg.yaml"


def _by_person(split_person: str | None) -> dict[str, int]:
    """Each person in one fold (persons 0, 2 -> fold 0; 1, 3 -> fold 1), except split_person, spread over both."""
    folds = {f"im{k:02d}": (k // 3) % 2 for k in range(12)}
    if split_person is not None:
        first = 3 * int(split_person[-1])
        folds[f"im{first:02d}"] = 1 - folds[f"im{first:02d}"]
    return folds | {"near4": 0, "same5": 0}  # near4 in fold 0, its original im04 (person1) in fold 1


def test_a_group_split_across_folds_is_reported_with_its_ids(tmp_path):
    cfg, _ = _competition(tmp_path, _by_person("person2"))
    found = [p for p in check_data(cfg).leakage if p.kind == "group-across-folds"]
    assert len(found) == 1
    assert "person 'person2'" in found[0].where and "folds.csv" in found[0].where
    assert "fold 0: im07, im08" in found[0].message and "fold 1: im06" in found[0].message
    assert "cv.strategy: group" in found[0].message and "podium split CONFIG --overwrite" in found[0].message


def test_groups_kept_in_one_fold_or_no_group_col_report_nothing(tmp_path):
    cfg, _ = _competition(tmp_path / "a", _by_person(None))
    assert not [p for p in check_data(cfg).leakage if p.kind == "group-across-folds"]
    cfg, _ = _competition(tmp_path / "b", _by_person("person2"), group_col=None)
    assert not [p for p in check_data(cfg).leakage if p.kind == "group-across-folds"]


def test_a_near_duplicate_across_folds_is_reported_and_distinct_pictures_are_not(tmp_path):
    cfg, _ = _competition(tmp_path, _by_person(None))
    leaks = check_data(cfg).leakage
    near = [p for p in leaks if p.kind == "near-duplicate"]
    assert len(near) == 1, [str(p) for p in near]
    assert "'im04' and 'near4'" in near[0].message and "in folds 1 and 0" in near[0].message
    assert "correlate 0.99" in near[0].message
    assert "rows 6, 14" in near[0].where
    # the identical copy is reported once, by the exact check, not again as a near-duplicate
    assert [p for p in leaks if p.kind == "duplicate-image" and "same5" in p.where]
    assert not check_data(cfg, near_dup_distance=-1).leakage[1:]  # -1 turns the search off: only the duplicate left


def test_near_duplicates_in_one_fold_are_not_leakage(tmp_path):
    folds = _by_person(None) | {"near4": 1}  # now beside its original, in fold 1
    cfg, _ = _competition(tmp_path, folds)
    assert not [p for p in check_data(cfg).leakage if p.kind == "near-duplicate"]


def test_findings_beyond_the_first_ones_are_counted_not_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(leakage, "SHOWN", 1)
    folds = {f"im{k:02d}": k % 2 for k in range(12)} | {"near4": 0, "same5": 0}  # every person in both folds
    cfg, _ = _competition(tmp_path, folds)
    found = [p for p in check_data(cfg).leakage if p.kind == "group-across-folds"]
    assert len(found) == 2 and found[1].where == "3 more person values span folds"


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from podium import cli

    monkeypatch.setattr(sys, "argv", ["podium", *args])
    monkeypatch.setitem(cli._state, "debug", False)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code, " ".join((captured.out + captured.err).split())


def test_cli_reports_leakage_and_fails_only_with_strict(tmp_path, monkeypatch, capsys):
    _, cfg_path = _competition(tmp_path, _by_person("person2"))
    code, out = _main(monkeypatch, capsys, "data", "check", str(cfg_path))
    assert code == 0 and "[group-across-folds]" in out and "[near-duplicate]" in out
    code, _ = _main(monkeypatch, capsys, "data", "check", str(cfg_path), "--strict")
    assert code == 2
    code, out = _main(monkeypatch, capsys, "data", "check", str(cfg_path), "--near-dup-distance", "-1")
    assert code == 0 and "[near-duplicate]" not in out


def test_without_a_folds_file_near_duplicates_are_reported_as_able_to_span_folds(tmp_path):
    cfg, _ = _competition(tmp_path, _by_person("person2"))
    (tmp_path / "folds.csv").unlink()
    leaks = check_data(cfg).leakage
    assert not [p for p in leaks if p.kind == "group-across-folds"]  # no folds yet: nothing spans them
    near = [p for p in leaks if p.kind == "near-duplicate"]
    assert len(near) == 1 and "no folds file yet" in near[0].message
