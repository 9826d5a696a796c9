"""SincNet (Ravanelli & Bengio 2018): band constraints, mel initialisation, kernel sizes, Eq. 4 filters,
length tracking and padding invariance."""

import numpy as np
import pytest
import torch

from polymodal.errors import ConfigError, ShapeError
from polymodal.models import create_encoder
from polymodal.models.sincnet import SincConv, SincNet, sinc_kernel_size


def _mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def test_kernel_size_scales_with_rate_and_is_odd():
    assert sinc_kernel_size(16000) == 251  # the official 251 taps at 16 kHz
    assert sinc_kernel_size(8000) == 127  # 125.5 -> 126 -> bumped to odd
    assert sinc_kernel_size(32000) == 503
    assert sinc_kernel_size(8000, kernel_ms=10.0) == 81
    assert sinc_kernel_size(8000, kernel_size=64) == 65
    assert SincConv(4, kernel_size=100, sample_rate=8000).kernel_size == 101
    assert SincNet(sample_rate=8000, sinc_filters=4, sinc_kernel=64).front.sinc.kernel_size == 65
    assert SincNet(sample_rate=16000, sinc_filters=4).front.sinc.kernel_size == 251
    with pytest.raises(ConfigError):
        sinc_kernel_size(8000, kernel_size=11, kernel_ms=2.0)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_mel_initialisation_closed_form(sr):
    conv = SincConv(10, kernel_size=31, sample_rate=sr)
    hz = _hz(np.linspace(_mel(30.0), _mel(sr / 2 - 100.0), 11))
    np.testing.assert_allclose(conv.low_hz_.detach().numpy()[:, 0], hz[:-1], rtol=1e-6)
    np.testing.assert_allclose(conv.band_hz_.detach().numpy()[:, 0], np.diff(hz), rtol=1e-5)
    low, high = (b.detach().numpy() for b in conv.bands())
    np.testing.assert_allclose(low, 50.0 + hz[:-1], rtol=1e-6)
    np.testing.assert_allclose(high, np.minimum(hz[1:] + 100.0, sr / 2), rtol=1e-6)
    assert high[-1] == pytest.approx(sr / 2)  # the top band ends at Nyquist


def test_filters_match_paper_eq4():
    conv = SincConv(6, kernel_size=41, sample_rate=8000)
    low, high = (b.detach().double().numpy() / 8000 for b in conv.bands())
    n = np.arange(-20, 21)
    # g[n] = 2 f2 sinc(2 pi f2 n) - 2 f1 sinc(2 pi f1 n), Hamming-windowed, centre tap scaled to 1.
    g = 2 * high[:, None] * np.sinc(2 * high[:, None] * n) - 2 * low[:, None] * np.sinc(2 * low[:, None] * n)
    g = g * np.hamming(41) / (2 * (high - low))[:, None]
    k = conv.filters().detach().numpy()[:, 0]
    np.testing.assert_allclose(k, g, atol=1e-5)
    np.testing.assert_array_equal(k, k[:, ::-1])  # exactly symmetric (mirrored half)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_bands_stay_valid_after_a_hard_step(sr):
    torch.manual_seed(0)
    conv = SincConv(8, kernel_size=33, sample_rate=sr)
    opt = torch.optim.SGD(conv.parameters(), lr=1.0)
    out = conv(torch.randn(2, 1, 200))
    push = torch.tensor([1.0, -1.0] * 4)[:, None] * 1e6  # half of the cut-offs far up, half far down
    loss = out.square().mean() - (push * conv.low_hz_).sum() + (push * conv.band_hz_).sum()
    loss.backward()
    assert conv.low_hz_.grad.abs().sum() > 0
    opt.step()
    low, high = conv.bands()
    assert conv.low_hz_.detach().abs().max() > sr  # the step really did push past Nyquist
    assert (low >= conv.min_low_hz).all()
    assert (high - low >= conv.min_band_hz - 1e-3).all()
    assert (high <= sr / 2).all()
    assert torch.isfinite(conv.filters()).all()
    assert torch.isfinite(conv(torch.randn(2, 1, 100))).all()


def _small(**kw):
    opts = dict(sample_rate=8000, sinc_filters=8, sinc_kernel=31, conv_widths=(6, 5), out_dim=7)
    return SincNet(**{**opts, **kw})


def test_forward_shapes_and_length_tracking():
    torch.manual_seed(0)
    net = create_encoder("sincnet", sample_rate=8000, sinc_filters=8, conv_widths=[6, 5], out_dim=7).eval()
    st = net.forward_stages(torch.randn(2, 1000))
    assert list(st) == list(net.stage_names) == ["sinc", "conv1", "conv2", "frames", "pool", "out"]
    sinc = (1000 - 127 + 1) // 3
    conv1 = (sinc - 4) // 3
    conv2 = (conv1 - 4) // 3
    assert st["sinc"].shape == (2, 8, sinc) and st["conv1"].shape == (2, 6, conv1)
    assert st["frames"].shape == (2, 5, conv2) and st["pool"].shape == (2, 5) and st["out"].shape == (2, 7)
    assert net.out_dim == 7
    assert net.front.frame_lengths(torch.tensor([1000, 500])).tolist() == [
        conv2,
        (((500 - 126) // 3 - 4) // 3 - 4) // 3,
    ]
    # min_samples is the shortest clip with one frame; shorter ones are zero-extended up to it.
    m = net.front.min_samples
    assert net.front.frame_lengths(torch.tensor([m, m - 1, 1])).tolist() == [1, 1, 1]
    assert net.front.frame_lengths(torch.tensor([m + 26, m + 27])).tolist() == [1, 2]  # stride 27
    assert net(torch.randn(3, 10)).shape == (3, 7)
    with pytest.raises(ShapeError):
        net(torch.randn(2, 1, 1000))
    with pytest.raises(ShapeError):
        net(torch.randn(2, 1000), torch.tensor([5]))


@pytest.mark.parametrize("train", [False, True])
def test_padding_never_changes_an_output(train):
    torch.manual_seed(0)
    net = _small()
    net.train(train)  # layer norm has no batch statistics: train mode is padding-invariant too
    lengths = [900, 613, 250, 40]  # the last is shorter than min_samples
    clips = [torch.randn(n) for n in lengths]
    batch = torch.randn(len(clips), 1000) * 5  # garbage in the padding, never read
    for i, c in enumerate(clips):
        batch[i, : c.numel()] = c
    padded = net.forward_stages(batch, torch.tensor(lengths))
    for i, c in enumerate(clips):
        alone = net.forward_stages(c[None], torch.tensor([c.numel()]))
        for name in ("pool", "out"):
            torch.testing.assert_close(padded[name][i], alone[name][0], atol=1e-5, rtol=1e-5)
        frames = alone["frames"].shape[-1]
        torch.testing.assert_close(padded["frames"][i, :, :frames], alone["frames"][0], atol=1e-5, rtol=1e-5)
        assert (padded["frames"][i, :, frames:] == 0).all()


def test_frame_norm_is_per_frame_layer_norm_so_a_frame_ignores_the_rest_of_the_clip():
    from polymodal.models.sincnet import NORM_EPS, MaskedLayerNorm

    torch.manual_seed(0)
    h = torch.randn(2, 5, 7) * 3 + 1
    norm = MaskedLayerNorm(5, over="frame")
    out = norm(h, torch.tensor([7, 4]))
    want = (h - h.mean(1, keepdim=True)) / (h.std(1, keepdim=True) + NORM_EPS)  # unbiased, as official
    torch.testing.assert_close(out[0], want[0])
    torch.testing.assert_close(out[1, :, :4], want[1, :, :4])
    assert (out[1, :, 4:] == 0).all()
    chunk = MaskedLayerNorm(5)(h, torch.tensor([7, 7]))  # the official joint (C, T) statistics
    flat = h.flatten(1)
    joint = (h - flat.mean(1)[:, None, None]) / (flat.std(1)[:, None, None] + NORM_EPS)
    torch.testing.assert_close(chunk, joint)
    # a frame-normalised front end: the first frames of a clip do not change when more audio follows
    net = SincNet(sample_rate=8000, sinc_filters=8, sinc_kernel=31, conv_widths=[6], conv_kernels=[3],
                  conv_pools=[2], out_dim=4, norm="frame", input_norm=False)  # fmt: skip
    x = torch.randn(1, 1200)
    short, long = net.forward_stages(x[:, :600])["frames"], net.forward_stages(x)["frames"]
    torch.testing.assert_close(long[..., : short.shape[-1]], short, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="norm='batch': allowed: chunk, frame"):
        MaskedLayerNorm(5, over="batch")
