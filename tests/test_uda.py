"""UDA formulas pinned on hand-computed values (Xie et al. 2020 and the official code)."""

import math

import pytest
import torch

from polymodal.augment.views import Views
from polymodal.batch import Batch
from polymodal.config import build_config
from polymodal.errors import ConfigError
from polymodal.models.multihead import MultiHeadModel
from polymodal.ssl import METHODS, tsa_cross_entropy, tsa_threshold, uda_consistency


@pytest.mark.parametrize(
    ("schedule", "progress", "alpha"),
    [
        ("linear", 0.0, 0.0),
        ("linear", 0.5, 0.5),
        ("linear", 1.0, 1.0),
        ("log", 0.0, 0.0),
        ("log", 0.5, 1 - math.exp(-2.5)),
        ("log", 1.0, 1 - math.exp(-5)),
        ("exp", 0.0, math.exp(-5)),
        ("exp", 0.5, math.exp(-2.5)),
        ("exp", 1.0, 1.0),
    ],
)
def test_tsa_threshold_closed_form(schedule, progress, alpha):
    k = 10
    assert tsa_threshold(schedule, progress, k) == pytest.approx(alpha * (1 - 1 / k) + 1 / k, abs=1e-12)


def test_tsa_threshold_literals():
    assert tsa_threshold("linear", 0.5, 10) == pytest.approx(0.55)
    assert tsa_threshold("log", 0.5, 10) == pytest.approx(0.9261235, abs=1e-6)
    assert tsa_threshold("exp", 0.5, 10) == pytest.approx(0.1738765, abs=1e-6)
    assert tsa_threshold("linear", 0.0, 4) == pytest.approx(0.25)  # starts at chance, 1/K


def test_tsa_threshold_rejects_bad_input():
    with pytest.raises(ConfigError, match="allowed: linear, log, exp"):
        tsa_threshold("cosine", 0.5, 10)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        tsa_threshold("linear", 1.5, 10)


def test_tsa_masks_examples_whose_true_class_prob_exceeds_threshold():
    # true-class probabilities: row0 softmax([2,0])[0]=0.8808, row1 softmax([0,0])[0]=0.5
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([0, 0])
    loss, keep = tsa_cross_entropy(logits, targets, threshold=0.6)
    assert keep.tolist() == [False, True]
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # mean over the kept row only
    loss_all, keep_all = tsa_cross_entropy(logits, targets, threshold=None)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert keep_all.all() and loss_all.item() == pytest.approx((ce0 + math.log(2)) / 2, abs=1e-6)
    loss_none, _ = tsa_cross_entropy(logits, targets, threshold=0.1)
    assert loss_none.item() == 0.0


def test_tsa_respects_label_mask():
    logits = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    loss, keep = tsa_cross_entropy(logits, torch.tensor([0, -1]), None, torch.tensor([True, False]))
    assert keep.tolist() == [True, False] and loss.item() == pytest.approx(math.log(2), abs=1e-6)


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def _softmax(z, t=1.0):
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


CLEAN = [[2.0, 0.0], [0.0, 0.0]]
AUG = [[0.0, 0.0], [1.0, 0.0]]


def test_uda_consistency_value_and_kl_direction():
    got = uda_consistency(torch.tensor(CLEAN), torch.tensor(AUG), temperature=1.0, confidence=None)
    want = (_kl(_softmax(CLEAN[0]), _softmax(AUG[0])) + _kl(_softmax(CLEAN[1]), _softmax(AUG[1]))) / 2
    assert got.item() == pytest.approx(want, abs=1e-6)
    assert got.item() == pytest.approx(0.2239655, abs=1e-5)
    reverse = (_kl(_softmax(AUG[0]), _softmax(CLEAN[0])) + _kl(_softmax(AUG[1]), _softmax(CLEAN[1]))) / 2
    assert abs(got.item() - reverse) > 1e-2  # KL(clean || aug), not the other way round


def test_uda_temperature_sharpens_target():
    got = uda_consistency(torch.tensor(CLEAN), torch.tensor(AUG), temperature=0.5, confidence=None)
    want = (
        _kl(_softmax(CLEAN[0], 0.5), _softmax(AUG[0])) + _kl(_softmax(CLEAN[1], 0.5), _softmax(AUG[1]))
    ) / 2
    assert got.item() == pytest.approx(want, abs=1e-6)
    assert got.item() == pytest.approx(0.3615845, abs=1e-5)


def test_uda_confidence_mask_averages_over_all_examples():
    got = uda_consistency(torch.tensor(CLEAN), torch.tensor(AUG), temperature=1.0, confidence=0.8)
    # row 0 is confident (0.881 > 0.8) and kept, row 1 (0.5) masked; the mean still divides by 2
    assert got.item() == pytest.approx(_kl(_softmax(CLEAN[0]), _softmax(AUG[0])) / 2, abs=1e-6)


def test_uda_confidence_uses_unsharpened_probabilities():
    clean = torch.log(torch.tensor([[0.7, 0.3]]))  # max p = 0.7; sharpened with tau=0.4 it is 0.89
    aug = torch.zeros(1, 2)
    assert uda_consistency(clean, aug, temperature=0.4, confidence=0.8).item() == 0.0
    assert uda_consistency(clean, aug, temperature=0.4, confidence=0.6).item() > 0.0


def test_no_gradient_reaches_clean_branch():
    clean = torch.tensor(CLEAN, requires_grad=True)
    aug = torch.tensor(AUG, requires_grad=True)
    uda_consistency(clean, aug, temperature=0.4, confidence=None).backward()
    assert clean.grad is None
    assert aug.grad is not None and aug.grad.abs().sum() > 0


def test_uda_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="temperature"):
        uda_consistency(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0)
    with pytest.raises(ConfigError, match="same shape"):
        uda_consistency(torch.zeros(2, 3), torch.zeros(2, 4))


class _Enc(torch.nn.Module):
    out_dim = 8

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 8)

    def forward(self, x, lengths=None):
        return self.lin(x.flatten(1))


def _uda_loss(**uda):
    cfg = build_config(
        {
            "method": "uda",
            "uda": {"weight": 1.0, "temperature": 0.4, "confidence": 0.3, "tsa": "none", **uda},
        }
    )
    torch.manual_seed(0)
    model = MultiHeadModel({"image": _Enc()}, {"class": 3})
    views = Views({"image": {"strong": [{"op": "cutout", "size": 2}]}}, {"image": "image"})
    x = torch.rand(6, 1, 4, 4)
    lab = Batch({"image": x[:2]}, {"class": torch.tensor([0, 1])})
    unl = Batch({"image": x[2:]})
    uda = METHODS.get("uda").objective
    losses, logs, _ = uda(model, lab, unl, views, 0.5, cfg.uda, torch.Generator().manual_seed(1))
    assert set(losses) == {"class"}
    return losses["class"].item(), logs


def test_uda_objective_uses_lambda_tau_beta():
    base, logs = _uda_loss()
    assert logs["unsup"].item() > 0
    double, _ = _uda_loss(weight=2.0)
    assert double == pytest.approx(base + logs["unsup"].item(), rel=1e-5)
    assert _uda_loss(temperature=1.0)[0] != pytest.approx(base, rel=1e-6)
    assert _uda_loss(confidence=0.99)[0] != pytest.approx(base, rel=1e-6)
