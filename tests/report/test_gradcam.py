"""Grad-CAM: heatmaps of the input's size that point at the evidence, and the target layer podium picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podium.report.gradcam import explain, gradcam, target_layer


def evidence_net() -> torch.nn.Module:
    """score(class 0) = mean of a 3x3-blurred image, score(class 1) = its negative: the evidence for class 0
    is wherever the image is bright, and there is none anywhere for class 1."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    conv.weight.data.fill_(1 / 9)
    head = torch.nn.Linear(1, 2, bias=False)
    head.weight.data = torch.tensor([[1.0], [-1.0]])
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head)


@pytest.mark.parametrize("h, w", [(32, 32), (24, 40)])
def test_heatmap_has_the_input_size_and_lights_the_bright_patch(h, w):
    x = torch.zeros(2, 1, h, w)
    x[0, 0, :8, :8] = 1.0  # top-left patch
    x[1, 0, -8:, -8:] = 1.0  # bottom-right patch
    maps = gradcam(evidence_net(), x, [0, 0])
    assert maps.shape == (2, h, w) and maps.dtype == np.float32
    assert 0.0 <= maps.min() and maps.max() <= 1.0 + 1e-6
    assert maps[0, :6, :6].mean() > 0.5 and maps[0, -8:, -8:].max() < 0.05
    assert maps[1, -6:, -6:].mean() > 0.5 and maps[1, :8, :8].max() < 0.05
    assert np.abs(gradcam(evidence_net(), x[:1], [1])).max() < 1e-6  # no evidence for class 1 anywhere


def test_target_layer_is_the_last_conv_with_a_spatial_map():
    from podium.models import PodiumCNN

    net = PodiumCNN(num_classes=3, in_chans=1)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert target_layer(net, 1, 32) is convs[-1]
    one_by_one = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 8, stride=8),
                                     torch.nn.Flatten(), torch.nn.Linear(4, 2))
    assert target_layer(one_by_one, 1, 8) is one_by_one[0]  # the 1x1 output of the second conv says nothing


def test_timm_cnns_get_their_last_conv_and_transformers_are_refused():
    import timm

    from podium.errors import PodiumError

    effnet = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3)
    assert target_layer(effnet, 3, 64) is effnet.conv_head
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32)
    with pytest.raises(PodiumError, match="not supported for VisionTransformer"):
        target_layer(vit, 3, 32)


def test_explain_runs_a_fold_model_on_uint8_images(two_runs):
    import json

    from podium.config import load_config
    from podium.engine.predict import load_fold_module

    run, _ = two_runs
    classes = json.loads((run / "classes.json").read_text())
    module = load_fold_module(load_config(run / "config.yaml"), run, 0, len(classes), 1)
    images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 1), dtype=np.uint8)
    maps = explain(module, images, [0, 1, 2])
    assert maps.shape == (3, 16, 16) and np.isfinite(maps).all()
