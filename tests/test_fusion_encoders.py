"""Every registered encoder exposes named stages that a fusion node can read."""

import pytest
import torch

from polymodal.fusion import FusionModel, FusionSpec, Tap, fuse
from polymodal.models import ENCODERS, create_encoder

# name -> (small options, example input, lengths or None); fixed inputs, so no test depends on RNG order
_g = torch.Generator().manual_seed(0)
EXAMPLES = {
    "cnn28": ({"width": 4, "out_dim": 8}, torch.rand(2, 1, 28, 28, generator=_g), None),
    "lenet": ({"c1": 4, "c2": 4, "out_dim": 8}, torch.rand(2, 1, 28, 28, generator=_g), None),
    "audio_cnn": (
        {"n_mels": 20, "width": 4, "out_dim": 8},
        torch.randn(2, 20, 30, generator=_g),
        torch.tensor([30, 17]),
    ),
    "wave_cnn": ({"width": 4, "out_dim": 8}, torch.randn(2, 4000, generator=_g), torch.tensor([4000, 2500])),
    "tabular_mlp": ({"in_dim": 5, "hidden": [8, 8], "out_dim": 8}, torch.randn(2, 5, generator=_g), None),
    "text_cnn": (
        {"vocab_size": 50, "embed_dim": 8, "width": 8, "out_dim": 8},
        torch.randint(1, 50, (2, 12), generator=_g),
        torch.tensor([12, 7]),
    ),
    "wrn": ({"depth": 10, "widen": 1}, torch.rand(2, 3, 32, 32, generator=_g), None),
    "wrn28_2": ({}, torch.rand(2, 3, 32, 32, generator=_g), None),
    "sincnet": (
        {"sinc_filters": 8, "conv_widths": [6, 6], "out_dim": 8},
        torch.randn(2, 2000, generator=_g),
        torch.tensor([2000, 1200]),
    ),
    "xvector": (
        {"widths": [8, 8, 8, 8, 12], "embed_dim": 8, "out_dim": 8},
        torch.randn(2, 2000, generator=_g),
        torch.tensor([2000, 1200]),
    ),
    "logmel_stats": ({"n_mels": 8}, torch.randn(2, 2000, generator=_g), torch.tensor([2000, 1200])),
    "sinc_xvector": (
        {"sinc_filters": 8, "conv_widths": [6, 6], "widths": [8, 8, 8, 8, 12], "embed_dim": 8, "out_dim": 8},
        torch.randn(2, 2000, generator=_g),
        torch.tensor([2000, 1200]),
    ),
}


def test_every_registered_encoder_has_an_example() -> None:
    assert sorted(EXAMPLES) == ENCODERS.names()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_stages_are_named_ordered_and_fusable(name: str) -> None:
    opts, x, lengths = EXAMPLES[name]
    torch.manual_seed(0)
    enc = create_encoder(name, **opts).eval()
    stages = enc.forward_stages(x, lengths)
    assert tuple(stages) == tuple(enc.stage_names) and tuple(stages)[-1] == "out"
    assert stages["out"].shape == (2, enc.out_dim)
    assert torch.equal(enc(x, lengths), stages["out"])
    # every stage is a tap: one node reads all of them, and gradients reach the encoder
    node = fuse([Tap("m", s) for s in enc.stage_names], op="concat", width=4, name="all")
    model = FusionModel({"m": enc}, {"y": 3}, FusionSpec.of(node), {"m": x})
    from polymodal.batch import Batch

    batch = Batch({"m": x}, lengths={"m": lengths} if lengths is not None else {})
    model.train()
    model(batch)["y"].sum().backward()
    params = list(enc.parameters())  # logmel_stats has none: fixed features under a trained head
    assert not params or any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_wave_cnn_output_ignores_padding() -> None:
    enc = create_encoder("wave_cnn", width=4, out_dim=8).eval()
    x = torch.randn(1, 3000)
    padded = torch.cat([x, torch.zeros(1, 1000)], 1)
    n = torch.tensor([3000])
    torch.testing.assert_close(enc(x, n), enc(padded, n))
