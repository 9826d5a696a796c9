"""Build what a run needs from its config: data (with the saved label split), views, model, balancer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from polymodal.augment.views import Views
from polymodal.batch import Batch, TensorData
from polymodal.config import Config
from polymodal.data import DataBundle, label_split, load_dataset, load_split, save_split
from polymodal.data.one_label import one_label_per_example
from polymodal.data.packed import FIELDS, load_packed
from polymodal.errors import ConfigError, ShapeError
from polymodal.fusion import FusionModel, FusionSpec
from polymodal.models import create_encoder, takes
from polymodal.models.multihead import MultiHeadModel
from polymodal.models.output import TaskModel
from polymodal.mtl import Balancer, build_balancer
from polymodal.mtl.sampling import TaskBatches
from polymodal.ssl import METHODS


@dataclass
class RunData:
    bundle: DataBundle
    tasks: dict[str, int]
    labeled: TensorData
    unlabeled: TensorData | None
    test: TensorData
    placement: str = "device"  # device | pinned | mmap: where the splits live (see `placement`)


def build_data(cfg: Config, run_dir: Path | None, device: torch.device) -> RunData:
    """Load the dataset, pick tasks, and draw (or reload) the seeded label split.

    The unlabeled pool is the training split with labels dropped; the test split never enters it.
    """
    bundle = _load(cfg)
    names = cfg.data.tasks or list(bundle.tasks)
    bad = [t for t in names if t not in bundle.tasks]
    if bad:
        raise ConfigError(
            f"data.tasks: '{bad[0]}' is not a task of {bundle.name}; allowed: {', '.join(bundle.tasks)}"
        )
    tasks = {t: bundle.tasks[t] for t in names}
    keep = lambda d: TensorData(  # noqa: E731
        d.inputs,
        {t: d.targets[t] for t in tasks},
        d.lengths,
        {t: m for t, m in d.target_mask.items() if t in tasks},
        d.modality_mask,
    )
    where = placement(cfg.data.placement, bundle, device)
    train, test = (_place(keep(d), where, device) for d in (bundle.train, bundle.test))
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
    if cfg.data.one_label_per_example:
        labeled = one_label_per_example(labeled, cfg.seed)
    unlabeled = (
        TensorData(train.inputs, {}, train.lengths, {}, train.modality_mask)
        if METHODS.get(cfg.method).unlabeled
        else None
    )
    return RunData(bundle, tasks, labeled, unlabeled, test, where)


def _load(cfg: Config) -> DataBundle:
    if cfg.data.placement != "mmap":
        return load_dataset(cfg.data.name, cfg.data.root, **cfg.data.options)
    index, train, test = load_packed(cfg.data.name)
    return DataBundle(index["name"], train, test, index["tasks"], index["modalities"], index["meta"])


def placement(choice: str, bundle: DataBundle, device: torch.device) -> str:
    """``auto``: the whole split on the training device when it takes at most half of the device's
    free memory (always on CPU), else pinned host memory with batches copied asynchronously."""
    if choice != "auto":
        return choice
    if device.type != "cuda":
        return "device"
    size = sum(t.numel() * t.element_size() for d in (bundle.train, bundle.test) for t in d.inputs.values())
    return "device" if size <= 0.5 * torch.cuda.mem_get_info(device)[0] else "pinned"


def _place(data: TensorData, where: str, device: torch.device) -> TensorData:
    if where == "device":
        return data.to(device)
    if where == "pinned" and device.type == "cuda":
        return TensorData(*({k: v.pin_memory() for k, v in getattr(data, f).items()} for f in FIELDS))
    return data  # mmap (and pinned on a CPU run): rows stay where they are until a batch gathers them


def view_context(bundle: DataBundle) -> dict[str, dict]:
    """What augmentation ops may read about a modality (corpus statistics, vocabulary): the training
    split's inputs and lengths plus the dataset meta. Test data never enters it."""
    return {
        m: {"train": bundle.train.inputs[m], "lengths": bundle.train.lengths.get(m), "meta": bundle.meta}
        for m in bundle.modalities
    }


def build_views(cfg: Config, data: RunData) -> Views:
    """Each modality's clean / weak / strong pipelines, with the training split as their context."""
    specs = {m: v.model_dump() for m, v in cfg.augment.items()}
    return Views(specs, data.bundle.modalities, view_context(data.bundle))


def build_model(cfg: Config, data: RunData, views: Views, device: torch.device) -> TaskModel:
    """Encoders (each reading one modality) + heads per task, checked with one tiny forward pass."""
    encoders = {}
    for key, spec in cfg.model.encoders.items():
        spec = dict(spec)
        modality = spec.pop("input", key)
        if modality not in data.bundle.modalities:
            at = f"model.encoders.{key}" + (".input" if modality != key else "")
            raise ConfigError(
                f"{at}: dataset '{data.bundle.name}' has no modality '{modality}'; "
                f"it has: {', '.join(data.bundle.modalities)}"
            )
        if "name" not in spec:
            raise ConfigError(f"model.encoders.{key}: missing 'name' (the encoder to use)")
        name = spec.pop("name")
        if "vocab_size" not in spec and "vocab_size" in data.bundle.meta and takes(name, "vocab_size"):
            spec["vocab_size"] = data.bundle.meta["vocab_size"]  # text encoders size to the dataset
        dims = data.bundle.meta.get("feature_dims") or {}  # own tables: modality -> feature columns
        if "in_dim" not in spec and modality in dims and takes(name, "in_dim"):
            spec["in_dim"] = dims[modality]
        encoders[key] = create_encoder(name, **spec)
    raw = data.test.batch(torch.arange(2)).to(device)  # pinned / mmap splits live on the host
    g = torch.Generator(device).manual_seed(0)
    views(raw, "weak", g), views(raw, "strong", g)  # a misplaced augmentation fails here, not at step 1
    probe = views(raw, "clean", g)
    mc = cfg.model
    if mc.fusion is None and mc.aux_loss > 0:
        raise ConfigError("model.aux_loss needs a fusion graph (model.fusion); set it or drop aux_loss")
    drop = {"modality_dropout": mc.modality_dropout, "modality_dropout_mode": mc.modality_dropout_mode}
    bad = [t for t in mc.head.tasks or [] if t not in data.tasks]
    if bad:
        raise ConfigError(
            f"model.head.tasks: '{bad[0]}' is not a task of this run; it has: {', '.join(data.tasks)}"
        )
    drop |= {"inputs": mc.inputs(), "head": mc.head.model_dump()}
    if mc.fusion is None:
        model: TaskModel = MultiHeadModel(encoders, data.tasks, mc.head_dropout, **drop)
    else:  # a fusion graph as the trunk; stage shapes are checked here (one-line ShapeError)
        spec = FusionSpec.from_dict(mc.fusion)
        model = FusionModel(
            encoders,
            data.tasks,
            spec,
            probe.inputs,
            mc.head_dropout,
            encoder_specs=mc.encoders,
            aux_loss=mc.aux_loss,
            **drop,
        )
    model = model.to(device)
    _probe(model, probe, cfg)
    return model


def _probe(model: nn.Module, probe: Batch, cfg: Config) -> None:
    """One forward in eval mode, so an encoder that cannot read the data fails with one line."""
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


def build_multitask(
    cfg: Config, model: TaskModel, labeled: TensorData, device: torch.device
) -> tuple[Balancer, TaskBatches | None]:
    """The run's balancer (on ``device``) and, for method one / two, its ``step -> Batch`` sampler."""
    m = cfg.multitask
    tasks = list(model.heads)
    if m.update != "all_tasks" and len(tasks) < 2:
        raise ConfigError(f"multitask.update='{m.update}' needs at least two tasks; the run has {tasks}")
    balancer = build_balancer(
        m.weighting,
        tasks,
        seed=cfg.seed,
        update=m.update,
        recompute_every=m.recompute_every,
        options=m.options,
        has_shared=bool(model.shared_parameters()),
    ).to(device)
    if m.update == "all_tasks":
        return balancer, None
    batches = TaskBatches(
        labeled,
        tasks,
        m.update,
        cfg.data.batch_size,
        cfg.seed,
        cfg.train.steps,
        m.task_sampling,
        m.sampling_temperature,
    )
    return balancer, batches
