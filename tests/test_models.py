"""Encoders: the shared contract (shapes, ordered stages, gradients) and each one's own promises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polymodal.errors import ConfigError, ShapeError
from polymodal.models import ENCODERS, create_encoder

# name -> (kwargs, input shape); tiny inputs keep the whole file at a few seconds on CPU.
CASES = {
    "cnn28": ({}, (3, 1, 28, 28)),
    "audio_cnn": ({}, (3, 40, 20)),
    "wrn28_2": ({}, (2, 3, 16, 16)),  # size-agnostic (global pool); 32x32 shapes checked below
    "wrn": ({"depth": 10, "widen": 1}, (2, 3, 16, 16)),
}


def _build(name: str) -> tuple[nn.Module, torch.Tensor]:
    kwargs, shape = CASES[name]
    torch.manual_seed(0)
    return create_encoder(name, **kwargs), torch.rand(shape)


def _randomize_bn(model: nn.Module) -> None:
    """Give BatchNorm non-trivial eval statistics, so padded zeros do not stay zero by accident."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)


def test_all_encoders_registered() -> None:
    assert {"cnn28", "audio_cnn", "wrn", "wrn28_2"} <= set(ENCODERS.names())


@pytest.mark.parametrize("name", list(CASES))
def test_output_shape_and_stages(name: str) -> None:
    model, x = _build(name)
    model.eval()
    with torch.no_grad():
        out = model(x)
        stages = model.forward_stages(x)
    assert isinstance(model.out_dim, int)
    assert out.shape == (x.shape[0], model.out_dim)
    assert tuple(stages) == tuple(model.stage_names)
    assert list(stages)[-1] == "out"
    assert torch.equal(stages["out"], out)
    assert all(v.shape[0] == x.shape[0] for v in stages.values())


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_first_conv(name: str) -> None:
    model, x = _build(name)
    model.train()
    model(x).sum().backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad is not None
    assert first.weight.grad.abs().sum() > 0


def test_stage_shapes_cnn28() -> None:
    model, x = _build("cnn28")
    stages = model.eval().forward_stages(x)
    assert stages["stage1"].shape == (3, 32, 14, 14)
    assert stages["stage2"].shape == (3, 64, 7, 7)
    assert stages["stage3"].shape == (3, 128)


def test_wrn28_2_matches_reference_size() -> None:
    model = create_encoder("wrn28_2")
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_400_000 <= n_params <= 1_550_000, n_params
    assert model.out_dim == 128
    with torch.no_grad():
        stages = model.eval().forward_stages(torch.rand(1, 3, 32, 32))
    shapes = {k: tuple(v.shape[1:]) for k, v in stages.items()}
    assert shapes == {
        "stem": (16, 32, 32),
        "block1": (32, 32, 32),
        "block2": (64, 16, 16),
        "block3": (128, 8, 8),
        "pool": (128,),
        "out": (128,),
    }
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == pytest.approx(0.001) for m in bns)


def test_wrn_out_dim_follows_widen() -> None:
    assert create_encoder("wrn", depth=10, widen=3).out_dim == 192


@pytest.mark.parametrize("depth", [27, 4])
def test_wrn_bad_depth_is_config_error(depth: int) -> None:
    with pytest.raises(ConfigError) as info:
        create_encoder("wrn", depth=depth)
    assert str(depth) in str(info.value) and "% 6" in str(info.value)


def test_audio_output_independent_of_padding_length() -> None:
    torch.manual_seed(0)
    model = create_encoder("audio_cnn")
    _randomize_bn(model)
    model.eval()
    ex = torch.randn(40, 37) * 3 - 5  # log-mel-like: far from zero mean, not unit scale
    other = torch.randn(40, 120)

    def batch(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Garbage (not zeros) in the padding: the model must ignore it, not rely on it being 0.
        x = torch.full((2, 40, frames), 7.0)
        x[0, :, :37] = ex
        x[1] = other[:, :frames]
        return x, torch.tensor([37, frames])

    with torch.no_grad():
        short = model(*batch(50))
        long = model(*batch(120))
        alone = model(ex[None], torch.tensor([37]))
    torch.testing.assert_close(short[0], long[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(short[0], alone[0], atol=1e-5, rtol=0)


def test_audio_lengths_none_means_all_valid() -> None:
    model, x = _build("audio_cnn")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, torch.full((x.shape[0],), x.shape[-1])))


def test_audio_very_short_input() -> None:
    model = create_encoder("audio_cnn").eval()
    x = torch.randn(2, 40, 3)
    with torch.no_grad():
        out = model(x, torch.tensor([3, 1]))
        out_none = model(x)
    assert out.shape == out_none.shape == (2, 128)
    assert torch.isfinite(out).all() and torch.isfinite(out_none).all()


def test_unknown_kwarg_is_config_error() -> None:
    with pytest.raises(ConfigError, match="bogus") as info:
        create_encoder("cnn28", bogus=1)
    message = str(info.value)
    assert "cnn28" in message and "width" in message and "out_dim" in message


def test_unknown_encoder_lists_available() -> None:
    with pytest.raises(ConfigError, match="nope") as info:
        create_encoder("nope")
    assert all(name in str(info.value) for name in ("audio_cnn", "cnn28", "wrn28_2"))


@pytest.mark.parametrize(
    ("name", "shape", "says"),
    [
        ("cnn28", (2, 3, 28, 28), "cnn28"),
        ("audio_cnn", (2, 64, 20), "audio_cnn"),
        ("wrn28_2", (2, 3, 32), "wrn"),
    ],
)
def test_wrong_input_shape_is_shape_error(name: str, shape: tuple[int, ...], says: str) -> None:
    with pytest.raises(ShapeError, match=says):
        create_encoder(name)(torch.rand(shape))
