"""Training augmentation: named presets (`podium list augment`), overridable one key at a time.

Two stages. Per image, on the CPU, while the batch is read (`ItemPipeline`, albumentations on uint8 H x W x C):
scale/rotate/perspective, colour, blur, noise, dropout, JPEG, and the optional Canny edge channel. Per batch, as
tensors in `training_step` (`train_transform`, on the GPU when there is one): flips, rot90 and shift, which cost
next to nothing there. A preset that needs no per-image operation (none, light) reads batches exactly as before.

Reproducibility: the batch stage draws from torch's RNG, which the engine reseeds at every epoch's first batch;
the image stage seeds albumentations per batch from (seed, fold, epoch, batch number), so an epoch replays
identically after a resume and never depends on what ran before it. The image stage may run in DataLoader worker
processes (podium.engine.loader): the epoch and the batch number travel with each batch's items (`Draw`, from
`NumberedDraws`), so a batch comes out the same whichever process augments it, and however many there are.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
import torch

from podium.config import AugmentConfig
from podium.registry import Entry, Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class Augmentation:
    """Every augmentation choice, resolved (units as in config.AugmentConfig, 0 / False = off)."""

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    shift: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    perspective: float = 0.0
    colour: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    iso_noise: float = 0.0
    dropout: float = 0.0
    jpeg: float = 0.0

    def per_item(self) -> bool:
        """Whether any operation of the per-image (CPU) stage is on."""
        return any(getattr(self, f.name) for f in fields(self) if f.name not in BATCH_OPS)


BATCH_OPS = ("hflip", "vflip", "rot90", "shift")  # done on the batch tensor in training_step

_LIGHT = dict(hflip=True, shift=0.1)  # podium's augmentation before presets existed
_MEDIUM = dict(_LIGHT, scale=0.1, colour=0.2, blur=0.2, dropout=0.3)

# build: (**choices the config sets) -> Augmentation, the preset's choices with those put in their place
PRESETS = Registry("augment", "augment.preset", [
    Entry("none", "nothing: the images as decoded", None, Augmentation),
    Entry("light", "horizontal flip, shift up to 10% (batch ops only: no per-image cost); the default", None,
          partial(Augmentation, **_LIGHT)),
    Entry("medium", "light + zoom +-10%, brightness/contrast (+ hue/saturation on RGB) +-0.2, blur (p 0.2), coarse "
                    "dropout (p 0.3)", None, partial(Augmentation, **_MEDIUM)),
    Entry("heavy", "medium + zoom +-15%, rotation +-15 deg, perspective 5%, Gaussian noise up to 8% of 255", None,
          partial(Augmentation, **dict(_MEDIUM, scale=0.15, rotate=15.0, perspective=0.05, noise=0.08))),
    Entry("documents", "scans (S2): rot90 all four ways, both flips, Gaussian (up to 10%) and ISO noise, blur, colour "
                       "+-0.3, JPEG artefacts", None,
          partial(Augmentation, hflip=True, vflip=True, rot90=True, colour=0.3, blur=0.3, noise=0.1, iso_noise=0.3,
                  jpeg=0.3)),
], noun="preset", note="every choice of a preset can be overridden by its own key, e.g. augment.blur=0.5 "
                       "(`podium config show` lists them)")


def resolve(cfg: AugmentConfig) -> Augmentation:
    """The preset's choices with every key the config sets (non-null) put in their place."""
    overrides = {f.name: getattr(cfg, f.name) for f in fields(Augmentation) if getattr(cfg, f.name) is not None}
    return PRESETS.get(cfg.preset).build(**overrides)


# ------------------------------------------------------------------------------------------- batch stage


def to_float(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 0..255 -> normalised float32: (x/255 - mean) / std, per channel."""
    return (x.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_flip(x: Tensor, dim: int, p: float = 0.5) -> Tensor:
    """Flip each image along `dim` (3 = horizontal, 2 = vertical) with probability p."""
    mask = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(dim), x)


def random_rot90(x: Tensor) -> Tensor:
    """Rotate each (square) image by 0, 90, 180 or 270 degrees, each equally likely."""
    k = torch.randint(0, 4, (x.shape[0],), device=x.device)
    out = x.clone()
    for turns in (1, 2, 3):
        pick = k == turns
        out[pick] = torch.rot90(x[pick], turns, dims=(2, 3))
    return out


def random_shift(x: Tensor, fraction: float) -> Tensor:
    """Translate each image by up to fraction x side pixels in each direction, filling with zeros."""
    b, _, h, w = x.shape
    pad_h, pad_w = round(h * fraction), round(w * fraction)
    if pad_h == 0 and pad_w == 0:
        return x
    padded = torch.nn.functional.pad(x, (pad_w, pad_w, pad_h, pad_h))
    dy = torch.randint(0, 2 * pad_h + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * pad_w + 1, (b,), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def train_transform(cfg: AugmentConfig) -> Callable[[Tensor], Tensor]:
    """The batch stage of the training augmentation, for a normalised float batch."""
    aug = resolve(cfg)

    def apply(x: Tensor) -> Tensor:
        if aug.hflip:
            x = random_flip(x, 3)
        if aug.vflip:
            x = random_flip(x, 2)
        if aug.rot90:
            x = random_rot90(x)
        if aug.shift > 0:
            x = random_shift(x, aug.shift)
        return x

    return apply


# ------------------------------------------------------------------------------------------- image stage


def item_compose(aug: Augmentation, channels: int):
    """The albumentations pipeline for one uint8 H x W x C image (C = 1 or 3); None when it would do nothing.
    Colour operations that need RGB (hue, saturation, ISO noise) are left out for grayscale."""
    import albumentations as A
    import cv2

    cv2.setNumThreads(1)  # as podium.data.images sets it: OpenCV's thread pool does not survive the decoders' fork

    ops = []
    if aug.scale or aug.rotate:
        ops.append(A.Affine(scale=(1 - aug.scale, 1 + aug.scale), rotate=(-aug.rotate, aug.rotate),
                            border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.7))
    if aug.perspective:
        ops.append(A.Perspective(scale=(0.0, aug.perspective), border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5))
    if aug.colour:
        ops.append(A.RandomBrightnessContrast(brightness_limit=aug.colour, contrast_limit=aug.colour, p=0.8))
        if channels == 3:
            ops.append(A.ColorJitter(brightness=0, contrast=0, saturation=aug.colour, hue=aug.colour / 4, p=0.5))
    if aug.blur:
        ops.append(A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.2)), A.MotionBlur(blur_limit=(3, 5))], p=aug.blur))
    if aug.noise:
        ops.append(A.GaussNoise(std_range=(0.0, aug.noise), p=0.5))
    if aug.iso_noise and channels == 3:
        ops.append(A.ISONoise(p=aug.iso_noise))
    if aug.dropout:
        ops.append(A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.05, 0.2),
                                   hole_width_range=(0.05, 0.2), fill=0, p=aug.dropout))
    if aug.jpeg:
        ops.append(A.ImageCompression(quality_range=(30, 90), p=aug.jpeg))
    return A.Compose(ops, seed=0) if ops else None


def edge_map(image: np.ndarray) -> np.ndarray:
    """Canny edges (H x W uint8, 0 or 255) of a uint8 H x W x C image; thresholds from Otsu's: (t/2, t)."""
    import cv2

    gray = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    gray = np.ascontiguousarray(gray)
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return cv2.Canny(gray, t / 2, t)


def with_edges(batch: np.ndarray) -> np.ndarray:
    """B x H x W x C uint8 -> B x H x W x (C + 1): each image's edge map appended as the last channel."""
    return np.concatenate([batch, np.stack([edge_map(im) for im in batch])[..., None]], axis=-1)


class ImageStageError(RuntimeError):
    """An operation of the per-image stage failed; the message names the image (raised in a DataLoader worker, it
    reaches the training process with the worker's traceback)."""


def _each_image(fn: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
                name: Callable[[int], str] | None) -> np.ndarray:
    """fn applied to every image of the batch, stacked; a failure names the image (name(i): image i of the batch)."""
    out = []
    for i, image in enumerate(batch):
        try:
            out.append(fn(image))
        except Exception as exc:
            which = name(i) if name is not None else f"image {i} of the batch"
            raise ImageStageError(f"The per-image augmentation stage failed on {which}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return np.stack(out)


class ItemPipeline:
    """The CPU stage for uint8 batches (B x H x W x C): per-image albumentations (training only), then the edge
    channel when asked. `seed` None: no augmentation (validation, prediction)."""

    def __init__(self, aug: Augmentation | None, channels: int, edges: bool):
        self.compose = item_compose(aug, channels) if aug is not None else None
        self.edges = edges

    def __bool__(self) -> bool:
        return self.compose is not None or self.edges

    def __call__(self, batch: np.ndarray, seed: int | None, name: Callable[[int], str] | None = None) -> np.ndarray:
        """The batch through the stage, its images in turn from one stream seeded by `seed`; `name(i)` says which
        image batch[i] is when an operation fails on it."""
        if self.compose is not None and seed is not None:
            self.compose.set_random_seed(seed)
            batch = _each_image(lambda im: self.compose(image=im)["image"].reshape(im.shape), batch, name)
        return with_edges(batch) if self.edges else batch


def train_pipeline(cfg: AugmentConfig, channels: int) -> ItemPipeline | None:
    pipe = ItemPipeline(resolve(cfg), channels, cfg.edges)
    return pipe if pipe else None


def eval_pipeline(cfg: AugmentConfig, channels: int) -> ItemPipeline | None:
    """What validation and prediction apply: the edge channel, never augmentation."""
    return ItemPipeline(None, channels, True) if cfg.edges else None


class Draw(NamedTuple):
    """One item of a training epoch as `NumberedDraws` hands it to the DataLoader, and through it to a worker."""

    epoch: int
    number: int  # the draw's place in the epoch's whole list: 0, 1, 2, ... (a rank of a multi-GPU run sees a share)
    position: int  # which image: a position in the dataset's rows


class NumberedDraws(torch.utils.data.Sampler):
    """A training sampler (podium.samplers) whose items carry their epoch and their place in it (`Draw`).

    Why: worker processes are started once (persistent) and never see the sampler; what the image stage is seeded
    from must come with the items. The epoch is read when an epoch's iteration starts, which podium.engine.loader
    holds back until the first batch is asked for: after Lightning's `set_epoch`, which this forwards."""

    def __init__(self, sampler: torch.utils.data.Sampler):
        self.sampler = sampler

    @property
    def epoch(self) -> int:
        return getattr(self.sampler, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):  # an order that never changes (SequentialSampler) has none
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch = self.epoch
        # a rank's share of a multi-device epoch (podium.samplers.ShardedSampler) numbers its items by their place in
        # the whole epoch: the ranks' batches then start at different draws, and get different seeds
        numbered = getattr(self.sampler, "numbered", None)
        return (Draw(epoch, k, int(p)) for k, p in (numbered() if numbered else enumerate(self.sampler)))


def batch_seed(seed: int, first: Draw, batch_size: int) -> int:
    """The image stage's seed for the batch whose first item is `first`: drawn from (seed, epoch, batch number).

    On one device batch b starts at draw b x batch_size, and this is the seed podium has always used for it. A rank
    of a multi-GPU run draws every W-th item, so its batches start elsewhere: the remainder then keeps the ranks'
    seeds apart."""
    b, rest = divmod(first.number, batch_size)
    words = [seed, first.epoch, b] + ([rest] if rest else [])
    return int(np.random.SeedSequence(words).generate_state(1)[0])


class AugmentedDataset(torch.utils.data.Dataset):
    """A CachedDataset whose batches go through an ItemPipeline.

    With `seed` (training), items are `Draw`s (NumberedDraws over the epoch's sampler) and the batch starting at draw
    k of epoch e is augmented from batch_seed(seed, ..., batch_size): the same in whichever process, with however
    many workers. Without (validation and prediction: the edge channel only), items are positions. `names[row]`
    (optional, e.g. the images' paths) names an image that the stage fails on."""

    def __init__(self, base, pipeline: ItemPipeline, seed: int | None, batch_size: int = 1,
                 names: np.ndarray | None = None):
        self.base, self.pipeline, self.seed, self.batch_size, self.names = base, pipeline, seed, batch_size, names

    def __len__(self) -> int:
        return len(self.base)

    def __getitems__(self, items):
        seed, positions = None, items
        if self.seed is not None:
            if not all(isinstance(d, Draw) for d in items):
                raise TypeError("an augmenting AugmentedDataset reads Draws (podium.augment.NumberedDraws)")
            seed, positions = batch_seed(self.seed, items[0], self.batch_size), [d.position for d in items]
        x, y = self.base.__getitems__(positions)
        rows = self.base.indices[np.asarray(positions, dtype=np.int64)]

        def name(i: int) -> str:
            row = int(rows[i])
            return f"row {row} of the decode cache" + (f" ({self.names[row]})" if self.names is not None else "")

        out = self.pipeline(x.permute(0, 2, 3, 1).numpy(), seed, name)
        return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2), y


# ---------------------------------------------------------------------------------------- normalisation

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
EDGE_STATS = (0.0, 1.0)  # the edge channel enters as 0 (no edge) or 1 (edge)


