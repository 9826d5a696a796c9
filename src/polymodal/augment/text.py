"""Batched text augmentations on right-padded token ids (B, L) with ``lengths`` (B,).

* ``tfidf_replace``: UDA's TF-IDF word replacement (Xie et al. 2020, google-research/uda
  ``augmentation/word_level_augment.py``): uninformative (low TF-IDF) words are replaced more often,
  by words drawn with probability ∝ (max − global TF-IDF), i.e. by uninformative words too, so the
  keywords that carry the label survive.
* ``switchout``: SwitchOut (Wang et al., EMNLP 2018): draw how many words to corrupt, n, with
  P(n) ∝ exp(−n/τ), corrupt each word with probability n/len, by a uniformly drawn different word.
* ``back_translation``: paraphrases read from a cache (any translation model can fill it), looked up
  by the exact token sequence, one drawn per sample.

Ops that need corpus statistics or the vocabulary have a ``prepare(context, **params)`` attribute: the
`Pipeline` calls it once with the dataset context (the training split's token ids, lengths and the
dataset meta) and passes what it returns as ``context=``. Ids below ``special`` (pad 0, unk 1) are
never drawn as replacements.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.augment.registry import AUGMENTATIONS
from polymodal.batch import valid_mask
from polymodal.errors import ConfigError, DataError

PAD = 0


def _valid(x: Tensor, lengths: Tensor | None) -> Tensor:
    if lengths is None:
        return x != PAD
    return valid_mask(lengths.to(x.device), x.shape[1])


def _check_ids(x: Tensor, op: str) -> None:
    if x.dim() != 2 or x.is_floating_point():
        raise ValueError(f"{op}: expected token ids (B, L), got {x.dtype} {tuple(x.shape)}")


def _need(context: dict[str, Any] | None, key: str, op: str) -> Any:
    if context is None or key not in context:
        raise ConfigError(f"augmentation '{op}' needs the dataset's {key} (a text dataset such as banking77)")
    return context[key]


def _need_context(context: dict[str, Tensor] | None, op: str) -> dict[str, Tensor]:
    if context is None:
        raise ConfigError(
            f"augmentation '{op}' was called without its prepared context; build it in a Pipeline"
        )
    return context


def tfidf_stats(ids: Tensor, lengths: Tensor, vocab_size: int, special: int = 2) -> dict[str, Tensor]:
    """Corpus statistics exactly as UDA's ``get_data_stats``, vectorized over a padded id matrix.

    idf(w) = log(N / df(w)); tf_idf(w) = Σ_docs count(w, doc) / len(doc) · idf(w). Words never seen
    in the corpus get the largest idf, log N. ``replace_cdf`` is the cumulative distribution of
    replacement words, ∝ max tf_idf − tf_idf(w) over seen words with id ≥ ``special``.
    """
    n = ids.shape[0]
    valid = _valid(ids, lengths)
    safe = torch.where(valid, ids, PAD)
    present = torch.zeros(n, vocab_size, dtype=torch.bool).scatter_(1, safe, True)
    present[:, PAD] = (safe == PAD).logical_and(valid).any(1)
    df = present.sum(0).double()
    idf = torch.where(df > 0, torch.log(n / df.clamp(min=1)), torch.tensor(math.log(n), dtype=torch.float64))
    inv_len = (1.0 / lengths.double().clamp(min=1))[:, None].expand_as(ids)
    tf = torch.zeros(vocab_size, dtype=torch.float64).scatter_add_(0, safe[valid], inv_len[valid])
    tf_idf = tf * idf
    seen = (df > 0) & (torch.arange(vocab_size) >= special)
    weight = torch.where(seen, tf_idf[seen].max() - tf_idf, 0.0) if seen.any() else seen.double()
    if weight.sum() <= 0:  # every candidate equally informative: replace uniformly
        weight = seen.double()
    return {
        "idf": idf.float(),
        "tf_idf": tf_idf.float(),
        "replace_cdf": (weight.cumsum(0) / weight.sum()).float(),
    }


def _prepare_tfidf(context: dict[str, Any] | None, **params: Any) -> dict[str, Tensor]:
    meta = _need(context, "meta", "tfidf_replace")
    vocab_size = int(_need(meta, "vocab_size", "tfidf_replace"))
    ids, lengths = _need(context, "train", "tfidf_replace"), _need(context, "lengths", "tfidf_replace")
    return tfidf_stats(ids.cpu(), lengths.cpu(), vocab_size, params.get("special", 2))


@AUGMENTATIONS.register("tfidf_replace")
def tfidf_replace(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    p: float = 0.3,
    special: int = 2,
    context: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Replace word i of a sentence with probability (max_j s_j − s_i) / Σ_j (max − s_j) · p · len.

    s_i = count(w_i in sentence) / len · idf(w_i), as in UDA's ``TfIdfWordRep``; ``p`` is the
    expected fraction of replaced words.
    """
    _check_ids(x, "tfidf_replace")
    stats = {k: v.to(x.device) for k, v in _need_context(context, "tfidf_replace").items()}
    valid = _valid(x, lengths)
    n = valid.sum(1, keepdim=True).clamp(min=1)
    same = (x[:, :, None] == x[:, None, :]) & valid[:, None, :]
    score = same.sum(-1) / n * stats["idf"][x.clamp(0, stats["idf"].numel() - 1)]
    top = torch.where(valid, score, -math.inf).amax(1, keepdim=True)
    raw = torch.where(valid, top - score, 0.0)
    prob = raw / raw.sum(1, keepdim=True).clamp(min=1e-12) * p * n
    u = torch.rand(x.shape, generator=generator, device=x.device)
    new = torch.searchsorted(stats["replace_cdf"], torch.rand(x.shape, generator=generator, device=x.device))
    new = new.clamp(max=stats["replace_cdf"].numel() - 1)
    return torch.where(valid & (u < prob), new, x), lengths


tfidf_replace.prepare = _prepare_tfidf  # type: ignore[attr-defined]


def _prepare_vocab(context: dict[str, Any] | None, **params: Any) -> dict[str, Tensor]:
    meta = _need(context, "meta", "switchout")
    return {"vocab_size": torch.tensor(int(_need(meta, "vocab_size", "switchout")))}


@AUGMENTATIONS.register("switchout")
def switchout(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    tau: float = 1.0,
    special: int = 2,
    context: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """SwitchOut: n ~ P(n) ∝ exp(−n/τ) for n in 0..len−1, each word corrupted w.p. n/len.

    A corrupted word becomes a uniformly drawn *different* word among ids ``special``..V−1 (the
    reference code's ``(w + U{1..V−1}) mod V``, restricted to real words).
    """
    _check_ids(x, "switchout")
    vocab = int(_need_context(context, "switchout")["vocab_size"])
    b, width = x.shape
    valid = _valid(x, lengths)
    n_valid = valid.sum(1).clamp(min=1)
    logits = torch.where(valid, -torch.arange(width, device=x.device, dtype=torch.float32) / tau, -math.inf)
    cdf = logits.softmax(1).cumsum(1)
    u = torch.rand((b, 1), generator=generator, device=x.device)
    count = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1).clamp(max=width - 1)
    corrupt = valid & (torch.rand(x.shape, generator=generator, device=x.device) < (count / n_valid)[:, None])
    words = vocab - special
    offset = 1 + torch.floor(torch.rand(x.shape, generator=generator, device=x.device) * (words - 1)).long()
    new = special + torch.remainder(x - special + offset.clamp(max=words - 1), words)
    return torch.where(corrupt & (x >= special), new, x), lengths


switchout.prepare = _prepare_vocab  # type: ignore[attr-defined]

_BASE, _MOD = 1_000_003, 2_147_483_647


def _hash(ids: Tensor, valid: Tensor) -> Tensor:
    """Polynomial hash of each row's valid tokens (int64, no overflow: terms < 2^31, L < 2^20)."""
    powers = torch.ones(ids.shape[1], dtype=torch.long, device=ids.device)
    for i in range(1, ids.shape[1]):
        powers[i] = powers[i - 1] * _BASE % _MOD
    return (torch.where(valid, ids, 0) % _MOD * powers % _MOD).sum(1) % _MOD


def _prepare_cache(context: dict[str, Any] | None, **params: Any) -> dict[str, Tensor]:
    from polymodal.data.banking77 import encode  # the word tokenizer every text dataset here uses

    meta = _need(context, "meta", "back_translation")
    vocab = list(_need(meta, "vocab", "back_translation"))
    path = Path(str(params.get("cache", "")))
    if not path.is_file():
        raise ConfigError(
            f"back_translation: cache file '{path}' does not exist (JSON: text -> [paraphrases])"
        )
    try:
        cache = json.loads(path.read_text())
        pairs = [(str(k), [str(p) for p in v]) for k, v in cache.items() if v]
    except (ValueError, AttributeError, TypeError) as e:
        raise DataError(
            f"back_translation: '{path}' is not a JSON object of text -> list of paraphrases: {e}"
        ) from None
    if not pairs:
        raise DataError(f"back_translation: '{path}' holds no paraphrases")
    keys, key_len = encode([k for k, _ in pairs], vocab)
    paras, para_len = encode([p for _, ps in pairs for p in ps], vocab)
    count = torch.tensor([len(ps) for _, ps in pairs])
    start = count.cumsum(0) - count
    h = _hash(keys, _valid(keys, key_len))
    order = torch.argsort(h)
    return {
        "hash": h[order],
        "keys": keys[order],
        "key_len": key_len[order],
        "start": start[order],
        "count": count[order],
        "paras": paras,
        "para_len": para_len,
    }


@AUGMENTATIONS.register("back_translation")
def back_translation(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    cache: str = "",
    p: float = 1.0,
    context: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Swap a sentence for one of its cached paraphrases (uniformly drawn) with probability ``p``.

    ``cache`` is a JSON file ``{original text: [paraphrase, ...]}`` tokenized with the dataset's
    vocabulary; sentences without an entry stay as they are. The lookup is a hash + ``searchsorted``
    with an exact token comparison, so it runs batched on the device.
    """
    _check_ids(x, "back_translation")
    c = {k: v.to(x.device) for k, v in _need_context(context, "back_translation").items()}
    b, width = x.shape
    valid = _valid(x, lengths)
    lens = valid.sum(1)
    h = _hash(x, valid)
    pos = torch.searchsorted(c["hash"], h).clamp(max=c["hash"].numel() - 1)
    kw = c["keys"].shape[1]
    keys = c["keys"][pos]
    if kw < width:
        keys = torch.nn.functional.pad(keys, (0, width - kw))
    same = torch.where(valid, keys[:, :width] == x, True).all(1) & (c["key_len"][pos] == lens)
    same &= (c["hash"][pos] == h) & (lens <= kw)
    u = torch.rand(b, generator=generator, device=x.device)
    pick = c["start"][pos] + torch.floor(
        torch.rand(b, generator=generator, device=x.device) * c["count"][pos]
    )
    pick = pick.long().clamp(max=c["paras"].shape[0] - 1)
    swap = same & (u < p)
    out_w = max(width, c["paras"].shape[1])
    xp = torch.nn.functional.pad(x, (0, out_w - width))
    pp = torch.nn.functional.pad(c["paras"][pick], (0, out_w - c["paras"].shape[1]))
    out = torch.where(swap[:, None], pp, xp)
    new_len = torch.where(swap, c["para_len"][pick], lens)
    return out[:, : max(int(new_len.max()), 1)], new_len


back_translation.prepare = _prepare_cache  # type: ignore[attr-defined]
