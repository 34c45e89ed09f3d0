"""`podium package`: a folder + zip that reproduces `podium predict`'s submission without podium (--check)."""

from __future__ import annotations

import zipfile

import pytest

from podium.commands.ship import check_package
from podium.errors import PodiumError
from podium.ship.package import package_run


@pytest.mark.parametrize("kind", ["multiclass_run", "multilabel_run", "multitask_run"])
def test_package_round_trip_matches_podium_predict(kind, request, tmp_path):
    run = request.getfixturevalue(kind)
    pkg = package_run(run, target="docker", out=tmp_path / "pkg")
    assert pkg.files == ["Dockerfile", "README.txt", "manifest.json", "model.onnx", "predict.py", "requirements.txt"]
    names = [line.split("==")[0] for line in (pkg.out / "requirements.txt").read_text().split()]
    assert names == ["onnxruntime", "numpy", "pillow", "pandas"]
    assert sorted(zipfile.ZipFile(pkg.zip).namelist()) == sorted(f"pkg/{n}" for n in pkg.files)
    done = check_package(run, pkg.out, tmp_path / "check", install=False)  # podium, torch, cv2 blocked in there
    assert done.labels_equal and done.max_diff <= 1e-4 and done.rows > 0
    assert "pip skipped" in done.venv


def test_a_package_replaces_only_a_package(multiclass_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(PodiumError, match="--overwrite"):
        package_run(multiclass_run, out=mine)
    with pytest.raises(PodiumError, match="not a podium package"):
        package_run(multiclass_run, out=mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine"
    with pytest.raises(PodiumError, match="--target"):
        package_run(multiclass_run, target="wheel", out=tmp_path / "p")
