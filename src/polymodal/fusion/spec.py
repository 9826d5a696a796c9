"""A fusion graph as plain data: dataclasses that round-trip exactly through dict / YAML / JSON.

``FusionSpec`` lists fusion ``Node``s in order. A node reads *refs*: ``"modality.stage"`` (a named
hidden stage of an encoder, e.g. ``image.stage2``, ``audio.out``, or ``image.input`` for the raw
input) or the name of an earlier node; it combines them with an op (concat, sum, gated, attention,
tensor, lowrank) into ``width`` features. ``heads`` lists the refs the task heads read, each through
its own ``trunk`` MLP: one ref is feature-level fusion (early or intermediate, by which stages the
nodes read); several refs are decision-level (late) fusion, their logits combined by ``decision``
(mean, learned weights, stacking). Early / intermediate / late / hybrid are all just specs, which is
what a search over fusion architectures mutates and crosses over.

``block_key``s name blocks by their canonical JSON (Merkle style: a node's key covers its own
description and the keys of what feeds it), so a candidate sharing a block can inherit its weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from polymodal.errors import ConfigError
from polymodal.fusion.ops import FUSION_OPS

ACTIVATIONS = ("relu", "gelu", "tanh", "none")
POOLS = ("mean", "max", "flatten")
DECISIONS = ("mean", "learned", "stacking")


@dataclass
class Node:
    name: str
    inputs: list[str]
    op: str = "concat"
    width: int = 64
    activation: str = "relu"
    pool: str = "mean"  # how a spatial stage (B, C, ...) becomes a vector
    rank: int = 4  # lowrank: number of rank-one factors
    proj: int = 16  # tensor: each input is projected to this before the outer product
    in_dims: list[int] | None = None  # optional: expected feature count per input, checked at build


@dataclass
class FusionSpec:
    nodes: list[Node] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)  # default: the last node
    trunk: list[int] = field(default_factory=list)  # hidden widths of the MLP before each head
    decision: str = "mean"  # how several heads' logits combine (late fusion)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FusionSpec:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FusionSpec:
        """Validated spec; a bad key or value is one `ConfigError` naming its dotted place."""
        _keys("fusion", raw, FusionSpec)
        nodes = []
        for i, n in enumerate(raw.get("nodes", [])):
            _keys(f"fusion.nodes[{i}]", n, Node)
            if "name" not in n or "inputs" not in n:
                raise ConfigError(f"fusion.nodes[{i}]: needs 'name' and 'inputs'")
            nodes.append(Node(**n))
        spec = cls(nodes, list(raw.get("heads", [])), list(raw.get("trunk", [])), raw.get("decision", "mean"))
        spec.validate()
        return spec

    @classmethod
    def of(cls, *outputs: Any, trunk: list[int] | None = None, decision: str = "mean") -> FusionSpec:
        """From functional-API refs (see `polymodal.fusion.functional`): heads read ``outputs``."""
        nodes: dict[str, Node] = {}
        for out in outputs:
            for n in out.nodes:
                if nodes.setdefault(n.name, n) is not n:
                    raise ConfigError(f"fusion: two different nodes are named '{n.name}'")
        spec = cls(list(nodes.values()), [o.ref for o in outputs], list(trunk or []), decision)
        spec.validate()
        return spec

    @property
    def head_refs(self) -> list[str]:
        if self.heads:
            return self.heads
        if not self.nodes:
            raise ConfigError("fusion: give 'heads' (refs the task heads read) or at least one node")
        return [self.nodes[-1].name]

    def validate(self) -> None:
        seen: set[str] = set()
        for i, n in enumerate(self.nodes):
            at = f"fusion.nodes[{i}]"
            if not n.name or "." in n.name or n.name in seen:
                raise ConfigError(f"{at}.name={n.name!r}: must be unique, non-empty and without '.'")
            _choice(f"{at}.op", n.op, tuple(FUSION_OPS.names()))
            _choice(f"{at}.activation", n.activation, ACTIVATIONS)
            _choice(f"{at}.pool", n.pool, POOLS)
            for key in ("width", "rank", "proj"):
                if not isinstance(getattr(n, key), int) or getattr(n, key) <= 0:
                    raise ConfigError(f"{at}.{key}={getattr(n, key)!r}: must be a positive integer")
            if not n.inputs or not isinstance(n.inputs, list):
                raise ConfigError(f"{at}.inputs: must be a non-empty list of refs")
            for ref in n.inputs:
                _ref(f"{at}.inputs", ref, seen)
            if n.in_dims is not None and len(n.in_dims) != len(n.inputs):
                raise ConfigError(f"{at}.in_dims: {len(n.in_dims)} entries for {len(n.inputs)} inputs")
            seen.add(n.name)
        for ref in self.head_refs:
            _ref("fusion.heads", ref, seen)
        if any(not isinstance(w, int) or w <= 0 for w in self.trunk):
            raise ConfigError(f"fusion.trunk={self.trunk!r}: must be a list of positive integers")
        _choice("fusion.decision", self.decision, DECISIONS)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def block_key(kind: str, description: Any) -> str:
    """A stable short name for a block: ``kind-`` + 12 hex digits of its canonical JSON's sha256."""
    return f"{kind}-{hashlib.sha256(canonical(description).encode()).hexdigest()[:12]}"


def _keys(at: str, raw: Any, cls: type) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{at}: expected a mapping, got {type(raw).__name__}")
    allowed = [f.name for f in fields(cls)]
    bad = [k for k in raw if k not in allowed]
    if bad:
        raise ConfigError(f"{at}.{bad[0]}: unknown key; allowed: {', '.join(allowed)}")


def _choice(at: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{at}={value!r}: allowed: {', '.join(allowed)}")


def _ref(at: str, ref: Any, nodes: set[str]) -> None:
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{at}: {ref!r} is not a ref ('modality.stage' or an earlier node's name)")
    if "." not in ref and ref not in nodes:
        raise ConfigError(
            f"{at}: '{ref}' is neither 'modality.stage' nor an earlier node; nodes so far: "
            f"{', '.join(sorted(nodes)) or 'none'}"
        )
