"""models.py: offline ImageNet weights map correctly, every podium network runs, weights round-trip,
errors name the fix, and the fine-tuning helpers freeze and decay what they should."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data as images

from podium.config import ModelConfig
from podium.errors import PodiumError
from podium.models import (
    OFFLINE_WEIGHTS,
    PODIUM_MODELS,
    backbone_parameters,
    classifier_parameters,
    create_model,
    freeze_norms,
    param_groups,
    pretrained_stats,
    set_backbone_trainable,
)

torch.set_num_threads(2)
CAT = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO_OR_CUP = {967, 968}


def _imagenet_batch(name: str, size: int) -> torch.Tensor:
    """chelsea and coffee at `size` px, normalised as the offline weights of `name` expect."""
    mean, std = (torch.tensor(s)[:, None, None] for s in pretrained_stats(name))

    def one(rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    return (torch.cat([one(images.chelsea()), one(images.coffee())]) - mean) / std


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    """Pretrained efficientnet_lite0 with its ImageNet head: the .pth is read once for the module."""
    return create_model(ModelConfig(name="efficientnet_lite0", pretrained=True), num_classes=1000, in_chans=3).eval()


def _top1(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return model(x).argmax(-1).tolist()


def test_lite0_offline_weights_classify_chelsea_and_coffee(lite0):
    cat, coffee = _top1(lite0, _imagenet_batch("efficientnet_lite0", 224))
    assert cat in CAT and coffee in ESPRESSO_OR_CUP


@pytest.mark.parametrize("name", [name for name in OFFLINE_WEIGHTS if name != "efficientnet_lite0"])
def test_every_offline_weights_classify_chelsea_and_coffee(name):
    model = create_model(ModelConfig(name=name, drop_rate=0.0), num_classes=1000, in_chans=3).eval()
    cat, coffee = _top1(model, _imagenet_batch(name, OFFLINE_WEIGHTS[name].input_size))
    assert cat in CAT and coffee in ESPRESSO_OR_CUP


def test_pretrained_grayscale_and_new_head_keep_the_backbone(lite0):
    gray = create_model(ModelConfig(name="efficientnet_lite0"), num_classes=7, in_chans=1).eval()
    assert gray.get_classifier().out_features == 7
    stem = lite0.conv_stem.weight
    assert torch.equal(gray.conv_stem.weight, stem.sum(dim=1, keepdim=True))  # timm's adapt_input_conv
    assert torch.equal(gray.blocks[3][0].conv_pw.weight, lite0.blocks[3][0].conv_pw.weight)
    # A gray image through the summed stem equals the same image as RGB through the original stem.
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert gray(x).shape == (2, 7)
        assert torch.allclose(gray.forward_features(x), lite0.forward_features(x.expand(-1, 3, -1, -1)), atol=1e-4)


@pytest.mark.parametrize("name", list(PODIUM_MODELS))
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [28, 64])
def test_podium_networks_forward(name, in_chans, size):
    model = create_model(ModelConfig(name=name), num_classes=10, in_chans=in_chans)
    out = model(torch.randn(4, in_chans, size, size))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert pretrained_stats(name) is None


def test_unknown_name_suggests_close_matches():
    with pytest.raises(PodiumError, match="efficientnet_lite0") as err:
        create_model(ModelConfig(name="efficientnet_lte0"), num_classes=3, in_chans=3)
    assert "model.name" in str(err.value)
    with pytest.raises(PodiumError, match="podium_cnn"):
        create_model(ModelConfig(name="podium_cn"), num_classes=3, in_chans=3)


def test_pretrained_without_offline_weights_lists_those_that_have_them():
    with pytest.raises(PodiumError) as err:
        create_model(ModelConfig(name="resnet18", pretrained=True), num_classes=3, in_chans=3)
    message = str(err.value)
    assert "efficientnet_lite0" in message and "model.pretrained=false" in message and "model.weights" in message
    model = create_model(ModelConfig(name="resnet18", pretrained=False), num_classes=3, in_chans=3)
    assert model.get_classifier().out_features == 3
    assert pretrained_stats("resnet18") is None
    assert pretrained_stats("efficientnet_lite0") is not None


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_round_trip(tmp_path, suffix):
    cfg = ModelConfig(name="podium_cnn_s", pretrained=False)
    source = create_model(cfg, num_classes=5, in_chans=1)
    with torch.no_grad():  # move the BatchNorm statistics away from their defaults too
        source.train()(torch.randn(8, 1, 28, 28) * 3 + 1)
    source.eval()
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".pth":  # as Lightning saves: wrapped, with the LightningModule's attribute prefix
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        save_file(state, str(path))
    loaded = create_model(cfg.model_copy(update={"weights": path}), num_classes=5, in_chans=1).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_local_weights_with_other_class_count_skip_the_classifier(tmp_path, caplog):
    cfg = ModelConfig(name="podium_cnn_s", pretrained=False)
    source = create_model(cfg, num_classes=5, in_chans=3)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.WARNING):
        loaded = create_model(cfg.model_copy(update={"weights": path}), num_classes=9, in_chans=3)
    assert "classifier" in caplog.text
    assert loaded.get_classifier().out_features == 9
    assert torch.equal(loaded.stem[0].weight, source.stem[0].weight)


def test_local_weights_of_another_architecture_name_the_keys(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(create_model(ModelConfig(name="podium_cnn_s", pretrained=False), 5, 3).state_dict(), path)
    with pytest.raises(PodiumError, match="wrong shape: stem.0.weight"):
        create_model(ModelConfig(name="podium_cnn", pretrained=False, weights=path), num_classes=5, in_chans=3)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(PodiumError, match="unexpected: not"):
        create_model(ModelConfig(name="podium_cnn", pretrained=False, weights=path), num_classes=5, in_chans=3)


def test_local_weights_refuse_pickled_objects(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": ModelConfig()}, path)  # a pickled class
    with pytest.raises(PodiumError, match="tensors-only"):
        create_model(ModelConfig(name="podium_cnn_s", weights=path), num_classes=5, in_chans=3)


@pytest.mark.parametrize("name", [*PODIUM_MODELS, "resnet18", "efficientnet_lite0"])
def test_freezing_leaves_only_the_classifier_trainable(name):
    model = create_model(ModelConfig(name=name, pretrained=False), num_classes=4, in_chans=3)
    set_backbone_trainable(model, False)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in classifier_parameters(model)} and trainable
    model.train()
    freeze_norms(model)  # the trainer calls this after every model.train() while frozen
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    set_backbone_trainable(model, True)
    model.train()
    freeze_norms(model)
    assert all(p.requires_grad for p in model.parameters()) and all(m.training for m in norms)
    assert len(backbone_parameters(model)) + len(classifier_parameters(model)) == len(list(model.parameters()))


@pytest.mark.parametrize("name", [*PODIUM_MODELS, "resnet18", "efficientnet_lite0"])
def test_layer_decay_gives_earlier_layers_smaller_lr(name):
    model = create_model(ModelConfig(name=name, pretrained=False), num_classes=4, in_chans=3)
    set_backbone_trainable(model, False)  # frozen parameters are still grouped, for a later unfreeze
    groups = param_groups(model, lr=1e-2, weight_decay=0.05, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(lr_of) == len(list(model.parameters()))
    first = model.get_submodule(model.pretrained_cfg["first_conv"]).weight
    head = model.get_classifier().weight
    assert lr_of[id(head)] == pytest.approx(1e-2)
    assert lr_of[id(first)] < lr_of[id(backbone_parameters(model)[-1])] < lr_of[id(head)]
    for g in groups:
        assert g["weight_decay"] == (0.05 if g["params"][0].ndim > 1 else 0.0)
        assert all((p.ndim > 1) == (g["weight_decay"] > 0) for p in g["params"])
    flat = param_groups(model, lr=1e-2, weight_decay=0.05, layer_decay=None)
    assert {g["lr"] for g in flat} == {1e-2} and len(flat) == 2


def test_describe_models_lists_podium_nets_offline_weights_and_timm():
    from podium.cli import list_lines

    text = "\n".join(list_lines("models"))
    assert all(name in text for name in [*PODIUM_MODELS, *OFFLINE_WEIGHTS])
    assert str(len(timm.list_models())) in text and "model.weights" in text
