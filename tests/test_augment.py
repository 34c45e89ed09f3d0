"""augment.py: presets on gray and RGB, overrides, seeding, the edge channel, normalisation by the data's stats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from podium.augment import (
    PRESETS,
    AugmentedDataset,
    Draw,
    ImageStageError,
    ItemPipeline,
    NumberedDraws,
    eval_pipeline,
    resolve,
    train_pipeline,
    train_transform,
    with_edges,
)
from podium.config import AugmentConfig, load_config
from podium.data.cache import CachedDataset, data_stats
from podium.errors import PodiumError
from podium.samplers import EpochSampler
from podium.tasks.check import check_config

RNG = np.random.default_rng(0)
BATCH = {c: RNG.integers(0, 256, size=(6, 32, 32, c), dtype=np.uint8) for c in (1, 3)}


def test_config_names_every_preset_and_every_choice():
    assert list(PRESETS) == ["none", "light", "medium", "heavy", "documents"] and AugmentConfig().preset in PRESETS
    from dataclasses import fields

    from podium.augment import Augmentation

    assert {f.name for f in fields(Augmentation)} <= set(AugmentConfig.model_fields)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_keeps_shape_and_dtype(preset, channels):
    x = BATCH[channels]
    pipe = ItemPipeline(resolve(AugmentConfig(preset=preset)), channels, edges=False)
    out = pipe(x, seed=1)
    assert out.shape == x.shape and out.dtype == np.uint8
    if preset not in ("none", "light"):
        assert not np.array_equal(out, x)  # the per-image stage did something
    t = torch.from_numpy(out).permute(0, 3, 1, 2).float()
    batch = train_transform(AugmentConfig(preset=preset))(t)
    assert batch.shape == t.shape and batch.dtype == torch.float32


def test_light_is_the_old_default_and_none_does_nothing():
    assert resolve(AugmentConfig()) == resolve(AugmentConfig(preset="light"))
    light = resolve(AugmentConfig())
    assert (light.hflip, light.vflip, light.shift, light.per_item()) == (True, False, 0.1, False)
    assert train_pipeline(AugmentConfig(preset="light"), 3) is None  # no per-image stage: batches read as before
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(train_transform(AugmentConfig(preset="none"))(x), x)


def test_overrides_replace_the_presets_choice_and_null_keeps_it():
    doc = resolve(AugmentConfig(preset="documents", vflip=False, noise=0.0))
    assert not doc.vflip and doc.noise == 0.0 and doc.rot90 and doc.hflip and doc.jpeg == 0.3
    asym = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    never = train_transform(AugmentConfig(preset="light", hflip=False, shift=0.0))(asym)
    assert torch.equal(never, asym)  # hflip=false: no image is ever flipped
    torch.manual_seed(0)
    some = train_transform(AugmentConfig(preset="light", shift=0.0))(asym)
    flipped = (some == asym.flip(3)).flatten(1).all(1)
    assert 10 < int(flipped.sum()) < 54 and bool(((some == asym).flatten(1).all(1) | flipped).all())
    torch.manual_seed(0)
    turned = train_transform(AugmentConfig(preset="none", rot90=True))(asym)
    views = [torch.rot90(asym[:1], k, dims=(2, 3)) for k in range(4)]
    kinds = [[bool(torch.equal(turned[i:i + 1], v)) for v in views].index(True) for i in range(64)]
    assert set(kinds) == {0, 1, 2, 3}


def test_bad_values_are_refused_with_the_key_named():
    with pytest.raises(PodiumError, match="augment.preset"):
        check_config(load_config(None, ["augment.preset=documentz"]))
    with pytest.raises(PodiumError, match="augment.blur"):
        load_config(None, ["augment.blur=1.5"])
    with pytest.raises(PodiumError, match="augment.normalize"):
        load_config(None, ["augment.normalize=mnist"])
    with pytest.raises(PodiumError, match="center_crop"):
        load_config(None, ["data.center_crop=0"])


def test_the_image_stage_is_seeded():
    pipe = ItemPipeline(resolve(AugmentConfig(preset="heavy")), 3, edges=False)
    a, b, c = pipe(BATCH[3], 7), pipe(BATCH[3], 7), pipe(BATCH[3], 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    np.random.seed(123)  # the global RNGs play no part
    assert np.array_equal(pipe(BATCH[3], 7), a)
    assert np.array_equal(pipe(BATCH[3], None), BATCH[3])  # no seed: no augmentation


def test_batches_are_seeded_from_seed_epoch_and_batch_number():
    images = RNG.integers(0, 256, size=(8, 16, 16, 1), dtype=np.uint8)
    pipe = ItemPipeline(resolve(AugmentConfig(preset="heavy")), 1, edges=False)

    def epoch(ds, sampler, e):
        sampler.set_epoch(e)
        draws = list(sampler)  # Draw(epoch, number, position), as the loader hands them over
        return [ds.__getitems__(draws[s:s + 4])[0] for s in (0, 4)]

    sampler = NumberedDraws(EpochSampler(8, seed=0))
    ds = AugmentedDataset(CachedDataset(images, None, np.arange(8)), pipe, seed=5, batch_size=4)
    e0, e1 = epoch(ds, sampler, 0), epoch(ds, sampler, 1)
    again = AugmentedDataset(CachedDataset(images, None, np.arange(8)), pipe, seed=5, batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(epoch(again, sampler, 1), e1))  # epoch 1 alone, as after a resume
    assert not torch.equal(e0[0], e1[0])
    # the seed podium has always drawn for batch b of epoch e: (seed, e, b)
    order = list(EpochSampler(8, seed=0))  # epoch 0's order
    seed_b1 = int(np.random.SeedSequence([5, 0, 1]).generate_state(1)[0])
    assert np.array_equal(e0[1].permute(0, 2, 3, 1).numpy(), pipe(images[order[4:]], seed_b1))


def test_a_failing_image_is_named():
    class Failing:  # stands in for albumentations' Compose: fails on the image whose first pixel is 255
        def set_random_seed(self, seed):
            pass

        def __call__(self, image):
            if image[0, 0, 0] == 255:
                raise ValueError("cannot warp this one")
            return {"image": image}

    images = np.zeros((6, 8, 8, 1), np.uint8)
    images[4, 0, 0] = 255
    pipe = ItemPipeline(None, 1, edges=False)
    pipe.compose = Failing()
    names = np.array([f"train/{i}.png" for i in range(6)], dtype=object)
    ds = AugmentedDataset(CachedDataset(images, None, np.array([5, 4, 3])), pipe, seed=1, batch_size=3, names=names)
    draws = [Draw(0, k, p) for k, p in enumerate([0, 1, 2])]
    with pytest.raises(ImageStageError, match=r"row 4 of the decode cache \(train/4.png\): ValueError: cannot warp"):
        ds.__getitems__(draws)
    with pytest.raises(ImageStageError, match=r"image 1 of the batch: ValueError"):
        pipe(images[3:6], seed=0)


def test_edge_channel_is_appended_and_marks_edges():
    img = np.zeros((1, 16, 16, 1), np.uint8)
    img[0, 4:12, 4:12] = 200
    out = with_edges(img)
    assert out.shape == (1, 16, 16, 2) and out.dtype == np.uint8
    assert np.array_equal(out[..., :1], img) and set(np.unique(out[..., 1])) == {0, 255}
    edges = out[0, :, :, 1] > 0
    assert edges[3:13, 3:13].sum() >= 28 and not edges[6:10, 6:10].any()  # along the square's border, not inside
    assert not edges[:2].any() and not edges[14:].any()  # nor far outside
    pipe = eval_pipeline(AugmentConfig(edges=True), 3)
    assert pipe(BATCH[3], None).shape == (6, 32, 32, 4)
    assert eval_pipeline(AugmentConfig(preset="heavy"), 3) is None  # validation is never augmented


def test_edge_filter_starts_at_zero_over_pretrained_weights():
    from podium.config import ModelConfig
    from podium.models import create_model, fit_first_conv

    w = torch.randn(8, 3, 3, 3)
    fitted = fit_first_conv(w, 3, 1)
    assert fitted.shape == (8, 4, 3, 3) and torch.equal(fitted[:, :3], w) and not fitted[:, 3].any()
    assert torch.allclose(fit_first_conv(w, 1, 1)[:, :1], w.sum(1, keepdim=True))
    cfg = ModelConfig(name="efficientnet_lite0", pretrained=True)
    plain, edged = create_model(cfg, 3, 3).eval(), create_model(cfg, 3, 3, extra_chans=1).eval()
    x = torch.randn(2, 3, 32, 32)
    edged.get_classifier().load_state_dict(plain.get_classifier().state_dict())
    with torch.no_grad():
        torch.testing.assert_close(edged(torch.cat([x, torch.rand(2, 1, 32, 32)], 1)), plain(x))


def test_data_stats_equal_numpys():
    images = RNG.integers(0, 256, size=(2100, 5, 4, 3), dtype=np.uint8)
    mean, std = data_stats(images, chunk=1000)
    flat = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(mean, flat.mean(0), atol=1e-9)
    np.testing.assert_allclose(std, flat.std(0), atol=1e-9)


def test_normalize_data_is_stored_in_the_run_and_used_by_predict(tiny_competition):
    from podium.commands.predict import predict
    from podium.commands.train import train
    from podium.engine.fold import load_data
    from podium.engine.predict import load_fold_module

    cfg = load_config(tiny_competition, ["augment.normalize=data", "train.epochs=1", "cv.n_folds=2"])
    train(cfg, folds=[0])
    rd = Path(cfg.output_dir) / cfg.name
    info = json.loads((rd / "run.json").read_text())
    flat = load_data(cfg).images.reshape(-1, 1).astype(np.float64) / 255
    np.testing.assert_allclose(info["mean"], flat.mean(0), atol=1e-9)
    np.testing.assert_allclose(info["std"], flat.std(0), atol=1e-9)
    assert abs(info["mean"][0] - 0.5) > 0.05  # not the default: the check can fail
    module = load_fold_module(cfg, rd, 0, 3, 1)
    np.testing.assert_allclose(module.mean.numpy(), info["mean"], rtol=1e-6)
    np.testing.assert_allclose(module.std.numpy(), info["std"], rtol=1e-6)
    assert predict(rd).n == 12


def test_edge_channel_trains_and_predicts(tiny_competition):
    from podium.commands.predict import predict
    from podium.commands.train import train
    from podium.engine.predict import load_fold_module

    cfg = load_config(tiny_competition, ["augment.edges=true", "augment.preset=medium", "train.epochs=1",
                                         "cv.n_folds=2"])
    assert train(cfg, folds=[0])["folds_done"] == [0]
    rd = Path(cfg.output_dir) / cfg.name
    module = load_fold_module(cfg, rd, 0, 3, 1)
    assert module.model.stem[0].weight.shape[1] == 2  # gray + edges
    assert module.mean.tolist()[-1] == 0.0 and module.std.tolist()[-1] == 1.0
    assert predict(rd).n == 12


_SPY = """
import json, os, socket, sys
calls = []
def spy(host, *args, **kwargs):  # every name lookup on the way to a connection
    calls.append(host)
    raise OSError("no network in this test")
socket.getaddrinfo = spy
if sys.argv[1] == "podium":
    from podium.augment import item_compose, resolve
    from podium.config import AugmentConfig
    assert "albumentations" not in sys.modules
    item_compose(resolve(AugmentConfig(preset="heavy")), 3)  # the one place podium imports albumentations
assert sys.argv[1] != "podium" or "albumentations" in sys.modules
import albumentations
print(json.dumps({"calls": calls, "env": os.environ.get("NO_ALBUMENTATIONS_UPDATE")}))
"""


@pytest.mark.parametrize("first", ["podium", "albumentations"])
def test_albumentations_never_asks_pypi_for_updates_through_podium(first):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", _SPY, first], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    if first == "podium":
        assert seen == {"calls": [], "env": "1"}
    else:  # the control: imported alone, albumentations looks PyPI up (so the spy would see it through podium)
        assert seen["env"] is None and any("pypi" in str(host) for host in seen["calls"])
