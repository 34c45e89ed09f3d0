"""`podium export`: ONNX Runtime on the exported graph gives `podium predict`'s probabilities (folds, TTA, decision)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from podium.commands.predict import predict
from podium.config import load_config
from podium.data.images import fit_image, read_image
from podium.data.sources import load_test
from podium.errors import PodiumError
from podium.ship import graph as graph_module
from podium.ship.export import export_run
from podium.ship.manifest import file_sha256

TTA = "hflip,multi-scale"  # multi-scale resizes with antialiasing: the exporter must take it


def _test_images(run: Path) -> tuple[np.ndarray, list[str]]:
    cfg = load_config(run / "config.yaml")
    test = load_test(cfg)
    channels = json.loads((run / "run.json").read_text())["channels"]
    images = np.stack([fit_image(read_image(p, channels), cfg.data.image_size, cfg.data.resize) for p in test["path"]])
    return images, [str(i) for i in test["id"]]


def _session(out: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("kind", ["multiclass_run", "multilabel_run", "multitask_run"])
def test_onnx_matches_podium_predict(kind, request, tmp_path):
    run = request.getfixturevalue(kind)
    res = export_run(run, tta=TTA, out=tmp_path / "export")
    assert res.folds == [0, 1] and res.max_diff <= 1e-4
    assert res.tta == ["identity", "hflip", "zoom0.9", "zoom1.1"]
    predict(run, tta=TTA, out=tmp_path / "sub.csv", oof=False)
    expected = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
    images, ids = _test_images(run)
    got = _session(res.out).run(None, {"images": images})[0]
    manifest = json.loads((res.out / "manifest.json").read_text())
    columns = manifest["output"]["columns"]
    assert np.abs(got - expected.loc[ids, columns].to_numpy()).max() <= 1e-4
    assert manifest["files"]["model.onnx"] == file_sha256(res.out / "model.onnx")
    assert manifest["inside"]["folds"] == [0, 1] and manifest["task"]["kind"] == kind.split("_")[0]
    if kind == "multilabel_run":  # the thresholds fitted on the OOF travel with the model
        fitted = json.loads((run / "thresholds.json").read_text())["thresholds"]
        assert manifest["task"]["thresholds"] == pytest.approx(fitted)
    if kind == "multitask_run":  # 2*shape + bright for every combination
        assert ["2", "1", "5"] in manifest["task"]["combine_table"]
        assert manifest["submission"] == {"id_col": "id", "columns": ["label"]}


def test_any_batch_size(multiclass_run, tmp_path):
    res = export_run(multiclass_run, folds=[1], tta="none", out=tmp_path / "export")
    images, _ = _test_images(multiclass_run)
    assert len(images) == 17
    session = _session(res.out)
    whole = session.run(None, {"images": images})[0]
    one = np.concatenate([session.run(None, {"images": images[i:i + 1]})[0] for i in range(len(images))])
    assert whole.shape == (17, 3) and np.abs(whole - one).max() <= 1e-5
    assert np.allclose(whole.sum(1), 1.0, atol=1e-5)


def test_a_graph_that_differs_is_refused_naming_the_output(multiclass_run, tmp_path, monkeypatch):
    real = graph_module.RunGraph.forward

    def off(self, images):  # a wrong graph: the second output gets 1e-3 more than PyTorch's path
        probs = real(self, images)
        return probs + graph_module.torch.tensor([0.0, 1e-3, 0.0])

    monkeypatch.setattr(graph_module.RunGraph, "forward", off)
    with pytest.raises(PodiumError, match="output 'T-shirt/top'"):
        export_run(multiclass_run, folds=[0], tta="none", out=tmp_path / "export")
    assert not (tmp_path / "export").exists() and not list(tmp_path.glob(".export.building-*"))


def test_an_export_replaces_only_an_export(multiclass_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(PodiumError, match="not a podium export"):
        export_run(multiclass_run, folds=[0], tta="none", out=mine)
    export_run(multiclass_run, folds=[0], tta="none", out=tmp_path / "e")
    with pytest.raises(PodiumError, match="--overwrite"):
        export_run(multiclass_run, folds=[0], tta="none", out=tmp_path / "e")
    with pytest.raises(PodiumError, match="fold"):
        export_run(multiclass_run, folds=[5], out=tmp_path / "f")


def test_posthoc_correction_is_inside_the_graph(multiclass_run, tmp_path):
    import shutil

    from podium.run.decisions import fit_run
    from podium.run.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(multiclass_run, run)
    fit_run(run, "logit_adjust", "accuracy", tau=1.5)
    rd = RunDir(run)  # the tiny classes are balanced, where the correction is the identity: give it a long tail
    rd.write_posthoc({**rd.posthoc(), "log_prior": np.log([0.6, 0.3, 0.1]).tolist()})
    res = export_run(run, tta="none", out=tmp_path / "export")
    manifest = json.loads((res.out / "manifest.json").read_text())
    assert manifest["posthoc"]["tau"] == 1.5 and manifest["inside"]["posthoc_in_graph"]
    predict(run, tta="none", out=tmp_path / "sub.csv", oof=False)  # applies RUN/posthoc.json
    expected = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
    images, ids = _test_images(run)
    got = _session(res.out).run(None, {"images": images})[0]
    assert np.abs(got - expected.loc[ids, manifest["output"]["columns"]].to_numpy()).max() <= 1e-4
    plain = export_run(run, tta="none", out=tmp_path / "plain", posthoc=False)
    assert np.abs(_session(plain.out).run(None, {"images": images})[0] - got).max() > 1e-3  # it does change them
