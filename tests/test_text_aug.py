"""Text consistency: TF-IDF word replacement (UDA), SwitchOut, cached back-translation, text_cnn."""

import json
import math

import pytest
import torch

from polymodal.augment import Pipeline
from polymodal.augment.text import back_translation, switchout, tfidf_stats
from polymodal.config import build_config
from polymodal.data.banking77 import encode
from polymodal.engine.build import build_data, build_model, build_views
from polymodal.errors import ConfigError
from polymodal.models import create_encoder

CORPUS = torch.tensor([[2, 3, 3], [2, 4, 0]])
LENGTHS = torch.tensor([3, 2])


def test_tfidf_statistics_closed_form():
    s = tfidf_stats(CORPUS, LENGTHS, vocab_size=6)
    log2 = math.log(2)
    assert s["idf"][2].item() == pytest.approx(0.0)  # in every document
    assert s["idf"][3].item() == pytest.approx(log2) and s["idf"][4].item() == pytest.approx(log2)
    assert s["idf"][5].item() == pytest.approx(log2)  # unseen word: the largest idf, log N
    # tf_idf(w) = sum over docs of count/len * idf: 3 -> 2/3 log2, 4 -> 1/2 log2, 2 -> 0
    assert s["tf_idf"][3].item() == pytest.approx(2 / 3 * log2, rel=1e-6)
    assert s["tf_idf"][4].item() == pytest.approx(1 / 2 * log2, rel=1e-6)
    # replacement weights ∝ max − tf_idf over seen words ≥ 2: {2: 2/3, 3: 0, 4: 1/6} · log2
    probs = torch.diff(s["replace_cdf"], prepend=torch.zeros(1))
    assert probs.tolist() == pytest.approx([0, 0, 0.8, 0.0, 0.2, 0], abs=1e-6)


def _pipe(spec: dict, vocab_size: int = 6, **meta) -> Pipeline:
    ctx = {"train": CORPUS, "lengths": LENGTHS, "meta": {"vocab_size": vocab_size, **meta}}
    return Pipeline([spec], context=ctx)


def test_tfidf_replace_probabilities_match_uda_formula():
    # sentence [2, 3, 4]: scores s = count/len · idf = (0, log2/3, log2/3); replace prob of word i is
    # (max − s_i) / Σ(max − s) · p · len = (p·3, 0, 0); a replaced word becomes 2 (0.8) or 4 (0.2)
    n = 20000
    x = torch.tensor([[2, 3, 4, 0]]).repeat(n, 1)
    lengths = torch.full((n,), 3)
    out, out_len = _pipe({"op": "tfidf_replace", "p": 0.3})(x, torch.Generator().manual_seed(0), lengths)
    assert torch.equal(out_len, lengths) and torch.equal(out[:, 1:], x[:, 1:])  # padding untouched too
    frac4 = (out[:, 0] == 4).float().mean().item()
    assert frac4 == pytest.approx(0.9 * 0.2, abs=0.012)
    assert set(out[:, 0].unique().tolist()) == {2, 4}


def test_text_ops_need_dataset_context():
    with pytest.raises(ConfigError, match="tfidf_replace' needs the dataset's meta"):
        Pipeline([{"op": "tfidf_replace"}])
    with pytest.raises(ConfigError, match="has no parameter 'context'"):
        Pipeline([{"op": "switchout", "context": {}}])


def test_switchout_corrupts_expected_number_of_words_with_different_words():
    n, length, tau, vocab = 20000, 4, 1.0, 10
    x = torch.tensor([[2, 5, 7, 9, 0, 0]]).repeat(n, 1)
    lengths = torch.full((n,), length)
    out, _ = _pipe({"op": "switchout", "tau": tau}, vocab_size=vocab)(
        x, torch.Generator().manual_seed(1), lengths
    )
    changed = out != x
    assert not changed[:, length:].any()
    assert (out[:, :length] >= 2).all() and (out < vocab).all()
    # P(n) ∝ exp(−n/τ), n = 0..len−1, each word w.p. n/len: E[#changed] = E[n]
    w = torch.exp(-torch.arange(length) / tau)
    expected = (w * torch.arange(length)).sum() / w.sum()
    assert changed.sum(1).float().mean().item() == pytest.approx(expected.item(), abs=0.03)
    # a corrupted word is uniform over the other real words
    counts = torch.bincount(out[:, 0][changed[:, 0]], minlength=vocab)[2:].float()
    assert counts[0] == 0 and (counts[1:] / counts[1:].mean() - 1).abs().max() < 0.15


VOCAB = ["<pad>", "<unk>", "card", "i", "is", "lost", "misplaced", "my", "the", "where"]


def test_back_translation_reads_a_hand_written_cache(tmp_path):
    cache = tmp_path / "paraphrases.json"
    cache.write_text(json.dumps({"I lost my card": ["I misplaced my card", "where is my card"]}))
    pipe = _pipe({"op": "back_translation", "cache": str(cache)}, vocab=VOCAB)
    x, lengths = encode(["i lost my card", "where is the card", "i lost my"], VOCAB)
    para, _ = encode(["i misplaced my card", "where is my card"], VOCAB)
    seen = set()
    for seed in range(20):
        out, out_len = pipe(x, torch.Generator().manual_seed(seed), lengths)
        row0 = out[0, : out_len[0]].tolist()
        assert row0 in (para[0].tolist(), para[1].tolist())
        seen.add(tuple(row0))
        assert out[1, : out_len[1]].tolist() == x[1].tolist()  # no cache entry: unchanged
        assert out[2, : out_len[2]].tolist() == x[2, :3].tolist()  # a prefix of a key is not the key
    assert len(seen) == 2  # both paraphrases get drawn
    with pytest.raises(ConfigError, match="cache file .* does not exist"):
        _pipe({"op": "back_translation", "cache": str(tmp_path / "none.json")}, vocab=VOCAB)
    assert back_translation is not None and switchout is not None


def test_text_cnn_ignores_padding_and_takes_vocab_size_from_the_dataset(data_root, tmp_path):
    enc = create_encoder("text_cnn", vocab_size=20, embed_dim=8, width=16, out_dim=12).eval()
    ids = torch.randint(2, 20, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    short = enc(ids * (torch.arange(7) < lengths[:, None]), lengths)
    padded = enc(torch.nn.functional.pad(ids * (torch.arange(7) < lengths[:, None]), (0, 9)), lengths)
    assert short.shape == (3, 12) and torch.allclose(short, padded, atol=1e-6)
    assert set(enc.forward_stages(ids, lengths)) == set(enc.stage_names)

    cfg = build_config(
        {
            "method": "uda",
            "data": {"name": "banking77", "root": str(data_root), "labels_per_class": 2},
            "augment": {"text": {"strong": [{"op": "tfidf_replace", "p": 0.3}, {"op": "switchout"}]}},
            "model": {"encoders": {"text": {"name": "text_cnn", "width": 8, "embed_dim": 8, "out_dim": 8}}},
            "train": {"device": "cpu"},
        }
    )
    data = build_data(cfg, tmp_path, torch.device("cpu"))
    model = build_model(cfg, data, build_views(cfg, data), torch.device("cpu"))
    assert model.encoders["text"].embed.num_embeddings == data.bundle.meta["vocab_size"]
