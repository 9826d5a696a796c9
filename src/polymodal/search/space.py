"""The search space over `FusionSpec` genomes: random sampling, mutations, crossover, repair.

A genome is a `FusionSpec`: which stage of each modality each node taps, its op, width, activation
and pool, how many nodes (at most ``max_nodes``) and how they read each other, the trunk, the head
refs and the decision rule. Early fusion (a node over the first stages), intermediate (hidden stages,
chained nodes), late (heads on modality taps, combined by the decision rule) and hybrid (both) are
all genomes, and so is one that never reads a modality: *dropping a modality* is legal.

Every operator works on a plain dict (``spec.to_dict()``) and ends in `repair`, which always returns
a valid spec whose shapes fit (every op accepts any input widths, so validity is structural: refs
point at legal taps or earlier nodes, nodes are reachable from a head, bounds hold) with canonical
node names ``n0, n1, …`` so equal graphs have equal JSON. All draws come from the ``random.Random``
passed in: the same seed gives the same genomes.

Mutations are registered in `MUTATIONS` (the only list of them); each returns the changed dict or
None when it does not apply (e.g. removing a node from a late genome), and the caller draws another.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polymodal.fusion.spec import FusionSpec
from polymodal.registry import Registry
from polymodal.search.config import SpaceConfig

Genome = dict[str, Any]  # FusionSpec.to_dict()
MUTATIONS: Registry[Callable[[Genome, Space, random.Random], Genome | None]] = Registry("mutation")
TENSOR_MAX_INPUTS = 3  # tensor fusion's outer product has (proj + 1) ** n features: beyond 3, lowrank


@dataclass
class Space:
    """The space's options plus the stages each modality offers (from its encoder)."""

    options: SpaceConfig
    taps: dict[str, list[str]]  # modality -> stages, in encoder order

    @property
    def modalities(self) -> list[str]:
        return list(self.taps)

    def tap(self, rng: random.Random, modality: str | None = None) -> str:
        m = modality or rng.choice(self.modalities)
        return f"{m}.{rng.choice(self.taps[m])}"

    def node(self, rng: random.Random, name: str, inputs: list[str]) -> dict[str, Any]:
        o = self.options
        return {
            "name": name,
            "inputs": inputs,
            "op": rng.choice(o.ops),
            "width": rng.choice(o.widths),
            "activation": rng.choice(o.activations),
            "pool": rng.choice(o.pools),
        }


def make_space(options: SpaceConfig, stages: dict[str, list[str]]) -> Space:
    """``stages``: each modality's encoder stages; ``options.taps`` may narrow them (checked here)."""
    from polymodal.errors import ConfigError

    taps = {}
    for m, have in stages.items():
        want = (options.taps or {}).get(m, have)
        bad = [s for s in want if s not in have and s != "input"]
        if bad or not want:
            raise ConfigError(
                f"space.taps.{m}: '{bad[0] if bad else ''}' is not a stage; have: {', '.join(have)}"
            )
        taps[m] = list(want)
    extra = sorted(set(options.taps or {}) - set(stages))
    if extra:
        raise ConfigError(f"space.taps.{extra[0]}: not a searched modality; have: {', '.join(stages)}")
    return Space(options, taps)


def modality(ref: str) -> str | None:
    return ref.split(".", 1)[0] if "." in ref else None


def sources(g: Genome) -> dict[str, set[str]]:
    """Ref -> the modalities it depends on (taps and every node)."""
    out: dict[str, set[str]] = {}

    def of(ref: str) -> set[str]:
        return {modality(ref)} if "." in ref else out.get(ref, set())  # type: ignore[return-value]

    for n in g["nodes"]:
        out[n["name"]] = set().union(*(of(r) for r in n["inputs"]))
    for r in g["heads"]:
        out[r] = of(r)
    return out


def used_modalities(g: Genome | FusionSpec) -> list[str]:
    g = g.to_dict() if isinstance(g, FusionSpec) else g
    refs = [r for n in g["nodes"] for r in n["inputs"]] + list(g["heads"])
    return sorted({m for r in refs if (m := modality(r)) is not None})


# ---------------------------------------------------------------- sampling


def sample(space: Space, rng: random.Random) -> FusionSpec:
    """A random genome: a random non-empty subset of modalities and a style (early, intermediate,
    late, hybrid), then random ops, widths, taps and wiring within the bounds."""
    o = space.options
    mods = [m for m in space.modalities if rng.random() < 0.6] or [rng.choice(space.modalities)]
    styles = ["late"] if o.max_nodes == 0 else ["early", "intermediate", "late", "hybrid"]
    style = rng.choice(styles)
    nodes: list[dict[str, Any]] = []
    if style == "early":
        first = [f"{m}.{space.taps[m][0]}" for m in mods]
        nodes.append(space.node(rng, "n0", first))
    elif style in ("intermediate", "hybrid"):
        for i in range(rng.randint(1, o.max_nodes)):
            pool = [space.tap(rng, m) for m in mods] + [n["name"] for n in nodes]
            k = rng.randint(min(2, len(pool)), max(min(o.max_inputs, len(pool)), 1))
            nodes.append(space.node(rng, f"n{i}", rng.sample(pool, k)))
    heads = [nodes[-1]["name"]] if nodes else [space.tap(rng, m) for m in mods]
    if style == "hybrid":
        heads += [space.tap(rng, m) for m in mods if rng.random() < 0.5]
    g = {
        "nodes": nodes,
        "heads": heads,
        "trunk": list(rng.choice(o.trunks)),
        "decision": rng.choice(o.decisions),
    }
    for m in mods:  # every chosen modality is read somewhere
        if m not in used_modalities(g):
            (rng.choice(nodes)["inputs"] if nodes else g["heads"]).append(space.tap(rng, m))
    return repair(g, space, rng)


# ---------------------------------------------------------------- mutations


def _mutation(name: str) -> Callable[[Callable], Callable]:
    return MUTATIONS.register(name)


def _slots(g: Genome) -> list[tuple[list[str], int]]:
    """Every place a ref is read: (the list holding it, index)."""
    return [(n["inputs"], i) for n in g["nodes"] for i in range(len(n["inputs"]))] + [
        (g["heads"], i) for i in range(len(g["heads"]))
    ]


@_mutation("move_tap")
def move_tap(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """A tap reads another stage (of the same modality, or any modality w.p. 0.3)."""
    slots = [(lst, i) for lst, i in _slots(g) if "." in lst[i]]
    if not slots:
        return None
    lst, i = rng.choice(slots)
    lst[i] = space.tap(rng, None if rng.random() < 0.3 else modality(lst[i]))
    return g


def _set_field(field: str, choices: Callable[[Space], list[Any]]) -> Callable:
    def mutate(g: Genome, space: Space, rng: random.Random) -> Genome | None:
        if not g["nodes"]:
            return None
        n = rng.choice(g["nodes"])
        other = [c for c in choices(space) if c != n[field]]
        if not other:
            return None
        n[field] = rng.choice(other)
        return g

    mutate.__doc__ = f"A node's {field} changes."
    return mutate


_mutation("change_op")(_set_field("op", lambda s: s.options.ops))
_mutation("change_width")(_set_field("width", lambda s: s.options.widths))
_mutation("change_activation")(_set_field("activation", lambda s: s.options.activations))
_mutation("change_pool")(_set_field("pool", lambda s: s.options.pools))


@_mutation("add_node")
def add_node(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """A new node over two refs; it replaces a head (reading it) or becomes one more head."""
    if len(g["nodes"]) >= space.options.max_nodes:
        return None
    used = used_modalities(g) or space.modalities
    pool = [space.tap(rng, m) for m in used] + [n["name"] for n in g["nodes"]]
    name = f"new{len(g['nodes'])}"
    if rng.random() < 0.7:  # deepen: the new node reads a head and something else
        i = rng.randrange(len(g["heads"]))
        extra = rng.choice([r for r in pool if r != g["heads"][i]] or pool)
        g["nodes"].append(space.node(rng, name, [g["heads"][i], extra]))
        g["heads"][i] = name
    else:
        g["nodes"].append(space.node(rng, name, rng.sample(pool, min(2, len(pool)))))
        g["heads"].append(name)
    return g


def _splice(g: Genome, name: str) -> None:
    """Remove node ``name``; whoever read it reads its inputs instead."""
    node = next(n for n in g["nodes"] if n["name"] == name)
    g["nodes"].remove(node)
    for lst in [n["inputs"] for n in g["nodes"]] + [g["heads"]]:
        while name in lst:
            i = lst.index(name)
            lst[i : i + 1] = node["inputs"]


@_mutation("remove_node")
def remove_node(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    if not g["nodes"]:
        return None
    _splice(g, rng.choice(g["nodes"])["name"])
    return g


@_mutation("rewire")
def rewire(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """A node reads a different ref (a tap or an earlier node), one more, or one fewer."""
    if not g["nodes"]:
        return None
    k = rng.randrange(len(g["nodes"]))
    n = g["nodes"][k]
    refs = [space.tap(rng, m) for m in space.modalities] + [m["name"] for m in g["nodes"][:k]]
    what = rng.choice(["replace", "add", "remove"])
    if what == "remove" and len(n["inputs"]) > 1:
        n["inputs"].pop(rng.randrange(len(n["inputs"])))
    elif what == "add" and len(n["inputs"]) < space.options.max_inputs:
        n["inputs"].append(rng.choice(refs))
    else:
        n["inputs"][rng.randrange(len(n["inputs"]))] = rng.choice(refs)
    return g


@_mutation("switch_decision")
def switch_decision(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """Another decision rule; a single-head genome gets a second head (else the rule is moot)."""
    if len(g["heads"]) < 2:
        g["heads"].append(space.tap(rng, rng.choice(used_modalities(g) or space.modalities)))
    other = [d for d in space.options.decisions if d != g["decision"]]
    g["decision"] = rng.choice(other or space.options.decisions)
    return g


@_mutation("change_trunk")
def change_trunk(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    other = [list(t) for t in space.options.trunks if list(t) != g["trunk"]]
    if not other:
        return None
    g["trunk"] = rng.choice(other)
    return g


@_mutation("add_head")
def add_head(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """One more late branch: a tap or a node that is not a head yet."""
    if len(g["heads"]) >= space.options.max_heads:
        return None
    refs = [space.tap(rng, m) for m in space.modalities] + [n["name"] for n in g["nodes"]]
    refs = [r for r in refs if r not in g["heads"]]
    if not refs:
        return None
    g["heads"].append(rng.choice(refs))
    return g


@_mutation("remove_head")
def remove_head(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    if len(g["heads"]) < 2:
        return None
    g["heads"].pop(rng.randrange(len(g["heads"])))
    return g


@_mutation("drop_modality")
def drop_modality(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """Every tap of one modality goes (a node left with no input goes too)."""
    used = used_modalities(g)
    if len(used) < 2:
        return None
    m = rng.choice(used)
    for lst in [n["inputs"] for n in g["nodes"]] + [g["heads"]]:
        lst[:] = [r for r in lst if modality(r) != m]
    return g


@_mutation("add_modality")
def add_modality(g: Genome, space: Space, rng: random.Random) -> Genome | None:
    """A modality the genome does not read joins: as a node input or as a late branch."""
    unused = [m for m in space.modalities if m not in used_modalities(g)]
    if not unused:
        return None
    tap = space.tap(rng, rng.choice(unused))
    fits = [n for n in g["nodes"] if len(n["inputs"]) < space.options.max_inputs]
    if fits and (rng.random() < 0.6 or len(g["heads"]) >= space.options.max_heads):
        rng.choice(fits)["inputs"].append(tap)
    else:
        g["heads"].append(tap)
    return g


def mutate(spec: FusionSpec, space: Space, rng: random.Random, n: int = 1) -> tuple[FusionSpec, list[str]]:
    """``n`` mutations drawn uniformly among those that apply; returns the repaired child and their names."""
    g, names = spec.to_dict(), []
    for _ in range(n):
        for name in rng.sample(MUTATIONS.names(), len(MUTATIONS.names())):
            out = MUTATIONS.get(name)(copy.deepcopy(g), space, rng)
            if out is not None:
                g = repair(out, space, rng).to_dict()
                names.append(name)
                break
    return FusionSpec.from_dict(g), names


# ---------------------------------------------------------------- crossover


def _ancestors(g: Genome, ref: str) -> list[dict[str, Any]]:
    """The nodes ``ref`` depends on (itself included), in graph order."""
    by = {n["name"]: n for n in g["nodes"]}
    need, todo = set(), [ref]
    while todo:
        r = todo.pop()
        if r in by and r not in need:
            need.add(r)
            todo += by[r]["inputs"]
    return [n for n in g["nodes"] if n["name"] in need]


def crossover(a: FusionSpec, b: FusionSpec, space: Space, rng: random.Random) -> FusionSpec:
    """Exchange sub-graphs: a ref that ``a`` reads somewhere (a node input or a head) is replaced by a
    sub-graph of ``b`` (one of its nodes with all its ancestors, or one of its taps); the trunk and
    decision rule come from either parent. Then `repair` (bounds, dead nodes, names)."""
    ga, gb = a.to_dict(), b.to_dict()
    refs_b = [n["name"] for n in gb["nodes"]] + [r for lst, i in _slots(gb) if "." in (r := lst[i])]
    pick = rng.choice(refs_b)
    sub = copy.deepcopy(_ancestors(gb, pick))
    rename = {n["name"]: f"x{n['name']}" for n in sub}
    for n in sub:
        n["name"] = rename[n["name"]]
        n["inputs"] = [rename.get(r, r) for r in n["inputs"]]
    lst, i = rng.choice(_slots(ga))
    lst[i] = rename.get(pick, pick)
    ga["nodes"] = sub + ga["nodes"]  # b's sub-graph reads only taps and itself: valid before a's nodes
    if rng.random() < 0.5:
        ga["trunk"], ga["decision"] = gb["trunk"], gb["decision"]
    return repair(ga, space, rng)


# ---------------------------------------------------------------- repair


def _fix_refs(g: Genome, space: Space, rng: random.Random) -> tuple[list[dict[str, Any]], list[str]]:
    """Legal refs only: taps of searched stages (an unknown stage of a searched modality is redrawn),
    earlier nodes; duplicate inputs dropped, at most ``max_inputs``; a node left empty is removed."""
    o, nodes, current = space.options, [], {}
    legal = {f"{m}.{s}" for m in space.modalities for s in space.taps[m]}

    def fix(ref: Any) -> str | None:
        if not isinstance(ref, str):
            return None
        if "." in ref:
            return (
                ref
                if ref in legal
                else (space.tap(rng, modality(ref)) if modality(ref) in space.taps else None)
            )
        return current.get(ref)

    for i, n in enumerate(g["nodes"]):
        inputs = list(dict.fromkeys(r for r in map(fix, n["inputs"]) if r is not None))[: o.max_inputs]
        if not inputs:
            continue
        node = {
            "name": f"t{i}",
            "inputs": inputs,
            "op": n.get("op") if n.get("op") in o.ops else rng.choice(o.ops),
            "width": min(o.widths, key=lambda w: abs(w - int(n.get("width", o.widths[0])))),
            "activation": n.get("activation") if n.get("activation") in o.activations else o.activations[0],
            "pool": n.get("pool") if n.get("pool") in o.pools else o.pools[0],
        }
        if node["op"] == "tensor" and len(inputs) > TENSOR_MAX_INPUTS:
            node["op"] = (
                "lowrank"
                if "lowrank" in o.ops
                else rng.choice([x for x in o.ops if x != "tensor"] or ["concat"])
            )
        nodes.append(node)
        current[n["name"]] = node["name"]  # a later node of the same name shadows it, as refs read
    heads = list(dict.fromkeys(r for r in map(fix, g["heads"]) if r is not None))
    return nodes, heads


def _reachable(nodes: list[dict[str, Any]], heads: list[str]) -> list[dict[str, Any]]:
    need, todo, by = set(), list(heads), {n["name"]: n for n in nodes}
    while todo:
        r = todo.pop()
        if r in by and r not in need:
            need.add(r)
            todo += by[r]["inputs"]
    return [n for n in nodes if n["name"] in need]


def repair(g: Genome, space: Space, rng: random.Random) -> FusionSpec:
    """Any dict an operator produced -> a valid, canonical `FusionSpec` within the space's bounds."""
    o = space.options
    nodes, heads = _fix_refs(g, space, rng)
    if not heads:
        heads = [nodes[-1]["name"]] if nodes else [space.tap(rng)]
    heads = heads[: o.max_heads]
    nodes = _reachable(nodes, heads)
    while len(nodes) > o.max_nodes:  # too many: splice the oldest away (its readers read its inputs)
        h = {"nodes": nodes, "heads": heads}
        _splice(h, nodes[0]["name"])
        for n in nodes:
            n["inputs"] = list(dict.fromkeys(n["inputs"]))[: o.max_inputs]
        heads = list(dict.fromkeys(heads))[: o.max_heads]
        nodes = _reachable(nodes, heads)
    names = {n["name"]: f"n{i}" for i, n in enumerate(nodes)}
    for n in nodes:
        n["name"] = names[n["name"]]
        n["inputs"] = [names.get(r, r) for r in n["inputs"]]
    trunk = list(g.get("trunk") or [])
    if trunk not in [list(t) for t in o.trunks]:
        trunk = list(rng.choice(o.trunks))
    heads = [names.get(r, r) for r in heads]
    decision = g.get("decision") if g.get("decision") in o.decisions else o.decisions[0]
    if len(heads) == 1:
        decision = "mean"  # moot with one head: one canonical form
    return FusionSpec.from_dict({"nodes": nodes, "heads": heads, "trunk": trunk, "decision": decision})


# ---------------------------------------------------------------- description


def pairings(spec: FusionSpec, first: dict[str, str] | None = None) -> dict[str, str]:
    """For each pair of modalities the genome reads: where they first meet. ``early`` (the first node
    reading both sees only their raw inputs or first stages, ``first[m]``, default ``stage1``),
    ``intermediate`` (it reads later stages), ``late`` (only the decision rule combines them); a
    modality the genome does not read is in no pair."""
    g = spec.to_dict()
    src = sources(g)
    mods = used_modalities(g)
    out = {}
    for i, a in enumerate(mods):
        for b in mods[i + 1 :]:
            meet = next((n for n in g["nodes"] if {a, b} <= src[n["name"]]), None)
            if meet is None:
                out[f"{a}+{b}"] = "late"
                continue
            taps = [r for r in _tap_closure(g, meet["name"]) if modality(r) in (a, b)]
            shallow = all(
                r.split(".", 1)[1] in ("input", (first or {}).get(modality(r), "stage1")) for r in taps
            )
            out[f"{a}+{b}"] = "early" if shallow else "intermediate"
    return out


def _tap_closure(g: Genome, name: str) -> set[str]:
    return {r for n in _ancestors(g, name) for r in n["inputs"] if "." in r}


def mermaid(spec: FusionSpec) -> str:
    """The genome as a mermaid flowchart (taps -> nodes -> heads -> decision)."""
    lines = ["flowchart LR"]
    ident = lambda r: r.replace(".", "_")  # noqa: E731
    for n in spec.nodes:
        lines.append(f'  {n.name}["{n.name}: {n.op} {n.width} {n.activation}, pool {n.pool}"]')
        lines += [
            f'  {ident(r)}(["{r}"]) --> {n.name}' if "." in r else f"  {r} --> {n.name}" for r in n.inputs
        ]
    trunk = f"trunk {spec.trunk}" if spec.trunk else "linear head"
    label = f"decision: {spec.decision}" if len(spec.head_refs) > 1 else trunk
    lines.append(f'  out{{"{label}"}}')
    for r in spec.head_refs:
        lines.append(f'  {ident(r)}(["{r}"]) --> out' if "." in r else f"  {r} --> out")
    return "\n".join(lines)
