"""RunDir's writers and readers: what is written reads back, for every task; optional files are optional; a damaged
file names itself and its fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.config import DataConfig
from podium.errors import PodiumError
from podium.run.files import RUN_FILES
from podium.run.rundir import RunDir
from podium.tasks import make_task

# (data.task, outputs as classes.json lists them, one label text per row as the OOF holds it)
TASKS = {
    "multiclass": (DataConfig(), ["Ankle boot", "T-shirt/top", "bag"], ["bag", "Ankle boot", "T-shirt/top"]),
    "multilabel": (DataConfig(task="multilabel"), ["top", "left", "mid"], ["top mid", "", "left"]),
    "multitask": (DataConfig(task="multitask", label_col=["shape", "bright"]),
                  ["shape:0", "shape:1", "bright:0", "bright:1"], ["0 1", "1 0", "1 1"]),
}


def _write_run(rd: RunDir, outputs: list[str], labels: list[str]) -> pd.DataFrame:
    ids = ["007", "010", "1e3"]  # ids that only survive as text
    rd.write_classes(outputs)
    rd.write_info(1, 3, ((0.5,), (0.25,)))
    rd.write_folds(pd.DataFrame({"id": ids[::-1], "fold": [1, 0, 0], "path": "x"}))
    oof = pd.DataFrame({"id": ids, "fold": [0, 0, 1], "label": labels})
    oof[outputs] = np.random.default_rng(0).random((3, len(outputs)))
    for k in (0, 1):
        rd.write_done(k, {"fold": k, "best_epoch": 1, "epochs_run": 2, "seconds": 1.5})
        rd.fold_dir(k).write_oof(oof[oof["fold"] == k])
        rd.fold_dir(k).write_curves(pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.5, 0.7]}))
    rd.write_oof(oof)
    return oof


@pytest.mark.parametrize("kind", list(TASKS))
def test_what_is_written_reads_back_whatever_the_task(tmp_path, kind):
    data, outputs, labels = TASKS[kind]
    rd = RunDir(tmp_path / "run")
    oof = _write_run(rd, outputs, labels)
    task = make_task(data, rd.classes())
    assert rd.classes() == outputs and rd.info()["std"] == [0.25] and rd.info()["n_train"] == 3
    assert list(rd.folds()["id"]) == ["007", "010", "1e3"] and list(rd.folds().columns) == ["id", "fold"]
    back = rd.oof(task.outputs)
    np.testing.assert_allclose(back[outputs].to_numpy(), oof[outputs].to_numpy())
    np.testing.assert_array_equal(task.parse(back["label"]), task.parse(oof["label"]))  # labels as trained
    assert list(rd.fold_dir(1).oof(outputs)["id"]) == ["1e3"]
    assert rd.finished_folds() == [0, 1] == rd.started_folds() and rd.done(1)["seconds"] == 1.5
    assert list(rd.curves(0)["val_accuracy"]) == [0.5, 0.7] and rd.curves(5).empty
    table = pd.DataFrame({"id": ["t1"], **{c: [0.5] for c in outputs}})
    assert rd.test_probs(outputs) is None and rd.write_test_probs(table) == rd.test_probs_csv
    assert rd.test_probs(outputs).equals(table)
    written = rd.write_tta_oof(["hflip"], "mean_probs", oof)
    assert written == rd.tta_oof_path(["hflip"], "mean_probs") and written.name == "oof_tta-hflip.csv"
    assert rd.oof(outputs, written.name)[outputs].equals(back[outputs])
    assert rd.tta_oof_path(["hflip", "vflip"], "mean_logits").name == "oof_tta-hflip+vflip-mean_logits.csv"


def test_files_newer_than_a_run_are_optional_and_record_what_they_hold(tmp_path):
    rd = RunDir(tmp_path)
    assert (rd.thresholds(), rd.posthoc(), rd.predict_record(), rd.data(), rd.data_version(), rd.done(0)) == (None,) * 6
    assert rd.tracking_id("sqlite:///x.db") is None
    rd.write_thresholds({"thresholds": [0.3], "folds": [0]})
    rd.write_posthoc({"method": "prior", "folds": [0, 1]})
    rd.write_predict_record({"oof": {"file": "oof_tta-hflip.csv", "folds": [0]}})
    rd.write_tracking_id("sqlite:///x.db", "abc")
    rd.fold_dir(2).write_tracking_id("sqlite:///x.db", "def")
    assert rd.thresholds()["thresholds"] == [0.3] and rd.posthoc()["folds"] == [0, 1]
    assert rd.predict_record()["oof"]["file"] == "oof_tta-hflip.csv"
    assert rd.tracking_id("sqlite:///x.db") == "abc" and rd.tracking_id("http://other:5000") is None
    assert rd.fold_dir(2).tracking_id("sqlite:///x.db") == "def"


def test_the_data_version_is_the_table_and_the_files_together(tmp_path):
    rd = RunDir(tmp_path)
    first = RunDir.data_record("t" * 64, "f" * 64, "c" * 64, 48)
    rd.write_data(first)
    assert rd.data() == first and rd.data_version() == first["version"] and len(first["version"]) == 64

    def version(*prints: str) -> str:
        return RunDir.data_record(*prints, 48)["version"]

    assert version("t" * 64, "f" * 64, "other decode settings") == first["version"]
    assert version("u" * 64, "f" * 64, "c" * 64) != first["version"]  # one label changed
    assert version("t" * 64, "g" * 64, "c" * 64) != first["version"]  # an image changed


@pytest.mark.parametrize("name, text, read, says", [
    ("data.json", '{"table": "x"}', lambda rd: rd.data_version(), "must hold the data version"),
    ("data.json", "[1]", lambda rd: rd.data(), "must be a mapping"),
    ("thresholds.json", "{", lambda rd: rd.thresholds(), "is not valid JSON"),
    ("posthoc.json", '"prior"', lambda rd: rd.posthoc(), "must be a mapping"),
    ("predict.json", "[]", lambda rd: rd.predict_record(), "must be a mapping"),
    ("mlflow.json", '{"tracking_uri": "u", "run_id": 3}', lambda rd: rd.tracking_id("u"), "run id as text"),
    ("test_probs.csv", "id,a\n1,0.5\n", lambda rd: rd.test_probs(["a", "b"]), "lacks the column"),
    ("oof_tta-hflip.csv", "id,fold,label,a\n1,x,a,1\n", lambda rd: rd.oof(["a"], "oof_tta-hflip.csv"), "integer folds"),
    ("fold0/done.json", "[]", lambda rd: rd.done(0), "must be a mapping"),
    ("fold0/done.json", '{"seconds": "long"}', lambda rd: rd.done(0), "training time in seconds"),
    ("fold0/metrics.csv", "step\n1\n", lambda rd: rd.curves(0), "lacks the column"),
    ("fold0/oof.csv", "id,fold\n1,0\n", lambda rd: rd.fold_dir(0).oof(["a"]), "lacks the column"),
])
def test_a_damaged_file_names_itself_and_how_to_get_it_back(tmp_path, name, text, read, says):
    rd = RunDir(tmp_path / "r")
    (rd.path / name).parent.mkdir(parents=True)
    rd.config.write_text("name: r\n")
    (rd.path / name).write_text(text)
    with pytest.raises(PodiumError, match=says) as err:
        read(rd)
    assert str(rd.path / name) in str(err.value) and "To get it back" in str(err.value)
    fix = str(err.value).split("To get it back, ")[1]
    want = {"fold0": "--folds 0 --overwrite", "oof_tta": "podium predict", "test_probs": "podium predict",
            "predict": "podium predict", "posthoc": "podium posthoc", "mlflow": "new MLflow run",
            "thresholds": "--resume", "data": "--resume"}
    assert next(w for key, w in want.items() if name.startswith(key)) in fix, fix


def test_every_file_name_is_listed_once():
    assert len(set(RUN_FILES)) == len(RUN_FILES)
    rd = RunDir("RUN")
    paths = [rd.config, rd.classes_file, rd.run_json, rd.data_json, rd.folds_csv, rd.oof_csv, rd.metrics_json,
             rd.thresholds_json, rd.posthoc_json, rd.test_probs_csv, rd.submission_csv, rd.predict_json, rd.report_html,
             rd.mlflow_json, rd.ensemble_json, rd.pseudo_json, rd.pseudo_csv, rd.export_dir, rd.package_dir,
             rd.best_ckpt(0), rd.last_ckpt(0), rd.done_json(0), rd.fold_dir(0).curves_csv, rd.fold_dir(0).tensorboard,
             rd.suspects_csv, rd.fold_dir(0).finetune_json]
    names = {p.name for p in paths} | {rd.tta_oof_path([], "mean_probs").name[:len("oof_tta-")]}
    assert names == set(RUN_FILES)
