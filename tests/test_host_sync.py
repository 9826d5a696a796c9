"""The training step never waits for the device: nothing in it reads a tensor back on the host.

On an accelerator every ``.item()``, ``.tolist()``, ``.cpu()`` or ``bool(tensor)`` stalls the queue
until the device catches up; the engine reads its device-side sums only at log, eval and checkpoint
boundaries. The spy below fails the test if any of them is put back into `train_step`.
"""

import pytest
import torch
from test_engine import tiny

from polymodal.config import build_config
from polymodal.engine.run import build_run, train_step

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("uda", {"train.ema": 0.99}),
        ("fixmatch", {}),
        ("mean_teacher", {}),
        ("supervised", {"weighting": "uncertainty"}),
        ("supervised", {"weighting": "dwa"}),
    ],
)
def test_the_step_reads_nothing_back_from_the_device(data_root, method, extra, monkeypatch):
    weighting = extra.pop("weighting", "equal")
    raw = tiny(data_root, method=method, **{"train.steps": 6, **extra})
    raw["multitask"] = {"weighting": weighting}
    run = build_run(build_config(raw), None)
    train_step(run, 0)  # the first step may build caches (permutations, filterbanks)
    seen = host_reads_during(monkeypatch, lambda: [train_step(run, s) for s in range(1, 5)])
    assert seen == [], f"host reads in the step: {sorted(set(seen))}"


def host_reads_during(monkeypatch, fn) -> list[str]:
    seen: list[str] = []
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            seen.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    fn()
    monkeypatch.undo()
    return seen


def test_the_spy_catches_an_item_put_back_in_the_step(data_root, monkeypatch):
    import polymodal.engine.run as engine_run

    run = build_run(build_config(tiny(data_root, method="supervised", **{"train.steps": 3})), None)
    real = engine_run.train_step

    def with_item(run, step):
        real(run, step)
        run.sums["loss"].item()  # what a careless log line would do

    assert host_reads_during(monkeypatch, lambda: with_item(run, 0)) == ["item"]
