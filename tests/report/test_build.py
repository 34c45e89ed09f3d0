"""`podium report RUN`: every section present, its numbers those of metrics.json and oof.csv, self-contained,
and it opens in headless Chromium without a console message."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score, precision_recall_fscore_support

from podium.report.build import build_report
from tests.conftest import CLASSES, podium_cmd

SECTIONS = ["summary", "config", "scores", "curves", "distribution", "confusion", "per-class", "confused", "losses",
            "suspects", "gradcam", "calibration"]
CHROMIUM = "/usr/bin/chromium"


class Page(HTMLParser):
    """Sections (id -> their text, tables and image sources) of a podium page."""

    def __init__(self, html: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = self.sections.setdefault(attrs["id"], {"text": [], "rows": [], "imgs": []})
        elif self.current is not None:
            if tag == "img":
                self.current["imgs"].append(attrs["src"])
            elif tag == "tr":
                self.row = []
            elif tag in ("td", "th"):
                self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None and self.current is not None:
            self.current["rows"].append(self.row)
            self.row = None
        elif tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"].append(data)
            if self.cell is not None:
                self.cell.append(data)


@pytest.fixture(scope="module")
def report(two_runs):
    run, _ = two_runs
    out = build_report(run)
    html = out.read_text()
    return run, out, html, Page(html).sections


def _png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    img.load()
    return img


def test_every_section_is_there_and_self_contained(report):
    run, out, html, sections = report
    assert out == run / "report.html"
    assert list(sections) == SECTIONS
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing fetched from a network
    assert "<script" not in html and "<link" not in html
    imgs = [src for s in sections.values() for src in s["imgs"]]
    assert len(imgs) > 20 and all(_png(src).size[0] > 0 for src in imgs)  # every picture decodes as PNG


def test_scores_and_timings_match_the_run_files(report):
    run, _, _, sections = report
    metrics = json.loads((run / "metrics.json").read_text())
    names = [k for k in metrics["oof"] if k not in ("n", "cv")]  # every score podium computed
    assert {"accuracy", "f1_macro", "f1_weighted", "logloss"} <= set(names)
    assert sections["scores"]["rows"][0] == ["fold", "n", *(k + " (cv)" * (k == "accuracy") for k in names)]
    rows = {r[0]: r[1:] for r in sections["scores"]["rows"][1:]}
    for fold, s in metrics["folds"].items():
        assert rows[fold] == [str(s["n"]), *(f"{s[k]:.4f}" for k in names)]
    o = metrics["oof"]
    assert rows["OOF (all folds)"] == [str(o["n"]), *(f"{o[k]:.4f}" for k in names)]
    summary = dict(r for r in sections["summary"]["rows"] if len(r) == 2)
    assert summary["CV accuracy (OOF)"].startswith(f"{metrics['cv']:.4f} ± {metrics['cv_fold_std']:.4f}")
    timings = {r[0]: r[1:] for r in sections["config"]["rows"][1:]}
    for k in range(3):
        done = json.loads((run / f"fold{k}" / "done.json").read_text())
        assert timings[f"fold {k}"] == [f"{done['seconds']:.1f}", str(done["epochs_run"]), str(done["best_epoch"])]
    assert (run / "config.yaml").read_text().strip() in "".join(sections["config"]["text"])
    assert len(sections["curves"]["imgs"]) == 1 and _png(sections["curves"]["imgs"][0]).size[0] > 400


def test_per_class_distribution_and_pairs_are_computed_from_oof(report):
    run, _, _, sections = report
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    y, pred = oof["label"].map(CLASSES.index).to_numpy(), oof[CLASSES].to_numpy().argmax(1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(3), zero_division=0)
    rows = sections["per-class"]["rows"][1:]
    assert [row[0] for row in rows] == [CLASSES[i] for i in np.lexsort((-s, f))]  # sorted by F1, worst first
    for row in rows:
        i = CLASSES.index(row[0])
        assert row[1:5] == [f"{f[i]:.4f}", f"{p[i]:.4f}", f"{r[i]:.4f}", str(s[i])]
    assert f"{f1_score(y, pred, average='macro'):.4f}" in "".join(sections["scores"]["text"])
    test_pred = pd.read_csv(run / "test_probs.csv")[CLASSES].to_numpy().argmax(1)
    dist = {row[0]: row[1:] for row in sections["distribution"]["rows"][1:]}
    for i, c in enumerate(CLASSES):
        assert dist[c] == [str((y == i).sum()), str((pred == i).sum()), str((test_pred == i).sum())]
    crosstab = pd.crosstab(y, pred)
    for true, predicted, n, _ in sections["confused"]["rows"][1:]:
        assert int(n) == crosstab.loc[CLASSES.index(true), CLASSES.index(predicted)] and true != predicted
    assert len(sections["confusion"]["imgs"]) == 2


def test_galleries_show_the_highest_loss_images_and_their_gradcam(report):
    run, _, _, sections = report
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    y = oof["label"].map(CLASSES.index).to_numpy()
    loss = -np.log(oof[CLASSES].to_numpy()[np.arange(len(y)), y])
    expected = oof["id"].to_numpy()[np.argsort(-loss, kind="stable")][:24]
    listed = [row[0] for row in sections["losses"]["rows"][1:]]
    assert listed == list(expected)
    assert [float(row[-1]) for row in sections["losses"]["rows"][1:]] == pytest.approx(loss[np.argsort(-loss)][:24],
                                                                                        abs=1e-4)
    assert len(sections["losses"]["imgs"]) == 24 and _png(sections["losses"]["imgs"][0]).size == (16, 16)
    assert len(sections["gradcam"]["imgs"]) == 8 * 3  # image, CAM for the predicted class, CAM for the true class
    overlay = np.asarray(_png(sections["gradcam"]["imgs"][1]))
    assert overlay.shape == (16, 16, 3) and overlay.std() > 0


def test_calibration_matches_an_independent_ece(report):
    run, _, _, sections = report
    oof = pd.read_csv(run / "oof.csv")
    probs, y = oof[CLASSES].to_numpy(), oof["label"].map(CLASSES.index).to_numpy()
    conf, right = probs.max(1), probs.argmax(1) == y
    ece = sum(abs(right[m].mean() - conf[m].mean()) * m.sum()
              for lo in np.arange(10) / 10 if (m := (conf > lo) & (conf <= lo + 0.1)).any()) / len(y)
    assert f"ECE): {ece:.4f}" in "".join(sections["calibration"]["text"])


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def screenshot(page: Path, png: Path, tmp: Path) -> str:
    assert Path(CHROMIUM).exists(), "Chromium is missing: `make chromium` installs Debian's package"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp / 'chromium'}", "--enable-logging=stderr", "--v=0",
                          f"--screenshot={png}", "--window-size=1280,2000", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stderr


def test_report_opens_in_chromium_without_console_errors(report, tmp_path):
    _, out, _, _ = report
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    assert any("boom" in m for m in console_messages(screenshot(bad, tmp_path / "bad.png", tmp_path)))  # detector works
    png = tmp_path / "report.png"
    assert console_messages(screenshot(out, png, tmp_path)) == []
    shot = np.asarray(Image.open(png).convert("L"))
    assert shot.shape == (2000, 1280) and shot.std() > 20  # a rendered page, not a blank one
    assert (shot[:60] < 80).mean() > 0.5  # the dark header bar is at the top


def test_cli_report_writes_where_asked_and_refuses_two_runs(two_runs, tmp_path):
    run, other = two_runs
    out = tmp_path / "r.html"
    res = subprocess.run(podium_cmd("report", str(run), "--out", str(out), "--gradcam", "0", "--gallery", "4"),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    sections = Page(out.read_text()).sections
    assert len(sections["losses"]["imgs"]) == 4 and sections["gradcam"]["imgs"] == []
    res = subprocess.run(podium_cmd("report", str(run), str(other)), capture_output=True, text=True)
    assert res.returncode == 2 and "--compare" in res.stderr and "Traceback" not in res.stderr


def test_report_without_reachable_images_still_has_every_number(two_runs, tmp_path):
    run, _ = two_runs
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    (moved / "config.yaml").write_text((moved / "config.yaml").read_text().replace("/images", "/gone"))
    sections = Page(build_report(moved, gradcam=2).read_text()).sections
    assert list(sections) == SECTIONS and sections["losses"]["imgs"] == []
    assert len(sections["losses"]["rows"]) == 25 and "Images not shown" in "".join(sections["losses"]["text"])
