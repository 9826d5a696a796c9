"""Closed-set identification: sliding windows over each utterance, chunk log-posteriors summed.

SincNet (Ravanelli & Bengio 2018) classifies 200 ms chunks taken every 10 ms and decides an
utterance by summing its chunks' log-posteriors (the product of their posteriors, i.e. the chunks
treated as independent evidence), reporting the chunk error rate and the sentence error rate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sliding_windows(lengths: object, window: int, shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(utterance index, start, length) of every window, utterances in order.

    Windows of ``window`` samples start every ``shift`` samples while they fit inside the utterance;
    an utterance shorter than one window gives one window, the whole utterance.
    """
    if window < 1 or shift < 1:
        raise ValueError(f"window and shift must be >= 1 sample, got {window}, {shift}")
    lens = np.asarray(lengths, dtype=np.int64)
    count = np.where(lens > window, (lens - window) // shift + 1, 1)
    utt = np.repeat(np.arange(lens.size), count)
    first = np.r_[0, np.cumsum(count)[:-1]]
    start = (np.arange(utt.size) - first[utt]) * shift
    return utt, start, np.minimum(lens[utt], window)


def utterance_log_posteriors(
    chunk_logits: Tensor, utterance: Tensor | np.ndarray, n_utterances: int
) -> Tensor:
    """(n_utterances, K): the sum of each utterance's chunks' log-softmax (argmax: the decision)."""
    index = torch.as_tensor(utterance, device=chunk_logits.device, dtype=torch.long)
    logp = chunk_logits.float().log_softmax(-1)
    out = torch.zeros(n_utterances, logp.shape[1], device=logp.device, dtype=logp.dtype)
    return out.index_add_(0, index, logp)


def gather_windows(
    audio: Tensor, utt: np.ndarray, start: np.ndarray, length: np.ndarray
) -> tuple[Tensor, Tensor]:
    """The windows as a right-padded batch (M, max length) with their lengths, on ``audio``'s device."""
    width = int(length.max())
    device = audio.device
    rows = torch.as_tensor(utt, device=device)
    cols = torch.as_tensor(start, device=device)[:, None] + torch.arange(width, device=device)
    lens = torch.as_tensor(length, device=device)
    x = audio[rows[:, None], cols.clamp(max=audio.shape[-1] - 1)]
    return torch.where(torch.arange(width, device=device) < lens[:, None], x, 0.0), lens
