"""`podium demo`, measured: the whole loop on scikit-learn's digits (split, 5 folds x 12 epochs of `podium_cnn`,
TTA checked on OOF, submission) with its CV, test and wall-time figures, for the README's first screen.

    .venv/bin/python benchmarks/demo.py            # ~1 min on 2 CPU cores; writes benchmarks/results/demo.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from provenance import write_results

from podium.commands.demo import run_demo

RESULTS = Path(__file__).parent / "results" / "demo.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        res = run_demo(Path(tmp) / "demo")
        wall = time.time() - t0
    write_results(args.out, {"benchmark": "demo", "cv": res.cv, "cv_tta": res.cv_tta, "tta_checked": "hflip",
                             "test_accuracy_by_tta": res.test_accuracy_by_tta, "submitted_tta": res.tta,
                             "wall_seconds": round(wall, 1), "demo_seconds": round(res.seconds, 1)})
    print(f"wrote {args.out}: CV {res.cv:.4f}, test {res.test_accuracy:.4f}, {wall:.0f} s")


if __name__ == "__main__":
    main()
