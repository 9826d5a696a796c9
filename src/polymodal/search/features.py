"""What every candidate of a search shares: the validation carve, the pretrained unimodal encoders
and (frozen mode) their cached stage features, packed in a `Context`.

Why a lean loop on cached features rather than `build_run` / `train_step` per candidate: with frozen
encoders every candidate would recompute the same encoder forward passes, which is most of the cost
of a step; reading the stages from a table instead makes a candidate a small MLP-sized job (a few
hundred steps in about a second on one CPU core), which is what lets a genetic search run on two
shared cores at all. The engine is still what retrains the best genome end to end (`retrain`).

* The validation rows are carved from the training split with ``data.seed``; the test split is never
  read during a search (only `polymodal.search.retrain` reads it, after the search).
* Each modality's encoder is trained once, alone (encoder + linear head, AdamW, cosine), on the
  search's training rows, and cached under ``$POLYMODAL_CACHE/search_pretrained/`` by the sha256 of
  its config (modality, encoder spec, pretrain options, the carve, a fingerprint of the data's bytes);
  searches with other seeds, strategies or warm / cold reuse it.
* Frozen mode: each stage the space may tap is computed once for every searched row and stored as
  float16 (`StageTable` reads a row's stages back by index), cached beside the encoder's weights.
  Finetune mode: candidates get real encoders initialised from the pretrained weights and read the
  raw inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.data import DataBundle, load_dataset
from polymodal.data.files import cache_dir
from polymodal.errors import ConfigError
from polymodal.fusion.spec import canonical
from polymodal.models import create_encoder
from polymodal.models.base import Encoder
from polymodal.search.config import CandidateConfig, FitnessConfig, SearchConfig


class StageTable(Encoder):
    """A frozen encoder replaced by its precomputed stages: the input is a batch of row indices."""

    def __init__(self, table: dict[str, Tensor]) -> None:
        super().__init__()
        self.table = table  # plain attribute: not a parameter, not in the state dict
        self.stage_names = tuple(table)
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # FusionModel reads its device

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        rows = x.long()
        return {s: t[rows].float() for s, t in self.table.items()}


@dataclass
class Context:
    """Everything a candidate evaluation reads; plain tensors + JSON, so it ships to any backend."""

    task: str
    classes: int
    mode: str  # frozen | finetune
    stages: dict[str, list[str]]  # modality -> the stages the space may tap
    data: dict[str, dict[str, Tensor]]  # frozen: modality -> stage -> (N, ...); finetune: {"inputs": ...}
    targets: Tensor  # (N,): rows [0, n_train) train, [n_train, N) validation
    n_train: int
    encoders: dict[str, dict[str, Any]]  # modality -> {spec, key, params, val_accuracy}
    candidate: CandidateConfig
    fitness: FitnessConfig
    states: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # finetune: pretrained weights
    match: str = "position"  # how the weight cache matches blocks (`FusionModel.blocks`)

    @property
    def val_rows(self) -> Tensor:
        return torch.arange(self.n_train, len(self.targets))

    def batch(self, rows: Tensor, modalities: list[str]) -> Batch:
        y = {self.task: self.targets[rows]}
        if self.mode == "frozen":
            return Batch({m: rows for m in modalities}, y)
        inputs = self.data["inputs"]
        x = {m: _as_float(inputs[m][rows]) for m in modalities}
        return Batch(x, y)

    def build_encoders(self, reads: dict[str, list[str]]) -> tuple[dict[str, nn.Module], dict[str, Any]]:
        """The encoders a candidate reading ``reads`` (modality -> stages) needs, and the input shapes
        to probe. Frozen: tables of the stages it reads only (a step then gathers nothing else)."""
        if self.mode == "frozen":
            tables = {m: StageTable({s: self.data[m][s] for s in stages}) for m, stages in reads.items()}
            return tables, {m: () for m in reads}
        out = {}
        for m in reads:
            spec = dict(self.encoders[m]["spec"])
            enc = create_encoder(spec.pop("name"), **spec)
            enc.load_state_dict(self.states[m])
            out[m] = enc
        return out, {m: tuple(self.data["inputs"][m].shape[1:]) for m in reads}

    def encoder_specs(self) -> dict[str, dict[str, Any]]:
        """What the encoders' block keys cover: the pretrained weights' hash and the mode."""
        return {m: {"pretrained": e["key"], "mode": self.mode} for m, e in self.encoders.items()}

    def to_state(self) -> dict[str, Any]:
        """Tensors and one JSON string: loadable with ``torch.load(weights_only=True)``."""
        meta = {
            "task": self.task,
            "classes": self.classes,
            "mode": self.mode,
            "stages": self.stages,
            "n_train": self.n_train,
            "encoders": self.encoders,
            "candidate": self.candidate.model_dump(),
            "fitness": self.fitness.model_dump(),
        }
        return {"meta": json.dumps(meta), "data": self.data, "targets": self.targets, "states": self.states}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Context:
        meta = json.loads(state["meta"])
        return cls(
            meta["task"], meta["classes"], meta["mode"], meta["stages"], state["data"], state["targets"],
            meta["n_train"], meta["encoders"], CandidateConfig(**meta["candidate"]),
            FitnessConfig(**meta["fitness"]), state["states"],
        )  # fmt: skip


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads (every backend uses the same count: same numbers; and on a busy
    machine more threads than cores is much slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _as_float(x: Tensor) -> Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def carve(n: int, cfg: SearchConfig) -> tuple[Tensor, Tensor]:
    """(training rows, validation rows) of a training split of ``n`` rows, seeded by ``data.seed``."""
    d = cfg.data
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(d.seed))
    n_val = max(1, round(d.val_fraction * n))
    rest = perm[n_val:] if d.train_rows is None else perm[n_val : n_val + d.train_rows]
    return torch.sort(rest).values, torch.sort(perm[:n_val]).values


def _fingerprint(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_search_data(cfg: SearchConfig) -> tuple[DataBundle, str]:
    bundle = load_dataset(cfg.data.name, cfg.data.root)
    task = cfg.data.task or next(iter(bundle.tasks))
    if task not in bundle.tasks:
        raise ConfigError(f"data.task='{task}': allowed: {', '.join(bundle.tasks)}")
    bad = [m for m in cfg.encoders if m not in bundle.modalities]
    if bad:
        raise ConfigError(
            f"encoders.{bad[0]}: {bundle.name} has no such modality; it has: {', '.join(bundle.modalities)}"
        )
    return bundle, task


def pretrain(
    cfg: SearchConfig, bundle: DataBundle, task: str, m: str, rows: tuple[Tensor, Tensor], quiet: bool
) -> tuple[Encoder, dict[str, Any]]:
    """Modality ``m``'s encoder trained alone on the training rows (cached by its config hash)."""
    train, val = rows
    x, y = bundle.train.inputs[m], bundle.train.targets[task]
    desc = {  # the data by content, not name: a dataset that reuses another's arrays reuses its encoders
        "modality": m,
        "task": task,
        "encoder": cfg.encoders[m],
        "pretrain": cfg.pretrain.model_dump(exclude={"mode"}),
        "carve": cfg.data.model_dump(exclude={"root", "name", "task"}),
        "fingerprint": _fingerprint(x, y),
    }
    key = hashlib.sha256(canonical(desc).encode()).hexdigest()[:16]
    path = cache_dir("search_pretrained") / f"{m}-{key}.pt"
    spec = dict(cfg.encoders[m])
    enc = create_encoder(spec.pop("name"), **spec)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        enc.load_state_dict(saved["state"])
        return enc, {"key": key, "val_accuracy": saved["val_accuracy"], "cached": True}
    p = cfg.pretrain
    torch.manual_seed(p.seed)
    enc = create_encoder(cfg.encoders[m]["name"], **spec)
    head = nn.Linear(enc.out_dim, bundle.tasks[task])
    params = [*enc.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, p.steps)
    g = torch.Generator().manual_seed(p.seed)
    for step in range(p.steps):  # none with steps: 0 (the encoder stays at its seeded random init)
        pick = train[torch.randint(len(train), (p.batch_size,), generator=g)]
        loss = F.cross_entropy(head(enc(_as_float(x[pick]))), y[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if not quiet and (step + 1) % 100 == 0:
            print(f"[search] pretrain {m}: step {step + 1}/{p.steps} loss {loss.item():.3f}", flush=True)
    enc.eval()
    with torch.no_grad():
        hits = sum(int((head(enc(_as_float(x[c]))).argmax(-1) == y[c]).sum()) for c in val.split(1000))
    acc = hits / len(val)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state": enc.state_dict(), "val_accuracy": acc}, tmp)
    tmp.replace(path)
    return enc, {"key": key, "val_accuracy": acc, "cached": False}


@torch.no_grad()
def stage_tables(enc: Encoder, x: Tensor, stages: list[str], chunk: int = 1000) -> dict[str, Tensor]:
    """``enc``'s stages (eval mode) for every row of ``x``, float16, ``input`` being the raw input."""
    enc.eval()
    parts: dict[str, list[Tensor]] = {s: [] for s in stages}
    for c in x.split(chunk):
        xf = _as_float(c)
        out = {**enc.forward_stages(xf), "input": xf}
        for s in stages:
            parts[s].append(out[s].half())
    return {s: torch.cat(v) for s, v in parts.items()}


def cached_tables(enc: Encoder, key: str, split: str, x: Tensor, stages: list[str]) -> dict[str, Tensor]:
    """`stage_tables`, kept beside the pretrained weights (``key``: their hash, which covers the carve)
    so that searches sharing the encoders skip the encoder passes."""
    tag = hashlib.sha256(canonical([split, stages, list(x.shape)]).encode()).hexdigest()[:8]
    path = cache_dir("search_pretrained") / f"tables-{key}-{tag}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    tables = stage_tables(enc, x, stages)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(tables, tmp)
    tmp.replace(path)
    return tables


def build_context(
    cfg: SearchConfig, stages: dict[str, list[str]], quiet: bool = True
) -> tuple[Context, dict[str, Encoder]]:
    """The search's `Context` (pretraining encoders if they are not cached) and the encoders."""
    bundle, task = load_search_data(cfg)
    train, val = carve(len(bundle.train), cfg)
    rows = torch.cat([train, val])
    encoders, info, data = {}, {}, {}
    for m in cfg.encoders:
        with torch_threads(cfg.candidate.threads):
            enc, meta = pretrain(cfg, bundle, task, m, (train, val), quiet)
            if cfg.pretrain.mode == "frozen":
                data[m] = cached_tables(enc, meta["key"], "train", bundle.train.inputs[m][rows], stages[m])
        encoders[m] = enc
        info[m] = {"spec": cfg.encoders[m], "params": sum(p.numel() for p in enc.parameters()), **meta}
    if cfg.pretrain.mode == "finetune":
        data = {"inputs": {m: bundle.train.inputs[m][rows] for m in cfg.encoders}}
    states = {m: e.state_dict() for m, e in encoders.items()} if cfg.pretrain.mode == "finetune" else {}
    ctx = Context(
        task, bundle.tasks[task], cfg.pretrain.mode, stages, data, bundle.train.targets[task][rows],
        len(train), info, cfg.candidate, cfg.fitness, states, cfg.cache.match,
    )  # fmt: skip
    return ctx, encoders


def encoder_stages(cfg: SearchConfig) -> dict[str, list[str]]:
    """Each modality's encoder stages (from a fresh instance: the stage names need no weights)."""
    out = {}
    for m, spec in cfg.encoders.items():
        spec = dict(spec)
        out[m] = list(create_encoder(spec.pop("name"), **spec).stage_names)
    return out
