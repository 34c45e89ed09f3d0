"""heads.py: cosine logits, ArcFace/CosFace margins on the true class only and only while training, and a head that
freezing, checkpoints and the registry treat like any classifier."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from podium.config import ModelConfig
from podium.errors import PodiumError
from podium.heads import HEADS, ArcFaceHead, CosFaceHead, CosineHead, attach_head, margin_logits
from podium.models import backbone_parameters, create_model, set_backbone_trainable

S = 10.0


def _head(cls, margin: float) -> CosineHead:
    torch.manual_seed(0)
    return cls(4, 3, scale=S, margin=margin)


def test_cosine_head_scores_are_scaled_cosines():
    head = _head(CosineHead, 0.0)
    x = torch.tensor([[1.0, 2.0, 0.0, -1.0]])
    w = head.weight.detach()
    expect = [S * float(x[0] @ w[c]) / (float(x.norm()) * float(w[c].norm())) for c in range(3)]
    assert head(x)[0].tolist() == pytest.approx(expect, rel=1e-5)
    assert head(100 * x)[0].tolist() == pytest.approx(head(x)[0].tolist(), rel=1e-5)  # only directions count


def test_arcface_adds_an_angle_to_the_true_class_only():
    head = _head(ArcFaceHead, 0.3)
    logits = torch.tensor([[0.6 * S, 0.2 * S, -0.5 * S], [0.1 * S, 0.9 * S, 0.0]])
    y = torch.tensor([0, 1])
    out = head.margin_logits(logits, y)
    assert out[0, 0] == pytest.approx(S * math.cos(math.acos(0.6) + 0.3), rel=1e-5)
    assert out[1, 1] == pytest.approx(S * math.cos(math.acos(0.9) + 0.3), rel=1e-5)
    assert out[0, 1:].tolist() == logits[0, 1:].tolist() and out[1, [0, 2]].tolist() == logits[1, [0, 2]].tolist()
    # past theta = pi - m the fallback cos(theta) - m sin(m) keeps the penalty growing with the angle
    far = head.margin_logits(torch.tensor([[-0.99 * S, 0.0, 0.0]]), torch.tensor([0]))
    assert far[0, 0] == pytest.approx(S * (-0.99 - math.sin(math.pi - 0.3) * 0.3), rel=1e-5)


def test_cosface_subtracts_the_margin_from_the_true_cosine():
    head = _head(CosFaceHead, 0.35)
    logits = torch.tensor([[0.6 * S, 0.2 * S, -0.5 * S]])
    out = head.margin_logits(logits, torch.tensor([2]))
    assert out[0].tolist() == pytest.approx([0.6 * S, 0.2 * S, (-0.5 - 0.35) * S], rel=1e-5)


@pytest.mark.parametrize("head", ["arcface", "cosface"])
def test_margin_raises_the_training_loss_but_not_the_predictions(head):
    model = attach_head(create_model(ModelConfig(name="podium_cnn", pretrained=False), 3, 1),
                        ModelConfig(name="podium_cnn", head=head, head_scale=S))
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    logits = model(x)
    assert logits.abs().max() <= S + 1e-4  # evaluation: bounded scaled cosines, no margin
    trained = margin_logits(model, logits, y)
    assert F.cross_entropy(trained, y) > F.cross_entropy(logits, y)
    assert torch.equal(margin_logits(create_model(ModelConfig(name="podium_cnn", pretrained=False), 3, 1), logits, y),
                       logits)  # a linear head: training logits unchanged


@pytest.mark.parametrize("name", ["podium_cnn", "resnet10t"])
def test_attached_head_is_the_classifier_for_freezing_and_checkpoints(name):
    cfg = ModelConfig(name=name, pretrained=False, head="arcface", head_margin=0.2)
    model = attach_head(create_model(cfg, 5, 3), cfg)
    head = model.get_classifier()
    assert isinstance(head, ArcFaceHead) and (head.margin, head.scale, head.out_features) == (0.2, 30.0, 5)
    set_backbone_trainable(model, False)
    assert [p for p in model.parameters() if p.requires_grad] == [head.weight]
    assert all(not p.requires_grad for p in backbone_parameters(model))
    again = attach_head(create_model(cfg, 5, 3), cfg)
    again.load_state_dict(model.state_dict())  # same keys and shapes: checkpoints round-trip
    assert torch.equal(again.get_classifier().weight, head.weight)


def test_non_linear_classifier_is_refused():
    cfg = ModelConfig(name="podium_cnn", pretrained=False, head="cosine")
    model = create_model(cfg, 3, 1)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(96, 3))
    with pytest.raises(PodiumError, match="use model.head=linear"):
        attach_head(model, cfg)


def test_registry_matches_the_config_choices_and_defaults():
    assert list(HEADS) == ["linear", "cosine", "arcface", "cosface"] and ModelConfig().head in HEADS
    model = attach_head(create_model(ModelConfig(name="podium_cnn", pretrained=False), 3, 1),
                        ModelConfig(name="podium_cnn", head="cosface"))
    assert model.get_classifier().margin == 0.35
    assert timm.is_model("resnet10t")
