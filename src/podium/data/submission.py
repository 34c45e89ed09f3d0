"""The submission: our predictions in the competition's template (`data.sample_submission`), its id order and
column names kept; how the columns are filled is the task's (podium.tasks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError, fmt_list
from podium.io import read_csv


def align_submission(template_path: Path, id_col: str, ids: np.ndarray, probs: np.ndarray,
                     classes: list[str], task=None) -> pd.DataFrame:
    """Fill the competition's template with our predictions, keeping its id order and column names; how the columns
    are filled is the task's (default multiclass: class names or probabilities; podium.tasks)."""
    from podium.tasks import Multiclass

    template = read_csv(template_path, "data.sample_submission")
    if id_col not in template.columns:
        raise PodiumError(f"Sample submission '{template_path}' has no id column '{id_col}' (data.id_col). "
                          f"Its columns: {fmt_list(template.columns)}.")
    ours = pd.Index(ids)
    theirs = pd.Index(template[id_col])
    missing, extra = theirs.difference(ours), ours.difference(theirs)
    if len(missing) or len(extra):
        raise PodiumError(f"Test ids do not match '{template_path}': {len(missing)} id(s) in the template but not in "
                          f"the test set (first: {fmt_list(missing[:5])}); {len(extra)} in the test set but not the "
                          f"template (first: {fmt_list(extra[:5])}). Point data.test_csv at the matching test list.")
    order = pd.Series(np.arange(len(ids)), index=ours).loc[template[id_col]].to_numpy()
    other = [c for c in template.columns if c != id_col]
    task = task or Multiclass(None, classes)
    return task.fill(template[[id_col]].copy(), other, probs[order], str(template_path))
