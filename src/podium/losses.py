"""Registry of losses (`train.loss`, `podium list losses`): each maps (logits N x C, class indices N) to a scalar.

The long-tail losses read the class counts of the fold's *training* rows (`LossContext`), never the validation
fold's. Each loss's parameters are typed once, beside its builder (`FocalArgs`, ...): `podium.tasks.check_config`
validates `train.loss_args` against the chosen loss's model and fills in every default, so a run's config.yaml
says exactly which loss made it. Multi-label losses (`MULTILABEL_LOSSES`: bce, asl) take N x K multi-hot targets
and the per-label positive counts; a multi-task run applies any single-label loss to each task's slice of the
logits (`MultiTaskLoss`, built by `podium.tasks`).

Every loss is a `Loss`: an nn.Module whose tensors are non-persistent buffers, so checkpoints hold model weights
only, and whose `set_epoch` the engine calls at the start of every epoch (LDAM's deferred re-weighting uses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from podium.config import NonNegativeFloat
from podium.errors import PodiumError
from podium.registry import Entry, Params, Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class LossContext:
    """What a loss may know about the training data besides its own parameters."""

    class_counts: np.ndarray  # training images per class (the fold's training rows), in class order
    epochs: int  # train.epochs: schedules such as LDAM's deferred re-weighting are set in epochs
    logit_scale: float | None  # s of a cosine head (logits = s x cosine); None for a linear head
    n_images: int = 0  # the fold's training images (multi-label: class_counts are each label's positives among them)


# ------------------------------------------------------------------------------------- loss parameters
# One typed model per loss (each registry entry's `params`): `train.loss_args` is checked against the chosen loss's.

ClassWeights = Literal["inverse", "sqrt_inverse", "effective_number"] | list[NonNegativeFloat]
Smoothing = Annotated[float, Field(ge=0.0, lt=1.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class CrossEntropyArgs(Params):
    label_smoothing: Smoothing = 0.1  # share of the target spread evenly over all classes


class WeightedCEArgs(Params):
    weights: ClassWeights = "inverse"  # 1/n | 1/sqrt(n) | (1-beta)/(1-beta^n) (Cui et al. 2019) | a list in class order
    beta: Beta = 0.9999  # weights=effective_number: how fast more images of a class stop adding information
    label_smoothing: Smoothing = 0.0  # as cross_entropy's


class FocalArgs(Params):
    gamma: Annotated[float, Field(ge=0.0)] = 2.0  # each image's loss is scaled by (1 - p_true)^gamma (0: cross-entropy)
    alpha: ClassWeights | None = None  # per-class factor, as weighted_ce's weights; None: 1 for every class
    beta: Beta = 0.9999  # alpha=effective_number: as weighted_ce's


class SoftF1Args(Params):
    eps: Annotated[float, Field(gt=0.0)] = 1e-7  # keeps each class's F1 defined when a batch neither holds nor
                                                 # predicts it


class BalancedSoftmaxArgs(Params):
    label_smoothing: Smoothing = 0.0  # as cross_entropy's


class LogitAdjustedArgs(Params):
    tau: NonNegativeFloat = 1.0  # logits + tau x log(class prior) while training
                                 # (Menon et al. 2021; 1 = balanced softmax)
    label_smoothing: Smoothing = 0.0  # as cross_entropy's


class LDAMArgs(Params):
    max_margin: Annotated[float, Field(gt=0.0)] = 0.5  # cosine margin of the rarest class;
                                                       # class c: max_margin x (n_min/n_c)^(1/4)
    drw_epoch: Annotated[int, Field(ge=0)] | None = None  # deferred re-weighting from this epoch;
                                                          # None: 80% of train.epochs
    beta: Beta = 0.9999  # DRW's effective-number weights (Cao et al. 2019)


class BCEArgs(Params):
    pos_weight: Literal["none", "balanced"] | list[NonNegativeFloat] = "none"  # weight of each label's positives:
                                                                               # none | n_neg/n_pos per label
                                                                               # | a list in label order
    label_smoothing: Smoothing = 0.0  # targets y -> y(1 - s) + s/2


class ASLArgs(Params):
    gamma_neg: Annotated[float, Field(ge=0.0)] = 4.0  # focusing of the negatives: (p_m)^gamma_neg (Ridnik et al. 2021)
    gamma_pos: Annotated[float, Field(ge=0.0)] = 0.0  # focusing of the positives: (1 - p)^gamma_pos
    clip: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05  # probability margin: negatives use p_m = max(p - clip, 0)
    eps: Annotated[float, Field(gt=0.0)] = 1e-8  # floor inside the logs


# ------------------------------------------------------------------------------------ class statistics


def safe_counts(counts: np.ndarray) -> np.ndarray:
    """Counts as float64 with a class missing from the training rows counted once (weights and logs stay finite)."""
    return np.maximum(np.asarray(counts, dtype=np.float64), 1.0)


def class_weights(spec: ClassWeights, counts: np.ndarray, beta: float) -> np.ndarray:
    """Per-class weights: computed ones are scaled to mean 1 over the classes; an explicit list is kept as given.

    inverse: 1/n_c;  sqrt_inverse: 1/sqrt(n_c);  effective_number: (1 - beta) / (1 - beta^n_c), the inverse of
    the "effective number of samples" of Cui et al. (2019): beta -> 0 gives equal weights, beta -> 1 gives 1/n_c.
    """
    n = safe_counts(counts)
    if isinstance(spec, list):
        w = np.asarray(spec, dtype=np.float64)
        if w.shape != n.shape or (w <= 0).any():
            raise PodiumError(f"Class weights {spec} must be {len(n)} positive numbers, one per class in class "
                              f"order (RUN/classes.json).")
        return w
    formulas: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "inverse": lambda n: 1.0 / n,
        "sqrt_inverse": lambda n: 1.0 / np.sqrt(n),
        "effective_number": lambda n: (1.0 - beta) / (1.0 - np.power(beta, n)),
    }
    w = formulas[spec](n)
    return w * len(w) / w.sum()


def log_prior(counts: np.ndarray) -> np.ndarray:
    """log of each class's share of the training images."""
    n = safe_counts(counts)
    return np.log(n / n.sum())


def _buffer(module: nn.Module, name: str, values: np.ndarray | None) -> None:
    module.register_buffer(name, None if values is None else torch.tensor(values, dtype=torch.float32),
                           persistent=False)


# ----------------------------------------------------------------------------------------------- losses


class Loss(nn.Module):
    """forward(logits N x C, target N) -> scalar; set_epoch(epoch) at the start of every training epoch;
    soft(logits, probs N x C) -> one loss per image against soft targets (OOF distillation, soft pseudo-labels)."""

    def set_epoch(self, epoch: int) -> None:
        """Most losses do not change over training."""

    def soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        """Cross-entropy against a distribution over the classes, -sum_c q_c log softmax(z)_c, per image. A target's
        class weights, margins and smoothing belong to its hard label: the soft term is the plain one."""
        return -(probs * F.log_softmax(logits.float(), dim=1)).sum(1)


class CrossEntropy(Loss):
    """Cross-entropy of (logits + tau x log prior) with optional class weights and label smoothing.

    tau = 0 and no weights: plain cross-entropy; tau = 1: balanced softmax (Ren et al. 2020); any tau: the
    logit-adjusted loss (Menon et al. 2021). The shift by the prior only happens in the loss: prediction uses the
    plain logits, which then estimate p(y|x) under balanced classes. With weights, the mean is weighted:
    sum_i w_(y_i) loss_i / sum_i w_(y_i) (PyTorch's convention).
    """

    def __init__(self, label_smoothing: float = 0.0, weights: np.ndarray | None = None,
                 shift: np.ndarray | None = None):
        super().__init__()
        self.label_smoothing = label_smoothing
        _buffer(self, "weights", weights)
        _buffer(self, "shift", shift)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.shift is not None:
            logits = logits + self.shift
        return F.cross_entropy(logits.float(), target, weight=self.weights, label_smoothing=self.label_smoothing)

    def soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        """As Loss.soft, on the same prior-shifted logits the hard term sees (logit_adjusted, balanced_softmax)."""
        return super().soft(logits if self.shift is None else logits + self.shift, probs)


class FocalLoss(Loss):
    """mean_i alpha_(y_i) (1 - p_i)^gamma (-log p_i), p_i the softmax probability of the true class (Lin et al. 2017).

    Well-classified images (p near 1) contribute little, so training concentrates on hard ones.
    """

    def __init__(self, gamma: float, alpha: np.ndarray | None):
        super().__init__()
        self.gamma = gamma
        _buffer(self, "alpha", alpha)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - logp.exp()).clamp(min=0.0) ** self.gamma) * logp
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


class SoftF1Loss(Loss):
    """1 - macro-F1 computed on softmax probabilities over the batch: a differentiable stand-in for macro-F1.

    Per class c: tp = sum_i p_ic t_ic, fp = sum_i p_ic (1 - t_ic), fn = sum_i (1 - p_ic) t_ic and
    F1_c = 2 tp / (2 tp + fp + fn + eps); the loss is 1 - mean_c F1_c.
    """

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        p = logits.float().softmax(1)
        t = F.one_hot(target, p.shape[1]).float()
        tp, fp, fn = (p * t).sum(0), (p * (1 - t)).sum(0), ((1 - p) * t).sum(0)
        return 1.0 - (2 * tp / (2 * tp + fp + fn + self.eps)).mean()


class LDAMLoss(Loss):
    """Label-distribution-aware margins with deferred re-weighting (LDAM-DRW, Cao et al. 2019).

    The true class's logit is lowered by its margin before the cross-entropy: rare classes get larger margins
    (m_c proportional to n_c^(-1/4)), so the boundary is pushed away from them. Margins are cosine units, scaled by
    the cosine head's s. From `drw_epoch` on, classes are also weighted by their effective number (DRW): the
    features are learnt on the natural distribution first, the decision rule rebalanced last.
    """

    def __init__(self, margins: np.ndarray, drw_weights: np.ndarray, drw_epoch: int):
        super().__init__()
        _buffer(self, "margins", margins)
        _buffer(self, "drw_weights", drw_weights)
        self.drw_epoch, self.epoch = drw_epoch, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float() - F.one_hot(target, logits.shape[1]) * self.margins
        weight = self.drw_weights if self.epoch >= self.drw_epoch else None
        return F.cross_entropy(logits, target, weight=weight)


class BCELoss(Loss):
    """Binary cross-entropy of one sigmoid per label, averaged over the N x K cells; pos_weight scales each label's
    positive term (n_neg / n_pos balances a rare label's positives against its negatives)."""

    def __init__(self, pos_weight: np.ndarray | None, label_smoothing: float):
        super().__init__()
        self.label_smoothing = label_smoothing
        _buffer(self, "pos_weight", pos_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        t = target.float() * (1.0 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.float(), t, pos_weight=self.pos_weight)

    def soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        """BCE against each label's probability (no smoothing), averaged over the labels: one loss per image."""
        return F.binary_cross_entropy_with_logits(logits.float(), probs, pos_weight=self.pos_weight,
                                                  reduction="none").mean(1)


class AsymmetricLoss(Loss):
    """ASL (Ridnik et al. 2021): per cell, positives -(1-p)^gamma_pos log p, negatives -p_m^gamma_neg log(1-p_m)
    with p_m = max(p - clip, 0). Easy negatives (most cells of a multi-label image) are down-weighted and those
    under `clip` dropped. Averaged over the cells like bce (the paper sums); gammas 0 and clip 0 give bce."""

    def __init__(self, gamma_neg: float, gamma_pos: float, clip: float, eps: float):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def cells(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss of every (image, label) cell; a target between 0 and 1 weighs the two terms."""
        t = target.float()
        p = logits.float().sigmoid()
        p_m = (p - self.clip).clamp(min=0.0) if self.clip > 0 else p
        pos = t * torch.log(p.clamp(min=self.eps)) * (1.0 - p) ** self.gamma_pos
        neg = (1.0 - t) * torch.log((1.0 - p_m).clamp(min=self.eps)) * p_m ** self.gamma_neg
        return -(pos + neg)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.cells(logits, target).mean()

    def soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        return self.cells(logits, probs).mean(1)


class MultiTaskLoss(Loss):
    """sum_t w_t x loss_t(logits of task t's slice, task t's class): one single-label loss per task."""

    def __init__(self, losses: list[Loss], sizes: list[int], weights: list[float]):
        super().__init__()
        self.losses, self.sizes, self.weights = nn.ModuleList(losses), list(sizes), list(weights)

    def set_epoch(self, epoch: int) -> None:
        for loss in self.losses:
            loss.set_epoch(epoch)

    def soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        raise PodiumError("Soft targets are not supported for data.task=multitask (remove train.soft_targets).")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        parts = logits.split(self.sizes, dim=1)
        return sum(w * loss(part, target[:, t]) for t, (w, loss, part) in
                   enumerate(zip(self.weights, self.losses, parts)))


# --------------------------------------------------------------------------------------- soft targets


@dataclass(frozen=True)
class SoftLayout:
    """How a training batch's targets read when images learn from soft targets too (podium.engine.distill).

    Each row is packed as float32 [hard target(s), alpha, q_1..q_C]: a batch stays one tensor, so the sampler, the
    loaders and Mixup/CutMix's partner flip (podium.mixing) handle it as they handle any target. The image's target
    is alpha q + (1 - alpha) label; its loss alpha soft(z, q) + (1 - alpha) loss(z, label), which for cross-entropy and
    BCE is the loss of that blended target (both are linear in the target), and which keeps every hard-label feature
    of a loss (class weights, margins, smoothing) on the hard term, as Mixup's two-term loss does."""

    hard_cols: int  # 1: a class index (multiclass); K: a multi-hot row (multilabel)
    index: bool  # the hard target is a class index
    uniform: bool  # every row has the same alpha, so the hard term needs no row selection (no soft-only rows)

    def pack(self, hard: np.ndarray, alpha: np.ndarray, probs: np.ndarray) -> np.ndarray:
        hard = np.asarray(hard, dtype=np.float32).reshape(len(hard), self.hard_cols)
        return np.concatenate([hard, np.asarray(alpha, np.float32)[:, None], np.asarray(probs, np.float32)], axis=1)

    def unpack(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hard = y[:, 0].long() if self.index else y[:, :self.hard_cols]
        return hard, y[:, self.hard_cols], y[:, self.hard_cols + 1:]


def distilled_loss(hard_fn: Callable[[Tensor, Tensor], Tensor], soft_fn: Callable[[Tensor, Tensor], Tensor],
                   logits: Tensor, y: Tensor, layout: SoftLayout) -> Tensor:
    """mean_i [(1 - alpha_i) loss(z_i, label_i) + alpha_i soft(z_i, q_i)] for a packed batch `y` (SoftLayout).
    hard_fn(logits, hard) is the loss's mean over the rows given (with any margin); soft_fn gives one value per row.
    The rows with a hard term share one alpha (train.soft_alpha, or 0); soft-only rows (alpha 1) have none."""
    hard, alpha, q = layout.unpack(y)
    soft_term = (alpha * soft_fn(logits, q)).mean()
    if layout.uniform:
        return (1.0 - alpha[0]) * hard_fn(logits, hard) + soft_term
    keep = alpha < 1.0
    n = int(keep.sum())  # waits for the device once a step, only when soft-only rows exist
    if n == 0:
        return soft_term
    return (1.0 - alpha[keep][0]) * hard_fn(logits[keep], hard[keep]) * (n / len(y)) + soft_term


# ------------------------------------------------------------------------------------------- builders


def _cross_entropy(a: CrossEntropyArgs, ctx: LossContext) -> Loss:
    return CrossEntropy(a.label_smoothing)


def _weighted_ce(a: WeightedCEArgs, ctx: LossContext) -> Loss:
    return CrossEntropy(a.label_smoothing, weights=class_weights(a.weights, ctx.class_counts, a.beta))


def _focal(a: FocalArgs, ctx: LossContext) -> Loss:
    alpha = None if a.alpha is None else class_weights(a.alpha, ctx.class_counts, a.beta)
    return FocalLoss(a.gamma, alpha)


def _soft_f1(a: SoftF1Args, ctx: LossContext) -> Loss:
    return SoftF1Loss(a.eps)


def _balanced_softmax(a: BalancedSoftmaxArgs, ctx: LossContext) -> Loss:
    return CrossEntropy(a.label_smoothing, shift=log_prior(ctx.class_counts))


def _logit_adjusted(a: LogitAdjustedArgs, ctx: LossContext) -> Loss:
    return CrossEntropy(a.label_smoothing, shift=a.tau * log_prior(ctx.class_counts))


def ldam_margins(counts: np.ndarray, max_margin: float) -> np.ndarray:
    """m_c = max_margin x (n_min / n_c)^(1/4): the rarest class gets max_margin (cosine units)."""
    n = safe_counts(counts)
    return max_margin * (n.min() / n) ** 0.25


def _ldam(a: LDAMArgs, ctx: LossContext) -> Loss:
    if ctx.logit_scale is None:
        raise PodiumError("train.loss=ldam puts its margins on cosine logits: set model.head=cosine.")
    drw_epoch = a.drw_epoch if a.drw_epoch is not None else round(0.8 * ctx.epochs)
    return LDAMLoss(ldam_margins(ctx.class_counts, a.max_margin) * ctx.logit_scale,
                    class_weights("effective_number", ctx.class_counts, a.beta), drw_epoch)


def _bce(a: BCEArgs, ctx: LossContext) -> Loss:
    pos = np.asarray(ctx.class_counts, dtype=np.float64)
    if isinstance(a.pos_weight, list):
        if len(a.pos_weight) != len(pos) or min(a.pos_weight) <= 0:
            raise PodiumError(f"train.loss_args.pos_weight {a.pos_weight} must be {len(pos)} positive numbers, one "
                              "per label in label order (RUN/classes.json).")
        weight = np.asarray(a.pos_weight)
    elif a.pos_weight == "balanced":
        weight = (ctx.n_images - pos) / np.maximum(pos, 1.0)
    else:
        weight = None
    return BCELoss(weight, a.label_smoothing)


def _asl(a: ASLArgs, ctx: LossContext) -> Loss:
    return AsymmetricLoss(a.gamma_neg, a.gamma_pos, a.clip, a.eps)


# build: (its params model, validated; LossContext) -> Loss
LOSSES = Registry("losses", "train.loss", [
    Entry("cross_entropy", "cross-entropy with label smoothing (podium's default)", CrossEntropyArgs, _cross_entropy),
    Entry("weighted_ce", "cross-entropy with per-class weights: inverse, sqrt_inverse or effective_number of the class "
                         "counts (Cui et al. 2019), or a list", WeightedCEArgs, _weighted_ce),
    Entry("focal", "focal loss: down-weights well-classified images by (1-p)^gamma, optional per-class alpha "
                   "(Lin et al. 2017)", FocalArgs, _focal),
    Entry("soft_f1", "1 - macro-F1 of the batch computed on probabilities (differentiable F1)", SoftF1Args, _soft_f1),
    Entry("balanced_softmax", "cross-entropy of logits + log(class prior): predicts as if classes were balanced "
                              "(Ren et al. 2020)", BalancedSoftmaxArgs, _balanced_softmax),
    Entry("logit_adjusted", "cross-entropy of logits + tau x log(class prior) (Menon et al. 2021; tau=1 is "
                            "balanced_softmax)", LogitAdjustedArgs, _logit_adjusted),
    Entry("ldam", "LDAM-DRW: larger margins for rarer classes, class re-weighting from drw_epoch (Cao et al. 2019); "
                  "needs model.head=cosine", LDAMArgs, _ldam),
], noun="loss", scope="data.task=multiclass or multitask: one class per image, or per task",
    params_key="train.loss_args")

MULTILABEL_LOSSES = Registry("losses", "train.loss", [  # targets N x K multi-hot
    Entry("bce", "multi-label: binary cross-entropy per label (the default for data.task=multilabel), optional "
                 "pos_weight", BCEArgs, _bce),
    Entry("asl", "multi-label: asymmetric loss, down-weights and clips easy negatives (Ridnik et al. 2021)", ASLArgs,
          _asl),
], noun="loss", scope="data.task=multilabel", params_key="train.loss_args")

# every name train.loss can take, for looking a loss up whatever the task (podium.tasks says which task takes which)
ALL_LOSSES = Registry("losses", "train.loss", [*LOSSES.entries, *MULTILABEL_LOSSES.entries], noun="loss",
                      params_key="train.loss_args")


def create_loss(name: str, args: dict, ctx: LossContext) -> Loss:
    """The loss `name` with `args` (checked against its params model) for a fold with `ctx`'s class counts."""
    entry = ALL_LOSSES.get(name)
    return entry.build(entry.params.model_validate(ALL_LOSSES.params(name, args, "train.loss_args.")), ctx)
