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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from podium.config import ModelConfig
from podium.errors import PodiumError

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
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, margin={self.margin}"


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


@dataclass(frozen=True)
class Head:
    cls: type[CosineHead] | None  # None: keep the network's own linear classifier
    default_margin: float  # used when model.head_margin is None
    description: str


HEADS: dict[str, Head] = {
    "linear": Head(None, 0.0, "the network's own linear classifier"),
    "cosine": Head(CosineHead, 0.0, "scale x cosine similarity to each class's weight (normalised features and "
                                    "weights); LDAM's head"),
    "arcface": Head(ArcFaceHead, 0.5, "cosine head trained with an angular margin on the true class: "
                                      "s cos(theta + m), m=0.5 rad (Deng et al. 2019)"),
    "cosface": Head(CosFaceHead, 0.35, "cosine head trained with a cosine margin on the true class: "
                                       "s (cos theta - m), m=0.35 (Wang et al. 2018)"),
}


def _classifier_name(model: nn.Module) -> str:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, module in model.named_modules():
        if module is head and name:
            return name
    raise PodiumError(f"{type(model).__name__}: cannot find the classifier that get_classifier() returns.")


def attach_head(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Replace the network's linear classifier by the head `cfg.head` names (no-op for linear); returns model."""
    spec = HEADS[cfg.head]
    if spec.cls is None:
        return model
    name = _classifier_name(model)
    linear = model.get_submodule(name)
    if not isinstance(linear, nn.Linear):
        raise PodiumError(f"model.head={cfg.head} replaces a linear classifier, but {cfg.name}'s classifier "
                          f"'{name}' is a {type(linear).__name__}: use model.head=linear with this network.")
    margin = cfg.head_margin if cfg.head_margin is not None else spec.default_margin
    model.set_submodule(name, spec.cls(linear.in_features, linear.out_features, cfg.head_scale, margin))
    return model


def margin_logits(model: nn.Module, logits: Tensor, target: Tensor) -> Tensor:
    """Training logits: the true class's margin applied when the network's classifier is a margin head."""
    head = model.get_classifier()
    return head.margin_logits(logits, target) if isinstance(head, CosineHead) else logits


def logit_scale(cfg: ModelConfig) -> float | None:
    """s of a cosine head (logits = s x cosine), None for a linear one: LDAM's margins are set in cosine units."""
    return None if HEADS[cfg.head].cls is None else cfg.head_scale


def describe_heads() -> list[str]:
    """Lines for `podium list heads`."""
    return [f"{name:<10} {h.description}" for name, h in HEADS.items()]
