"""podium.io: atomic writes keep the user's umask, leave no temporary file behind, and turn a refused write
into a PodiumError naming the file, the reason and what to do."""

from __future__ import annotations

import errno
import os
import stat

import pandas as pd
import pytest

import podium.io as pio
from podium.errors import PodiumError
from podium.io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text, current_umask


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one is put back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_umask_not_0600(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "hi")
    atomic_write_json(tmp_path / "sub" / "b.json", {"x": 1})
    atomic_write_csv(tmp_path / "c.csv", pd.DataFrame({"id": ["1"]}))
    for name in ("a.txt", "sub/b.json", "c.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_umask_is_read_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027 and current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still what was set


def _refuse_writes(monkeypatch, code: int, when: str = "mkstemp"):
    """Make the write fail with OSError(code), at mkstemp (folder not writable) or while writing the data."""
    real = pio.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if when == "mkstemp":
            raise OSError(code, os.strerror(code), kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pio.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("code, reason", [(errno.EACCES, "permission denied"), (errno.EPERM, "not permitted"),
                                          (errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"),
                                          (errno.EDQUOT, "quota"), (errno.ENAMETOOLONG, "too long")])
def test_refused_writes_name_the_file_the_reason_and_the_hint(tmp_path, monkeypatch, code, reason):
    _refuse_writes(monkeypatch, code)
    target = tmp_path / "data" / "folds.csv"
    with pytest.raises(PodiumError) as exc:
        atomic_write_csv(target, pd.DataFrame({"id": ["1"]}), hint="set cv.folds_file to a writable path")
    text = str(exc.value)
    assert f"Cannot write '{target}'" in text and reason in text and "set cv.folds_file to a writable path" in text
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_a_write_failing_midway_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(PodiumError, match=r"the disk is full.*Free some space"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_and_leave_nothing(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise KeyError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"] and target.read_text() == "old"


def test_a_read_only_folder_is_refused_with_the_hint(tmp_path, read_only):
    folder = tmp_path / "input"
    folder.mkdir()
    read_only(folder)
    with pytest.raises(PodiumError, match=r"Cannot write '.*input/x\.csv': (permission denied|the file system is "
                                          r"read-only).*: set cv\.folds_file=/writable/folds\.csv\.$"):
        atomic_write_text(folder / "x.csv", "id,fold\n", hint="set cv.folds_file=/writable/folds.csv")
    assert list(folder.iterdir()) == []


def test_a_file_where_a_folder_should_be(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(PodiumError, match=r"Cannot write '.*runs/x/run\.json': a part of the path is a file"):
        atomic_write_json(tmp_path / "runs" / "x" / "run.json", {})


def test_a_file_or_folder_in_the_way(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(PodiumError, match=r"Cannot write '.*runs/run\.json': a file stands where a folder is needed"):
        atomic_write_json(tmp_path / "runs" / "run.json", {})
    (tmp_path / "report.html").mkdir()
    with pytest.raises(PodiumError, match=r"Cannot write '.*report\.html': a folder stands where the file should be"):
        atomic_write_text(tmp_path / "report.html", "<html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "runs"]


def test_long_names_still_fit_beside_their_temporary_file(tmp_path):
    name = "n" * 250 + ".csv"
    atomic_write_text(tmp_path / name, "x")
    assert (tmp_path / name).read_text() == "x"
    with pytest.raises(PodiumError, match="too long"):
        atomic_write_text(tmp_path / ("n" * 300), "x")
