"""Virtual Adversarial Training + entropy minimization (Miyato et al., TPAMI 2018, arXiv:1704.03976).

r_adv is the direction, within an L2 ball of radius ε per example, that most changes the model's
prediction, found by power iteration: d ← normalize(∇_d KL(p(x) ‖ p(x + ξd))). The loss is
KL(sg p(x) ‖ p(x + r_adv)) plus the entropy of p(x) (EntMin, Grandvalet & Bengio 2005). For token
ids the perturbation is added to the embeddings (Miyato et al., ICLR 2017), see `forward_with`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.options import Options
from polymodal.ssl.common import forward_with, per_sample_norm
from polymodal.ssl.method import (
    Terms,
    ViewFn,
    register_method,
    supervised_terms,
)


def _kl(target: dict[str, Tensor], logits: dict[str, Tensor]) -> Tensor:
    """Σ_tasks mean_b KL(softmax(target) ‖ softmax(logits)), target constant."""
    total = 0.0
    for t, z in target.items():
        p = F.log_softmax(z.detach().float(), -1)
        total = total + (p.exp() * (p - F.log_softmax(logits[t].float(), -1))).sum(-1).mean()
    return total  # type: ignore[return-value]


def _unit(d: dict[str, Tensor]) -> dict[str, Tensor]:
    norm = per_sample_norm(d).clamp_min(1e-12)
    return {m: v / norm.reshape(-1, *([1] * (v.dim() - 1))).to(v.dtype) for m, v in d.items()}


def vat_perturbation(
    model: nn.Module,
    batch: Batch,
    clean: dict[str, Tensor],
    reps: dict[str, Tensor],
    eps: float,
    xi: float,
    iterations: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """r_adv per modality, shaped as ``reps`` (the continuous representations), ‖r_adv‖₂ = ε per example.

    ``clean`` holds the logits p(x) that the perturbation tries to move away from.
    """
    d = _unit({m: torch.randn(r.shape, generator=generator, device=r.device) for m, r in reps.items()})
    for _ in range(iterations):
        d = {m: (xi * v).requires_grad_(True) for m, v in d.items()}
        dist = _kl(clean, forward_with(model, batch, lambda m, r, d=d: r + d[m].to(r.dtype)))
        grads = torch.autograd.grad(dist, list(d.values()))
        d = _unit({m: g.detach() for m, g in zip(d, grads, strict=True)})
    return {m: eps * v for m, v in d.items()}


class VATOptions(Options):
    eps: float = Field(2.0, gt=0.0)  # ε: L2 norm of the adversarial perturbation per example
    xi: float = Field(1e-6, gt=0.0)  # ξ: finite-difference step of the power iteration
    iterations: int = Field(1, ge=1)
    weight: float = Field(1.0, ge=0.0)  # α on the VAT term
    entmin: float = Field(1.0, ge=0.0)  # weight of entropy minimization (VAT + EntMin); 0 = plain VAT


@register_method("vat", options=VATOptions)
def vat(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    c: VATOptions,
    generator: torch.Generator,
) -> Terms:
    assert unlabeled is not None
    lab_out = model(views(labeled, "weak", generator))
    sup, _ = supervised_terms(lab_out, labeled)
    unl = views(unlabeled, "weak", generator)
    reps: dict[str, Tensor] = {}  # each modality's continuous representation, captured on the way
    clean = {
        t: z for t, z in forward_with(model, unl, lambda m, r: reps.setdefault(m, r)).items() if t in sup
    }
    r_adv = vat_perturbation(model, unl, clean, reps, c.eps, c.xi, c.iterations, generator)
    adv = forward_with(model, unl, lambda m, r: r + r_adv[m].to(r.dtype))
    vat_loss = {t: _kl({t: clean[t]}, adv) for t in sup}
    ent = {
        t: -(z.float().softmax(-1) * F.log_softmax(z.float(), -1)).sum(-1).mean() for t, z in clean.items()
    }
    losses = {t: sup[t] + c.weight * vat_loss[t] + c.entmin * ent[t] for t in sup}
    logs = {
        "sup": sum(sup.values()).detach(),
        "vat": sum(vat_loss.values()).detach(),
        "entropy": sum(ent.values()).detach(),
    }
    return Terms(losses, logs, lab_out.features)  # MGDA-UB: the forward the supervised loss came from
