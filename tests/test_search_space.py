"""The search space: every sampled, mutated and crossed-over genome builds and runs a forward pass
(hundreds of seeded draws on tiny stage tables), repair is canonical, and every style is reachable."""

import random

import pytest
import torch

from polymodal.fusion import FusionSpec
from polymodal.search.config import CandidateConfig, FitnessConfig, SpaceConfig
from polymodal.search.evaluate import build_candidate
from polymodal.search.features import Context, torch_threads
from polymodal.search.space import MUTATIONS, crossover, make_space, mermaid, mutate, pairings, repair, sample

N = 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: on a busy 2-core machine two threads make each op ~1000x slower (barriers)."""
    with torch_threads(1):
        yield


SHAPES = {  # modality -> stage -> shape without the batch: spatial, sequence-like and vector stages
    "img": {"stage1": (3, 4, 4), "stage2": (5, 2, 2), "out": (6,)},
    "aud": {"stage1": (2, 3, 5), "pool": (4,), "out": (5,)},
    "vec": {"layer1": (7,), "out": (3,)},
}


def context() -> Context:
    g = torch.Generator().manual_seed(0)
    data = {
        m: {s: torch.randn(N, *shape, generator=g).half() for s, shape in st.items()}
        for m, st in SHAPES.items()
    }
    enc = {m: {"spec": {}, "key": f"k{m}", "params": 10} for m in SHAPES}
    return Context(
        "y", 3, "frozen", {m: list(s) for m, s in SHAPES.items()}, data, torch.arange(N) % 3, 8, enc,
        CandidateConfig(), FitnessConfig(),
    )  # fmt: skip


SPACE = make_space(
    SpaceConfig(widths=[4, 8], trunks=[[], [4]], max_nodes=3), {m: list(s) for m, s in SHAPES.items()}
)
CTX = context()


def check(spec: FusionSpec) -> None:
    assert FusionSpec.from_json(spec.to_json()) == spec
    assert len(spec.nodes) <= 3 and len(spec.head_refs) <= 3
    assert repair(spec.to_dict(), SPACE, random.Random(0)) == spec  # repaired genomes are fixed points
    model = build_candidate(CTX, spec)
    model.eval()
    mods = list(model.encoders)
    with torch.no_grad():
        z = model(CTX.batch(torch.arange(5), mods))["y"]
    assert z.shape == (5, 3) and torch.isfinite(z).all(), spec.to_json()


def test_every_operator_on_random_genomes_yields_a_spec_that_builds_and_runs() -> None:
    rng = random.Random(0)
    pool = [sample(SPACE, rng) for _ in range(20)]
    applied: set[str] = set()
    for i in range(300):
        a, b = rng.choice(pool), rng.choice(pool)
        if i % 3 == 0:
            child = crossover(a, b, SPACE, rng)
        else:
            child, names = mutate(a, SPACE, rng, rng.randint(1, 3))
            applied |= set(names)
        check(child)
        pool[rng.randrange(len(pool))] = child
    assert applied == set(MUTATIONS.names())  # every registered mutation was exercised


@pytest.mark.parametrize("name", MUTATIONS.names())
def test_each_mutation_alone_keeps_genomes_valid(name: str) -> None:
    rng = random.Random(name)
    fn = MUTATIONS.get(name)
    for _ in range(15):
        g = fn(sample(SPACE, rng).to_dict(), SPACE, rng)
        if g is not None:
            check(repair(g, SPACE, rng))


def test_sampling_reaches_every_style_and_dropping_a_modality_is_legal() -> None:
    rng = random.Random(1)
    specs = [sample(SPACE, rng) for _ in range(200)]
    kinds = {
        how
        for s in specs
        for how in pairings(s, {"img": "stage1", "aud": "stage1", "vec": "layer1"}).values()
    }
    assert kinds == {"early", "intermediate", "late"}
    assert any(len(s.nodes) and any("." in h for h in s.head_refs) for s in specs)  # hybrid
    used = [
        len(
            {r.split(".")[0] for n in s.nodes for r in n.inputs if "." in r}
            | {h.split(".")[0] for h in s.head_refs if "." in h}
        )
        for s in specs
    ]
    assert min(used) == 1 and max(used) == 3  # genomes that drop modalities exist
    dropped = MUTATIONS.get("drop_modality")(specs[int(torch.tensor(used).argmax())].to_dict(), SPACE, rng)
    check(repair(dropped, SPACE, rng))
    assert "flowchart LR" in mermaid(specs[0])


def test_the_same_seed_gives_the_same_genomes() -> None:
    def draw(seed: int) -> list[str]:
        rng = random.Random(seed)
        a = [sample(SPACE, rng) for _ in range(5)]
        return [s.to_json() for s in a] + [
            mutate(a[0], SPACE, rng, 3)[0].to_json(),
            crossover(a[1], a[2], SPACE, rng).to_json(),
        ]

    assert draw(7) == draw(7) and draw(7) != draw(8)


def test_repair_bounds_a_graph_that_is_too_big_and_fixes_bad_refs() -> None:
    bad = ["img.stage1", "aud.nope", "ghost"]  # a legal tap, an unknown stage, an unknown node
    nodes = [
        {"name": f"x{i}", "inputs": bad + (["x0"] if i else []), "op": "tensor", "width": 5} for i in range(6)
    ]
    g = {"nodes": nodes, "heads": ["x5", "vec.out", "x5", "nothere"], "trunk": [9], "decision": "bad"}
    spec = repair(g, SPACE, random.Random(0))
    check(spec)
    assert [n.name for n in spec.nodes] == [f"n{i}" for i in range(len(spec.nodes))]
    assert spec.trunk in ([], [4]) and all(n.width in (4, 8) for n in spec.nodes)
