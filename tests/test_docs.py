"""The README stays short and every guide stays reachable: README <= 250 lines, its first code block is the two
set-up commands, every relative link (and #anchor) in README.md and docs/*.md resolves, every guide is linked from
the README, and every `Guide:` line in a command's --help names an existing file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code: links written there are examples, not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail into docs/"


def test_readme_first_code_block_is_the_two_setup_commands():
    block = FENCE.search(README.read_text(encoding="utf-8"))
    assert block, "README.md has no code block"
    lines = block.group(0).splitlines()[1:-1]
    commands = [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    assert commands == ["make demo", "make test"], f"README's first code block runs {commands}"


def test_readme_headline_figures_are_marked():
    lines = [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]
    assert "<!-- figures:headline -->" in lines
    start = lines.index("<!-- figures:headline -->")
    assert "<!-- /figures -->" in lines[start:]  # closed after it (other blocks, such as the demo's, may come first)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor.lower() not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_every_guide_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README) if t.partition("#")[0]}
    unlinked = [p.relative_to(ROOT).as_posix() for p in DOCS if p.resolve() not in linked]
    assert DOCS and not unlinked, f"guides not linked from README.md: {unlinked}"


def test_every_command_help_names_an_existing_guide():
    source = (ROOT / "src" / "podium" / "cli.py").read_text(encoding="utf-8")
    guides = re.findall(r"^\s*Guide: (.+)$", source, re.M)
    assert guides, "no `Guide:` line in any command's docstring"
    missing = [path for line in guides for path in re.findall(r"[\w./-]+\.md", line) if not (ROOT / path).is_file()]
    assert not missing, f"command help names guides that do not exist: {missing}"
