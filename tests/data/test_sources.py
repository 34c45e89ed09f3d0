"""Data sources: CSV + image folder (any extension, path_col), folder per class, test by CSV or folder,
the problems each collects, the structural errors each raises, and data.subset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from podium.config import from_dict
from podium.data.images import IMAGE_EXTENSIONS
from podium.data.sources import (
    _Resolver,
    index_folder,
    load_test,
    load_train,
    stratified_subset,
    table_fingerprint,
    train_table,
)
from podium.data.sources import (
    test_table as read_test_table,
)
from podium.errors import PodiumError
from podium.tasks import class_names


def _img(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(path)
    return path


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _cfg(**data):
    cv = data.pop("cv", {})
    return from_dict({"data": {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}, "cv": cv})


def _kinds(table) -> list[str]:
    return [p.kind for p in table.problems]


def test_csv_with_string_labels_and_mixed_extensions(tmp_path):
    img = tmp_path / "img"
    for name in ("007.png", "a.JPG", "b.bmp", "c.jpeg"):
        _img(img / name)
    (img / "notes.txt").write_text("not an image")
    csv = _csv(tmp_path / "train.csv", "id,label\n007,cat\na,dog\n b ,cat\nc,dog\n")
    table = train_table(_cfg(train_csv=csv, image_dir=img))
    assert table.problems == []
    frame = table.frame
    assert list(frame.columns) == ["id", "path", "label", "row"]
    assert frame["id"].tolist() == ["007", "a", "b", "c"]  # '007' stays text; ' b ' stripped
    assert [Path(p).name for p in frame["path"]] == ["007.png", "a.JPG", "b.bmp", "c.jpeg"]
    assert all(Path(p).is_absolute() for p in frame["path"])
    assert frame["row"].tolist() == [2, 3, 4, 5]  # CSV lines, header = 1


def test_integer_labels_sort_numerically_and_map_to_targets(tmp_path):
    img = tmp_path / "img"
    labels = ["10", "2", "0", "2", "10", "0"]
    for i in range(6):
        _img(img / f"{i}.png", i)
    csv = _csv(tmp_path / "train.csv", "id,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels)))
    frame, classes = load_train(_cfg(train_csv=csv, image_dir=img))
    assert classes == ["0", "2", "10"]  # not the string order 0, 10, 2
    assert frame["target"].tolist() == [2, 1, 0, 1, 2, 0]
    # declared classes set the order (and the targets)
    frame, classes = load_train(_cfg(train_csv=csv, image_dir=img, classes=["10", "2", "0"]))
    assert classes == ["10", "2", "0"] and frame["target"].tolist() == [0, 1, 2, 1, 0, 2]


def test_class_names_default_is_sorted_unique():
    import pandas as pd

    assert class_names(pd.Series(["b", "a", None, "b", ""]), None) == ["a", "b"]


def test_ids_that_already_carry_the_extension(tmp_path):
    img = tmp_path / "img"
    _img(img / "1000015157.jpg")
    _img(img / "x.png")
    csv = _csv(tmp_path / "train.csv", "image_id,label\n1000015157.jpg,3\nx,1\n")
    table = train_table(_cfg(train_csv=csv, image_dir=img, id_col="image_id"))
    assert table.problems == []
    assert [Path(p).name for p in table.frame["path"]] == ["1000015157.jpg", "x.png"]


def test_path_col_with_subfolders_and_custom_columns(tmp_path):
    img = tmp_path / "img"
    _img(img / "p1" / "mask.jpg")
    _img(img / "p2" / "mask.jpg", 1)
    csv = _csv(tmp_path / "train.csv", "uid,file,cls,person\nu1,p1/mask.jpg,wear,p1\nu2,p2/mask.jpg,none,p2\n"
               "u3,p3/mask.jpg,none,p3\nu4,,none,p4\n")
    cfg = _cfg(train_csv=csv, image_dir=img, id_col="uid", path_col="file", label_col="cls",
               cv={"group_col": "person", "strategy": "group"})
    table = train_table(cfg)
    assert list(table.frame.columns) == ["id", "path", "label", "group", "row"]
    assert table.frame["group"].tolist() == ["p1", "p2", "p3", "p4"]
    assert table.frame["path"].iloc[0].endswith("p1/mask.jpg") and table.frame["path"].iloc[1].endswith("p2/mask.jpg")
    assert table.frame["path"].iloc[2] is None and table.frame["path"].iloc[3] is None
    found = [(p.kind, p.where.rsplit(" ", 1)[-1]) for p in table.problems]
    assert found == [("missing-file", "4"), ("missing-file", "5")]
    assert "p3/mask.jpg" in table.problems[0].message and "column 'file' is empty" in table.problems[1].message


def test_folder_per_class(tmp_path):
    root = tmp_path / "train"
    _img(root / "cat" / "1.png")
    _img(root / "cat" / "2.jpg", 1)
    _img(root / "dog" / "sub" / "3.png", 2)  # nested folders inside a class are fine
    (root / ".hidden").mkdir()
    _img(root / ".hidden" / "x.png")
    (root / "dog" / "readme.txt").write_text("ignored")
    table = train_table(_cfg(train_dir=root))
    assert table.problems == []
    assert table.frame["id"].tolist() == ["cat/1", "cat/2", "dog/sub/3"]
    assert table.frame["label"].tolist() == ["cat", "cat", "dog"]


def test_folder_duplicate_stem_names_the_files(tmp_path):
    root = tmp_path / "train"
    _img(root / "cat" / "1.png")
    _img(root / "cat" / "1.jpg")
    table = train_table(_cfg(train_dir=root))
    assert _kinds(table) == ["duplicate-id"]
    assert "1.jpg" in table.problems[0].where and "1.png" in table.problems[0].where


def test_test_by_csv_in_its_own_folder_and_by_folder(tmp_path):
    _img(tmp_path / "train" / "a" / "0.png")
    _img(tmp_path / "train" / "b" / "1.png")
    _img(tmp_path / "test_img" / "t1.png")
    _img(tmp_path / "test_img" / "t2.webp")
    csv = _csv(tmp_path / "test.csv", "id\nt1\nt2\n")
    frame = load_test(_cfg(train_dir=tmp_path / "train", test_csv=csv, test_image_dir=tmp_path / "test_img"))
    assert frame["id"].tolist() == ["t1", "t2"] and frame["label"].isna().all()
    assert Path(frame["path"].iloc[1]).name == "t2.webp"
    frame = load_test(_cfg(train_dir=tmp_path / "train", test_dir=tmp_path / "test_img"))
    assert frame["id"].tolist() == ["t1", "t2"]
    assert load_test(_cfg(train_dir=tmp_path / "train")) is None


def test_row_problems_are_collected_and_the_strict_loader_raises_them_all(tmp_path):
    img = tmp_path / "img"
    for name in ("a", "b", "c", "d", "e", "f"):
        _img(img / f"{name}.png")
    _img(img / "f.jpg")  # f is ambiguous: two files share the name
    csv = _csv(tmp_path / "train.csv", "id,label\na,cat\nb,\nc,NaN\nd,emu\na,dog\n,cat\nf,cat\nzz,cat\n")
    cfg = _cfg(train_csv=csv, image_dir=img, classes=["cat", "dog"])
    table = train_table(cfg)
    found = sorted((p.kind, p.where.split("train.csv ")[-1]) for p in table.problems)
    assert found == sorted([
        ("empty-label", "row 3"), ("empty-label", "row 4"), ("unknown-label", "row 5"),
        ("duplicate-id", "rows 2, 6"), ("empty-id", "row 7"), ("missing-file", "row 7"),
        ("ambiguous-file", "row 8"), ("missing-file", "row 9"),
    ])
    with pytest.raises(PodiumError) as exc:
        load_train(cfg)
    text = str(exc.value)
    assert "8 problem(s)" in text and "row 9" in text and "'emu' is not in data.classes" in text


def test_empty_group_is_a_problem(tmp_path):
    _img(tmp_path / "img" / "a.png")
    _img(tmp_path / "img" / "b.png", 1)
    csv = _csv(tmp_path / "train.csv", "id,label,pid\na,x,1\nb,y,\n")
    table = train_table(_cfg(train_csv=csv, image_dir=tmp_path / "img", cv={"group_col": "pid"}))
    assert [(p.kind, p.where.split(" ")[-1]) for p in table.problems] == [("empty-group", "3")]


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda t: dict(train_csv=_csv(t / "x.csv", "name,label\na,b\n"), image_dir=t),
         r"has no column 'id' \(set by data.id_col\)\. Its columns are: name, label"),
        (lambda t: dict(train_csv=_csv(t / "x.csv", "id;label\na;b\n"), image_dir=t), r"separated by ';'"),
        (lambda t: dict(train_csv=_csv(t / "x.csv", "id,kind\na,b\n"), image_dir=t),
         r"no column 'label'.*data.label_col"),
        (lambda t: dict(train_csv=_csv(t / "x.csv", "id,label\na,b\n"), image_dir=t / "nope"),
         r"Image folder '.*nope' \(from data.image_dir\) does not exist"),
        (lambda t: dict(train_csv=_csv(t / "x.csv", "id,label\na,b\n")), r"data.image_dir is not set"),
        (lambda t: dict(train_csv=t / "missing.csv", image_dir=t), r"data.train_csv '.*missing.csv' does not exist"),
        (lambda t: dict(train_csv=_img(t / "x.png"), image_dir=t), r"'.*x.png' is not a readable CSV file"),
        (lambda t: dict(train_csv=_csv(t / "x.csv", ""), image_dir=t), r"is not a readable CSV file"),
        (lambda t: dict(train_csv=_csv(t / "x.csv", "id,label\n"), image_dir=t), r"has no rows"),
        (lambda t: dict(train_dir=t / "nope"), r"'.*nope' \(from data.train_dir\) does not exist"),
        (lambda t: dict(train_dir=t), r"has no sub-folders"),
        (lambda t: dict(), r"No training data"),
    ],
    ids=["no-id-col", "semicolons", "no-label-col", "no-image-dir", "image-dir-unset", "no-csv", "png-as-csv",
         "empty-csv", "header-only", "no-train-dir", "flat-train-dir", "no-source"],
)
def test_structural_errors_name_the_thing_and_the_fix(tmp_path, setup, match):
    with pytest.raises(PodiumError, match=match):
        train_table(_cfg(**setup(tmp_path)))


def test_group_col_with_folder_source_is_refused(tmp_path):
    _img(tmp_path / "train" / "a" / "0.png")
    with pytest.raises(PodiumError, match="cv.group_col needs a CSV source"):
        train_table(_cfg(train_dir=tmp_path / "train", cv={"group_col": "pid"}))


def test_excel_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    _img(tmp_path / "img" / "a.png")
    (tmp_path / "train.csv").write_bytes("id,label\na,cat\n".encode("utf-8-sig"))
    table = train_table(_cfg(train_csv=tmp_path / "train.csv", image_dir=tmp_path / "img"))
    assert table.problems == [] and table.frame["id"].tolist() == ["a"]


def test_test_csv_columns_are_checked_too(tmp_path):
    _img(tmp_path / "train" / "a" / "0.png")
    csv = _csv(tmp_path / "test.csv", "image\nt1\n")
    with pytest.raises(PodiumError, match="no column 'id'"):
        read_test_table(_cfg(train_dir=tmp_path / "train", test_csv=csv, image_dir=tmp_path))


def test_subset_is_stratified_deterministic_and_exact(tmp_path):
    img = tmp_path / "img"
    labels = ["a"] * 30 + ["b"] * 9 + ["c"] * 1
    for i in range(len(labels)):
        (img / f"{i}.png").parent.mkdir(exist_ok=True)
        (img / f"{i}.png").write_bytes(b"x")  # sources only look for the file; nothing decodes it here
    csv = _csv(tmp_path / "train.csv", "id,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels)))
    cfg = _cfg(train_csv=csv, image_dir=img, subset=10)
    frame, classes = load_train(cfg)
    assert len(frame) == 10 and classes == ["a", "b", "c"]
    counts = Counter(frame["label"])
    assert counts["c"] == 1 and 6 <= counts["a"] <= 8 and 2 <= counts["b"] <= 3  # 7.5 / 2.25 / 0.25, ≥1 each
    assert frame["target"].tolist() == [classes.index(x) for x in frame["label"]]
    again, _ = load_train(cfg)
    assert again["id"].tolist() == frame["id"].tolist()  # same cv.seed → same subset
    other, _ = load_train(_cfg(train_csv=csv, image_dir=img, subset=10, cv={"seed": 7}))
    assert other["id"].tolist() != frame["id"].tolist()


@pytest.mark.parametrize("n", [2, 5, 7, 11, 49])
def test_stratified_subset_always_returns_n_distinct_indices(n):
    labels = np.array([0] * 40 + [1] * 6 + [2] * 2 + [3] * 1 + [4] * 1)
    idx = stratified_subset(labels, n, seed=0)
    assert len(idx) == n and len(set(idx)) == n and np.all(np.diff(idx) > 0)
    if n >= 5:
        assert set(labels[idx]) == {0, 1, 2, 3, 4}  # every class kept when there is room


# ------------------------------------------------------------------------- images stay in the image folder


def _outside(tmp_path: Path) -> tuple[Path, Path]:
    """An image folder with a.png and a symlink `link.png` to `elsewhere/secret.png`, beside it."""
    img = tmp_path / "comp" / "images"
    _img(img / "a.png")
    secret = _img(tmp_path / "elsewhere" / "secret.png", 1)
    (img / "link.png").symlink_to(secret)
    return img, secret


@pytest.mark.parametrize(
    "text, path_col, bad",
    [
        ("id,label\na,x\n../../elsewhere/secret.png,y\n", None, "../../elsewhere/secret.png"),
        ("id,label\na,x\nlink,y\n", None, "link.png"),  # a symlink inside the folder, to a file outside it
        ("id,file,label\na,a.png,x\nb,{secret},y\n", "file", "{secret}"),  # an absolute path_col
        ("id,file,label\na,a.png,x\nb,../../elsewhere/secret.png,y\n", "file", "../../elsewhere/secret.png"),
        ("id,label\na,x\n{secret},y\n", None, "{secret}"),  # an absolute id that is a file name
    ],
    ids=["dotdot-id", "symlink", "absolute-path-col", "dotdot-path-col", "absolute-id"],
)
def test_images_outside_the_image_folder_are_a_problem_unless_allowed(tmp_path, text, path_col, bad):
    img, secret = _outside(tmp_path)
    csv = _csv(tmp_path / "comp" / "train.csv", text.format(secret=secret))
    extra = {"path_col": path_col} if path_col else {}
    table = train_table(_cfg(train_csv=csv, image_dir=img, **extra))
    assert _kinds(table) == ["outside-image-dir"]
    problem = table.problems[0]
    assert problem.where == f"{csv} row 3" and f"'{bad.format(secret=secret)}'" in problem.message
    assert str(secret) in problem.message and "data.allow_outside_image_dir=true" in problem.message
    assert table.frame["path"].iloc[1] is None  # never read
    with pytest.raises(PodiumError, match=r"row 3: image .* outside the image folder"):
        load_train(_cfg(train_csv=csv, image_dir=img, **extra))
    allowed = train_table(_cfg(train_csv=csv, image_dir=img, allow_outside_image_dir=True, **extra))
    assert allowed.problems == [] and allowed.frame["path"].iloc[1] == str(secret)


def test_outside_images_of_test_csv_and_folder_sources(tmp_path):
    img, secret = _outside(tmp_path)
    _img(tmp_path / "train" / "cat" / "1.png")
    (tmp_path / "train" / "cat" / "2.png").symlink_to(secret)
    table = train_table(_cfg(train_dir=tmp_path / "train"))
    assert _kinds(table) == ["outside-image-dir"] and table.frame["id"].tolist() == ["cat/1"]
    assert "cat/2.png" in table.problems[0].where and "(data.train_dir)" in table.problems[0].message
    assert train_table(_cfg(train_dir=tmp_path / "train", allow_outside_image_dir=True)).problems == []
    csv = _csv(tmp_path / "test.csv", "id\na\nlink\n")
    cfg = _cfg(train_dir=tmp_path / "train", test_csv=csv, test_image_dir=img, allow_outside_image_dir=False)
    assert [(p.kind, p.where) for p in read_test_table(cfg).problems] == [("outside-image-dir", f"{csv} row 3")]
    assert "(data.test_image_dir)" in read_test_table(cfg).problems[0].message
    (img.parent / "test").mkdir()
    (img.parent / "test" / "t.png").symlink_to(secret)
    assert _kinds(read_test_table(_cfg(train_dir=tmp_path / "train", test_dir=img.parent / "test"))) == [
        "outside-image-dir"]


def test_a_symlinked_image_folder_is_fine(tmp_path):
    img, _ = _outside(tmp_path)
    (tmp_path / "link_to_images").symlink_to(img)
    csv = _csv(tmp_path / "train.csv", "id,label\na,x\n")
    assert train_table(_cfg(train_csv=csv, image_dir=tmp_path / "link_to_images")).problems == []


@pytest.mark.parametrize(
    "ident, match",
    [
        ("x" * 300,
         r"column 'id' holds a name of 300 bytes \('x{10,}\.\.\. \(302 characters\)\); file systems allow 255"),
        ("/".join(["y" * 200] * 30), r"cannot look up '.*' in .* \(File name too long\): fix the row"),
        ("a\0b", r"column 'id' holds a NUL character \('a\\x00b'\)"),
    ],
    ids=["300-chars", "6000-char-path", "nul"],
)
def test_ids_that_cannot_name_a_file_are_a_problem_not_a_traceback(tmp_path, ident, match):
    img = tmp_path / "img"
    _img(img / "a.png")
    csv = tmp_path / "train.csv"
    csv.write_text(f"id,label\na,x\n{ident},y\n")
    table = train_table(_cfg(train_csv=csv, image_dir=img))
    assert _kinds(table) == ["bad-name"] and table.problems[0].where == f"{csv} row 3"
    assert len(table.problems[0].message) < 700
    with pytest.raises(PodiumError, match=match):
        load_train(_cfg(train_csv=csv, image_dir=img))


def test_path_col_values_that_cannot_name_a_file(tmp_path):
    img = tmp_path / "img"
    _img(img / "a.png")
    csv = _csv(tmp_path / "train.csv", f"id,file,label\na,a.png,x\nb,{'z' * 256}.png,y\n")
    table = train_table(_cfg(train_csv=csv, image_dir=img, path_col="file"))
    assert _kinds(table) == ["bad-name"] and "column 'file' holds a name of 260 bytes" in table.problems[0].message


def test_the_table_fingerprint_follows_ids_labels_and_paths_not_row_order(tmp_path):
    """What a run records as the table it trained on (RunDir.write_data)."""
    img = tmp_path / "img"
    for i in range(4):
        _img(img / f"{i}.png", i)
    rows = ["0,cat", "1,dog", "2,cat", "3,dog"]

    def fp(lines: list[str], name: str = "train.csv") -> str:
        csv = _csv(tmp_path / name, "id,label\n" + "\n".join(lines) + "\n")
        return table_fingerprint(load_train(_cfg(train_csv=csv, image_dir=img))[0])

    same = fp(rows)
    assert fp(rows, "copy.csv") == same and fp(rows[::-1]) == same and len(same) == 64
    assert fp(["0,dog", *rows[1:]]) != same  # one label changed
    assert fp(rows[:3]) != same  # one image fewer
    (img / "0.png").rename(img / "0.jpg")
    assert fp(rows) != same  # another file for id 0


def test_index_folder_matches_pathlib_on_a_tricky_tree(tmp_path):
    """The scandir walk gives what `sorted(rglob("*"))` gave: path order, symlinked files counted, symlinked folders
    not entered, broken links, folders named like images and extension-only names skipped."""
    root, outside = tmp_path / "images", tmp_path / "outside"
    for rel in ["b.png", "a/x.JPG", "a-b/x.png", "a/deep/y.webp", "a/deep/y.png", "c.d.png", ".png", "notes.txt",
                "dir.png/z.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "w.png").write_bytes(b"x")
    (outside / "v.png").write_bytes(b"x")
    (root / "link.png").symlink_to(outside / "v.png")
    (root / "linkdir").symlink_to(outside / "sub")
    (root / "broken.png").symlink_to(tmp_path / "gone.png")

    expected: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            expected.setdefault(p.relative_to(root).with_suffix("").as_posix(), []).append(p)
    got = index_folder(root)
    assert got == expected and list(got) == list(expected)
    assert "linkdir/w" not in got and "link" in got and "broken" not in got and got["a/deep/y"][0].suffix == ".png"

    resolve = _Resolver()
    for p in [*(q for paths in got.values() for q in paths), root / "linkdir" / "w.png", root / "a" / ".." / "b.png"]:
        assert resolve(p) == p.resolve(), p
