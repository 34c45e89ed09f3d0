"""RunDir owns the run folder: no module outside podium.run spells a run file's name (podium.run.files.RUN_FILES).

Every string literal of src/podium outside run/ is searched (f-string pieces included; docstrings and comments are
documentation and left alone). A help text or message meaning "that file of any run" may write RUN/<name> or
fold<k>/<name>. The few files of the same name that are not a run's are listed in ELSEWHERE with why.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import podium
from podium.run.files import RUN_FILES, TTA_OOF

SRC = Path(podium.__file__).parent
# (module, name): a file of that name that is not a run's
ELSEWHERE = {
    ("data/splits.py", "folds.csv"): "the persisted split next to the training data (cv.folds_file)",
    ("data/scenarios/__init__.py", "config.yaml"): "a generated competition's config",
    ("data/scenarios/letters.py", "config.yaml"): "a generated competition's config",
    ("data/scenarios/profiles.py", "config.yaml"): "a generated competition's config",
    ("commands/demo.py", "config.yaml"): "the demo folder's config",
    ("ship/package.py", "submission.csv"): "what a code-submission package's predict.py writes, outside any run",
    ("ship/runtime.py", "submission.csv"): "the package's predict.py default --out, outside any run",
}
_PLACEHOLDER = ("RUN/", "fold<k>/")  # documentation: "this file in any run"


def _pattern(names) -> re.Pattern:
    # a name stands alone: not the tail of another name (sample_submission.csv) nor a longer word
    alternatives = "|".join(re.escape(n) + ("" if n == TTA_OOF else r"(?![\w-])") for n in names)
    return re.compile(rf"(?<![\w.-])(?:{alternatives})")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are a statement of their own: docstrings and string 'comments'."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def spellings(source: str, names=RUN_FILES) -> list[tuple[int, str]]:
    """(line, name) of every run-file name spelled in a string literal of `source`."""
    tree = ast.parse(source)
    skip, pattern, found = _docstrings(tree), _pattern(names), []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        for match in pattern.finditer(node.value):
            if not node.value[:match.start()].endswith(_PLACEHOLDER):
                found.append((node.lineno, match.group()))
    return found


def test_no_module_outside_run_names_a_run_file():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if module.startswith("run/"):
            continue
        lines = path.read_text().splitlines()
        for line, name in spellings(path.read_text()):
            if (module, name) not in ELSEWHERE:
                found.append(f"src/podium/{module}:{line}: {name}: {lines[line - 1].strip()}")
    assert not found, ("run files are RunDir's (podium.run.rundir): use its paths, readers and writers instead of "
                       "these spellings:\n" + "\n".join(found))


def test_every_exception_is_still_needed():
    used = {(path.relative_to(SRC).as_posix(), name) for path in SRC.rglob("*.py")
            for _, name in spellings(path.read_text())}
    assert set(ELSEWHERE) <= used, f"no longer spelled, remove from ELSEWHERE: {set(ELSEWHERE) - used}"


@pytest.mark.parametrize("code, names", [
    ('rd / "oof.csv"', ["oof.csv"]),
    ('f"{run}/posthoc.json was fitted"', ["posthoc.json"]),
    ('glob("fold*/done.json")', ["done.json"]),
    ('f"oof_tta-{key}.csv"', ["oof_tta-"]),
    ('x = ("config.yaml", "best.ckpt")', ["config.yaml", "best.ckpt"]),
    ('x = "has no test_probs.csv yet"', ["test_probs.csv"]),
    ('"see RUN/test_probs.csv and fold<k>/metrics.csv"', []),
    ('"sample_submission.csv, my.oof.csv, oof.csvx, metrics.json5"', []),
    ('def f():\n    """Reads oof.csv."""\n    # and metrics.json\n    return 1', []),
])
def test_the_search_finds_spellings_and_leaves_documentation(code, names):
    assert [name for _, name in spellings(code)] == names
