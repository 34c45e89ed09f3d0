"""losses.py: every loss against a value computed by hand from its formula, gradients that point the right way and
favour rare classes where they should, the class-weight formulas, loss_args validation, and the listing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from podium.config import load_config
from podium.errors import PodiumError
from podium.losses import LOSSES, LossContext, class_weights, create_loss, ldam_margins
from podium.tasks.check import check_config

Z = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]]  # two images, three classes
Y = [0, 2]
COUNTS = np.array([8, 4, 1])  # training images per class: class 2 is the rare one
CTX = LossContext(COUNTS, epochs=10, logit_scale=None)


def _ce(z: list[float], y: int, smoothing: float = 0.0) -> float:
    """-(1 - e) log p_y - e/C sum_c log p_c, written out."""
    lse = math.log(sum(math.exp(v) for v in z))
    logp = [v - lse for v in z]
    return -(1 - smoothing) * logp[y] - smoothing / len(z) * sum(logp)


def _softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _loss(name: str, args: dict, ctx: LossContext = CTX, z=Z, y=Y, epoch: int = 0) -> float:
    loss = create_loss(name, args, ctx)
    loss.set_epoch(epoch)
    return float(loss(torch.tensor(z), torch.tensor(y)))


def test_cross_entropy_with_label_smoothing():
    expect = (_ce(Z[0], 0, 0.1) + _ce(Z[1], 2, 0.1)) / 2
    assert _loss("cross_entropy", {}) == pytest.approx(expect, rel=1e-5)  # default smoothing 0.1
    assert _loss("cross_entropy", {"label_smoothing": 0.0}) == pytest.approx(
        (_ce(Z[0], 0) + _ce(Z[1], 2)) / 2, rel=1e-5)


def test_weighted_cross_entropy_is_a_weighted_mean():
    w = [1 / 8, 1 / 4, 1 / 1]
    w = [v * 3 / sum(w) for v in w]
    expect = (w[0] * _ce(Z[0], 0) + w[2] * _ce(Z[1], 2)) / (w[0] + w[2])
    assert _loss("weighted_ce", {"weights": "inverse"}) == pytest.approx(expect, rel=1e-5)
    expect = (1.0 * _ce(Z[0], 0) + 5.0 * _ce(Z[1], 2)) / 6.0
    assert _loss("weighted_ce", {"weights": [1.0, 3.0, 5.0]}) == pytest.approx(expect, rel=1e-5)


def test_focal_loss():
    p0, p1 = _softmax(Z[0])[0], _softmax(Z[1])[2]
    plain = ((1 - p0) ** 2 * _ce(Z[0], 0) + (1 - p1) ** 2 * _ce(Z[1], 2)) / 2
    assert _loss("focal", {"gamma": 2.0}) == pytest.approx(plain, rel=1e-5)
    alpha = (1 * (1 - p0) ** 2 * _ce(Z[0], 0) + 3 * (1 - p1) ** 2 * _ce(Z[1], 2)) / 2
    assert _loss("focal", {"gamma": 2.0, "alpha": [1.0, 2.0, 3.0]}) == pytest.approx(alpha, rel=1e-5)
    assert _loss("focal", {"gamma": 0.0}) == pytest.approx((_ce(Z[0], 0) + _ce(Z[1], 2)) / 2, rel=1e-5)


def test_soft_f1_is_one_minus_macro_f1_of_probabilities():
    p = [_softmax(z) for z in Z]
    t = [[1.0 if c == y else 0.0 for c in range(3)] for y in Y]
    f1 = []
    for c in range(3):
        tp = sum(p[i][c] * t[i][c] for i in range(2))
        fp = sum(p[i][c] * (1 - t[i][c]) for i in range(2))
        fn = sum((1 - p[i][c]) * t[i][c] for i in range(2))
        f1.append(2 * tp / (2 * tp + fp + fn + 1e-7))
    assert _loss("soft_f1", {}) == pytest.approx(1 - sum(f1) / 3, rel=1e-5)


def test_balanced_softmax_and_logit_adjusted_shift_by_the_log_prior():
    log_prior = [math.log(n / 13) for n in COUNTS]
    for name, args, tau in [("balanced_softmax", {}, 1.0), ("logit_adjusted", {"tau": 0.5}, 0.5),
                            ("logit_adjusted", {"tau": 0.0}, 0.0)]:
        shifted = [[v + tau * lp for v, lp in zip(z, log_prior)] for z in Z]
        expect = (_ce(shifted[0], 0) + _ce(shifted[1], 2)) / 2
        assert _loss(name, args) == pytest.approx(expect, rel=1e-5), (name, tau)


def test_ldam_margins_and_deferred_reweighting():
    ctx = LossContext(COUNTS, epochs=10, logit_scale=30.0)
    m = [0.5 * (1 / n) ** 0.25 for n in COUNTS]  # n_min = 1: the rarest class gets the whole 0.5
    np.testing.assert_allclose(ldam_margins(COUNTS, 0.5), m)
    z = [[v * 10 for v in row] for row in Z]
    moved = [list(row) for row in z]
    for i, y in enumerate(Y):
        moved[i][y] -= 30.0 * m[y]
    plain = (_ce(moved[0], 0) + _ce(moved[1], 2)) / 2
    w = [(1 - 0.9999) / (1 - 0.9999 ** n) for n in COUNTS]
    w = [v * 3 / sum(w) for v in w]
    weighted = (w[0] * _ce(moved[0], 0) + w[2] * _ce(moved[1], 2)) / (w[0] + w[2])
    assert _loss("ldam", {}, ctx, z=z, epoch=7) == pytest.approx(plain, rel=1e-5)  # DRW from round(0.8 x 10) = 8
    assert _loss("ldam", {}, ctx, z=z, epoch=8) == pytest.approx(weighted, rel=1e-5)
    assert _loss("ldam", {"drw_epoch": 2}, ctx, z=z, epoch=2) == pytest.approx(weighted, rel=1e-5)
    with pytest.raises(PodiumError, match="model.head=cosine"):
        create_loss("ldam", {}, CTX)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_raises_the_true_class_and_lowers_the_loss(name):
    g = torch.Generator().manual_seed(0)
    logits = (0.5 * torch.randn(16, 3, generator=g)).requires_grad_(True)  # p_true < 0.93: smoothing still pulls up
    y = torch.arange(16) % 3
    loss = create_loss(name, {}, LossContext(COUNTS, epochs=10, logit_scale=5.0))
    value = loss(logits, y)
    value.backward()
    assert (logits.grad[torch.arange(16), y] < 0).all()  # raising the true class's logit lowers the loss
    assert float(loss(logits.detach() - 0.5 * logits.grad, y)) < value.item()


@pytest.mark.parametrize("name, args", [("weighted_ce", {}), ("focal", {"alpha": "inverse"}),
                                        ("balanced_softmax", {}), ("logit_adjusted", {}), ("ldam", {"drw_epoch": 0})])
def test_long_tail_losses_push_a_rare_image_harder_than_a_frequent_one(name, args):
    logits = torch.zeros(2, 3, requires_grad=True)  # identical predictions for an image of class 0 and one of class 2
    y = torch.tensor([0, 2])
    create_loss(name, args, LossContext(COUNTS, epochs=10, logit_scale=5.0))(logits, y).backward()
    frequent, rare = logits.grad[0, 0], logits.grad[1, 2]
    assert rare < frequent < 0


def test_plain_losses_treat_both_images_alike():
    logits = torch.zeros(2, 3, requires_grad=True)
    create_loss("cross_entropy", {}, CTX)(logits, torch.tensor([0, 2])).backward()
    assert logits.grad[0, 0] == pytest.approx(float(logits.grad[1, 2]))


def test_class_weight_formulas():
    n = np.array([100, 10, 1])
    inv = np.array([1 / 100, 1 / 10, 1.0])
    np.testing.assert_allclose(class_weights("inverse", n, 0.9), inv * 3 / inv.sum())
    sq = 1 / np.sqrt(n)
    np.testing.assert_allclose(class_weights("sqrt_inverse", n, 0.9), sq * 3 / sq.sum())
    eff = (1 - 0.99) / (1 - 0.99 ** n)  # Cui et al.: 1 / effective number (1 - beta^n) / (1 - beta)
    np.testing.assert_allclose(class_weights("effective_number", n, 0.99), eff * 3 / eff.sum())
    np.testing.assert_allclose(class_weights("effective_number", n, 0.0), [1, 1, 1])  # beta 0: all equal
    near_inverse = class_weights("effective_number", n, 1 - 1e-9)  # beta -> 1: inverse frequency
    np.testing.assert_allclose(near_inverse, class_weights("inverse", n, 0.0), rtol=1e-4)
    np.testing.assert_allclose(class_weights("inverse", np.array([5, 0]), 0.0), [0.2 * 2 / 1.2, 2 / 1.2])  # absent: 1
    np.testing.assert_allclose(class_weights([2.0, 1.0, 1.0], n, 0.0), [2, 1, 1])  # explicit: as given
    with pytest.raises(PodiumError, match="3 positive numbers, one per class"):
        class_weights([1.0, 2.0], n, 0.0)


def test_loss_args_are_validated_and_filled():
    cfg = check_config(load_config(None, ["train.loss=focal", "train.loss_args.gamma=1"]))
    assert cfg.train.loss_args == {"gamma": 1.0, "alpha": None, "beta": 0.9999}
    with pytest.raises(PodiumError, match=r"train.loss_args.gama: loss 'focal' has no parameter 'gama'. Did you mean "
                                          r"'gamma'\? Its parameters: gamma, alpha, beta"):
        check_config(load_config(None, ["train.loss=focal", "train.loss_args.gama=1"]))
    with pytest.raises(PodiumError, match=r"train.loss_args.weights"):
        check_config(load_config(None, ["train.loss=weighted_ce", "train.loss_args.weights=inverted"]))
    with pytest.raises(PodiumError, match=r"unknown loss 'focl'. Did you mean 'focal'"):
        check_config(load_config(None, ["train.loss=focl"]))
    with pytest.raises(PodiumError, match=r"set model.head=cosine"):
        load_config(None, ["train.loss=ldam"])


def test_every_loss_has_typed_args_and_is_listed_with_its_description():
    assert all(entry.params is not None and entry.build is not None for entry in LOSSES.entries)
    from podium.cli import app, list_lines

    out = CliRunner().invoke(app, ["list", "losses"]).output
    assert out.splitlines() == list_lines("losses")
    for spec in LOSSES.entries:
        assert spec.description and f"{spec.name:<18} {spec.description}" in out
    assert "loss_args: gamma=2.0, alpha=None, beta=0.9999" in out


# ------------------------------------------------------------------------------------------- multi-label

ML_LOGITS = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 0.3, -2.0]])
ML_Y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
ML_CTX = LossContext(np.array([30, 5, 1]), epochs=10, logit_scale=None, n_images=40)  # positives per label


def _bce_cells(z: torch.Tensor, y: torch.Tensor) -> float:
    """-(w y log s(z) + (1 - y) log(1 - s(z))), averaged over the cells, written out."""
    total = 0.0
    for zi, yi in zip(z.flatten().tolist(), y.flatten().tolist()):
        s = 1 / (1 + math.exp(-zi))
        total += -(yi * math.log(s) + (1 - yi) * math.log(1 - s))
    return total / z.numel()


def test_bce_is_binary_cross_entropy_per_cell_with_optional_pos_weight():
    assert float(create_loss("bce", {}, ML_CTX)(ML_LOGITS, ML_Y)) == pytest.approx(
        _bce_cells(ML_LOGITS, ML_Y), rel=1e-6)
    balanced = create_loss("bce", {"pos_weight": "balanced"}, ML_CTX)
    np.testing.assert_allclose(balanced.pos_weight.numpy(), [10 / 30, 35 / 5, 39 / 1], rtol=1e-6)  # n_neg / n_pos
    w = torch.tensor([1 / 3, 7.0, 39.0])
    s = ML_LOGITS.sigmoid()
    manual = -(w * ML_Y * s.log() + (1 - ML_Y) * (1 - s).log()).mean()
    assert float(balanced(ML_LOGITS, ML_Y)) == pytest.approx(float(manual), rel=1e-6)
    with pytest.raises(PodiumError, match="3 positive numbers, one per label"):
        create_loss("bce", {"pos_weight": [1.0, 2.0]}, ML_CTX)


def test_asl_reduces_to_bce_and_down_weights_easy_negatives():
    plain = create_loss("asl", {"gamma_neg": 0, "gamma_pos": 0, "clip": 0}, ML_CTX)
    assert float(plain(ML_LOGITS, ML_Y)) == pytest.approx(_bce_cells(ML_LOGITS, ML_Y), rel=1e-5)
    asl = create_loss("asl", {}, ML_CTX)  # gamma_neg 4, clip 0.05
    p = ML_LOGITS.sigmoid()
    pm = (p - 0.05).clamp(min=0)
    manual = -(ML_Y * p.log() + (1 - ML_Y) * pm ** 4 * (1 - pm).log()).mean()  # Ridnik et al. 2021, eq. 3-4 (mean)
    assert float(asl(ML_LOGITS, ML_Y)) == pytest.approx(float(manual), rel=1e-5)
    easy_negative = torch.tensor([[-3.0]])  # p = 0.047 < clip: dropped entirely
    assert float(asl(easy_negative, torch.tensor([[0.0]]))) == 0.0
    assert float(create_loss("bce", {}, ML_CTX)(easy_negative, torch.tensor([[0.0]]))) > 0.04


@pytest.mark.parametrize("name", ["bce", "asl"])
def test_multilabel_gradient_raises_positives_and_lowers_negatives(name):
    logits = torch.zeros(4, 3, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0]] * 4)
    create_loss(name, {}, ML_CTX)(logits, y).backward()
    assert (logits.grad[:, [0, 2]] < 0).all() and (logits.grad[:, 1] > 0).all()


def test_multitask_loss_is_the_weighted_sum_of_each_tasks_loss():
    from podium.losses import MultiTaskLoss

    z = torch.tensor([[2.0, 0.5, -1.0, 0.3, 0.1], [0.0, 1.0, 0.3, -1.0, 2.0]])  # tasks of 3 and 2 classes
    y = torch.tensor([[0, 1], [2, 1]])
    ce = [create_loss("cross_entropy", {"label_smoothing": 0.0}, CTX) for _ in range(2)]
    loss = MultiTaskLoss(ce, [3, 2], [1.0, 0.5])
    first = (_ce(z[0, :3].tolist(), 0) + _ce(z[1, :3].tolist(), 2)) / 2
    second = (_ce(z[0, 3:].tolist(), 1) + _ce(z[1, 3:].tolist(), 1)) / 2
    assert float(loss(z, y)) == pytest.approx(first + 0.5 * second, rel=1e-6)


def test_multilabel_losses_are_listed_with_their_args():
    from podium.cli import list_lines
    from podium.losses import MULTILABEL_LOSSES

    assert all(entry.params is not None for entry in MULTILABEL_LOSSES.entries)
    lines = list_lines("losses")
    for spec in MULTILABEL_LOSSES.entries:
        assert spec.name not in LOSSES and f"  {spec.name:<18} {spec.description}" in lines
    assert any("loss_args: gamma_neg=4.0, gamma_pos=0.0, clip=0.05" in line for line in lines)


# ------------------------------------------------------------------------------------ soft targets (distillation)


def _soft_batch(alpha, n=6, c=3, seed=0):
    from podium.losses import SoftLayout

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    q = torch.softmax(torch.randn(n, c, generator=g), 1)
    alpha = torch.as_tensor(alpha, dtype=torch.float32).expand(n).clone()
    layout = SoftLayout(hard_cols=1, index=True, uniform=bool((alpha == alpha[0]).all()))
    return logits, y, q, alpha, layout, torch.from_numpy(layout.pack(y.numpy(), alpha.numpy(), q.numpy()))


def test_distilled_cross_entropy_is_the_cross_entropy_of_the_blended_target():
    from podium.losses import CrossEntropy, distilled_loss

    loss = CrossEntropy(label_smoothing=0.0)
    logits, y, q, alpha, layout, packed = _soft_batch(0.3)
    blended = 0.3 * q + 0.7 * F.one_hot(y, 3).float()
    got = distilled_loss(loss, loss.soft, logits, packed, layout)
    assert float(got) == pytest.approx(float(F.cross_entropy(logits, blended)), rel=1e-6)
    # alpha 0: the hard loss alone; alpha 1: the soft one alone
    _, _, _, _, layout0, packed0 = _soft_batch(0.0)
    assert float(distilled_loss(loss, loss.soft, logits, packed0, layout0)) == pytest.approx(float(loss(logits, y)))
    _, _, _, _, layout1, packed1 = _soft_batch(1.0)
    assert float(distilled_loss(loss, loss.soft, logits, packed1, layout1)) == pytest.approx(
        float(F.cross_entropy(logits, q)), rel=1e-6)


def test_soft_only_rows_have_no_hard_term_and_the_rest_keep_theirs():
    from podium.losses import CrossEntropy, distilled_loss

    loss = CrossEntropy(label_smoothing=0.0)
    logits, y, q, alpha, layout, packed = _soft_batch([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    per_row = torch.where(alpha == 1.0, -(q * F.log_softmax(logits, 1)).sum(1),
                          F.cross_entropy(logits, y, reduction="none"))
    got = distilled_loss(loss, loss.soft, logits, packed, layout)
    assert not layout.uniform and float(got) == pytest.approx(float(per_row.mean()), rel=1e-6)


def test_bce_and_asl_take_soft_label_probabilities():
    from podium.losses import AsymmetricLoss, BCELoss, SoftLayout, distilled_loss

    g = torch.Generator().manual_seed(1)
    logits, q = torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g)
    hot = (torch.rand(4, 5, generator=g) > 0.5).float()
    layout = SoftLayout(hard_cols=5, index=False, uniform=True)
    packed = torch.from_numpy(layout.pack(hot.numpy(), np.full(4, 0.4), q.numpy()))
    bce = BCELoss(None, 0.0)
    want = F.binary_cross_entropy_with_logits(logits, 0.4 * q + 0.6 * hot)  # BCE is linear in its target
    assert float(distilled_loss(bce, bce.soft, logits, packed, layout)) == pytest.approx(float(want), rel=1e-5)
    asl = AsymmetricLoss(0.0, 0.0, 0.0, 1e-8)  # gammas 0, clip 0: bce
    assert float(distilled_loss(asl, asl.soft, logits, packed, layout)) == pytest.approx(float(want), rel=1e-5)


def test_other_soft_targets_give_another_loss():
    from podium.losses import CrossEntropy, distilled_loss

    loss = CrossEntropy(label_smoothing=0.0)
    logits, y, q, _, layout, packed = _soft_batch(1.0)
    uniform = torch.from_numpy(layout.pack(y.numpy(), np.ones(6), np.full((6, 3), 1 / 3)))
    assert float(distilled_loss(loss, loss.soft, logits, packed, layout)) != pytest.approx(
        float(distilled_loss(loss, loss.soft, logits, uniform, layout)))
