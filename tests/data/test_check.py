"""`podium data check`: every finding on tiny generated competitions, and the command's exit codes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from podium.config import from_dict
from podium.data.check import check_data, print_check
from podium.errors import PodiumError

ROOT = Path(__file__).resolve().parents[2]
PODIUM = ROOT / ".venv" / "bin" / "podium"


def _rgb(seed: int, h: int = 16, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_odd_modes(img_dir: Path) -> dict[str, str]:
    """One image per awkward mode; returns id → the mode the file holds."""
    Image.fromarray(_rgb(100)).convert("RGBA").save(img_dir / "rgba.png")
    Image.fromarray(_rgb(101)).convert("P").save(img_dir / "pal.png")
    Image.fromarray((np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)).save(img_dir / "deep.png")
    Image.fromarray(_rgb(102)).convert("CMYK").save(img_dir / "cmyk.jpg")
    Image.fromarray(_rgb(103)[:, :, 0]).save(img_dir / "gray.bmp")
    rot = Image.fromarray(_rgb(104, h=8, w=16))  # stored 16 wide x 8 high, displayed 8 wide x 16 high
    exif = rot.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rot.save(img_dir / "rotated.jpg", exif=exif, quality=95)
    return {"rgba": "RGBA", "pal": "P", "deep": "I;16", "cmyk": "CMYK", "gray": "L", "rotated": "RGB"}


def make_clean(root: Path) -> Path:
    """8 plain RGB images + one per awkward mode, all listed, two classes; a test CSV of 3 more. Returns config."""
    img = root / "images"
    img.mkdir(parents=True)
    rows = []
    for i in range(8):
        Image.fromarray(_rgb(i)).save(img / f"im{i}.png")
        rows.append((f"im{i}", "ab"[i % 2]))
    rows += [(ident, "a") for ident in _write_odd_modes(img)]
    (root / "train.csv").write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in rows))
    for i in range(3):
        Image.fromarray(_rgb(50 + i)).save(img / f"t{i}.jpg")
    (root / "test.csv").write_text("id\n" + "".join(f"t{i}\n" for i in range(3)))
    cfg = {"data": {"train_csv": str(root / "train.csv"), "test_csv": str(root / "test.csv"),
                    "image_dir": str(img), "classes": ["a", "b"]}, "cv": {"n_folds": 2}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return root / "cfg.yaml"


def make_messy(root: Path) -> Path:
    """The clean competition plus one of every problem, leakage and warning data check can find."""
    cfg_path = make_clean(root)
    img = root / "images"
    png = (img / "im0.png").read_bytes()
    (img / "cut.png").write_bytes(png[: len(png) // 2])  # truncated inside the pixel data
    (img / "empty.png").write_bytes(b"")
    (img / "junk.jpg").write_bytes(b"this is not a jpeg" * 20)
    Image.fromarray(_rgb(1)).save(img / "copy_of_im1.png")  # same pixels as im1 (label b)
    Image.fromarray(_rgb(3)).save(img / "relabelled_im3.png")  # same pixels as im3 (label b), labelled a
    Image.fromarray(_rgb(60)).save(img / "stray.png")  # in the folder, in no CSV
    # rows 16..24: broken files, a missing file, a repeated id (im0), two copied pictures, bad labels
    extra = ["cut,a", "empty,b", "junk,a", "gone,a", "im0,a", "copy_of_im1,b", "relabelled_im3,a",
             "nolabel,", "im5,zebra"]
    Image.fromarray(_rgb(70)).save(img / "nolabel.png")
    with open(root / "train.csv", "a") as f:
        f.write("".join(line + "\n" for line in extra))
    # a test row naming a train file: the same picture in train and test
    (root / "test.csv").write_text("id\nt0\nt1\nt2\nim4\n")
    return cfg_path


def _cfg(path: Path):
    return from_dict(yaml.safe_load(path.read_text()))


def _kinds(items) -> list[str]:
    return sorted(p.kind for p in items)


def test_clean_competition_reads_every_mode(tmp_path):
    report = check_data(_cfg(make_clean(tmp_path)))
    assert report.problems == [] and report.leakage == []
    assert report.counts == {"train rows": 14, "test rows": 3, "images read": 17, "classes": 2}
    assert report.classes == {"a": 10, "b": 4}
    assert report.modes == {"RGB": 12, "RGBA": 1, "P": 1, "I;16": 1, "CMYK": 1, "L": 1}
    assert report.sizes == {(16, 16): 16, (8, 16): 1}  # the EXIF-rotated one is 8 wide once turned upright


def test_messy_competition_names_every_finding(tmp_path):
    report = check_data(_cfg(make_messy(tmp_path)))
    problems = {p.kind: p for p in report.problems}
    assert _kinds(report.problems) == sorted([
        "truncated", "zero-byte", "unreadable", "missing-file", "duplicate-id", "conflicting-duplicate",
        "empty-label", "unknown-label", "duplicate-id",  # im5 listed twice as well as im0
    ])  # and no conflicting-duplicate for im5 'b' vs 'zebra': one file listed twice is a duplicate id, reported once
    # each problem names the CSV row (header = row 1; the extra rows start at row 16) and the file
    assert "train.csv row 16" in problems["truncated"].where and "cut.png" in problems["truncated"].where
    assert "row 17" in problems["zero-byte"].where and "empty.png" in problems["zero-byte"].where
    assert "row 18" in problems["unreadable"].where and "junk.jpg" in problems["unreadable"].where
    assert "row 19" in problems["missing-file"].where and "'gone." in problems["missing-file"].message
    assert "row 23" in problems["empty-label"].where
    assert "row 24" in problems["unknown-label"].where and "zebra" in problems["unknown-label"].message
    dup_rows = sorted(p.where for p in report.problems if p.kind == "duplicate-id")
    assert dup_rows == [f"{tmp_path / 'train.csv'} rows 2, 20", f"{tmp_path / 'train.csv'} rows 7, 24"]
    conflict = problems["conflicting-duplicate"]
    assert "relabelled_im3.png" in conflict.where and "im3.png" in conflict.where and "a, b" in conflict.message

    leaks = {p.kind: p for p in report.leakage}
    assert _kinds(report.leakage) == ["duplicate-image", "train-test-duplicate"]
    # copies are found by decoded pixels; im0 listed twice is one file, already a duplicate id
    assert "copy_of_im1.png" in leaks["duplicate-image"].where and "row 3 " in leaks["duplicate-image"].where
    assert "im4.png" in leaks["train-test-duplicate"].where and "test.csv row 5" in leaks["train-test-duplicate"].where
    assert [p.where for p in report.warnings if p.kind == "unlisted-file"] == [str(tmp_path / "images" / "stray.png")]


def test_same_picture_different_file_format_is_found(tmp_path):
    """The hash is of decoded pixels, so a PNG and a lossless re-save as BMP are one picture."""
    img = tmp_path / "images"
    img.mkdir()
    for i in range(4):
        Image.fromarray(_rgb(i)).save(img / f"x{i}.png")
    Image.fromarray(_rgb(0)).save(img / "x0_again.bmp")
    (tmp_path / "train.csv").write_text("id,label\nx0,a\nx1,a\nx2,b\nx3,b\nx0_again,a\n")
    cfg = from_dict({"data": {"train_csv": str(tmp_path / "train.csv"), "image_dir": str(img)}, "cv": {"n_folds": 2}})
    report = check_data(cfg)
    assert report.problems == []
    assert [p.kind for p in report.leakage] == ["duplicate-image"]
    assert "x0.png" in report.leakage[0].where and "x0_again.bmp" in report.leakage[0].where


def test_folder_source_and_rare_and_empty_classes(tmp_path):
    for cls, n in (("cat", 3), ("dog", 1)):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_rgb(200 + 10 * n + i)).save(tmp_path / "train" / cls / f"{i}.png")
    cfg = from_dict({"data": {"train_dir": str(tmp_path / "train"), "classes": ["cat", "dog", "emu"]},
                     "cv": {"n_folds": 2}})
    report = check_data(cfg)
    assert report.problems == []
    assert report.classes == {"cat": 3, "dog": 1, "emu": 0}
    found = {(p.kind, p.where) for p in report.warnings}
    assert found == {("rare-class", "class 'dog'"), ("empty-class", "class 'emu'")}


def test_print_check_shows_tables_problems_and_verdict(tmp_path, capsys):
    report = check_data(_cfg(make_messy(tmp_path)))
    print_check(report)
    out = capsys.readouterr().out
    assert "class distribution" in out and "█" * 30 in out  # the largest class gets the full bar
    assert "CMYK" in out and "I;16" in out and "8×16" in out
    for name in ("cut.png", "empty.png", "junk.jpg", "gone", "stray.png", "zebra"):
        assert name in out
    assert f"{len(report.problems)} problem(s)" in out.splitlines()[-1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(PODIUM), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_exit_codes_and_untouched_files(tmp_path):
    clean, messy = tmp_path / "clean", tmp_path / "messy"
    clean_cfg, messy_cfg = make_clean(clean), make_messy(messy)
    before = _snapshot(tmp_path)
    ok = _run("data", "check", str(clean_cfg), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "clean" in ok.stdout.splitlines()[-1]
    bad = _run("data", "check", str(messy_cfg), cwd=tmp_path)
    assert bad.returncode == 2
    assert "cut.png" in bad.stdout and "Traceback" not in bad.stderr
    assert _snapshot(tmp_path) == before  # nothing of the user's was written or changed


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run `podium ARGS` in-process through cli.main (which maps PodiumError to exit 2)."""
    from podium import cli

    monkeypatch.setattr(sys, "argv", ["podium", *args])
    monkeypatch.setitem(cli._state, "debug", False)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code, " ".join((captured.out + captured.err).split())  # unwrap rich's line breaks


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda root: (root / "train.csv").write_text("name,label\nim0,a\n"),
         "has no column 'id' (set by data.id_col)"),
        (lambda root: (root / "images").rename(root / "pics"), "Image folder"),
        (lambda root: (root / "train.csv").write_bytes((root / "images" / "im0.png").read_bytes()),
         "is not a readable CSV file"),
        (lambda root: (root / "cfg.yaml").write_text((root / "cfg.yaml").read_text() + "imgae_size: 3\n"),
         "Unknown config key 'imgae_size'"),
    ],
    ids=["missing-column", "missing-folder", "not-a-csv", "unknown-key"],
)
def test_bad_input_is_one_clear_message(tmp_path, monkeypatch, capsys, edit, expected):
    cfg = make_clean(tmp_path)
    edit(tmp_path)
    before = _snapshot(tmp_path)
    code, text = _main(monkeypatch, capsys, "data", "check", str(cfg))
    assert code == 2
    assert expected in text and "Traceback" not in text
    assert _snapshot(tmp_path) == before


def test_structural_errors_raise_before_reading(tmp_path):
    make_clean(tmp_path)
    (tmp_path / "test.csv").write_text("image\nt0\n")
    with pytest.raises(PodiumError, match="has no column 'id'"):
        check_data(_cfg(tmp_path / "cfg.yaml"))


def test_images_outside_the_image_folder_are_problems_and_never_read(tmp_path, monkeypatch, capsys):
    cfg_path = make_clean(tmp_path / "comp")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.fromarray(_rgb(90)).save(outside / "secret.png")
    (tmp_path / "comp" / "images" / "link.png").symlink_to(outside / "secret.png")
    with open(tmp_path / "comp" / "train.csv", "a") as f:
        f.write("../../elsewhere/secret.png,a\nlink,b\n" + "x" * 400 + ",a\n")
    read = []
    import podium.data.check as check

    real = check._probe
    monkeypatch.setattr(check, "_probe", lambda path, *a: read.append(path) or real(path, *a))
    report = check_data(_cfg(cfg_path))
    assert [(p.kind, p.where.rsplit(" ", 1)[-1]) for p in report.problems] == [
        ("outside-image-dir", "16"), ("outside-image-dir", "17"), ("bad-name", "18")]
    assert read and not any("elsewhere" in p for p in read)
    code, text = _main(monkeypatch, capsys, "data", "check", str(cfg_path))
    assert code == 2 and "data.allow_outside_image_dir=true" in text and "Traceback" not in text
    code, text = _main(monkeypatch, capsys, "split", str(cfg_path))
    assert code == 2 and "outside the image folder" in text and "File name too long" not in text
    assert not (tmp_path / "comp" / "folds.csv").exists()
