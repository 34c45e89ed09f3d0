"""Mixup / CutMix: the mixed images and targets, the lam-weighted loss for every loss and head, the switch-off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from podium.commands.train import train
from podium.config import AugmentConfig, ModelConfig, load_config
from podium.heads import attach_head, margin_logits
from podium.losses import LOSSES, LossContext, create_loss
from podium.mixing import NO_MIX, Mix, draw_mix, mix_images, mix_targets, mixed_loss, mixing_enabled
from podium.models import create_model

SHAPE = (6, 3, 16, 16)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.tensor([0, 1, 2, 3, 4, 1])


def test_mixup_blends_each_image_with_the_flipped_batch():
    np.random.seed(0)
    mix = draw_mix(AugmentConfig(mixup_alpha=0.4), SHAPE)
    assert mix.kind == "mixup" and 0.0 < mix.lam < 1.0
    x, _ = _batch()
    torch.testing.assert_close(mix_images(x, mix), mix.lam * x + (1 - mix.lam) * x[[5, 4, 3, 2, 1, 0]])


def test_cutmix_pastes_the_partners_box_and_lam_is_the_share_kept():
    np.random.seed(3)
    mix = draw_mix(AugmentConfig(cutmix_alpha=1.0), SHAPE)
    assert mix.kind == "cutmix"
    y0, y1, x0, x1 = mix.box
    assert mix.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (16 * 16))
    x, _ = _batch()
    out = mix_images(x, mix)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert inside.any() and not inside.all()
    assert torch.equal(out[..., inside], x.flip(0)[..., inside]) and torch.equal(out[..., ~inside], x[..., ~inside])


def test_mix_prob_switch_prob_and_seed():
    assert draw_mix(AugmentConfig(mixup_alpha=1.0, mix_prob=0.0), SHAPE) is NO_MIX
    both = dict(mixup_alpha=0.4, cutmix_alpha=1.0)
    kinds = {draw_mix(AugmentConfig(**both, mix_switch_prob=p), SHAPE).kind for p in (0.0, 1.0) for _ in range(5)}
    assert kinds == {"mixup", "cutmix"}
    assert {draw_mix(AugmentConfig(**both, mix_switch_prob=1.0), SHAPE).kind for _ in range(10)} == {"cutmix"}
    np.random.seed(7)
    first = [draw_mix(AugmentConfig(**both), SHAPE) for _ in range(4)]
    np.random.seed(7)
    assert [draw_mix(AugmentConfig(**both), SHAPE) for _ in range(4)] == first  # numpy's generator, reseeded per epoch


def test_mixed_targets_for_class_indices_and_multi_hot():
    mix = Mix(0.7, "mixup")
    y = torch.tensor([0, 2, 1])
    soft = mix_targets(y, mix, 3)
    expect = 0.7 * F.one_hot(y, 3).float() + 0.3 * F.one_hot(y.flip(0), 3).float()
    torch.testing.assert_close(soft, expect)
    torch.testing.assert_close(soft.sum(1), torch.ones(3))
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # multi-hot (N x C) stays as it is
    torch.testing.assert_close(mix_targets(multi, mix, 3), 0.7 * multi + 0.3 * multi.flip(0))
    assert torch.equal(mix_targets(y, NO_MIX, 3), F.one_hot(y, 3).float())


@pytest.mark.parametrize("name", list(LOSSES))
def test_mixed_loss_is_the_lam_weighted_combination_for_every_loss(name):
    ctx = LossContext(np.array([30, 10, 5, 3, 2]), epochs=4, logit_scale=30.0)
    loss = create_loss(name, {}, ctx)
    logits, y = torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3, 4, 1])
    mix = Mix(0.3, "mixup")
    got = mixed_loss(loss, logits, y, mix)
    assert got.item() == pytest.approx(0.3 * loss(logits, y).item() + 0.7 * loss(logits, y.flip(0)).item(), rel=1e-6)
    assert mixed_loss(loss, logits, y, NO_MIX).item() == pytest.approx(loss(logits, y).item(), rel=1e-6)


def test_for_plain_cross_entropy_the_combination_equals_soft_targets():
    loss = create_loss("cross_entropy", {"label_smoothing": 0.0}, LossContext(np.ones(4), 1, None))
    logits, y = torch.randn(5, 4, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 3, 1, 1, 2])
    mix = Mix(0.62, "cutmix", (0, 4, 0, 4))
    soft = F.cross_entropy(logits, mix_targets(y, mix, 4))
    assert mixed_loss(loss, logits, y, mix).item() == pytest.approx(soft.item(), rel=1e-6)


@pytest.mark.parametrize("head", ["arcface", "cosface"])
def test_margin_heads_put_the_margin_on_each_terms_own_class(head):
    cfg = ModelConfig(name="podium_cnn", pretrained=False, head=head)
    model = attach_head(create_model(cfg, 3, 1), cfg)
    logits, y = model(torch.randn(4, 1, 16, 16)), torch.tensor([0, 1, 2, 0])
    ce = lambda z, t: F.cross_entropy(margin_logits(model, z, t), t)  # noqa: E731 - what the engine passes
    mix = Mix(0.6, "mixup")
    b = y.flip(0)
    expect = 0.6 * F.cross_entropy(margin_logits(model, logits, y), y) + \
        0.4 * F.cross_entropy(margin_logits(model, logits, b), b)
    assert mixed_loss(ce, logits, y, mix).item() == pytest.approx(expect.item(), rel=1e-6)
    assert not torch.allclose(margin_logits(model, logits, y), margin_logits(model, logits, b))  # margins differ


def test_mixing_stops_at_mix_off_epoch():
    cfg = AugmentConfig(mixup_alpha=0.2, mix_off_epoch=2)
    assert [mixing_enabled(cfg, e) for e in range(4)] == [True, True, False, False]
    assert not mixing_enabled(AugmentConfig(), 0)  # both alphas 0: off
    assert all(mixing_enabled(AugmentConfig(cutmix_alpha=1.0), e) for e in range(50))


def test_training_mixes_batches_only_before_mix_off_epoch(tiny_competition, monkeypatch):
    import podium.engine.module as engine

    drawn = []
    real = engine.draw_mix
    monkeypatch.setattr(engine, "draw_mix", lambda cfg, shape: drawn.append(shape[0]) or real(cfg, shape))
    cfg = load_config(tiny_competition, ["cv.n_folds=2", "train.epochs=3", "augment.mixup_alpha=0.4",
                                         "augment.cutmix_alpha=1.0", "augment.mix_off_epoch=2"])
    metrics = train(cfg, folds=[0])
    assert metrics["folds_done"] == [0]
    assert drawn == [8, 8, 8] * 2  # 24 training images in batches of 8, mixed in epochs 0 and 1, not in epoch 2


def test_mix_settings_are_checked():
    from podium.errors import PodiumError

    for bad in ["augment.mix_prob=1.5", "augment.mixup_alpha=-0.1", "augment.mix_off_epoch=-1"]:
        with pytest.raises(PodiumError, match=bad.split("=")[0].replace(".", r"\.")):
            load_config(None, [bad])
