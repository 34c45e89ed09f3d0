"""`podium errors RUN DIR`: OOF images copied into DIR/<true>/<pred>/, with an index, safe folder names."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from podium.errors import PodiumError
from podium.report.folders import export_errors, folder_names
from tests.conftest import CLASSES, podium_cmd


def test_folder_names_are_safe_and_distinct():
    names = folder_names(["T-shirt/top", "T-shirt_top", "a:b", "A:b", "..hidden", ""])
    assert names == {"T-shirt/top": "T-shirt_top", "T-shirt_top": "T-shirt_top~2", "a:b": "a_b", "A:b": "A_b~2",
                     "..hidden": "hidden", "": "_"}


def test_misclassified_images_sorted_by_true_and_predicted_class(two_runs, tmp_path):
    run, _ = two_runs
    res = export_errors(run, tmp_path / "errors")
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str}).set_index("id")
    pred = pd.Series(np.asarray(CLASSES)[oof[CLASSES].to_numpy().argmax(1)], index=oof.index)
    wrong = oof.index[pred != oof["label"]]
    index = pd.read_csv(res.index, dtype={"id": str})
    assert res.written == res.wrong == len(wrong) > 0 and sorted(index["id"]) == sorted(wrong)
    folders = folder_names(CLASSES)
    for row in index.itertuples():
        f = tmp_path / "errors" / row.file
        assert f.parent.parent.name == folders[oof.loc[row.id, "label"]] and f.parent.name == folders[pred[row.id]]
        assert f.name == f"p{oof.loc[row.id, CLASSES].max():.3f}_{row.id}.png"
        assert f.read_bytes() == open(row.source, "rb").read()  # the original file, untouched
    files = [p for p in (tmp_path / "errors").rglob("*.png")]
    assert len(files) == len(wrong)


def test_all_images_and_refusals(two_runs, tmp_path):
    run, _ = two_runs
    out = tmp_path / "all"
    res = subprocess.run(podium_cmd("errors", str(run), str(out), "--all"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(list(out.rglob("*.png"))) == 48  # every OOF image, right ones under <c>/<c>/
    with pytest.raises(PodiumError, match="--overwrite"):
        export_errors(run, out)
    assert export_errors(run, out, overwrite=True).written < 48  # replaced by the mistakes only
    assert len(list(out.rglob("*.png"))) < 48
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep")
    with pytest.raises(PodiumError, match="did not write"):
        export_errors(run, mine, overwrite=True)
    assert (mine / "precious.txt").read_text() == "keep"
