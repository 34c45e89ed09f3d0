"""Classifier heads (`model.head`, `podium list heads`): the plain linear layer, or a cosine classifier with an
optional margin on the true class while training.

A cosine head scores class c as s x cos(theta_c), theta_c the angle between the image's features and class c's
weight vector (both normalised): logits are bounded by s, and only directions matter. ArcFace (Deng et al. 2019)
trains with s x cos(theta_y + m) for the true class y, CosFace (Wang et al. 2018) with s x (cos(theta_y) - m):
the true class must win by a margin, which tightens each class's cluster. The margin needs the labels, so the
head itself stays a function of the features alone (prediction, TTA and EMA see plain scaled cosines) and the
training step passes its logits through `margin_logits`.

`attach_head` swaps the network's classifier (the module `get_classifier()` returns) in place, so freezing,
optimiser groups and checkpoints treat a cosine head like any classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from podium.config import ModelConfig
from podium.errors import PodiumError
from podium.registry import Entry, Params, Registry

Tensor = torch.Tensor


class CosineHead(nn.Module):
    """logits = scale x cos(angle between features and each class's weight); no margin."""

    def __init__(self, in_features: int, out_features: int, scale: float, margin: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.scale, self.margin = float(scale), float(margin)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's init; only directions matter here

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):  # cosines in fp32: bf16 would blur s x cos by ~0.1
            return self.scale * F.linear(F.normalize(x.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))

    def margin_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        """The training logits: here the logits themselves."""
        return logits

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, "
                f"margin={self.margin}")


class ArcFaceHead(CosineHead):
    """Training logit of the true class: s x cos(theta_y + m) (additive angular margin, m in radians)."""

    def margin_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        m = self.margin
        cos = (logits.float().gather(1, target[:, None]) / self.scale).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        shifted = cos * math.cos(m) - torch.sqrt(1.0 - cos * cos) * math.sin(m)  # cos(theta + m)
        # beyond theta = pi - m, cos(theta + m) would rise again: fall back to a CosFace-like penalty (insightface)
        shifted = torch.where(cos > math.cos(math.pi - m), shifted, cos - math.sin(math.pi - m) * m)
        return logits.float().scatter(1, target[:, None], self.scale * shifted)


class CosFaceHead(CosineHead):
    """Training logit of the true class: s x (cos(theta_y) - m) (additive cosine margin)."""

    def margin_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        true = logits.float().gather(1, target[:, None]) - self.scale * self.margin
        return logits.float().scatter(1, target[:, None], true)


class ArcFaceArgs(Params):
    head_margin: float = Field(0.5, ge=0.0)  # model.head_margin: the angle (radians) added to the true class's

    @field_validator("head_margin")
    @classmethod
    def _below_right_angle(cls, m: float) -> float:
        if m >= math.pi / 2:  # cos(theta + m) stops decreasing in theta: the margin no longer penalises
            raise ValueError(f"model.head_margin={m} is an angle in radians for arcface: it must be below pi/2 "
                             "(0.5 is usual)")
        return m


class CosFaceArgs(Params):
    head_margin: float = Field(0.35, ge=0.0)  # model.head_margin: subtracted from the true class's cosine


# build: the head's class, (in_features, out_features, scale, margin) -> module; None keeps the network's own linear
# classifier. params: the margin heads' model.head_margin (model.head_scale applies to every cosine head).
HEADS = Registry("heads", "model.head", [
    Entry("linear", "the network's own linear classifier"),
    Entry("cosine", "scale x cosine similarity to each class's weight (normalised features and weights); LDAM's "
                    "head", None, CosineHead),
    Entry("arcface", "cosine head trained with an angular margin on the true class: s cos(theta + m) (Deng et al. "
                     "2019)", ArcFaceArgs, ArcFaceHead),
    Entry("cosface", "cosine head trained with a cosine margin on the true class: s (cos theta - m) (Wang et al. "
                     "2018)", CosFaceArgs, CosFaceHead),
], noun="head", params_key="model", note="every cosine head: logits = model.head_scale x cosine (30 by default)")


def head_margin(cfg: ModelConfig) -> float:
    """The margin of `cfg.head`: model.head_margin, else the head's default (0 for a head without one); a
    PodiumError naming model.head_margin when it is out of range or set for a head without a margin."""
    values = {} if cfg.head_margin is None else {"head_margin": cfg.head_margin}
    return HEADS.params(cfg.head, values, "model.").get("head_margin", 0.0)


def _classifier_name(model: nn.Module) -> str:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, module in model.named_modules():
        if module is head and name:
            return name
    raise PodiumError(f"{type(model).__name__}: cannot find the classifier that get_classifier() returns.")


def attach_head(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Replace the network's linear classifier by the head `cfg.head` names (no-op for linear); returns model."""
    entry = HEADS.get(cfg.head)
    if entry.build is None:
        return model
    name = _classifier_name(model)
    linear = model.get_submodule(name)
    if not isinstance(linear, nn.Linear):
        raise PodiumError(f"model.head={cfg.head} replaces a linear classifier, but {cfg.name}'s classifier "
                          f"'{name}' is a {type(linear).__name__}: use model.head=linear with this network.")
    model.set_submodule(name, entry.build(linear.in_features, linear.out_features, cfg.head_scale, head_margin(cfg)))
    return model


def margin_logits(model: nn.Module, logits: Tensor, target: Tensor) -> Tensor:
    """Training logits: the true class's margin applied when the network's classifier is a margin head."""
    head = model.get_classifier()
    return head.margin_logits(logits, target) if isinstance(head, CosineHead) else logits


def logit_scale(cfg: ModelConfig) -> float | None:
    """s of a cosine head (logits = s x cosine), None for a linear one: LDAM's margins are set in cosine units."""
    return None if HEADS.get(cfg.head).build is None else cfg.head_scale
