"""One candidate: build its `FusionModel` on the context's encoders, start every block the weight cache
holds from those weights (`inherit_weights`), train, and measure its fitness on the validation rows.

`evaluate_job(ctx, job)` is a pure function of its arguments (the genome, a seed, the inherited
weights and a threshold fixed when the generation was planned), run with ``candidate.threads`` torch
threads, so every backend returns the same numbers. It never raises: a candidate that raises,
diverges (loss NaN/inf) or runs past ``candidate.time_limit_s`` (checked after every step and
evaluation) comes back as ``status: failed`` with its reason.

Training: AdamW at a constant rate on the training rows; validation accuracy at step 0 and every
``eval_every`` steps; the weights kept (and offered to the cache) are those of the best evaluation.
Early stopping: ``plateau`` after ``patience`` evaluations without a new best by more than
``min_delta`` (a warm-started
candidate that starts near its optimum stops after a few evaluations: this is where warm start saves
steps), ``hopeless`` from step ``hopeless_after`` on when the best accuracy is below
``hopeless_fraction`` x the best fitness of the generations before (``Job.hopeless_below``).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.fusion import FusionModel, FusionSpec, inherit_weights, without
from polymodal.search.features import Context, torch_threads
from polymodal.search.space import used_modalities

State = dict[str, Tensor]


@dataclass
class Job:
    id: str
    genome: str  # FusionSpec JSON
    seed: int
    inherit: dict[str, State] = field(default_factory=dict)  # block key -> trained weights
    hopeless_below: float | None = None


class CandidateFailed(Exception):
    """Diverged or out of time: the reason is the message."""


class _Stored:
    """Cached block weights dressed as a model for `inherit_weights` (it reads ``blocks()``)."""

    def __init__(self, states: dict[str, State]) -> None:
        self.states = states

    def blocks(self, by: str = "exact") -> dict[str, Any]:
        return {k: _StateOnly(v) for k, v in self.states.items()}


class _StateOnly:
    def __init__(self, state: State) -> None:
        self.state = state

    def state_dict(self) -> State:
        return self.state


def build_candidate(ctx: Context, spec: FusionSpec) -> FusionModel:
    """The candidate's model: only the encoders of the modalities it reads."""
    refs = [r for n in spec.nodes for r in n.inputs] + spec.head_refs
    reads = {
        m: sorted({r.split(".", 1)[1] for r in refs if r.startswith(f"{m}.")}) for m in used_modalities(spec)
    }
    encoders, shapes = ctx.build_encoders(reads)
    return FusionModel(
        encoders,
        {ctx.task: ctx.classes},
        spec,
        shapes,
        modality_dropout=ctx.candidate.modality_dropout,
        encoder_specs={m: s for m, s in ctx.encoder_specs().items() if m in encoders},
    )


def trainable_blocks(model: FusionModel, by: str) -> dict[str, torch.nn.Module]:
    """Block key -> module, for blocks with weights that train (frozen encoders are shared by all)."""
    return {k: b for k, b in model.blocks(by).items() if any(p.requires_grad for p in b.parameters())}


def block_keys(ctx: Context, spec: FusionSpec) -> list[str]:
    return list(trainable_blocks(build_candidate(ctx, spec), ctx.match))


@torch.no_grad()
def accuracy(
    model: FusionModel, ctx: Context, rows: Tensor, drop: str | None = None, shuffle: str | None = None
) -> float:
    """Accuracy on ``rows``; ``drop``: with that modality missing; ``shuffle``: with its inputs
    permuted across the rows (seeded, the same permutation for every candidate), the others kept."""
    was = model.training
    model.eval()
    mods = list(model.encoders)
    hits = 0
    order = rows  # the rows whose inputs the shuffled modality reads instead of its own
    if shuffle is not None:
        order = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))]
    n = ctx.candidate.eval_rows
    for part, other in zip(rows.split(n), order.split(n), strict=True):
        b = ctx.batch(part, mods)
        b = without(b, drop) if drop is not None else b
        if shuffle is not None:
            b.inputs[shuffle] = ctx.batch(other, [shuffle]).inputs[shuffle]
        hits += int((model(b)[ctx.task].argmax(-1) == b.targets[ctx.task]).sum())
    model.train(was)
    return hits / max(len(rows), 1)


@dataclass
class Trained:
    accuracy: float = -1.0
    state: State | None = None
    steps: int = 0
    steps_to_target: int | None = None
    stopped: str = "budget"
    curve: list[list[float]] = field(default_factory=list)
    since: int = 0  # evaluations since the best


def _check_time(t0: float, limit: float, step: int) -> None:
    if time.perf_counter() - t0 > limit:
        raise CandidateFailed(f"time limit {limit:g}s exceeded at step {step}")


def _observe(out: Trained, model: FusionModel, acc: float, done: int, ctx: Context) -> int:
    """Record one validation; returns how many evaluations since the best (0: this is the best)."""
    out.curve.append([done, round(acc, 6)])
    if out.steps_to_target is None and acc >= ctx.fitness.target_accuracy:
        out.steps_to_target = done
    if acc > out.accuracy:  # the weights kept are the best evaluation's, however small the gain
        out.since = 0 if acc > out.accuracy + ctx.candidate.min_delta or not out.curve[:-1] else out.since + 1
        out.accuracy, out.state = acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        out.since += 1
    return out.since


def train_candidate(model: FusionModel, ctx: Context, job: Job, t0: float, out: Trained) -> Trained:
    c = ctx.candidate
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)
    g = torch.Generator().manual_seed(job.seed)
    mods, val = list(model.encoders), ctx.val_rows
    perm, pos = torch.randperm(ctx.n_train, generator=g), 0
    model.train()
    _observe(out, model, accuracy(model, ctx, val), 0, ctx)
    for step in range(c.steps):
        if pos + c.batch_size > ctx.n_train:
            perm, pos = torch.randperm(ctx.n_train, generator=g), 0
        b = ctx.batch(perm[pos : pos + c.batch_size], mods)
        pos += c.batch_size
        loss = F.cross_entropy(model(b)[ctx.task], b.targets[ctx.task])
        if not math.isfinite(loss.item()):
            raise CandidateFailed(f"diverged: loss {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.steps = done = step + 1
        _check_time(t0, c.time_limit_s, done)
        if done % c.eval_every and done != c.steps:
            continue
        since = _observe(out, model, accuracy(model, ctx, val), done, ctx)
        _check_time(t0, c.time_limit_s, done)
        if c.patience is not None and since >= c.patience:
            out.stopped = "plateau"
            break
        late = c.hopeless_after is not None and done >= c.hopeless_after
        if late and job.hopeless_below is not None and out.accuracy < job.hopeless_below:
            out.stopped = "hopeless"
            break
    return out


def _latency_ms(model: FusionModel, ctx: Context) -> float:
    b = ctx.batch(ctx.val_rows[:256], list(model.encoders))
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            model(b)
            times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def _evaluate(ctx: Context, job: Job, t0: float, tr: Trained) -> tuple[dict[str, Any], dict[str, State]]:
    spec = FusionSpec.from_json(job.genome)
    torch.manual_seed(job.seed)
    model = build_candidate(ctx, spec)
    blocks = trainable_blocks(model, ctx.match)
    inherited = inherit_weights(model, _Stored(job.inherit), ctx.match) if job.inherit else []  # type: ignore[arg-type]
    train_candidate(model, ctx, job, t0, tr)
    if tr.state is not None:
        model.load_state_dict(tr.state)
    mods = list(model.encoders)
    drops = {m: accuracy(model, ctx, ctx.val_rows, drop=m) for m in mods} if len(mods) > 1 else {}
    shuffled = {m: accuracy(model, ctx, ctx.val_rows, shuffle=m) for m in mods} if len(mods) > 1 else {}
    importance = {m: tr.accuracy - a for m, a in shuffled.items()}
    fusion = sum(p.numel() for k, b in blocks.items() if not k.startswith("enc-") for p in b.parameters())
    params = fusion + sum(ctx.encoders[m]["params"] for m in mods)
    f = ctx.fitness
    fit = tr.accuracy
    if f.robust > 0:
        lone = statistics.mean(drops.values()) if drops else 1.0 / ctx.classes
        fit = (1 - f.robust) * fit + f.robust * lone
    latency = _latency_ms(model, ctx) if f.latency_penalty > 0 else None
    fit -= f.params_penalty * params / 1e6 + (f.latency_penalty * latency if latency is not None else 0.0)
    fit -= f.modality_penalty * len(mods)
    fit -= f.unused_penalty * sum(v < f.unused_below for v in importance.values())
    paired = paired_cold(ctx, job, spec) if ctx.candidate.paired_cold and inherited else None
    record = {
        "status": "ok", "fitness": fit, "accuracy": tr.accuracy, "without": drops, "importance": importance,
        "params": params, "cold": paired,
        "fusion_params": fusion, "steps": tr.steps, "steps_to_target": tr.steps_to_target,
        "stopped": tr.stopped, "curve": tr.curve, "modalities": mods, "blocks": len(blocks),
        "inherited": len(inherited), "inherited_keys": sorted(inherited), "latency_ms": latency,
    }  # fmt: skip
    return record, {k: {n: v.detach().clone() for n, v in b.state_dict().items()} for k, b in blocks.items()}


def paired_cold(ctx: Context, job: Job, spec: FusionSpec) -> dict[str, Any]:
    """The same candidate from fresh weights (same seed, initialisation and batch order, no
    inheritance): what the inherited weights saved, measured on the candidate itself."""
    torch.manual_seed(job.seed)
    cold = train_candidate(build_candidate(ctx, spec), ctx, job, time.perf_counter(), Trained())
    return {"steps": cold.steps, "steps_to_target": cold.steps_to_target, "accuracy": cold.accuracy}


def evaluate_job(ctx: Context, job: Job) -> tuple[dict[str, Any], dict[str, State]]:
    """(record, trained block weights by key) for one candidate; a failure is a record, not a raise."""
    t0, tr = time.perf_counter(), Trained()
    try:
        with torch_threads(ctx.candidate.threads):
            record, blocks = _evaluate(ctx, job, t0, tr)
    except Exception as e:  # noqa: BLE001 - any failure of a candidate is recorded, the search goes on
        reason = str(e) if isinstance(e, CandidateFailed) else f"{type(e).__name__}: {str(e).strip()[:300]}"
        record, blocks = {"status": "failed", "reason": reason, "fitness": None, "steps": tr.steps}, {}
    record = {"id": job.id, **record, "seconds": round(time.perf_counter() - t0, 3)}
    return record, blocks
