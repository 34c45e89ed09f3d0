"""Mixup and CutMix on a training batch (`augment.mixup_alpha`, `augment.cutmix_alpha`, ...).

Batch mode, as timm's `Mixup(mode="batch")`: one lam per batch, image i is mixed with image B-1-i (the batch
flipped), so pair b's partner is `y.flip(0)`. Mixup blends whole images, x = lam x_a + (1 - lam) x_b with lam ~
Beta(alpha, alpha); CutMix pastes a box of x_b into x_a, its area share drawn the same way (timm's
`cutmix_bbox_and_lam` draws the box and corrects lam to the box actually pasted, clipped at the borders).

Randomness comes from numpy's global generator, which the engine reseeds from (seed, epoch) at every epoch's
first batch: the same seed gives the same mixes, and a resumed epoch replays them.

How the loss sees a mixed batch: `mixed_loss` = lam L(logits, y_a) + (1 - lam) L(logits, y_b), for any loss of
podium.losses. Every registered loss takes class indices, and several need *the* true class of each image: class
weights, LDAM's per-class margins, and the margin heads (ArcFace / CosFace put their margin on the target's
logit, `heads.margin_logits`). Mixing two class-index losses keeps all of that intact (each term gets its own
margin), where soft targets would need every loss rewritten. For plain cross-entropy the two are the same
thing: CE is linear in the target, so lam CE(y_a) + (1 - lam) CE(y_b) = CE(lam onehot(y_a) + (1 - lam) onehot(y_b)).
`mix_targets` gives that soft target for any target tensor (class indices as one-hot, or N x C multi-hot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from podium.config import AugmentConfig

Tensor = torch.Tensor


@dataclass(frozen=True)
class Mix:
    """What one batch got: lam is the share of each image that is still its own (1.0: not mixed)."""

    lam: float
    kind: str  # "mixup" | "cutmix" | "none"
    box: tuple[int, int, int, int] | None = None  # cutmix: rows y0:y1, columns x0:x1 taken from the partner


NO_MIX = Mix(1.0, "none")


def mixing_enabled(cfg: AugmentConfig, epoch: int) -> bool:
    """Mixing is on when an alpha is positive, until epoch `mix_off_epoch` (0-based) when that is set."""
    on = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
    return on and (cfg.mix_off_epoch is None or epoch < cfg.mix_off_epoch)


def draw_mix(cfg: AugmentConfig, shape: tuple[int, ...]) -> Mix:
    """lam (and the box for cutmix) for one batch of `shape` (B, C, H, W), from numpy's global generator."""
    if np.random.rand() >= cfg.mix_prob:
        return NO_MIX
    both = cfg.mixup_alpha > 0 and cfg.cutmix_alpha > 0
    use_cutmix = np.random.rand() < cfg.mix_switch_prob if both else cfg.cutmix_alpha > 0
    alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
    lam = float(np.random.beta(alpha, alpha))
    if not use_cutmix:
        return Mix(lam, "mixup")
    from timm.data.mixup import cutmix_bbox_and_lam

    box, lam = cutmix_bbox_and_lam(shape, lam, correct_lam=True)
    return Mix(float(lam), "cutmix", tuple(int(v) for v in box))


def mix_images(x: Tensor, mix: Mix) -> Tensor:
    """The mixed batch (a new tensor): image i with image B-1-i."""
    if mix.kind == "none":
        return x
    partner = x.flip(0)
    if mix.kind == "mixup":
        return x * mix.lam + partner * (1.0 - mix.lam)
    y0, y1, x0, x1 = mix.box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
    return out


def partner_targets(y: Tensor) -> Tensor:
    """Each image's partner's targets (y_b): the batch flipped, whatever the target's shape."""
    return y.flip(0)


def mix_targets(y: Tensor, mix: Mix, n_classes: int) -> Tensor:
    """Soft targets lam y_a + (1 - lam) y_b (N x C float): class indices become one-hot first, multi-hot stays."""
    t = F.one_hot(y, n_classes).float() if y.dim() == 1 else y.float()
    return t * mix.lam + partner_targets(t) * (1.0 - mix.lam)


def mixed_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], logits: Tensor, y: Tensor, mix: Mix) -> Tensor:
    """lam loss_fn(logits, y_a) + (1 - lam) loss_fn(logits, y_b); loss_fn(logits, target) applies any margin itself."""
    if mix.kind == "none":
        return loss_fn(logits, y)
    return mix.lam * loss_fn(logits, y) + (1.0 - mix.lam) * loss_fn(logits, partner_targets(y))
