"""`podium report --compare A B`: scores side by side, per-class deltas, every disagreement with both predictions."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from podium.errors import PodiumError
from podium.report.compare import compare
from tests.conftest import CLASSES, podium_cmd
from tests.report.test_build import Page


def _oof(run) -> pd.DataFrame:
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str, "label": str}).set_index("id")
    return oof.assign(pred=np.asarray(CLASSES)[oof[CLASSES].to_numpy().argmax(1)])


def test_two_runs_side_by_side(two_runs, tmp_path):
    a, b = two_runs
    res = compare(a, b, out=tmp_path / "c.html")
    sections = Page(res.out.read_text()).sections
    assert list(sections) == ["summary", "scores", "per-class", "disagreements", "test-disagreements"]
    for run, name in ((a, "tiny"), (b, "tiny-b")):  # the same numbers as each run's metrics.json
        oof = json.loads((run / "metrics.json").read_text())["oof"]
        assert res.scores[name] == pytest.approx({k: v for k, v in oof.items() if k not in ("n", "cv")})
    rows = {r[0]: r[1:] for r in sections["scores"]["rows"][1:]}
    sa, sb = res.scores["tiny"]["accuracy"], res.scores["tiny-b"]["accuracy"]
    assert rows["accuracy"][:2] == [f"{sa:.4f}", f"{sb:.4f}"] and rows["accuracy"][2].startswith(f"{sb - sa:+.4f}")
    la, lb = res.scores["tiny"]["logloss"], res.scores["tiny-b"]["logloss"]
    assert rows["logloss"][2] == f"{lb - la:+.4f} ({'better' if lb < la else 'worse'})"  # lower log loss is better

    oa, ob = _oof(a), _oof(b).loc[_oof(a).index]
    differ = oa.index[oa["pred"] != ob["pred"]]
    assert res.n == len(oa) and res.n_differ == len(differ) > 0
    listed = sections["disagreements"]["rows"][1:]
    assert sorted(r[0] for r in listed) == sorted(differ)
    for ident, true, pa, pb, verdict in listed:
        assert true == oa.loc[ident, "label"] and pa.startswith(oa.loc[ident, "pred"] + " (")
        assert pb.startswith(ob.loc[ident, "pred"]) and f"{ob.loc[ident, CLASSES].max():.3f}" in pb
        right_a, right_b = oa.loc[ident, "pred"] == true, ob.loc[ident, "pred"] == true
        assert verdict == ("tiny right" if right_a else "tiny-b right" if right_b else "both wrong")
    verdicts = [r[-1] for r in listed]
    assert verdicts == sorted(verdicts, key=lambda v: v == "both wrong")  # one-right cases first
    assert len(sections["disagreements"]["imgs"]) == min(48, len(differ))  # with the image of each

    per_class = {r[0]: r[1:] for r in sections["per-class"]["rows"][1:]}
    for c in CLASSES:
        fa = ((oa["pred"] == c) & (oa["label"] == c)).sum() * 2 / ((oa["pred"] == c).sum() + (oa["label"] == c).sum())
        fb = ((ob["pred"] == c) & (ob["label"] == c)).sum() * 2 / ((ob["pred"] == c).sum() + (ob["label"] == c).sum())
        assert per_class[c][:3] == [f"{fa:.4f}", f"{fb:.4f}", f"{fb - fa:+.4f}"]

    ta = pd.read_csv(a / "test_probs.csv", dtype={"id": str}).set_index("id")[CLASSES].idxmax(axis=1)
    tb = pd.read_csv(b / "test_probs.csv", dtype={"id": str}).set_index("id")[CLASSES].idxmax(axis=1).loc[ta.index]
    assert sorted(r[0] for r in sections["test-disagreements"]["rows"][1:]) == sorted(ta.index[ta != tb])


def test_two_submission_files_with_their_test_images(two_runs, tmp_path):
    a, b = two_runs
    res = compare(a / "submission.csv", b / "submission.csv", out=tmp_path / "s.html")
    sa = pd.read_csv(a / "submission.csv", dtype=str).set_index("id")["label"]
    sb = pd.read_csv(b / "submission.csv", dtype=str).set_index("id")["label"].loc[sa.index]
    assert res.n == len(sa) and res.n_differ == int((sa != sb).sum()) and res.scores == {}
    sections = Page(res.out.read_text()).sections
    assert list(sections) == ["summary", "per-class", "disagreements"]  # no labels: no scores
    counts = {r[0]: r[1:] for r in sections["per-class"]["rows"][1:]}
    for c in CLASSES:
        assert counts[c] == [str((sa == c).sum()), str((sb == c).sum()), f"{(sb == c).sum() - (sa == c).sum():+d}"]
    listed = {r[0]: r[1:] for r in sections["disagreements"]["rows"][1:]}
    assert listed == {i: [sa[i], sb[i]] for i in sa.index[sa != sb]}
    assert len(sections["disagreements"]["imgs"]) == len(listed)  # test images, found through the run folder


def test_mixing_oof_and_test_predictions_is_refused(two_runs):
    a, b = two_runs
    with pytest.raises(PodiumError, match="out-of-fold predictions .* with test predictions"):
        compare(a, b / "submission.csv")


def test_cli_compare(two_runs, tmp_path):
    a, b = two_runs
    out = subprocess.run(podium_cmd("report", "--compare", str(a), str(b), "--out", str(tmp_path / "c.html")),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ids predicted differently" in out.stderr and (tmp_path / "c.html").exists()
    assert "tiny: accuracy" in out.stderr
