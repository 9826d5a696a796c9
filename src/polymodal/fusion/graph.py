"""`FusionModel`: encoders -> fusion graph (from a `FusionSpec`) -> trunk(s) -> task heads.

Same contract as `MultiHeadModel`: ``model(batch) -> ModelOutput`` and ``features(batch)``; encoders are
keyed by name and each reads one modality (``inputs``), so refs are ``"<encoder>.<stage>"`` and two
encoders may read one modality, while masks and dropout stay per modality. With
one head ref it *is* a multi-head model whose trunk is the fusion graph. With several (late fusion),
each ref gets its own trunk and per-task linear head, and ``heads[task]`` combines their logits by
the decision rule, weighting each branch by whether its modalities are present.

Shapes are resolved at build time with one probe pass through the encoders, so a stage that does not
fit a node fails here with one line naming both ends, not mid-training.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ConfigError, ShapeError
from polymodal.fusion.ops import ACTIVATION, FUSION_OPS
from polymodal.fusion.spec import FusionSpec, Node, block_key
from polymodal.models.multihead import MarginHead, head_specs, make_head, visible
from polymodal.models.output import AuxLogits, ModelOutput, TaskModel


def _pool(x: Tensor, how: str) -> Tensor:
    if x.ndim == 2:
        return x
    if how == "flatten":
        return x.flatten(1)
    x = x.flatten(2)  # (B, C, positions)
    return x.mean(-1) if how == "mean" else x.amax(-1)


class FusionNode(nn.Module):
    def __init__(self, node: Node, dims: list[int]) -> None:
        super().__init__()
        self.op = FUSION_OPS.get(node.op)(dims, node.width, rank=node.rank, proj=node.proj)
        self.act = ACTIVATION[node.activation]()

    def forward(self, xs: list[Tensor], present: list[Tensor]) -> Tensor:
        return self.act(self.op(xs, present))


class DecisionHead(nn.Module):
    """One task's linear heads over each branch, combined by the decision rule (presence-weighted)."""

    def __init__(
        self, dims: list[int], classes: int, rule: str, dropout: float, head: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.rule = rule
        self.linears = nn.ModuleList(make_head(d, classes, dropout, head) for d in dims)
        if rule == "learned":
            self.logit_weights = nn.Parameter(torch.zeros(len(dims)))
        if rule == "stacking":
            self.stack = nn.Linear(len(dims) * classes, classes)

    def forward(
        self,
        feats: list[Tensor],
        present: list[Tensor],
        targets: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """``targets`` / ``mask`` (training only) reach margin heads, which penalise the target logit."""
        z = torch.stack(
            [
                h(f, targets, mask) if isinstance(h, MarginHead) and targets is not None else h(f)
                for h, f in zip(self.linears, feats, strict=True)
            ],
            dim=1,
        )  # B,n,k
        p = torch.stack(present, dim=1).to(z.dtype)  # B,n
        if len(feats) == 1:
            return z[:, 0]
        if self.rule == "stacking":
            return self.stack((z * p[:, :, None]).flatten(1))
        w = p if self.rule == "mean" else p * self.logit_weights.softmax(0)
        return (z * w[:, :, None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-6)


class FusionModel(TaskModel):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        tasks: dict[str, int],
        spec: FusionSpec,
        input_shapes: dict[str, tuple[int, ...] | Tensor],
        head_dropout: float = 0.0,
        modality_dropout: float = 0.0,
        encoder_specs: dict[str, dict] | None = None,
        aux_loss: float = 0.0,
        modality_dropout_mode: str = "independent",
        inputs: dict[str, str] | None = None,
        head: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        spec.validate()
        self.spec, self.modality_dropout = spec, modality_dropout
        self.modality_dropout_mode = modality_dropout_mode  # or "one" (models.missing.drop_modalities)
        self.encoders = nn.ModuleDict(encoders)
        self.inputs = {k: (inputs or {}).get(k, k) for k in encoders}  # encoder -> the modality it reads
        self.block_keys: dict[str, str] = {}
        keys: dict[str, str] = {}  # ref -> key of the block producing it
        for m, enc in encoders.items():
            desc = (encoder_specs or {}).get(m) or {
                "class": type(enc).__name__,
                "shapes": {k: list(v.shape) for k, v in enc.state_dict().items()},
            }
            where = {"modality": m} if self.inputs[m] == m else {"modality": self.inputs[m], "name": m}
            self.block_keys[f"encoders.{m}"] = keys[m] = block_key("enc", {**where, "encoder": desc})
        self.share_keys = dict(self.block_keys)  # see `blocks`
        dims = self._probe(input_shapes)
        self.sources: dict[str, set[str]] = {}  # ref -> modalities it depends on
        self.nodes = nn.ModuleDict()
        for node in spec.nodes:
            in_dims, srcs, in_keys = [], set(), []
            for i, ref in enumerate(node.inputs):
                d, s, k = self._resolve(ref, node, dims, keys)
                if node.in_dims is not None and node.in_dims[i] != d:
                    raise ShapeError(
                        f"fusion node '{node.name}' expects {node.in_dims[i]} features from {ref} "
                        f"but it gives {d}"
                    )
                in_dims.append(d), srcs.update(s), in_keys.append(k)
            self.nodes[node.name] = FusionNode(node, in_dims)
            dims[node.name], self.sources[node.name] = node.width, srcs
            desc = {k: v for k, v in node.__dict__.items() if k not in ("name", "inputs", "in_dims")}
            keys[node.name] = block_key("node", {**desc, "inputs": in_keys, "dims": in_dims})
            self.block_keys[f"nodes.{node.name}"] = keys[node.name]
            self._share(f"nodes.{node.name}", "node", {**desc, "inputs": list(node.inputs), "dims": in_dims})
        self.trunks = nn.ModuleList()
        head_dims, head_keys = [], []
        for i, ref in enumerate(spec.head_refs):
            d, _, k = self._resolve(ref, None, dims, keys)
            share = {"reads": ref, "in": d, "trunk": spec.trunk}
            layers: list[nn.Module] = []
            for w in spec.trunk:
                layers += [nn.Linear(d, w), nn.ReLU()]
                d = w
            self.trunks.append(nn.Sequential(*layers))
            head_keys.append(block_key("trunk", {"reads": k, "trunk": spec.trunk}))
            self.block_keys[f"trunks.{i}"] = head_keys[-1]
            self._share(f"trunks.{i}", "trunk", share)
            head_dims.append(d)
        self.feature_dim = sum(head_dims)
        specs = head_specs(tasks, head)
        self.heads = nn.ModuleDict(
            {t: DecisionHead(head_dims, k, spec.decision, head_dropout, specs[t]) for t, k in tasks.items()}
        )
        # auxiliary per-modality heads (training only): see _aux_logits
        self.aux_weight = aux_loss
        if aux_loss > 0 and len(head_dims) == 1:  # late fusion reuses its branch heads instead
            out = {m: dims[f"{m}.out"] for m in self.encoders}
            out = {m: int(d[0]) if isinstance(d, tuple) else int(d) for m, d in out.items()}
            self.aux_heads = nn.ModuleDict(
                {t: nn.ModuleDict({m: nn.Linear(d, k) for m, d in out.items()}) for t, k in tasks.items()}
            )
        self._key_heads(tasks, head_keys, head_dims)

    def _key_heads(self, tasks: dict[str, int], trunk_keys: list[str], dims: list[int]) -> None:
        for t, k in tasks.items():
            rule = self.spec.decision if len(dims) > 1 else "single"
            desc = {"task": t, "classes": k, "reads": trunk_keys, "decision": rule}
            self.block_keys[f"heads.{t}"] = block_key("head", desc)
            self._share(f"heads.{t}", "head", {**desc, "reads": list(self.spec.head_refs), "dims": dims})

    @torch.no_grad()
    def _probe(self, input_shapes: dict[str, tuple[int, ...] | Tensor]) -> dict[str, int | tuple[int, ...]]:
        """Shapes (without batch) of every encoder stage, from one pass on zeros in eval mode."""
        shapes: dict[str, int | tuple[int, ...]] = {}
        for m, enc in self.encoders.items():
            if self.inputs[m] not in input_shapes:
                raise ConfigError(
                    f"fusion: no input shape for modality '{self.inputs[m]}'; have: {', '.join(input_shapes)}"
                )
            was = enc.training
            enc.eval()
            given = input_shapes[self.inputs[m]]  # a shape without batch, or an example batch (its dtype)
            device = next(itertools.chain(enc.parameters(), enc.buffers()), torch.empty(0)).device
            x = (
                torch.zeros_like(given[:2], device=device)
                if isinstance(given, Tensor)
                else torch.zeros(2, *given, device=device)
            )
            shapes[f"{m}.input"] = tuple(x.shape[1:])
            for stage, v in enc.forward_stages(x).items():
                shapes[f"{m}.{stage}"] = tuple(v.shape[1:])
            enc.train(was)
        return shapes

    def _resolve(self, ref: str, node: Node | None, dims: dict, keys: dict) -> tuple[int, set[str], str]:
        """(features, source modalities, block key) of a ref as the node (or head) will read it."""
        if "." not in ref:
            return dims[ref], self.sources[ref], keys[ref]
        m, stage = ref.split(".", 1)
        if ref not in dims:
            have = sorted(k for k in dims if "." in k and k.startswith(f"{m}.")) or sorted(self.encoders)
            at = f"fusion.nodes[{self.spec.nodes.index(node)}].inputs" if node is not None else "fusion.heads"
            raise ConfigError(f"model.{at}: '{ref}' is not an encoder stage; available: {', '.join(have)}")
        shape = dims[ref]
        pool = node.pool if node is not None else "mean"
        d = int(torch.Size(shape).numel()) if pool == "flatten" or len(shape) == 1 else int(shape[0])
        return d, {self.inputs[m]}, f"{keys[m]}:{stage}:{pool}"

    def _branches(self, batch: Batch) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        mask = visible(batch, self.inputs, self.training, self.modality_dropout, self.modality_dropout_mode)
        vals: dict[str, Tensor] = {}
        present: dict[str, Tensor] = {}  # per encoder key (and node): its modality's presence
        for m, enc in self.encoders.items():
            x, p = batch.inputs[self.inputs[m]], mask[self.inputs[m]].float()
            stages = enc.forward_stages(x, batch.lengths.get(self.inputs[m]))
            vals[f"{m}.input"] = x.float()
            vals.update({f"{m}.{k}": v for k, v in stages.items()})
            present[m] = p

        def read(ref: str, pool: str) -> tuple[Tensor, Tensor]:
            if "." not in ref:
                return vals[ref], present[ref]
            m = ref.split(".", 1)[0]
            x = _pool(vals[ref], pool)
            return x * present[m].to(x.dtype)[:, None], present[m]

        for node in self.spec.nodes:
            xs, ps = zip(*(read(r, node.pool) for r in node.inputs), strict=True)
            vals[node.name] = self.nodes[node.name](list(xs), list(ps))
            present[node.name] = torch.stack(ps).amax(0)
        feats, pres = [], []
        for trunk, ref in zip(self.trunks, self.spec.head_refs, strict=True):
            x, p = read(ref, "mean")
            feats.append(trunk(x))
            pres.append(p)
        return feats, pres, vals

    def head_modules(self) -> list[nn.Module]:
        return [self.heads, *([self.aux_heads] if hasattr(self, "aux_heads") else [])]

    def features(self, batch: Batch) -> Tensor:
        feats, _, _ = self._branches(batch)
        return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)

    def forward(self, batch: Batch) -> ModelOutput:
        feats, pres, vals = self._branches(batch)
        h = feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)
        if len(feats) > 1:  # heads read slices of h, so gradients w.r.t. h are the real ones
            feats = list(h.split([f.shape[-1] for f in feats], dim=-1))
        train = self.training
        logits = {
            t: head(feats, pres, batch.targets.get(t) if train else None, batch.target_mask.get(t))
            for t, head in self.heads.items()
        }
        aux = self._aux_logits(batch, feats, pres, vals) if self.training and self.aux_weight > 0 else {}
        return ModelOutput(logits, h, aux, self.aux_weight, self._op_losses())

    def _op_losses(self) -> dict[str, Tensor]:
        """Training losses the fusion ops computed in this forward (an autoencoder's reconstruction)."""
        if not self.training:
            return {}
        found = {f"nodes.{n}": getattr(node.op, "loss", None) for n, node in self.nodes.items()}
        return {k: v for k, v in found.items() if v is not None}

    def _aux_logits(
        self, batch: Batch, feats: list[Tensor], pres: list[Tensor], vals: dict[str, Tensor]
    ) -> AuxLogits:
        """Per task, a per-modality classifier's logits and the rows it trains on (the supervised term
        adds aux_weight x their cross-entropy on the labeled ones, `polymodal.ssl.method.aux_terms`).
        Late fusion: each branch's own head on the branch computed before dropout (a branch is then
        trained as a unimodal model on every row, so the decision still works when the other modality
        is gone). Otherwise: a linear head on each encoder's output, on every row with the real input
        (before dropout). The weak modality is trained even when the strong one wins the fused loss
        (Gradient-Blending, Wang et al. 2020)."""
        real = batch.modality_mask  # before dropout: the encoder always sees its real input
        if len(feats) == 1:
            inputs = {m: (_pool(vals[f"{m}.out"], "mean"), real[self.inputs[m]]) for m in self.encoders}
            return {
                t: [(h(inputs[m][0]), inputs[m][1]) for m, h in heads.items()]
                for t, heads in self.aux_heads.items()
            }
        branches = [
            (trunk(_pool(vals[r], "mean")), real[self.inputs[r.split(".", 1)[0]]]) if "." in r else (f, p > 0)
            for trunk, r, f, p in zip(self.trunks, self.spec.head_refs, feats, pres, strict=True)
        ]
        return {
            t: [(lin(f), rows) for lin, (f, rows) in zip(head.linears, branches, strict=True)]
            for t, head in self.heads.items()
        }

    def _share(self, path: str, kind: str, desc: dict[str, Any]) -> None:
        key = block_key(kind, desc)
        if key in self.share_keys.values():  # the same block twice in one genome: keep both apart
            key = block_key(kind, {**desc, "at": path})
        self.share_keys[path] = key

    def blocks(self, by: str = "exact") -> dict[str, nn.Module]:
        """Block key -> module (the unit a search inherits weights by).

        ``by="exact"``: `block_keys`, a Merkle key (a block's key hashes the keys of every block it
        reads), so two models share a block only if everything upstream of it is the same.
        ``by="position"``: `share_keys`, as MFAS shares fusion weights (by position, the layers read
        and the op): a node by its op, settings, the refs it reads and their widths; a trunk by the
        ref it reads, its input width and layers; a head by the refs, widths and decision rule. A
        child then starts a block from trained weights even when an upstream block changed.
        """
        if by not in ("exact", "position"):
            raise ConfigError(f"blocks(by={by!r}): allowed: exact, position")
        keys = self.block_keys if by == "exact" else self.share_keys
        return {key: self.get_submodule(path) for path, key in keys.items()}


def inherit_weights(new: FusionModel, old: FusionModel, by: str = "exact") -> list[str]:
    """Copy every block of ``old`` whose key (and parameter shapes) ``new`` shares; returns the keys."""
    source = old.blocks(by)
    copied = []
    for key, module in new.blocks(by).items():
        if key not in source:
            continue
        state, mine = source[key].state_dict(), module.state_dict()
        if state.keys() == mine.keys() and all(state[k].shape == mine[k].shape for k in state):
            module.load_state_dict(state)
            copied.append(key)
    return copied
