"""Build what a run needs from its config: data (with the saved label split), model and views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from polymodal.augment.views import Views
from polymodal.batch import TensorData
from polymodal.config import Config
from polymodal.data import DataBundle, label_split, load_dataset, load_split, save_split
from polymodal.errors import ConfigError, ShapeError
from polymodal.models import create_encoder
from polymodal.models.multihead import MultiHeadModel
from polymodal.ssl import NEEDS_UNLABELED


@dataclass
class RunData:
    bundle: DataBundle
    tasks: dict[str, int]
    labeled: TensorData
    unlabeled: TensorData | None
    test: TensorData


def build_data(cfg: Config, run_dir: Path | None, device: torch.device) -> RunData:
    """Load the dataset, pick tasks, and draw (or reload) the seeded label split.

    The unlabeled pool is the training split with labels dropped; the test split never enters it.
    """
    bundle = load_dataset(cfg.data.name, cfg.data.root)
    names = cfg.data.tasks or list(bundle.tasks)
    bad = [t for t in names if t not in bundle.tasks]
    if bad:
        raise ConfigError(
            f"data.tasks: '{bad[0]}' is not a task of {bundle.name}; allowed: {', '.join(bundle.tasks)}"
        )
    tasks = {t: bundle.tasks[t] for t in names}
    keep = lambda d: TensorData(d.inputs, {t: d.targets[t] for t in tasks}, d.lengths)  # noqa: E731
    train, test = keep(bundle.train).to(device), keep(bundle.test).to(device)
    labeled = train
    if cfg.data.labels_per_class is not None:
        split_file = run_dir / "split.json" if run_dir else None
        if split_file is not None and split_file.is_file():
            index = load_split(split_file)
        else:
            index = label_split(train.targets[names[0]], cfg.data.labels_per_class, cfg.seed)
            if split_file is not None:
                save_split(split_file, index, cfg.data.labels_per_class, cfg.seed)
        labeled = train.subset(index)
    unlabeled = TensorData(train.inputs, {}, train.lengths) if cfg.method in NEEDS_UNLABELED else None
    return RunData(bundle, tasks, labeled, unlabeled, test)


def build_model(cfg: Config, data: RunData, views: Views, device: torch.device) -> nn.Module:
    """Encoders per modality + heads per task, checked with one tiny forward pass."""
    encoders = {}
    for modality, spec in cfg.model.encoders.items():
        if modality not in data.bundle.modalities:
            raise ConfigError(
                f"model.encoders.{modality}: dataset '{data.bundle.name}' has no such "
                f"modality; it has: {', '.join(data.bundle.modalities)}"
            )
        spec = dict(spec)
        if "name" not in spec:
            raise ConfigError(f"model.encoders.{modality}: missing 'name' (the encoder to use)")
        encoders[modality] = create_encoder(spec.pop("name"), **spec)
    model = MultiHeadModel(encoders, data.tasks, cfg.model.head_dropout).to(device)
    raw = data.test.batch(torch.arange(2))
    g = torch.Generator(device).manual_seed(0)
    views(raw, "weak", g), views(raw, "strong", g)  # a misplaced augmentation fails here, not at step 1
    probe = views(raw, "clean", g)
    model.eval()
    shapes = {m: tuple(x.shape) for m, x in probe.inputs.items()}
    try:
        with torch.no_grad():
            model(probe)
    except ShapeError as e:
        raise ShapeError(f"model.encoders vs data {shapes}: {e}") from None
    except (RuntimeError, ValueError) as e:
        names = {m: s["name"] for m, s in cfg.model.encoders.items()}
        raise ShapeError(
            f"encoders {names} cannot read inputs of shape {shapes}: {str(e).splitlines()[0]}"
        ) from None
    model.train()
    return model
