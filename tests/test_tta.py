"""TTA registry: every view keeps the shape, flips leave a flip-invariant model alone, the two combinations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podium.config import load_config
from podium.engine.predict import predict_probs
from podium.errors import PodiumError
from podium.tasks import Multiclass
from podium.tasks.check import check_config
from podium.tta import COMBINE, TTA, combine, parse_tta, tta_key, tta_views, zoom


@pytest.mark.parametrize("name", list(TTA))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_view_keeps_the_shape_and_starts_with_the_identity(name, channels):
    x = torch.randn(4, channels, 20, 20)
    views = tta_views(name)
    assert views[0][0] == "identity" and torch.equal(views[0][1](x), x)
    assert len(views) == 1 + (0 if name == "identity" else len(TTA.get(name).build()))
    for label, view in views:
        out = view(x)
        assert out.shape == x.shape and out.dtype == x.dtype, label
        assert torch.isfinite(out).all(), label


def test_views_do_what_they_say():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = dict(tta_views("flips,rot90s"))
    assert torch.equal(views["hflip"](x)[0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert torch.equal(views["vflip"](x)[0, 0, :, 0], torch.tensor([12.0, 8.0, 4.0, 0.0]))
    assert torch.equal(views["rot180"](x), views["hvflip"](x))
    assert torch.equal(views["rot90"](views["rot270"](x)), x)
    img = torch.zeros(1, 1, 20, 20)
    img[..., 8:12, 8:12] = 1.0  # a centred square: zooming in makes it larger, zooming out smaller
    assert zoom(img, 1.1).sum() > img.sum() > zoom(img, 0.9).sum()
    assert torch.allclose(zoom(torch.ones(2, 3, 9, 9), 0.9), torch.ones(2, 3, 9, 9))  # border repeated, no frame


def test_names_parse_dedupe_and_refuse_with_a_suggestion():
    assert parse_tta("hflip,vflip") == parse_tta("hflip+vflip") == ["hflip", "vflip"]  # '+' kept from the old names
    assert parse_tta("none") == parse_tta("identity") == parse_tta(None) == []
    assert tta_key(parse_tta("hflip, hflip,identity")) == "hflip"
    assert [label for label, _ in tta_views("hflip,flips")] == ["identity", "hflip", "vflip", "hvflip"]
    with pytest.raises(PodiumError, match="Did you mean 'hflip'"):
        parse_tta("hflp")
    with pytest.raises(PodiumError, match="mean_probs"):
        combine([torch.zeros(2, 3)], "median")


def test_config_takes_views_as_a_comma_list_and_refuses_unknown_ones():
    cfg = load_config(None, ["tta.views=hflip,five-crop", "tta.combine=mean_logits"])
    assert cfg.tta.views == ["hflip", "five-crop"] and cfg.tta.combine == "mean_logits"
    with pytest.raises(PodiumError, match=r"tta\.views.*Did you mean 'rot90s'"):
        check_config(load_config(None, ["tta.views=rot90"]))  # the views' registry checks the config's names


def test_mean_of_logits_and_mean_of_probabilities_differ_as_expected():
    """One view very sure of class 0 (logit gap 10), two views mildly for class 1 (gap 3): averaging probabilities
    follows the majority (p0 = (sig(10) + 2 sig(-3)) / 3 < 1/2), averaging logits the confident view (gap 4/3)."""
    logits = torch.tensor([[[10.0, 0.0]], [[0.0, 3.0]], [[0.0, 3.0]]])  # 3 views x 1 image x 2 classes
    by_probs, by_logits = combine(logits, "mean_probs"), combine(logits, "mean_logits")
    sig = lambda d: 1 / (1 + np.exp(-d))  # noqa: E731 - p(class 0) of a two-class softmax with logit gap d
    assert by_probs[0, 0].item() == pytest.approx((sig(10) + 2 * sig(-3)) / 3, rel=1e-5)
    assert by_logits[0, 0].item() == pytest.approx(sig(4 / 3), rel=1e-5)
    assert by_probs.argmax(1).item() == 1 and by_logits.argmax(1).item() == 0
    same = torch.tensor([[[1.0, 2.0, 0.5]]]).expand(3, 1, 3)  # identical views: both are that view's softmax
    for how in COMBINE:
        assert torch.allclose(combine(same, how), same[0].softmax(-1))


class _Symmetric(torch.nn.Module):
    """A network made flip-invariant: the mean of its logits on the image and on the image mirrored."""

    def __init__(self, channels: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))

    def forward(self, x):
        return (self.net(x) + self.net(x.flip(-1))) / 2


class _Module(torch.nn.Module):
    """What predict_probs needs of a podium Classifier: normalisation buffers, eval_model(), the task, the
    augmentation settings (for the edge channel)."""

    def __init__(self, net, channels):
        super().__init__()
        self.net = net
        self.task = Multiclass(None, [])  # softmax probabilities
        self.augment_cfg = load_config(None).augment  # augment.edges off: no edge channel
        self.register_buffer("mean", torch.full((channels,), 0.5))
        self.register_buffer("std", torch.full((channels,), 0.5))

    def eval_model(self):
        return self.net


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("how", list(COMBINE))
def test_flip_invariant_model_gives_identical_outputs_with_and_without_hflip(channels, how):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 12, 12, channels), dtype=np.uint8)
    module = _Module(_Symmetric(channels), channels)
    module.net(torch.zeros(1, channels, 12, 12))  # materialise the lazy layer
    idx = np.arange(10)
    plain = predict_probs(module, images, idx, batch_size=4, tta="none", how=how)
    flipped = predict_probs(module, images, idx, batch_size=4, tta="hflip", how=how)
    np.testing.assert_allclose(flipped, plain, rtol=1e-6, atol=1e-7)
    # and the check can fail: vflip is not a symmetry of this model
    assert not np.allclose(predict_probs(module, images, idx, batch_size=4, tta="vflip", how=how), plain, atol=1e-4)
