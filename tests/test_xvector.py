"""x-vector (Snyder et al. 2018) and sinc_xvector: statistics pooling, architecture, padding
invariance; MFCC / DCT-II against a hand-written numpy sum."""

import numpy as np
import pytest
import torch

from polymodal.errors import ConfigError, ShapeError
from polymodal.models import create_encoder
from polymodal.models.xvector import XVector, stats_pool
from polymodal.signal import dct_matrix, log_mel_spectrogram, mfcc

SMALL = dict(widths=[8, 8, 8, 8, 12], embed_dim=6, out_dim=5)


def test_dct_matrix_is_the_orthonormal_dct2():
    n_mels, n_mfcc = 7, 4
    x = np.random.default_rng(0).normal(size=n_mels)
    ref = np.array(
        [
            np.sqrt(2.0 / n_mels)
            * (1 / np.sqrt(2) if k == 0 else 1.0)
            * sum(x[n] * np.cos(np.pi / n_mels * (n + 0.5) * k) for n in range(n_mels))
            for k in range(n_mfcc)
        ]
    )
    basis = dct_matrix(n_mels, n_mfcc, dtype=torch.float64)
    assert basis.shape == (n_mels, n_mfcc)
    np.testing.assert_allclose((basis.T @ torch.from_numpy(x)).numpy(), ref, atol=1e-12)
    full = dct_matrix(n_mels, n_mels, dtype=torch.float64)
    torch.testing.assert_close(full.T @ full, torch.eye(n_mels, dtype=torch.float64))
    with pytest.raises(ValueError):
        dct_matrix(4, 5)


def test_mfcc_is_the_dct_of_the_log_mel():
    wave = torch.randn(2, 800, generator=torch.Generator().manual_seed(0))
    lm = log_mel_spectrogram(wave, n_mels=20)
    out = mfcc(wave, 13, n_mels=20)
    assert out.shape == (2, 13, lm.shape[-1])
    basis = dct_matrix(20, 13)
    torch.testing.assert_close(out, torch.einsum("mk,bmt->bkt", basis, lm))
    torch.testing.assert_close(mfcc(lm, 13, from_log_mel=True), out)
    torch.testing.assert_close(mfcc(wave[0], 13, n_mels=20), out[0])  # unbatched


def test_stats_pool_closed_form_and_padding():
    h = torch.tensor([[[1.0, 2.0, 6.0, 99.0, -7.0], [0.0, 0.0, 3.0, 5.0, 5.0]]])
    got = stats_pool(h, torch.tensor([3]))
    valid = h[0, :, :3].numpy()
    np.testing.assert_allclose(got[0].numpy(), np.r_[valid.mean(1), valid.std(1)], rtol=1e-6)
    torch.testing.assert_close(stats_pool(h), torch.cat([h.mean(-1), h.std(-1, unbiased=False)], -1))
    assert stats_pool(h, torch.tensor([1]))[0, 2:].tolist() == pytest.approx([1e-5, 1e-5])  # floored std
    torch.manual_seed(0)
    x, n = torch.randn(3, 4, 10), torch.tensor([10, 6, 2])
    padded = torch.cat([x, torch.randn(3, 4, 7) * 100], dim=-1)
    padded[1, :, 6:] = 50.0
    torch.testing.assert_close(stats_pool(padded, n), stats_pool(x, n))
    with pytest.raises(ShapeError):
        stats_pool(x[0], n)


def test_architecture_as_in_the_paper():
    net = XVector()
    convs = [layer[0] for layer in net.tdnn.frames]
    assert [c.out_channels for c in convs] == [512, 512, 512, 512, 1500]
    assert [c.kernel_size[0] for c in convs] == [5, 3, 3, 1, 1]
    assert [c.dilation[0] for c in convs] == [1, 2, 3, 1, 1]
    assert convs[0].in_channels == 24  # 24 log-mel filterbanks
    assert [type(m).__name__ for m in net.tdnn.frames[0]][:3] == ["Conv1d", "ReLU", "BatchNorm1d"]
    assert (net.tdnn.segment6.in_features, net.tdnn.segment6.out_features) == (3000, 512)
    assert net.out_dim == 512 and net.stage_names[-3:] == ("stats", "embedding", "out")
    assert (net.n_fft, net.hop_length) == (256, 80)  # 25 ms -> 256 at 8 kHz, 10 ms hop
    small = XVector(**SMALL)
    assert [layer[0].out_channels for layer in small.tdnn.frames] == SMALL["widths"]
    with pytest.raises(ConfigError):
        XVector(features="fbank")
    with pytest.raises(ConfigError):
        XVector(features="none")
    with pytest.raises(ConfigError):
        XVector(kernels=[5, 3, 4, 1, 1])


def _warm(net, x, n):
    """One train-mode pass so BatchNorm's running statistics are not the identity, then eval."""
    net.train()
    with torch.no_grad():
        net(x, n)
    return net.eval()


def _check_invariance(net, clips, batch, lengths):
    padded = net.forward_stages(batch, torch.tensor(lengths))
    for i, c in enumerate(clips):
        alone = net.forward_stages(c[None], torch.tensor([c.shape[-1]]))
        for name in ("stats", "embedding", "out"):
            torch.testing.assert_close(padded[name][i], alone[name][0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("features", ["logmel", "mfcc"])
def test_embedding_padding_invariance_from_waveforms(features):
    torch.manual_seed(0)
    lengths = [1200, 777, 300, 60]  # the last is shorter than n_fft / 2
    clips = [torch.randn(n) for n in lengths]
    batch = torch.randn(len(clips), 1300) * 3  # garbage padding
    for i, c in enumerate(clips):
        batch[i, : c.numel()] = c
    net = XVector(features=features, n_mels=16, n_mfcc=10, **SMALL)
    _warm(net, batch, torch.tensor(lengths))
    _check_invariance(net, clips, batch, lengths)
    feats, n = net.featurise(batch, torch.tensor(lengths))
    assert n.tolist() == [(1200 - 128) // 80 + 1, (777 - 128) // 80 + 1, (300 - 128) // 80 + 1, 1]
    assert feats.shape[1] == (16 if features == "logmel" else 10)


def test_embedding_padding_invariance_from_features():
    torch.manual_seed(0)
    lengths = [30, 17, 3, 1]
    clips = [torch.randn(20, n) for n in lengths]
    batch = torch.randn(len(clips), 20, 35) * 3
    for i, c in enumerate(clips):
        batch[i, :, : c.shape[-1]] = c
    net = create_encoder("xvector", features="none", n_feats=20, **SMALL)
    _warm(net, batch, torch.tensor(lengths))
    _check_invariance(net, clips, batch, lengths)
    st = net.forward_stages(batch, torch.tensor(lengths))
    assert list(st) == list(net.stage_names)
    assert st["frame5"].shape == (4, 12, 35) and st["stats"].shape == (4, 24)
    # The embedding is segment6's affine output, before its ReLU / BatchNorm.
    torch.testing.assert_close(st["embedding"], net.tdnn.segment6(st["stats"]))
    assert (st["embedding"] < 0).any() and st["out"].shape == (4, 5)
    with pytest.raises(ShapeError):
        net(torch.randn(2, 19, 10))


def test_sinc_xvector_forward_and_padding():
    torch.manual_seed(0)
    opts = dict(sample_rate=8000, sinc_filters=8, sinc_kernel=31, conv_widths=[6, 6], **SMALL)
    net = create_encoder("sinc_xvector", **opts)
    lengths = [1000, 640, 90]
    clips = [torch.randn(n) for n in lengths]
    batch = torch.randn(3, 1100)
    for i, c in enumerate(clips):
        batch[i, : c.numel()] = c
    _warm(net, batch, torch.tensor(lengths))
    st = net.forward_stages(batch, torch.tensor(lengths))
    assert list(st) == list(net.stage_names)
    assert list(st)[:3] == ["sinc", "conv1", "conv2"] and list(st)[3] == "frame1"
    frames = (((1100 - 30) // 3 - 4) // 3 - 4) // 3
    assert st["conv2"].shape == (3, 6, frames) and st["frame1"].shape == (3, 8, frames)
    assert st["out"].shape == (3, 5) and net.out_dim == 5
    _check_invariance(net, clips, batch, lengths)
