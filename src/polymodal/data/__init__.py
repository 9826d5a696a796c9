"""Datasets as in-memory `TensorData` splits, and seeded label-budget splits.

``load_dataset(name, root)`` returns a `DataBundle`: train/test splits, the tasks with their class
counts, and each modality's kind (which augmentations and encoders fit it). Data knows nothing of
training methods.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from polymodal.batch import TensorData
from polymodal.data.banking77 import load_banking77
from polymodal.data.files import dataset_dir, resolve_root
from polymodal.data.fsdd import load_fsdd
from polymodal.data.mnist import MNIST_SHA256, load_idx_folder
from polymodal.errors import ConfigError, DataError
from polymodal.registry import Registry


@dataclass
class DataBundle:
    name: str
    train: TensorData
    test: TensorData
    tasks: dict[str, int]  # task -> number of classes
    modalities: dict[str, str]  # modality -> kind: image | audio | text
    meta: dict[str, object] = field(default_factory=dict)


DATASETS: Registry[DataBundle] = Registry("dataset")
# datasets built from others (`polymodal data build NAME`): name -> fn(root, **options) -> output folder
BUILDERS: Registry[Path] = Registry("buildable dataset")
# folder under the data root, and a one-line description for `polymodal data list`
DATASET_INFO: dict[str, tuple[str, str]] = {}


def _dataset(
    name: str, folder: str, about: str
) -> Callable[[Callable[..., DataBundle]], Callable[..., DataBundle]]:
    DATASET_INFO[name] = (folder, about)
    return DATASETS.register(name)


def _idx(name: str, folder: str, sums: dict[str, str] | None) -> Callable[[Path], DataBundle]:
    def load(root: Path) -> DataBundle:
        path = dataset_dir(root, name, folder)
        train, test = (load_idx_folder(path, s, sums) for s in ("train", "test"))
        return DataBundle(name, train, test, {"class": 10}, {"image": "image"})

    return load


_dataset("mnist", "mnist", "MNIST digits, 60k/10k, 1x28x28")(_idx("mnist", "mnist", MNIST_SHA256))
_dataset("fashion_mnist", "fashion-mnist", "Fashion-MNIST (IDX files + SHA256SUMS)")(
    _idx("fashion_mnist", "fashion-mnist", None)
)
_dataset("kmnist", "kmnist", "KMNIST (IDX files + SHA256SUMS)")(_idx("kmnist", "kmnist", None))


@_dataset("fsdd", "fsdd", "Free Spoken Digit Dataset, 8 kHz audio, tasks digit + speaker, 2700/300")
def _fsdd(root: Path) -> DataBundle:
    path = dataset_dir(root, "fsdd", "fsdd")
    train, test = (load_fsdd(path, s) for s in ("train", "test"))
    return DataBundle(
        "fsdd", train, test, {"digit": 10, "speaker": 6}, {"audio": "audio"}, {"sample_rate": 8000}
    )


@_dataset("banking77", "text", "BANKING77 intents, 10,003/3,080 queries, 77 classes")
def _banking77(root: Path) -> DataBundle:
    train, test, vocab, intents = load_banking77(dataset_dir(root, "banking77", "text"))
    return DataBundle(
        "banking77",
        train,
        test,
        {"intent": 77},
        {"text": "text"},
        {"vocab_size": len(vocab), "intents": intents, "vocab": vocab},
    )


@_dataset("avmnist", "avmnist", "AV-MNIST: degraded MNIST + noisy FSDD log-mel, task digit (data build)")
def _avmnist(root: Path) -> DataBundle:
    from polymodal.data.avmnist import load_avmnist
    from polymodal.data.files import cache_dir

    folder = root / "avmnist" if (root / "avmnist" / "SHA256SUMS").is_file() else cache_dir("avmnist")
    train, test, meta = load_avmnist(folder)
    return DataBundle("avmnist", train, test, {"digit": 10}, {"image": "image", "audio": "audio"}, meta)


def _build_avmnist(root: Path, **options: float | int) -> Path:
    from polymodal.data.avmnist import build_avmnist

    return build_avmnist(root, **options)


BUILDERS.register("avmnist")(_build_avmnist)


@_dataset("multimnist", "mnist", "MultiMNIST (Sener & Koltun 2018): tasks left + right digit (data build)")
def _multimnist(root: Path) -> DataBundle:
    from polymodal.data.multimnist import load_multimnist

    train, test = load_multimnist(root)
    return DataBundle("multimnist", train, test, {"left": 10, "right": 10}, {"image": "image"})


def _build_multimnist(root: Path, **options: int | str) -> Path:
    from polymodal.data.multimnist import build_multimnist

    return build_multimnist(root, **options)  # type: ignore[arg-type]


BUILDERS.register("multimnist")(_build_multimnist)


# derived datasets: name -> the source folders `polymodal data build NAME` reads
DERIVED: dict[str, tuple[str, ...]] = {"avmnist": ("mnist", "fsdd"), "multimnist": ("mnist",)}


def dataset_status(name: str, root: Path | None) -> str:
    """``found`` / ``missing`` for a folder dataset; ``built`` / ``buildable`` / ``missing`` for a derived
    one (built: its files, with checksums, are under the data root or in the build cache)."""
    from polymodal.data.files import CACHE_VAR

    folder = DATASET_INFO[name][0]
    if name not in DERIVED:
        return "found" if root is not None and (root / folder).is_dir() else "missing"
    base = os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "polymodal"
    places = [Path(base) / name, *([root / name] if root is not None else [])]
    if any((p / "SHA256SUMS").is_file() for p in places):
        return "built"
    sources = root is not None and all((root / s).is_dir() for s in DERIVED[name])
    return "buildable" if sources else "missing"


def load_dataset(name: str, root: str | Path | None = None) -> DataBundle:
    """Load a registered dataset from ``root`` (or $POLYMODAL_DATA), verifying checksums."""
    loader = DATASETS.get(name)
    return loader(resolve_root(root))


def label_split(targets: torch.Tensor, labels_per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``labels_per_class`` examples per class, drawn with ``seed``.

    Reproducible across machines: uses a CPU generator and a stable sort, independent of device.
    """
    g = torch.Generator().manual_seed(seed)
    targets = targets.cpu()
    chosen = []
    for c in torch.unique(targets).tolist():
        idx = torch.nonzero(targets == c).flatten()
        if len(idx) < labels_per_class:
            raise ConfigError(
                f"data.labels_per_class={labels_per_class} but class {c} has only {len(idx)} examples"
            )
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    return torch.sort(torch.cat(chosen)).values


def save_split(path: Path, labeled: torch.Tensor, labels_per_class: int | None, seed: int) -> None:
    path.write_text(
        json.dumps({"labels_per_class": labels_per_class, "seed": seed, "labeled": labeled.tolist()})
    )


def load_split(path: Path) -> torch.Tensor:
    try:
        return torch.tensor(json.loads(path.read_text())["labeled"], dtype=torch.int64)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read label split '{path}': {e}") from None
