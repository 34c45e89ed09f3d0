"""A `podium tune` study read back: the trial leaderboard, the confirmed ranking, parameter importances, and the
study's HTML page (optimisation history, importances, parallel coordinates as embedded images).

Optuna (and its matplotlib plots) are imported inside the functions: both are heavy.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime
from pathlib import Path

from podium.errors import PodiumError
from podium.io import atomic_write_text
from podium.report import html
from podium.report.plots import _plt, figure_uri
from podium.tune.study import CONFIRM, SURPLUS, StudyDir


def leaderboard(study) -> list[dict]:
    """Every trial but surplus ones, best first (then pruned by how far they got, then the rest by number)."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(SURPLUS):
            continue
        steps = sorted(t.intermediate_values)
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
                     "epochs": len(steps), "last": t.intermediate_values[steps[-1]] if steps else None,
                     "seconds": t.user_attrs.get("podium:seconds"), "run": t.user_attrs.get("podium:run"),
                     "retry_of": t.system_attrs.get("failed_trial")})
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    order = {TrialState.COMPLETE.name.lower(): 0, TrialState.PRUNED.name.lower(): 1}
    rows.sort(key=lambda r: (order.get(r["state"], 2), sign * r["value"] if r["value"] is not None else -r["epochs"],
                             r["trial"]))
    return rows


def rank_confirmed(study) -> list[dict]:
    """The finalists trained on every fold, by OOF CV (ties: the smaller fold std first)."""
    done = [v for k, v in study.user_attrs.items() if k.startswith(CONFIRM) and v.get("state") == "done"]
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    return sorted(done, key=lambda r: (sign * r["cv"], r["cv_fold_std"]))


def importances(study) -> dict[str, float]:
    """Optuna's fANOVA importance of each parameter over the finished trials ({} with fewer than 2 or none varied)."""
    import optuna
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2 or not any(len({repr(t.params.get(k)) for t in done}) > 1 for k in done[0].params):
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "parameter importances will be equal" on a handful of trials
            return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. every trial scored the same
        return {}


def figures(study) -> dict[str, str]:
    """Optimisation history, importances and parallel coordinates as PNG data URIs (those that can be drawn)."""
    import optuna.visualization.matplotlib as ovm

    _plt()  # the Agg backend, before optuna imports pyplot
    plots = {"history": ovm.plot_optimization_history, "parallel": ovm.plot_parallel_coordinate}
    if importances(study):
        plots["importances"] = ovm.plot_param_importances
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, plot in plots.items():
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, KeyError):
                continue  # e.g. no finished trial yet
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 4.5)
            out[name] = figure_uri(fig)
    return out


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def study_page(study, sd: StudyDir, out: Path | None = None) -> Path:
    """Write the study's self-contained HTML page (default tune-<study>/report.html) and return its path."""
    t0 = time.time()
    rows = leaderboard(study)
    if not rows:
        raise PodiumError(f"Study '{study.study_name}' has no trial yet: nothing to report.")
    keys = sorted({k for r in rows for k in r["params"]})
    table = html.table(["trial", "state", "value", "epochs", "seconds", *keys],
                       [[r["trial"], r["state"], _fmt(r["value"] if r["value"] is not None else r["last"]),
                         r["epochs"], _fmt(r["seconds"]), *[_fmt(r["params"].get(k)) for k in keys]] for r in rows],
                       left=2)
    ranked = rank_confirmed(study)
    confirmed = html.table(["trial", "OOF CV", "fold std", "search value", "run"],
                           [[r["trial"], _fmt(r["cv"]), _fmt(r["cv_fold_std"]), _fmt(r["search_value"]), r["run"]]
                            for r in ranked]) if ranked else '<p class="note">No finalist confirmed yet.</p>'
    imp = importances(study)
    imp_table = html.table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()]) if imp else \
        '<p class="note">Needs at least 2 finished trials that differ.</p>'
    pics = figures(study)
    titles = {"history": "Optimisation history", "importances": "Parameter importances",
              "parallel": "Parallel coordinates"}
    plots = "".join(f"<h3>{titles[k]}</h3>{html.img(uri, titles[k])}" for k, uri in pics.items())
    best = f"<pre>{html.esc(sd.best_yaml.read_text())}</pre>" if sd.best_yaml.exists() else \
        '<p class="note">Written after the confirm stage.</p>'
    sections = [("confirmed", "Confirmed finalists (every fold, OOF CV)", confirmed),
                ("trials", "Trials", table), ("importances", "Parameter importances", imp_table),
                ("plots", "Plots", plots or '<p class="note">No finished trial yet.</p>'),
                ("best", "best.yaml", best)]
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    page = html.page(f"podium tune: {study.study_name}", f"{len(rows)} trials, direction "
                     f"{study.direction.name.lower()}; generated {when} in {time.time() - t0:.1f} s", sections)
    out = out or sd.report
    atomic_write_text(out, page)
    return out
