"""benchmarks/figures.py: the tables in README.md and docs/*.md are what benchmarks/results renders, and the check
catches a table that drifted from its results. No training: these read JSON and markdown only."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import figures  # noqa: E402
import provenance  # noqa: E402


def markdown_files() -> list[Path]:
    return figures.default_files()


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_matches_its_results(path):
    text = path.read_text()
    new, changed, problems = figures.rewrite(text)
    assert not problems, problems
    assert not changed, (f"{path.name}: blocks {changed} differ from benchmarks/results; "
                         "run `python benchmarks/figures.py` and commit the result")
    assert new == text


def test_readme_holds_the_headline_block():
    names = [m.group("name") for m in figures.BLOCK.finditer((ROOT / "README.md").read_text())]
    assert "headline" in names


@pytest.mark.parametrize("name", sorted(figures.RENDERERS))
def test_every_renderer_renders_and_names_its_results(name):
    body, res = figures.render(name)
    # a table (header, rule, rows), or the demo's printout as a code block
    assert body.count("\n|") >= 2 or (name == "demo" and body.startswith("```") and body.count("\n") >= 5)
    assert res.cited
    for file, _, _ in res.cited:
        assert f"`benchmarks/results/{file}`" in body.splitlines()[-1]


def test_a_changed_result_changes_the_table():
    data = json.loads((figures.RESULTS / "fashion_mnist.json").read_text())
    before, _ = figures.render("headline")
    changed = copy.deepcopy(data) | {"test_accuracy": 0.5123, "wall_seconds": 4321.0}
    after, _ = figures.render("headline", {"fashion_mnist.json": changed})
    assert after != before
    assert "0.512" in after and "4,321 s" in after
    # and every renderer reads its numbers from the file it names: perturb every float in it
    for name, r in figures.RENDERERS.items():
        base, _ = figures.render(name)
        bumped = {f: _bump(json.loads((figures.RESULTS / f).read_text())) for f in r.files}
        assert figures.render(name, bumped)[0] != base, name


def _bump(obj):
    if isinstance(obj, float):
        return obj * 0.5 + 0.1234
    if isinstance(obj, dict):
        return {k: _bump(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_bump(v) for v in obj]
    return obj


def test_check_reports_a_tampered_number(tmp_path, capsys):
    body, _ = figures.render("long_tail")
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Long tails\n\n<!-- figures:long_tail -->\n\n{body}<!-- /figures -->\n\nafter\n")
    assert figures.main(["--check", str(doc)]) == 0
    tampered = doc.read_text().replace("0.882", "0.892", 1)
    assert tampered != doc.read_text()
    doc.write_text(tampered)
    capsys.readouterr()
    assert figures.main(["--check", str(doc)]) == 1
    assert "figures:long_tail differs" in capsys.readouterr().err
    assert doc.read_text() == tampered  # --check changes nothing
    assert figures.main([str(doc)]) == 0  # without --check: rewritten
    assert "0.892" not in doc.read_text() and doc.read_text().endswith("<!-- /figures -->\n\nafter\n")
    assert figures.main(["--check", str(doc)]) == 0


def test_check_reports_unknown_names_and_unclosed_markers(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- figures:no_such_table -->\nx\n<!-- /figures -->\n<!-- figures:headline -->\nno end\n")
    assert figures.main(["--check", str(doc)]) == 1
    err = capsys.readouterr().err
    assert "unknown renderer 'no_such_table'" in err and "without a matching" in err


# ------------------------------------------------------------------------------------------------ staleness


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def history():
    """(L, P): the last commit that changed benchmarks/figures.py and its parent."""
    try:
        last = git("log", "-1", "--format=%H", "--", "benchmarks/figures.py")
        parent = git("rev-parse", f"{last}~1")
    except (subprocess.CalledProcessError, OSError):
        pytest.skip("needs the git history")
    return last, parent


def test_staleness(history):
    last, parent = history
    paths = ("benchmarks/figures.py",)
    assert figures.staleness(None, paths) == "no provenance commit recorded"
    assert figures.staleness({"commit": None}, paths) == "no provenance commit recorded"
    assert "not in this repository" in figures.staleness({"commit": "0" * 40}, paths)
    assert figures.staleness({"commit": last}, paths) is None  # nothing it measures changed since
    assert "benchmarks/figures.py" in figures.staleness({"commit": parent}, paths)  # changed since
    # measured on the parent with figures.py already edited as committed next: fresh
    now = git("rev-parse", "HEAD:benchmarks/figures.py")
    dirty = {"commit": parent, "dirty": True, "dirty_files": {"benchmarks/figures.py": now}}
    assert figures.staleness(dirty, paths) is None
    # ... with an edit that was never committed: stale
    other = {"commit": last, "dirty": True, "dirty_files": {"benchmarks/figures.py": "1" * 40}}
    assert "uncommitted" in figures.staleness(other, paths)


def test_results_without_provenance_are_reported_stale(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    for f in figures.RESULTS.glob("*.json"):
        (folder / f.name).write_text(f.read_text())
    data = json.loads((folder / "near_duplicates.json").read_text())
    data.pop("provenance", None)
    (folder / "near_duplicates.json").write_text(json.dumps(data))
    lines = figures.stale_report(folder)
    assert any("near_duplicates.json" in line and "no provenance" in line for line in lines)
    doc = tmp_path / "doc.md"
    doc.write_text("no blocks here\n")
    assert figures.main(["--check", str(doc), "--results", str(folder)]) == 0  # warnings only
    assert "warning: stale: benchmarks/results/near_duplicates.json" in capsys.readouterr().err
    assert figures.main(["--check", "--strict", str(doc), "--results", str(folder)]) == 1


def test_write_results_keeps_keys_and_adds_provenance(tmp_path):
    out = tmp_path / "r.json"
    provenance.write_results(out, {"benchmark": "x", "value": 1.5})
    data = json.loads(out.read_text())
    assert data["benchmark"] == "x" and data["value"] == 1.5
    p = data["provenance"]
    for key in ("commit", "dirty", "date", "device", "torch", "timm", "lightning", "python", "cpu_count",
                "torch_threads", "loadavg_start", "loadavg_end", "command"):
        assert key in p
    assert isinstance(p["dirty"], bool)
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_the_demo_printout_follows_its_results():
    data = json.loads((figures.RESULTS / "demo.json").read_text())
    changed = copy.deepcopy(data) | {"cv": 0.8123, "demo_seconds": 99.0}
    after, _ = figures.render("demo", {"demo.json": changed})
    assert "0.8123" in after and "99 s" in after
