"""Fusion strategies: `FusionSpec`s chosen by intermediate-fusion techniques, from what trained
unimodal encoders compute.

Each strategy returns a plain `FusionSpec` (so a search over fusion architectures can start from it)
and says whether the fused model should start from the trained unimodal encoders (``warm_start``):

- ``autoencoder``: a shared code learnt by a multimodal stacked denoising autoencoder before the heads
  (Ngiam et al. 2011, bimodal deep autoencoder; Ding & Tao 2015): the ``autoencoder`` fusion op, whose
  reconstruction is a training loss of the model. Needs no measurement.
- ``correlated_early``: the cross-modal pair of hidden stages whose activations are most correlated
  (CCA) is fused early, the encoder outputs join at the top (Neverova et al. 2016, ModDrop: strongly
  correlated modalities share early layers, the others meet later).
- ``similarity_merge``: train each modality fully, then merge the two networks at the stage pair whose
  activations are most alike (CKA) and go on training the merged network from the unimodal weights
  (Lu & Xu 2018 style).

The similarity measures are pure torch, in float64: `cca_correlations` (canonical correlations, with
an optional SVD reduction first, SVCCA, Raghu et al. 2017) and `linear_cka` (Kornblith et al. 2019).
`stage_activations` reads every named stage of trained encoders on paired examples, as a fusion node
would read it. `polymodal`'s engine is above this layer: running a strategy end to end (train the
unimodal models, measure, train the fused model) is `benchmarks/fusion_techniques.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ConfigError
from polymodal.fusion.functional import Tap, fuse
from polymodal.fusion.graph import _pool
from polymodal.fusion.spec import FusionSpec
from polymodal.registry import Registry

Pair = tuple[
    str, str
]  # (ref in the first modality, ref in the second), e.g. ("image.stage2", "audio.stage3")


def _centred(x: Tensor) -> Tensor:
    x = x.flatten(1).double()
    return x - x.mean(0, keepdim=True)


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of (N, p) and (N, q) activations (Kornblith et al. 2019):
    ‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F), columns centred. 1 for y = c·x·Q (Q orthogonal); r² in 1-D."""
    if len(x) != len(y):
        raise ConfigError(f"linear_cka: {len(x)} rows vs {len(y)} rows; the activations must be paired")
    x, y = _centred(x), _centred(y)
    hsic = (y.T @ x).square().sum()
    return hsic / ((x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt()).clamp_min(1e-300)


def _principal(x: Tensor, k: int | None) -> Tensor:
    """The centred activations projected on their ``k`` leading principal directions (all: None)."""
    if k is None or k >= min(x.shape):
        return x
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    return u[:, :k] * s[:k]


def cca_correlations(x: Tensor, y: Tensor, eps: float = 1e-6, reduce: int | None = None) -> Tensor:
    """Canonical correlations of (N, p) and (N, q) activations, descending (min(p, q) of them).

    Columns are centred; with ``reduce`` each side is first projected on its leading principal
    directions (SVCCA, Raghu et al. 2017), so wide stages measured on few rows do not correlate
    perfectly by chance. ``eps`` is a ridge on each covariance, relative to its mean variance. The
    correlations are the singular values of Cxx^-1/2 Cxy Cyy^-1/2.
    """
    if len(x) != len(y):
        raise ConfigError(f"cca: {len(x)} rows vs {len(y)} rows; the activations must be paired")
    x, y = _principal(_centred(x), reduce), _principal(_centred(y), reduce)

    def inv_sqrt(c: Tensor) -> Tensor:
        c = c + eps * c.diagonal().mean().clamp_min(1e-300) * torch.eye(len(c), dtype=c.dtype)
        w, v = torch.linalg.eigh(c)
        return v @ torch.diag(w.clamp_min(1e-300).rsqrt()) @ v.T

    n = len(x) - 1
    m = inv_sqrt(x.T @ x / n) @ (x.T @ y / n) @ inv_sqrt(y.T @ y / n)
    return torch.linalg.svdvals(m).clamp(0.0, 1.0)


def cca_similarity(x: Tensor, y: Tensor, k: int = 10) -> Tensor:
    """Mean of the ``k`` largest canonical correlations after reducing each side to ``k`` principal
    directions (SVCCA): one number per stage pair, comparable across pairs of different widths."""
    k = min(k, x.flatten(1).shape[1], y.flatten(1).shape[1])
    return cca_correlations(x, y, reduce=k)[:k].mean()


MEASURES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"cca": cca_similarity, "cka": linear_cka}


@torch.no_grad()
def stage_activations(
    encoders: Mapping[str, nn.Module], batch: Batch, pool: str = "flatten"
) -> dict[str, Tensor]:
    """Every named stage of each encoder (eval mode) on ``batch``'s paired rows, pooled as a fusion node
    with ``pool`` would read it: ref (``modality.stage``) -> (N, D), in each encoder's stage order."""
    out: dict[str, Tensor] = {}
    for m, enc in encoders.items():
        was = enc.training
        enc.eval()
        for stage, v in enc.forward_stages(batch.inputs[m], batch.lengths.get(m)).items():
            out[f"{m}.{stage}"] = _pool(v, pool).float()
        enc.train(was)
    return out


def similarities(acts: Mapping[str, Tensor], measure: str) -> dict[Pair, float]:
    """``measure`` (cca | cka) of every pair of stages of the first two modalities in ``acts``."""
    if measure not in MEASURES:
        raise ConfigError(f"similarity measure '{measure}': allowed: {', '.join(MEASURES)}")
    mods = list(dict.fromkeys(r.split(".", 1)[0] for r in acts))
    if len(mods) < 2:
        raise ConfigError(f"a fusion strategy needs two modalities' activations; got {', '.join(mods)}")
    a, b = ([r for r in acts if r.startswith(f"{m}.")] for m in mods[:2])
    return {(ra, rb): float(MEASURES[measure](acts[ra], acts[rb])) for ra in a for rb in b}


@dataclass(frozen=True)
class Choice:
    spec: FusionSpec
    warm_start: bool  # the fused model starts from the trained unimodal encoders
    pair: Pair | None = None  # the stage pair the similarity picked
    scores: dict[Pair, float] | None = None  # every pair's similarity (for the report)


@dataclass(frozen=True)
class Strategy:
    choose: Callable[..., Choice]  # (scores or None, outputs: the modalities' output refs, **options)
    measure: str | None  # what it reads from the unimodal activations: cca | cka | None
    about: str


STRATEGIES: Registry[Strategy] = Registry("fusion strategy")


def _depth(ref: str, order: list[str]) -> float:
    """Relative depth of a stage among its modality's stages (0 first, 1 last)."""
    same = [r for r in order if r.split(".", 1)[0] == ref.split(".", 1)[0]]
    return same.index(ref) / max(1, len(same) - 1)


def autoencoder_choice(
    scores: Mapping[Pair, float] | None, outputs: list[str], width: int = 64, trunk: tuple[int, ...] = (64,)
) -> Choice:
    refs = [Tap(*r.split(".", 1)) for r in outputs]
    return Choice(
        FusionSpec.of(fuse(refs, op="autoencoder", width=width, name="code"), trunk=list(trunk)), False
    )


def correlated_early_choice(
    scores: Mapping[Pair, float] | None,
    outputs: list[str],
    width: int = 64,
    trunk: tuple[int, ...] = (64,),
) -> Choice:
    """The most correlated pair of hidden stages (encoder outputs excluded: they meet at the top) is
    fused first; a second node joins it with every encoder output."""
    hidden = {p: s for p, s in _need(scores).items() if not set(p) & set(outputs)}
    if not hidden:
        raise ConfigError("correlated_early: the encoders have no hidden stages besides their outputs")
    pair = max(hidden, key=hidden.__getitem__)
    early = fuse(
        [Tap(*r.split(".", 1)) for r in pair], op="concat", width=width, pool="flatten", name="early"
    )
    top = fuse([early, *(Tap(*r.split(".", 1)) for r in outputs)], op="concat", width=width, name="top")
    return Choice(FusionSpec.of(top, trunk=list(trunk)), False, pair, dict(_need(scores)))


def similarity_merge_choice(
    scores: Mapping[Pair, float] | None,
    outputs: list[str],
    width: int = 128,
    trunk: tuple[int, ...] = (64,),
    tolerance: float = 0.9,
) -> Choice:
    """Merge where the trained networks are most alike: the shallowest stage pair whose similarity is
    at least ``tolerance`` × the best pair's (merging earlier shares more layers), then one shared
    trunk. The fused model starts from the unimodal weights."""
    scores = _need(scores)
    best = max(scores.values())
    order = list(dict.fromkeys(r for p in scores for r in p))
    close = [p for p, s in scores.items() if s >= tolerance * best]
    pair = min(close, key=lambda p: (sum(_depth(r, order) for r in p), -scores[p]))
    merge = fuse(
        [Tap(*r.split(".", 1)) for r in pair], op="concat", width=width, pool="flatten", name="merge"
    )
    return Choice(FusionSpec.of(merge, trunk=list(trunk)), True, pair, dict(scores))


def _need(scores: Mapping[Pair, float] | None) -> Mapping[Pair, float]:
    if not scores:
        raise ConfigError("this fusion strategy needs similarity scores of the unimodal stages")
    return scores


STRATEGIES.register("autoencoder")(
    Strategy(
        autoencoder_choice,
        None,
        "shared code of a multimodal denoising autoencoder (Ngiam 2011; Ding & Tao 2015)",
    )
)
STRATEGIES.register("correlated_early")(
    Strategy(
        correlated_early_choice, "cca", "most CCA-correlated hidden stages fused early (Neverova et al. 2016)"
    )
)
STRATEGIES.register("similarity_merge")(
    Strategy(
        similarity_merge_choice,
        "cka",
        "trained networks merged at their most CKA-similar stages (Lu & Xu 2018)",
    )
)


def choose(name: str, acts: Mapping[str, Tensor] | None, outputs: list[str], **options: Any) -> Choice:
    """Run strategy ``name`` on unimodal activations (`stage_activations`; unused by ``autoencoder``)."""
    s = STRATEGIES.get(name)
    scores = None
    if s.measure is not None:
        if acts is None:
            raise ConfigError(
                f"fusion strategy '{name}' measures {s.measure} on unimodal activations; give them"
            )
        scores = similarities(acts, s.measure)
    return s.choose(scores, outputs, **options)


def warm_start(model: nn.Module, states: Mapping[str, Mapping[str, Tensor]]) -> list[str]:
    """Load each trained unimodal encoder (encoder key -> its state dict) into ``model.encoders``;
    returns the keys loaded."""
    for key, state in states.items():
        if key not in model.encoders:
            raise ConfigError(
                f"warm start: the fused model has no encoder '{key}'; it has {', '.join(model.encoders)}"
            )
        model.encoders[key].load_state_dict(state)
    return list(states)
