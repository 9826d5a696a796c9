"""Compose a fusion graph in Python, Keras-functional style; the result is a plain `FusionSpec`.

img, aud = Tap("image", "stage2"), Tap("audio", "stage2")
mid = fuse([img, aud], op="gated", width=64, name="mid")
top = fuse([mid, Tap("image", "out"), Tap("audio", "out")], width=128, name="top")
spec = FusionSpec.of(top, trunk=[64])                               # intermediate fusion
late = FusionSpec.of(Tap("image", "out"), Tap("audio", "out"), decision="learned")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polymodal.fusion.spec import Node


@dataclass(frozen=True)
class Ref:
    ref: str  # what a node or head reads: 'modality.stage' or a node name
    nodes: tuple[Node, ...] = field(default=(), compare=False)  # every node it depends on, in order


def Tap(modality: str, stage: str = "out") -> Ref:  # noqa: N802 - reads like a layer, as in Keras
    """A named stage of a modality's encoder (``input`` is the raw input)."""
    return Ref(f"{modality}.{stage}")


def fuse(
    inputs: list[Ref], op: str = "concat", width: int = 64, name: str | None = None, **options: object
) -> Ref:
    """A fusion node over ``inputs``; ``options``: activation, pool, rank, proj, in_dims."""
    nodes: list[Node] = []
    for r in inputs:
        nodes += [n for n in r.nodes if all(n is not m for m in nodes)]
    name = name or f"{op}{len(nodes)}"
    node = Node(name, [r.ref for r in inputs], op, width, **options)  # type: ignore[arg-type]
    return Ref(name, (*nodes, node))
