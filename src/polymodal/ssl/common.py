"""Pieces the baselines share: ramp-ups, sharpening, Beta draws, mixing and input perturbation.

Mixing (ICT, MixMatch) and adversarial perturbation (VAT) act on a modality's first *continuous*
representation: the input itself when it is a float tensor (images, log-mel), else the output of the
encoder's first ``nn.Embedding`` (token ids), as Miyato et al. (2017) do for text. `forward_with`
hides that difference, so every baseline runs on images, audio and text alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ConfigError


def linear_rampup(progress: float, length: float) -> float:
    """min(progress / length, 1): consistency weights start at 0 while the model is still random."""
    return 1.0 if length <= 0 else min(progress / length, 1.0)


def sharpen(p: Tensor, temperature: float) -> Tensor:
    """MixMatch's Sharpen(p, T)_i = p_i^(1/T) / Σ_j p_j^(1/T) (computed in log space)."""
    return F.softmax(torch.log(p.clamp_min(1e-12)) / temperature, dim=-1)


def mse_probs(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over examples and classes of (softmax(logits) − target)², target treated as constant."""
    return (logits.float().softmax(-1) - target.detach().float()).square().mean()


def soft_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """−Σ_k target_k log softmax(logits)_k, averaged over rows (masked rows excluded)."""
    per_row = -(target.detach().float() * F.log_softmax(logits.float(), -1)).sum(-1)
    if mask is None:
        return per_row.mean()
    m = mask.float()
    return (per_row * m).sum() / m.sum().clamp_min(1.0)


def sample_beta(alpha: float, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """n draws of Beta(α, α) from ``generator`` (the first coordinate of a Dirichlet(α, α))."""
    conc = torch.full((n, 2), float(alpha), device=device)
    return torch._sample_dirichlet(conc, generator=generator)[:, 0]


def permutation(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.argsort(torch.rand(n, generator=generator, device=device))


def _first_embedding(model: nn.Module, modality: str) -> nn.Embedding:
    encoders = getattr(model, "encoders", None)
    enc = encoders[modality] if encoders is not None and modality in encoders else None
    found = next((m for m in enc.modules() if isinstance(m, nn.Embedding)), None) if enc else None
    if found is None:
        raise ConfigError(
            f"modality '{modality}' has integer inputs but its encoder has no nn.Embedding to perturb"
        )
    return found


@contextmanager
def _hooks(model: nn.Module, batch: Batch, fn: Callable[[str, Tensor], Tensor]) -> Iterator[Batch]:
    inputs, handles = dict(batch.inputs), []
    for m, x in batch.inputs.items():
        if x.is_floating_point():
            inputs[m] = fn(m, x)
        else:
            hook = (lambda mod: lambda _module, _args, out: fn(mod, out))(m)
            handles.append(_first_embedding(model, m).register_forward_hook(hook))
    try:
        yield batch.with_inputs(inputs)
    finally:
        for h in handles:
            h.remove()


def forward_with(
    model: nn.Module,
    batch: Batch,
    fn: Callable[[str, Tensor], Tensor],
    lengths: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """model(batch) with each modality's first continuous representation r replaced by fn(modality, r)."""
    with _hooks(model, batch, fn) as b:
        return model(b if lengths is None else b.with_inputs(b.inputs, {**b.lengths, **lengths}))


def per_sample_norm(parts: dict[str, Tensor]) -> Tensor:
    """(B,) L2 norm over every non-batch axis of every modality together."""
    sq = sum(p.float().flatten(1).square().sum(1) for p in parts.values())
    return torch.sqrt(sq)  # type: ignore[arg-type]


def mix(lam: Tensor, perm: Tensor) -> Callable[[str, Tensor], Tensor]:
    """r -> λ r + (1 − λ) r[perm], λ per row: mixup of every row with a permuted partner."""

    def fn(_: str, r: Tensor) -> Tensor:
        w = lam.to(r.dtype).reshape(-1, *([1] * (r.dim() - 1)))
        return w * r + (1 - w) * r[perm]

    return fn


def mixed_lengths(batch: Batch, perm: Tensor) -> dict[str, Tensor]:
    """A mixed sequence is valid wherever either partner is."""
    return {m: torch.maximum(n, n[perm]) for m, n in batch.lengths.items()}
