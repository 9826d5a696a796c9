"""Latent space transfer: teach modality B's encoder to land in modality A's latent space.

Given an encoder + linear head trained for A, and paired A/B examples (no labels needed), train an
encoder for B on the stage A's head reads (the encoder output) so that B, read by A's *frozen* head,
gives what A gives; then B is classified through that head with zero B labels. The alignment loss is a
sum of up to three terms:

* feature alignment, enc_B(x_b) ≈ enc_A(x_a): ``l2`` (MSE), ``cosine`` (1 − cos) or ``infonce`` (van
  den Oord et al. 2018), weighted by ``align.feature_weight`` (``none``: no such term);
* distillation (``align.distill`` > 0): KL from A's head's softened prediction on x_a to the same
  head's on enc_B(x_b), at temperature T, times T² (Hinton et al. 2015). It matches exactly what is
  read (the head's logits), so the directions the head ignores are left free;
* optionally a few B labels (``align.target_labels_per_class``): cross-entropy of B through A's head.

Reported beside it: A through its own head, B trained from scratch on ``labels_per_class`` labels
(null: all; or a `polymodal train` run of B: ``target.run``), the ratio of the two, and a linear probe
on the aligned B features with the same labels. `polymodal transfer CONFIG` runs it; everything is
seeded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError
from torch import Tensor, nn

from polymodal.batch import Batch, TensorData
from polymodal.config import format_validation_error, merge, parse_set, read_yaml
from polymodal.data import label_split, load_dataset
from polymodal.engine.rundir import RunDir
from polymodal.errors import ConfigError, ShapeError
from polymodal.models import create_encoder
from polymodal.models.multihead import MultiHeadModel
from polymodal.options import Options


class Side(Options):
    modality: str
    encoder: dict[str, Any]
    # source: a `polymodal train` run dir to take A's encoder + head from; target: a run of B trained
    # on its labels, the from-scratch baseline (then nothing is trained from scratch here)
    run: str | None = None


class Align(Options):
    loss: Literal["l2", "cosine", "infonce", "none"] = "l2"  # feature alignment on the encoder output
    feature_weight: float = Field(1.0, ge=0)
    steps: int = Field(800, gt=0)
    temperature: float = Field(0.1, gt=0)  # InfoNCE only
    distill: float = Field(0.0, ge=0)  # weight of the KL to A's head's softened prediction
    distill_temperature: float = Field(2.0, gt=0)
    target_labels_per_class: int | None = Field(None, gt=0)  # a few B labels (None: zero B labels)
    lr: float | None = Field(None, gt=0)  # None: the config's lr


class TransferConfig(Options):
    seed: int = Field(0, ge=0)
    dataset: str = "avmnist"
    root: str | None = None
    task: str = "digit"
    source: Side
    target: Side
    align: Align = Align()
    labels_per_class: int | None = Field(None, gt=0)  # B labels for scratch + probe (None: all)
    steps: int = Field(800, gt=0)  # supervised steps (A's model, B from scratch)
    probe_steps: int = Field(300, gt=0)
    scratch: bool = True  # also train B from scratch (the same for every alignment loss)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(0.002, gt=0)
    threads: int | None = Field(None, gt=0)


def load_transfer_config(path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> TransferConfig:
    try:
        return TransferConfig.model_validate(merge(read_yaml(path), parse_set(list(sets))))
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            model: Any = TransferConfig
            for part in e["loc"][:-1]:
                model = model.model_fields[str(part)].annotation
            raise ConfigError(f"{key}: unknown key; allowed: {', '.join(model.model_fields)}") from None
        raise ConfigError(format_validation_error(err)) from None


def _input(data: TensorData, m: str, index: Tensor) -> tuple[Tensor, Tensor | None]:
    x = data.inputs[m][index]
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x
    return x, data.lengths[m][index] if m in data.lengths else None


def _fit(
    loss_fn: Callable[[Tensor], Tensor],
    params: list[nn.Parameter],
    n: int,
    steps: int,
    cfg: TransferConfig,
    lr: float | None = None,
) -> None:
    """AdamW with a cosine schedule over seeded epoch permutations of ``n`` rows."""
    opt = torch.optim.AdamW(params, lr=lr or cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(cfg.seed)
    perm, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        index = perm[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        opt.zero_grad(set_to_none=True)
        loss_fn(index).backward()
        opt.step()
        sched.step()


@torch.no_grad()
def _accuracy(predict: Callable[[Tensor], Tensor], data: TensorData, task: str, batch: int = 1000) -> float:
    hits = 0
    for s in range(0, len(data), batch):
        index = torch.arange(s, min(s + batch, len(data)))
        hits += int((predict(index).argmax(-1) == data.targets[task][index]).sum())
    return hits / len(data)


def _supervised(
    enc: nn.Module, m: str, data: TensorData, task: str, classes: int, cfg: TransferConfig
) -> nn.Module:
    model = MultiHeadModel({m: enc}, {task: classes})

    def loss(index: Tensor) -> Tensor:
        x, n = _input(data, m, index)
        batch = Batch({m: x}, lengths={m: n} if n is not None else {})
        return F.cross_entropy(model(batch)[task], data.targets[task][index])

    model.train()
    _fit(loss, list(model.parameters()), len(data), cfg.steps, cfg)
    return model.eval()


def alignment_loss(zb: Tensor, za: Tensor, kind: str, temperature: float = 0.1) -> Tensor:
    """How far B's latents are from A's (paired rows): l2 (MSE), cosine (1 - cos), or InfoNCE."""
    if kind == "l2":
        return F.mse_loss(zb, za)
    if kind == "cosine":
        return (1 - F.cosine_similarity(zb, za, dim=-1)).mean()
    logits = F.normalize(zb, dim=-1) @ F.normalize(za, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(zb), device=zb.device))


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float = 2.0) -> Tensor:
    """T² · KL(softmax(teacher / T) ‖ softmax(student / T)), averaged over rows (Hinton et al. 2015);
    no gradient reaches the teacher."""
    t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)
    s = F.log_softmax(student.float() / temperature, dim=-1)
    return temperature**2 * (t.exp() * (t - s)).sum(-1).mean()


def _source(cfg: TransferConfig, train: TensorData, classes: int) -> tuple[nn.Module, nn.Module]:
    """A's encoder and linear head: from a run directory, or trained here on all A labels."""
    a = cfg.source
    if a.run is not None:
        state = RunDir(a.run).load_checkpoint()["model"]
        model = MultiHeadModel({a.modality: create_encoder(**a.encoder)}, {cfg.task: classes})
        model.load_state_dict(state)
    else:
        model = _supervised(create_encoder(**a.encoder), a.modality, train, cfg.task, classes, cfg)
    return model.encoders[a.modality].eval(), model.heads[cfg.task][-1].eval()


def _run_model(side: Side, task: str, classes: int) -> MultiHeadModel:
    """A `polymodal train` run's single-encoder model (weights from its checkpoint), in eval mode."""
    assert side.run is not None
    model = MultiHeadModel({side.modality: create_encoder(**side.encoder)}, {task: classes})
    model.load_state_dict(RunDir(side.run).load_checkpoint()["model"])
    return model.eval()


def run_transfer(cfg: TransferConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bundle = load_dataset(cfg.dataset, cfg.root)
    a, b = cfg.source.modality, cfg.target.modality
    for side, m in (("source", a), ("target", b)):
        if m not in bundle.modalities:
            raise ConfigError(f"{side}.modality='{m}': {bundle.name} has: {', '.join(bundle.modalities)}")
    classes = bundle.tasks[cfg.task]
    train, test = bundle.train, bundle.test
    enc_a, head_a = _source(cfg, train, classes)
    for p in [*enc_a.parameters(), *head_a.parameters()]:
        p.requires_grad_(False)
    enc_b = create_encoder(**cfg.target.encoder)
    if enc_b.out_dim != head_a.in_features:
        raise ShapeError(
            f"target.encoder gives {enc_b.out_dim} features but source {a}'s head reads {head_a.in_features}"
        )

    enc_b.train()
    objective = _align_loss(cfg, train, enc_a, head_a, enc_b)
    _fit(objective, list(enc_b.parameters()), len(train), cfg.align.steps, cfg, cfg.align.lr)
    enc_b.eval()
    labeled = (
        train
        if cfg.labels_per_class is None
        else train.subset(label_split(train.targets[cfg.task], cfg.labels_per_class, cfg.seed))
    )

    probe = nn.Linear(enc_b.out_dim, classes)
    with torch.no_grad():
        feats = torch.cat(
            [
                enc_b(*_input(labeled, b, torch.arange(s, min(s + 1000, len(labeled)))))
                for s in range(0, len(labeled), 1000)
            ]
        )
    y = labeled.targets[cfg.task]
    _fit(
        lambda i: F.cross_entropy(probe(feats[i]), y[i]),
        list(probe.parameters()),
        len(labeled),
        cfg.probe_steps,
        cfg,
    )
    if cfg.target.run is not None:
        scratch: nn.Module | None = _run_model(cfg.target, cfg.task, classes)
    elif cfg.scratch:
        scratch = _supervised(create_encoder(**cfg.target.encoder), b, labeled, cfg.task, classes, cfg)
    else:
        scratch = None

    def scratch_predict(i: Tensor) -> Tensor:
        x, n = _input(test, b, i)
        return scratch(Batch({b: x}, lengths={b: n} if n is not None else {}))[cfg.task]

    through = _accuracy(lambda i: head_a(enc_b(*_input(test, b, i))), test, cfg.task)
    from_scratch = _accuracy(scratch_predict, test, cfg.task) if scratch else None
    n_b = cfg.align.target_labels_per_class
    return {
        "source": a,
        "target": b,
        "align": cfg.align.model_dump(),
        "align_loss": cfg.align.loss,
        "labels_per_class": cfg.labels_per_class,
        "accuracy": {
            f"{a} (source, own head)": _accuracy(
                lambda i: head_a(enc_a(*_input(test, a, i))), test, cfg.task
            ),
            f"{b} through {a}'s head ({f'{n_b} per class' if n_b else 0} {b} labels)": through,
            f"{b} from scratch": from_scratch,
            f"{b} linear probe on aligned features": _accuracy(
                lambda i: probe(enc_b(*_input(test, b, i))), test, cfg.task
            ),
        },
        "ratio_to_scratch": through / from_scratch if from_scratch else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _align_loss(
    cfg: TransferConfig, train: TensorData, enc_a: nn.Module, head_a: nn.Module, enc_b: nn.Module
) -> Callable[[Tensor], Tensor]:
    """The alignment objective on paired rows ``index`` (module docstring: features, distillation,
    and optionally a few B labels through A's frozen head)."""
    a, b, al = cfg.source.modality, cfg.target.modality, cfg.align
    few = None
    if al.target_labels_per_class is not None:
        few = label_split(train.targets[cfg.task], al.target_labels_per_class, cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():  # A is frozen (eval mode): its features and logits on every pair, once
        z_all = torch.cat([enc_a(*_input(train, a, torch.arange(s, min(s + 1000, len(train)))))
                           for s in range(0, len(train), 1000)])  # fmt: skip
        p_all = head_a(z_all)

    def loss(index: Tensor) -> Tensor:
        za, zb = z_all[index], enc_b(*_input(train, b, index))
        total = torch.zeros(())
        if al.loss != "none" and al.feature_weight > 0:
            total = total + al.feature_weight * alignment_loss(zb, za, al.loss, al.temperature)
        if al.distill > 0:
            total = total + al.distill * distillation_loss(head_a(zb), p_all[index], al.distill_temperature)
        if few is not None:
            rows = few[torch.randint(len(few), (min(len(few), cfg.batch_size),), generator=g)]
            total = total + F.cross_entropy(
                head_a(enc_b(*_input(train, b, rows))), train.targets[cfg.task][rows]
            )
        return total

    return loss


def transfer_main(config: str, sets: list[str], out: str | None) -> dict[str, Any]:
    result = run_transfer(load_transfer_config(config, sets))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "transfer.json").write_text(json.dumps(result, indent=2))
    return result
