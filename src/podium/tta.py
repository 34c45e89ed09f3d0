"""Test-time augmentation (`podium predict --tta`, `tta.views`, `podium list tta`): a registry of named views.

A TTA setting is a list of registered names; the identity (the image as it is) is always one of the views, so
`--tta hflip,vflip` predicts every image three times: as it is, mirrored left-right, mirrored top-bottom. Names
add views, they do not compose (hflip,vflip has no view flipped both ways: ask for `flips`). The views' outputs are
combined by `tta.combine`: the mean of the softmax probabilities (default) or the softmax of the mean logits.

Views work on normalised float batches (B, C, H, W) on the prediction device, for any number of channels, and keep
the shape, so any network can take them. Pick views under which the classes stay the same: flips for most
photos and clothes (not for text and digits), rotations only for data without an up (cells, satellite tiles,
textures), zooms and crops when objects vary in size and position.
"""

from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn.functional as F

from podium.errors import PodiumError
from podium.registry import Entry, Registry

Tensor = torch.Tensor
View = Callable[[Tensor], Tensor]  # (B, C, H, W) -> (B, C, H, W)
Activation = Callable[[Tensor], Tensor]  # logits (B x C) -> probabilities (B x C)

ZOOMS = (0.9, 1.1)  # multi-scale: content scaled by these factors, then cropped or padded back to H x W
CROP = 0.875  # five-crop: side of each crop as a share of the image side (224 of 256, as ImageNet evaluation)


def zoom(x: Tensor, factor: float) -> Tensor:
    """Scale the content by `factor` about the centre, keeping H x W: crop the middle (> 1) or pad by repeating the
    border pixels (< 1), so a zoomed-out image keeps its background instead of gaining a frame."""
    h, w = int(x.shape[-2]), int(x.shape[-1])  # plain ints, also while traced for ONNX (H x W is fixed)
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=factor < 1)
    if factor >= 1:
        top, left = (nh - h) // 2, (nw - w) // 2
        return y[..., top:top + h, left:left + w]
    top, left = (h - nh) // 2, (w - nw) // 2
    return F.pad(y, (left, w - nw - left, top, h - nh - top), mode="replicate")


def crop_resized(x: Tensor, top: int, left: int, size: tuple[int, int]) -> Tensor:
    """The crop at (top, left) of `size`, resized back to the image's H x W."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    patch = x[..., top:top + size[0], left:left + size[1]]
    return F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False)


def five_crops(x: Tensor) -> list[Tensor]:
    """The four corner crops and the centre crop (each CROP of the side), each resized back to H x W."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ch, cw = max(1, round(h * CROP)), max(1, round(w * CROP))
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
    return [crop_resized(x, top, left, (ch, cw)) for top, left in corners]


def _rot(k: int) -> View:
    def rotate(x: Tensor) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise PodiumError(f"TTA rot90s needs square images, got {x.shape[-2]}x{x.shape[-1]}: use "
                              "data.resize=resize or pad, or leave rot90s out.")
        return torch.rot90(x, k, dims=(-2, -1))

    return rotate


def _crop(i: int) -> View:
    return lambda x: five_crops(x)[i]


def _views(*pairs: tuple[str, View]) -> Callable[[], tuple[tuple[str, View], ...]]:
    return lambda: pairs


# build: () -> the (label, view) pairs the name adds
TTA = Registry("tta", "tta.views", [
    Entry("identity", "the image as it is (always included)", None, _views(("identity", lambda x: x))),
    Entry("hflip", "mirrored left-right", None, _views(("hflip", lambda x: x.flip(-1)))),
    Entry("vflip", "mirrored top-bottom", None, _views(("vflip", lambda x: x.flip(-2)))),
    Entry("flips", "both mirrors and both at once (3 views)", None,
          _views(("hflip", lambda x: x.flip(-1)), ("vflip", lambda x: x.flip(-2)),
                 ("hvflip", lambda x: x.flip(-2).flip(-1)))),
    Entry("rot90s", "rotated by 90, 180 and 270 degrees (3 views): data with no up, square images", None,
          _views(*((f"rot{90 * k}", _rot(k)) for k in (1, 2, 3)))),
    Entry("multi-scale", f"content zoomed by {' and '.join(f'{z:g}' for z in ZOOMS)} about the centre, kept at the "
                         "model's size (2 views)", None,
          _views(*((f"zoom{z:g}", lambda x, z=z: zoom(x, z)) for z in ZOOMS))),
    Entry("five-crop", f"4 corner crops and the centre crop ({CROP:g} of the side) resized back (5 views)", None,
          _views(*((name, _crop(i)) for i, name in enumerate(["crop_tl", "crop_tr", "crop_bl", "crop_br",
                                                              "crop_center"])))),
], noun="TTA view", note="none (also accepted): the identity alone, no TTA. Several views: --tta hflip,vflip "
                         "(names add views, they do not compose)")
ALIASES = {"none": "identity"}  # `--tta none`: the plain prediction


def _softmax(logits: Tensor) -> Tensor:
    return logits.softmax(1)


def _logits_mean(logits: Tensor, activation: Activation) -> Tensor:
    return activation(logits.mean(0))


def _probs_mean(logits: Tensor, activation: Activation) -> Tensor:
    return torch.stack([activation(view) for view in logits]).mean(0)  # activations take B x C


# build: (logits of every view V x B x C, activation) -> probabilities B x C
COMBINE = Registry("tta", "tta.combine", [
    Entry("mean_probs", "mean of the views' probabilities: a saturated, over-confident view counts no more than a "
                        "probability of 1", None, _probs_mean),
    Entry("mean_logits", "the probabilities of the views' mean logits (for softmax, the renormalised geometric mean "
                         "of their probabilities): a confident view weighs more", None, _logits_mean),
], noun="TTA combination")


def parse_tta(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Registered names from 'hflip,vflip' (',' or '+' between names) or a list; identity and 'none' dropped."""
    if spec is None:
        return []
    items = re.split(r"[,+]", spec) if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for raw in items:
        name = ALIASES.get(raw.strip(), raw.strip())
        if not name:
            continue
        if name not in TTA:
            raise PodiumError(f"{TTA.unknown(name)}; also none (no TTA). Separate several with commas, e.g. "
                              "--tta hflip,vflip.")
        if name != "identity" and name not in names:
            names.append(name)
    return names


def tta_key(names: list[str]) -> str:
    """A short name for a TTA setting, used in file names: 'none' or e.g. 'hflip+vflip'."""
    return "+".join(names) or "none"


def check_combine(name: str) -> str:
    """`name` if it is a TTA combination (tta.combine, --tta-combine), else a PodiumError naming the choices."""
    if name not in COMBINE:
        raise PodiumError(f"{COMBINE.unknown(name)}; --tta-combine takes the same names.")
    return name


def tta_views(spec: str | list[str] | None) -> list[tuple[str, View]]:
    """The identity first, then every view the names add (a view named twice, e.g. by hflip and flips, runs once)."""
    views = dict(TTA.get("identity").build())
    for name in parse_tta(spec):
        for label, view in TTA.get(name).build():
            views.setdefault(label, view)
    return list(views.items())


def combine(logits: list[Tensor] | Tensor, how: str = "mean_probs", activation: Activation = _softmax) -> Tensor:
    """Probabilities (B x C) from the logits of every view (V tensors of B x C), combined by COMBINE[how];
    `activation` turns logits into probabilities (the task's: softmax, sigmoid per label, softmax per task)."""
    stacked = logits if isinstance(logits, Tensor) else torch.stack(list(logits))
    return COMBINE.get(check_combine(how)).build(stacked.float(), activation)
