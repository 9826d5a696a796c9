"""The house rules, checked: layers import only downwards with no cycle, functions stay short, and one
registration is all a new method or weighting needs (docs/architecture.md)."""

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from pydantic import Field

from polymodal.batch import Batch
from polymodal.config import build_config
from polymodal.errors import ConfigError
from polymodal.mtl import BALANCERS, build_balancer
from polymodal.mtl.base import LossWeighting
from polymodal.options import Options
from polymodal.ssl import METHODS, Terms, register_method, supervised_terms

SRC = Path(__file__).resolve().parents[1] / "src" / "polymodal"

# lowest first; a module may import from its own layer or below (docs/architecture.md, "Layers")
LAYERS = [
    ["errors", "registry", "options", "batch", "signal", "metrics"],
    ["data"],
    ["augment"],
    ["models"],
    ["fusion"],
    ["ssl", "mtl"],
    ["config"],
    ["engine"],
    ["transfer", "demo", "speaker", "report", "search"],
    ["cli", "__main__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every polymodal module ``name`` imports, at module level or inside functions."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        found |= {t for t in targets if t in modules and t != name}
    return found


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    assert top in LAYER, f"{module}: its layer is not in LAYERS (add it here and in docs/architecture.md)"
    return LAYER[top]


def test_no_module_imports_from_a_layer_above_it() -> None:
    modules = _modules()
    upward = []
    for name, path in modules.items():
        if name == "polymodal":
            continue
        for dep in _imports(path, name, modules):
            if dep != "polymodal" and _layer(dep) > _layer(name):
                upward.append(f"{name} -> {dep}")
    assert not upward, upward


def test_there_is_no_import_cycle() -> None:
    modules = _modules()
    graph = {n: _imports(p, n, modules) for n, p in modules.items()}
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in state:
                visit(d, [*stack, d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def _functions() -> list[tuple[str, int]]:
    out = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(SRC)}:{node.name}", node.end_lineno - node.lineno + 1))
    return out


def test_no_function_is_longer_than_80_lines_and_train_fits_a_screen() -> None:
    lengths = _functions()
    assert [(f, n) for f, n in lengths if n > 80] == []
    assert dict(lengths)["engine/trainer.py:train"] <= 60


class ToyOptions(Options):
    scale: float = Field(2.0, gt=0)


def test_a_method_registered_in_a_test_module_is_usable_from_a_config(data_root, tmp_path) -> None:
    from test_engine import tiny

    from polymodal.engine.trainer import train

    calls = []

    @register_method("toy_scaled", options=ToyOptions, unlabeled=False)
    def toy(model, labeled, unlabeled, views, progress, options, generator):
        calls.append(options.scale)
        out = model(views(labeled, "weak", generator))
        losses, _ = supervised_terms(out, labeled)
        return Terms({t: options.scale * v for t, v in losses.items()}, {}, out.features)

    try:
        cfg = build_config({"method": "toy_scaled", "toy_scaled": {"scale": 3.0}})
        assert cfg.method_options().scale == 3.0
        with pytest.raises(ConfigError, match=r"^toy_scaled.scal: unknown key; allowed: scale$"):
            build_config({"toy_scaled": {"scal": 1}})
        raw = tiny(data_root, method="toy_scaled", **{"train.steps": 2, "train.eval_every": 100})
        raw["toy_scaled"] = {"scale": 3.0}
        summary = train(build_config(raw), tmp_path, quiet=True)
        assert summary["method"] == "toy_scaled" and calls == [3.0, 3.0]
    finally:
        METHODS.unregister("toy_scaled")
    with pytest.raises(ConfigError, match="method='toy_scaled': unknown method"):
        build_config({"method": "toy_scaled"})


def test_a_weighting_registered_in_a_test_module_is_usable_from_a_config() -> None:
    @BALANCERS.register("toy_first_only")
    class FirstOnly(LossWeighting):
        """All weight on the first task."""

        def loss_weights(self, vec: torch.Tensor, step: int) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.tensor(0), len(vec)).float()

    try:
        cfg = build_config({"multitask": {"weighting": "toy_first_only"}})
        bal = build_balancer(cfg.multitask.weighting, ["a", "b"])
        w = torch.ones(2, requires_grad=True)
        total = bal.backward({"a": w[0] * 2, "b": w[1] * 5}, [w], 0)
        assert total.item() == 2.0 and w.grad.tolist() == [2.0, 0.0]
    finally:
        BALANCERS.unregister("toy_first_only")
    with pytest.raises(ConfigError, match="multitask.weighting='toy_first_only': unknown weighting"):
        build_config({"multitask": {"weighting": "toy_first_only"}})


def test_method_records_say_what_the_engine_must_provide() -> None:
    assert not METHODS.get("supervised").unlabeled and METHODS.get("uda").unlabeled
    teachers = {n for n, m in METHODS.items() if m.teacher_decay is not None}
    assert teachers == {"mean_teacher", "ict"}
    mt = METHODS.get("mean_teacher")
    assert mt.teacher_decay(mt.options(ema=0.9)) == 0.9
    assert dataclasses.is_dataclass(mt) and Batch is not None
