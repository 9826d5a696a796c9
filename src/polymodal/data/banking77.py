"""BANKING77 intent classification (Casanueva et al., 2020): CSV text + one of 77 intents.

Text is tokenized by a lower-case word tokenizer and a vocabulary built on the training split only
(so the test set never shapes the model); unknown words map to ``<unk>``.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import torch

from polymodal.batch import TensorData
from polymodal.data.files import verify
from polymodal.errors import DataError

SHA256 = {
    "train.csv": "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
    "test.csv": "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
    "categories.json": "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63",
}
PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def read_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["text", "category"]:
            raise DataError(f"'{path}' has columns {reader.fieldnames}; expected ['text', 'category']")
        return [(r["text"], r["category"]) for r in reader]


def build_vocab(texts: list[str], min_count: int = 1) -> list[str]:
    counts = Counter(w for t in texts for w in tokenize(t))
    words = sorted(w for w, c in counts.items() if c >= min_count)
    return ["<pad>", "<unk>", *words]


def encode(texts: list[str], vocab: list[str], max_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    index = {w: i for i, w in enumerate(vocab)}
    ids = [[index.get(w, UNK) for w in tokenize(t)][:max_len] or [UNK] for t in texts]
    lengths = torch.tensor([len(x) for x in ids])
    out = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.int64)
    for i, x in enumerate(ids):
        out[i, : len(x)] = torch.tensor(x)
    return out, lengths


def load_banking77(folder: Path) -> tuple[TensorData, TensorData, list[str], list[str]]:
    """(train, test, vocabulary, intent names); inputs {'text': token ids}, targets {'intent'}."""
    verify(folder, SHA256)
    intents = json.loads((folder / "categories.json").read_text())
    label = {c: i for i, c in enumerate(intents)}
    splits = []
    train_rows = read_rows(folder / "train.csv")
    vocab = build_vocab([t for t, _ in train_rows])
    for rows in (train_rows, read_rows(folder / "test.csv")):
        bad = sorted({c for _, c in rows} - label.keys())
        if bad:
            raise DataError(f"'{folder}': intents {bad[:3]} are not in categories.json")
        ids, lengths = encode([t for t, _ in rows], vocab)
        y = torch.tensor([label[c] for _, c in rows])
        splits.append(TensorData({"text": ids}, {"intent": y}, {"text": lengths}))
    return splits[0], splits[1], vocab, intents
