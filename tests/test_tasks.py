"""Task kinds: reading labels, targets, probabilities, multi-task metrics, thresholds, combine, submissions, and a
tiny multi-label and multi-task competition trained and predicted end to end from config alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, log_loss

from podium.config import DataConfig, load_config
from podium.data.sources import load_train
from podium.errors import PodiumError
from podium.tasks import TASKS, Multilabel, Multitask, make_task, metric_names
from podium.tasks.check import check_config
from podium.tasks.combine import Combine
from podium.thresholds import fit_thresholds
from tests.conftest import podium_cmd
from tests.task_data import LABELS, write_multilabel, write_multitask


def test_registry_lists_every_kind_and_config_names_them():
    assert list(TASKS) == ["multiclass", "multilabel", "multitask"]
    assert load_config(None).data.task == "multiclass"
    with pytest.raises(PodiumError, match="data.task"):
        check_config(load_config(None, ["data.task=multihead"]))


def test_config_defaults_follow_the_task():
    ml = load_config(None, ["data.task=multilabel", "data.label_col=[a, b]"])
    assert (ml.train.loss, ml.cv.metric, ml.cv.strategy) == ("bce", "per_label_accuracy", "multilabel")
    assert check_config(
        load_config(None, ["data.task=multilabel", "train.loss=asl"])).train.loss_args["gamma_neg"] == 4.0
    mc = load_config(None)
    assert (mc.train.loss, mc.cv.metric, mc.cv.strategy) == ("cross_entropy", "accuracy", "stratified")  # unchanged
    mt = load_config(None, ["data.task=multitask", "data.label_col=[mask, age]", "cv.metric=accuracy_age"])
    assert mt.train.loss == "cross_entropy" and "f1_macro_mask" in metric_names(mt.data)


@pytest.mark.parametrize("overrides, match", [
    (["data.task=multilabel", "train.loss=focal"], "needs a multi-label loss: bce | asl"),
    (["train.loss=asl"], "asl is a multi-label loss"),
    (["data.task=multitask", "data.label_col=[a, b]", "train.loss=bce"], "bce is a multi-label loss"),
    (["data.label_col=[a, b]"], "set data.task=multilabel"),
    (["data.task=multitask", "data.label_col=a"], "list of at least two columns"),
    (["data.task=multitask", "data.label_col=[a, b]", "model.head=arcface"], "model.head=linear or cosine"),
    (["data.task=multilabel", "posthoc.method=prior"], "multiclass only"),
    (["data.task=multilabel", "cv.metric=accuracy"], r"unknown metric 'accuracy' for data.task=multilabel"),
    (["data.task=multilabel", "train.sampler=class_balanced"], "train.sampler=random"),
    (["data.combine=a+b"], "data.combine"),
    (["data.task=multitask", "data.label_col=[a, b]", "train.task_weights=[1]"], "one non-negative weight per task"),
])
def test_config_refuses_what_the_task_cannot_do(overrides, match):
    with pytest.raises(PodiumError, match=match):  # the schema's checks, then the registries' (cv.metric)
        check_config(load_config(None, overrides))


def test_both_multilabel_formats_read_the_same_labels(tmp_path):
    cols = load_config(write_multilabel(tmp_path / "cols"))
    delim = load_config(write_multilabel(tmp_path / "delim", delimited=True))
    (fc, oc), (fd, od) = load_train(cols), load_train(delim)
    assert oc == LABELS and od == sorted(LABELS)
    tc, td = make_task(cols.data, oc), make_task(delim.data, od)
    hot_c, hot_d = tc.encode(fc), td.encode(fd)
    np.testing.assert_array_equal(hot_c, hot_d[:, [od.index(c) for c in oc]])
    assert hot_c.dtype == np.float32 and hot_c.shape == (48, 3)
    np.testing.assert_array_equal(tc.parse(fc["label"]), hot_c)  # OOF text round-trips
    raw = pd.read_csv(tmp_path / "cols" / "train.csv", dtype={"id": str})
    np.testing.assert_array_equal(hot_c, raw[LABELS].to_numpy())


def test_bad_multilabel_cells_are_reported_with_their_row(tmp_path):
    cfg = write_multilabel(tmp_path / "c")
    frame = pd.read_csv(tmp_path / "c" / "train.csv", dtype=str)
    frame.loc[4, "mid"] = "yes"
    frame.to_csv(tmp_path / "c" / "train.csv", index=False)
    with pytest.raises(PodiumError, match=r"row 6: column 'mid' holds 'yes'"):
        load_train(load_config(cfg))


def test_multitask_targets_outputs_and_probabilities(tmp_path):
    cfg = load_config(write_multitask(tmp_path / "c"))
    frame, outputs = load_train(cfg)
    assert outputs == ["shape:0", "shape:1", "shape:2", "bright:0", "bright:1"]
    task = make_task(cfg.data, outputs)
    y = task.encode(frame)
    raw = pd.read_csv(tmp_path / "c" / "train.csv")
    np.testing.assert_array_equal(y, raw[["shape", "bright"]].to_numpy())
    np.testing.assert_array_equal(task.parse(frame["label"]), y)
    np.testing.assert_array_equal(frame["target"], 2 * raw["shape"] + raw["bright"])  # the combination's index
    probs = task.activation(torch.randn(4, 5)).numpy()
    np.testing.assert_allclose(probs[:, :3].sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(probs[:, 3:].sum(1), 1, rtol=1e-6)


def test_multitask_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    task = Multitask(DataConfig(task="multitask", label_col=["m", "g"]), ["m:0", "m:1", "m:2", "g:0", "g:1"])
    y = np.stack([rng.integers(0, 3, 200), rng.integers(0, 2, 200)], axis=1)
    p = np.concatenate([rng.dirichlet(np.ones(3), 200), rng.dirichlet(np.ones(2), 200)], axis=1)
    s = task.score(y, p)
    pm, pg = p[:, :3].argmax(1), p[:, 3:].argmax(1)
    assert s["accuracy_m"] == pytest.approx(accuracy_score(y[:, 0], pm))
    assert s["f1_macro_g"] == pytest.approx(f1_score(y[:, 1], pg, average="macro"))
    assert s["accuracy"] == pytest.approx(accuracy_score(2 * y[:, 0] + y[:, 1], 2 * pm + pg))
    assert s["f1_macro"] == pytest.approx(f1_score(2 * y[:, 0] + y[:, 1], 2 * pm + pg, average="macro"))
    rare = y[:, 0] < 2  # no image of mask 2 (nor predicted): its combinations are left out, not counted as F1 0
    p2 = p[rare].copy()
    p2[:, 2] = 0
    assert task.score(y[rare], p2)["f1_macro"] == pytest.approx(
        f1_score(2 * y[rare, 0] + y[rare, 1], 2 * p2[:, :3].argmax(1) + p2[:, 3:].argmax(1), average="macro"))
    assert s["logloss"] == pytest.approx((log_loss(y[:, 0], p[:, :3]) + log_loss(y[:, 1], p[:, 3:])) / 2)


def test_threshold_fitting_improves_the_oof_metric_on_a_constructed_case():
    """Label 0's probabilities are all shifted down (positives near 0.35), label 1's up (negatives near 0.65):
    0.5 gets both wrong half the time, per-label thresholds separate them."""
    rng = np.random.default_rng(1)
    y = (rng.random((400, 3)) < 0.4).astype(int)
    p = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.05, y.shape), 0.01, 0.99)
    p[:, 0] -= 0.3
    p[:, 1] += 0.3
    task = Multilabel(DataConfig(task="multilabel", label_col=["a", "b", "c"]), ["a", "b", "c"])
    for metric in ("per_label_accuracy", "f1_macro", "f1_micro", "f1_samples", "exact_match"):
        task.set_decision(None)
        before = task.score(y, p)[metric]
        task.set_decision(task.fit_decision(y, p, metric))
        after = task.score(y, p)[metric]
        # f1_samples scores an image with no labels 0 whatever is predicted (sklearn's zero_division=0)
        ceiling = y.any(1).mean() if metric == "f1_samples" else 1.0
        assert after > before + 0.1 and after > ceiling - 0.03, (metric, before, after)
        assert task.thresholds[2] == 0.5  # a label already decided right keeps the default
        assert task.thresholds[0] < 0.4 < 0.6 < task.thresholds[1]
    np.testing.assert_array_equal(fit_thresholds(y, p, "mAP"), 0.5)  # threshold-free: nothing to fit


def test_threshold_search_is_exact_for_each_metric():
    """The vectorised per-label search picks a value that the plain metric scores at least as well as any."""
    from podium.metrics import MULTILABEL_METRICS
    from podium.thresholds import GRID

    rng = np.random.default_rng(2)
    y = (rng.random((60, 2)) < 0.5).astype(int)
    p = rng.random((60, 2))
    for metric in ("per_label_accuracy", "f1_macro", "f1_micro", "f1_samples", "exact_match"):
        thr = fit_thresholds(y, p, metric)
        fn = MULTILABEL_METRICS[metric].fn
        best = fn(y, p, thr)
        for k in range(2):
            for g in GRID:
                alt = thr.copy()
                alt[k] = g
                assert fn(y, p, alt) <= best + 1e-12, (metric, k, g)


# --------------------------------------------------------------------------------------------- combine

S1 = {"mask": ["0", "1", "2"], "gender": ["0", "1"], "age": ["0", "1", "2"]}


def test_combine_formula_and_table_round_trip(tmp_path):
    formula = Combine("6*mask + 3*gender + age", S1)
    grid = formula.full_table()
    assert sorted(grid["class"].astype(int)) == list(range(18))  # one class per combination
    table_path = tmp_path / "combine.csv"
    grid.rename(columns={"class": "label"}).sample(frac=1.0, random_state=0).to_csv(table_path, index=False)
    table = Combine(str(table_path), S1)
    pd.testing.assert_frame_equal(table.full_table(), grid)
    # back from the class to the tasks: the S1 label decomposes into what it was made of
    label = grid["class"].astype(int)
    decomposed = pd.DataFrame({"mask": label // 6, "gender": label % 6 // 3, "age": label % 3}).astype(str)
    pd.testing.assert_frame_equal(decomposed, grid[["mask", "gender", "age"]].reset_index(drop=True))


@pytest.mark.parametrize("spec, match", [
    ("__import__('os').system('true')", "is not allowed"),
    ("mask + colour", "'colour' is not allowed"),
    ("6*mask +", "neither a formula"),
])
def test_combine_refuses_anything_but_arithmetic_on_tasks(spec, match):
    with pytest.raises(PodiumError, match=match):
        Combine(spec, S1)


def test_combine_table_must_cover_what_is_predicted(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"mask": ["0"], "gender": ["0"], "age": ["0"], "label": ["a"]}).to_csv(path, index=False)
    with pytest.raises(PodiumError, match="has no row for"):
        Combine(str(path), S1).apply({"mask": np.array(["1"]), "gender": np.array(["0"]), "age": np.array(["0"])})
    with pytest.raises(PodiumError, match="integer classes"):
        Combine("2*mask", {"mask": ["no", "yes"]})


# ------------------------------------------------------------------------------------------ submissions


def test_multilabel_fill_writes_01_columns_or_delimited_labels():
    task = Multilabel(DataConfig(task="multilabel", label_col=["a", "b", "c"]), ["a", "b", "c"])
    task.set_decision({"thresholds": {"a": 0.5, "b": 0.2, "c": 0.9}})
    probs = np.array([[0.6, 0.3, 0.8], [0.1, 0.1, 0.95]])
    cols = task.fill(pd.DataFrame({"id": ["x", "y"]}), ["c", "a", "b"], probs, "t")
    assert cols.to_dict("list") == {"id": ["x", "y"], "c": [0, 1], "a": [1, 0], "b": [1, 0]}
    one = task.fill(pd.DataFrame({"id": ["x", "y"]}), ["labels"], probs, "t")
    assert one["labels"].tolist() == ["a b", "c"]
    with pytest.raises(PodiumError, match="neither the labels"):
        task.fill(pd.DataFrame({"id": ["x"]}), ["a", "q"], probs[:1], "t")


def test_multitask_fill_combines_or_writes_one_column_per_task():
    data = DataConfig(task="multitask", label_col=["m", "g"], combine="2*m + g")
    task = Multitask(data, ["m:0", "m:1", "m:2", "g:0", "g:1"])
    probs = np.array([[0.1, 0.2, 0.7, 0.4, 0.6], [0.8, 0.1, 0.1, 0.9, 0.1]])
    assert task.fill(pd.DataFrame({"id": [1, 2]}), ["label"], probs, "t")["label"].tolist() == ["5", "0"]
    per_task = task.fill(pd.DataFrame({"id": [1, 2]}), ["g", "m"], probs, "t")
    assert per_task[["m", "g"]].values.tolist() == [["2", "1"], ["0", "0"]]
    no_combine = Multitask(data.model_copy(update={"combine": None}), task.outputs)
    with pytest.raises(PodiumError, match="data.combine is not set"):
        no_combine.fill(pd.DataFrame({"id": [1, 2]}), ["label"], probs, "t")


# ------------------------------------------------------------------------------------------- end to end
# In-process (the CLI is a thin map onto these calls; tests/test_cli.py covers it): a subprocess per command would
# pay the torch import each time.


def test_multilabel_end_to_end_from_config_alone(tmp_path):
    from podium.commands.predict import predict
    from podium.commands.train import train
    from podium.data.splits import make_folds_file

    path = write_multilabel(tmp_path / "c")
    root = tmp_path / "c"
    cfg = load_config(path, ["train.epochs=1"])
    assert cfg.cv.strategy == "multilabel"  # the task's default
    make_folds_file(cfg)
    metrics = train(cfg)
    run = root / "runs" / "tiny-ml"
    assert metrics["cv_metric"] == "per_label_accuracy" and metrics["complete"]
    assert set(metrics["oof"]) >= {"per_label_accuracy", "exact_match", "f1_micro", "f1_macro", "f1_samples", "mAP"}
    thresholds = json.loads((run / "thresholds.json").read_text())
    assert list(thresholds["thresholds"]) == LABELS and thresholds["folds"] == [0, 1]
    assert metrics["thresholds"]["oof_after"] >= metrics["thresholds"]["oof_before"]
    predict(run)
    sub = pd.read_csv(run / "submission.csv", dtype={"id": str})
    template = pd.read_csv(root / "sample_submission.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", *LABELS] and sub["id"].tolist() == template["id"].tolist()
    assert set(np.unique(sub[LABELS].to_numpy())) <= {0, 1}
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id").loc[sub["id"], LABELS]
    thr = np.array([thresholds["thresholds"][c] for c in LABELS])
    np.testing.assert_array_equal(sub[LABELS].to_numpy(), (probs.to_numpy() >= thr).astype(int))
    # thresholds fitted on other folds than those predicting are refitted, not silently used
    stale = {**thresholds, "folds": [0]}
    (run / "thresholds.json").write_text(json.dumps(stale))
    predict(run, overwrite=True)
    assert json.loads((run / "thresholds.json").read_text())["folds"] == [0, 1]
    _loads_through_rundir(run, LABELS)


def test_multitask_and_single_head_end_to_end_from_config_alone(tmp_path):
    from podium.commands.predict import predict
    from podium.commands.train import train

    path = write_multitask(tmp_path / "c")
    root = tmp_path / "c"
    metrics = train(load_config(path, ["train.epochs=1", "train.task_weights=[1.0, 0.5]"]))
    run = root / "runs" / "tiny-mt"
    assert {"accuracy", "f1_macro", "accuracy_shape", "accuracy_bright"} <= set(metrics["oof"])
    folds = pd.read_csv(run / "folds.csv", dtype={"id": str}).merge(
        pd.read_csv(root / "train.csv", dtype={"id": str}), on="id")
    assert (folds.groupby("person")["fold"].nunique() == 1).all()  # group folds: no person in two folds
    predict(run)
    sub = pd.read_csv(run / "submission.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", "label"] and set(sub["label"]) <= set(range(6))
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id").loc[sub["id"]]
    shape = probs[["shape:0", "shape:1", "shape:2"]].to_numpy().argmax(1)
    bright = probs[["bright:0", "bright:1"]].to_numpy().argmax(1)
    np.testing.assert_array_equal(sub["label"], 2 * shape + bright)
    _loads_through_rundir(run, ["shape:0", "shape:1", "shape:2", "bright:0", "bright:1"])
    # the single-head alternative: same data and folds, the combined column, one 6-way softmax
    train(load_config(path, ["name=single", "data.task=multiclass", "data.label_col=label", "data.combine=null",
                             "train.epochs=1"]))
    assert json.loads((root / "runs" / "single" / "classes.json").read_text()) == [str(c) for c in range(6)]
    pd.testing.assert_frame_equal(pd.read_csv(root / "runs" / "single" / "folds.csv"), pd.read_csv(run / "folds.csv"))


def _loads_through_rundir(run: Path, outputs: list[str]) -> None:
    """Every file of a finished run of any task reads through RunDir's checked readers."""
    from podium.run.rundir import RunDir

    rd = RunDir(run)
    assert rd.classes() == outputs and rd.metrics()["complete"] and rd.finished_folds() == [0, 1]
    oof, folds = rd.oof(outputs), rd.folds()
    assert sorted(oof["id"]) == sorted(folds["id"]) and oof[outputs].notna().all().all()
    assert rd.test_probs(outputs) is not None and len(rd.data_version()) == 64 and rd.done(1)["seconds"] > 0
    assert rd.predict_record()["folds"] == [0, 1] and not rd.curves(0).empty


def _fake_run(tmp_path: Path) -> Path:
    """A finished multi-label run folder as `podium train` leaves it (no training needed to test refusals)."""
    from podium.config import save_config

    cfg = load_config(write_multilabel(tmp_path / "c"))
    run = tmp_path / "c" / "runs" / "tiny-ml"
    (run / "fold0").mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    (run / "classes.json").write_text(json.dumps(LABELS))
    (run / "metrics.json").write_text(json.dumps({"cv_metric": "per_label_accuracy", "cv": 0.5, "oof": {}}))
    oof = pd.DataFrame({"id": ["000"], "fold": [0], "label": ["top"], "top": [0.9], "left": [0.1], "mid": [0.2]})
    oof.to_csv(run / "oof.csv", index=False)
    oof[["id", "fold"]].to_csv(run / "folds.csv", index=False)
    return run


def test_commands_for_multiclass_runs_refuse_other_tasks_cleanly(tmp_path):
    from podium.commands.ensemble import ensemble_runs
    from podium.report.folders import export_errors
    from podium.report.rundata import load_run
    from podium.run.decisions import fit_run

    run = _fake_run(tmp_path)
    for call in (lambda: load_run(run), lambda: fit_run(run, "prior", "accuracy"),
                 lambda: ensemble_runs([run, run]), lambda: export_errors(run, tmp_path / "e")):
        with pytest.raises(PodiumError, match="multiclass runs only; this run is data.task=multilabel"):
            call()
    res = subprocess.run(podium_cmd("report", str(run)), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "multiclass runs only" in res.stderr and "Traceback" not in res.stderr
