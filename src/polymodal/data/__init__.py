"""Datasets as in-memory `TensorData` splits, and seeded label-budget splits.

``load_dataset(name, root)`` returns a `DataBundle`: train/test splits, the tasks with their class
counts, and each modality's kind (which augmentations and encoders fit it). Data knows nothing of
training methods.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polymodal.batch import TensorData
from polymodal.data.banking77 import load_banking77
from polymodal.data.files import dataset_dir, resolve_root
from polymodal.data.folders import folder_plan
from polymodal.data.fsdd import load_fsdd
from polymodal.data.manifest import Plan, build, manifest_plan, table_plan
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


@_dataset("avmnist", "avmnist", "AV-MNIST: degraded MNIST + noisy FSDD log-mel; digit, speaker (data build)")
def _avmnist(root: Path) -> DataBundle:
    from polymodal.data.avmnist import TASKS, load_avmnist
    from polymodal.data.files import cache_dir

    folder = root / "avmnist" if (root / "avmnist" / "SHA256SUMS").is_file() else cache_dir("avmnist")
    train, test, meta = load_avmnist(folder, root)
    return DataBundle("avmnist", train, test, dict(TASKS), {"image": "image", "audio": "audio"}, meta)


def _build_avmnist(root: Path, **options: float | int) -> Path:
    from polymodal.data.avmnist import build_avmnist

    return build_avmnist(root, **options)


BUILDERS.register("avmnist")(_build_avmnist)


@_dataset("avmnist4", "avmnist4", "AV-MNIST + a differently degraded image2 + a distractor (data build)")
def _avmnist4(root: Path) -> DataBundle:
    from polymodal.data.avmnist import TASKS
    from polymodal.data.avmnist4 import load_avmnist4

    train, test, meta = load_avmnist4(root)
    kinds = {"image": "image", "audio": "audio", "image2": "image", "distractor": "image"}
    return DataBundle("avmnist4", train, test, dict(TASKS), kinds, meta)


def _build_avmnist4(root: Path, **options: float | int | str) -> Path:
    from polymodal.data.avmnist4 import build_avmnist4

    return build_avmnist4(root, **options)


BUILDERS.register("avmnist4")(_build_avmnist4)


@_dataset("multimnist", "mnist", "MultiMNIST (Sener & Koltun 2018): tasks left + right digit (data build)")
def _multimnist(root: Path) -> DataBundle:
    from polymodal.data.multimnist import load_multimnist

    train, test = load_multimnist(root)
    return DataBundle("multimnist", train, test, {"left": 10, "right": 10}, {"image": "image"})


def _build_multimnist(root: Path, **options: int | str) -> Path:
    from polymodal.data.multimnist import build_multimnist

    return build_multimnist(root, **options)  # type: ignore[arg-type]


BUILDERS.register("multimnist")(_build_multimnist)


@_dataset("fsdd_ti", "fsdd", "FSDD text-independent speakers: train digits 0-4, test 5-9, 6 speakers")
def _fsdd_ti(root: Path, sample_rate: int = 8000, resample: bool = True) -> DataBundle:
    from polymodal.data.speakers import load_fsdd_text_independent

    path = dataset_dir(root, "fsdd_ti", "fsdd")
    train, test, meta = load_fsdd_text_independent(path, sample_rate, resample)
    return DataBundle("fsdd_ti", train, test, {"speaker": 6}, {"audio": "audio"}, meta)


@_dataset(
    "synth_speakers",
    "synth_speakers",
    "synthetic espeak-ng speakers, 8 kHz: 30 train (ident.) + 10 held out (verification), 4000 utts",
)
def _synth_speakers(
    root: Path,
    sample_rate: int = 8000,
    resample: bool = True,
    heldout_speakers: int = 10,
    test_takes: int = 2,
) -> DataBundle:
    from polymodal.data.speakers import load_synth_speakers

    path = dataset_dir(root, "synth_speakers", "synth_speakers")
    train, test, meta = load_synth_speakers(path, sample_rate, resample, heldout_speakers, test_takes)
    speakers = meta["speakers"]
    assert isinstance(speakers, list)
    return DataBundle("synth_speakers", train, test, {"speaker": len(speakers)}, {"audio": "audio"}, meta)


@_dataset(
    "speakers",
    ".",
    "your folder (data.options.path, or the data root itself): {speaker}/[{session}/]{utt}.wav|flac "
    "or {label}_{speaker}_{index}.wav|flac",
)
def _speakers(
    root: Path,
    path: str | None = None,
    sample_rate: int = 16000,
    resample: bool = True,
    test_fraction: float = 0.2,
    heldout_speakers: int | list[str] = 0,
    seed: int = 0,
    max_seconds: float | None = None,
) -> DataBundle:
    from polymodal.data.speakers import load_speaker_folder

    folder = root if path is None else root / Path(path).expanduser()  # an absolute path stays itself
    train, test, meta = load_speaker_folder(
        folder, sample_rate, resample, test_fraction, heldout_speakers, seed, max_seconds
    )
    speakers = meta["speakers"]
    assert isinstance(speakers, list)
    return DataBundle("speakers", train, test, {"speaker": len(speakers)}, {"audio": "audio"}, meta)


def _own(name: str, about: str, plan: Callable[..., Plan]) -> None:
    """A dataset of your own files: ``plan(root, **data.options)`` checks the options against the files
    (its keywords are the dataset's options), `build` reads them; `polymodal data check` calls ``plan``
    alone (``loader.__wrapped__``) and reads without keeping."""

    @functools.wraps(plan)
    def load(root: Path, **options: Any) -> DataBundle:
        return DataBundle(name, *build(plan(root, **options)))

    _dataset(name, ".", about)(load)


_own("folder", "your class folders (data.options.path): {class}/*.png|jpg|jpeg or *.wav|flac", folder_plan)
_own("table", "your CSV / JSONL records (data.options.path): text and/or numeric columns", table_plan)
_own(
    "manifest",
    "your multi-modal CSV / JSONL: a column per modality (file path or value) and per task",
    manifest_plan,
)


# derived datasets: name -> the source folders `polymodal data build NAME` reads
DERIVED: dict[str, tuple[str, ...]] = {
    "avmnist": ("mnist", "fsdd"),
    "avmnist4": ("mnist", "fsdd"),
    "multimnist": ("mnist",),
}


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


@_dataset("synthetic", ".", "random uint8 images and labels (benchmarks: throughput, placement); no files")
def _synthetic(
    root: Path, n_train: int = 60000, n_test: int = 10000, shape: list[int] | None = None, seed: int = 0
) -> DataBundle:
    """Noise images (default 1×28×28) with random labels: a dataset of any size without a download."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorData:
        x = torch.randint(0, 256, (n, *(shape or [1, 28, 28])), generator=g, dtype=torch.uint8)
        return TensorData({"image": x}, {"class": torch.randint(0, 10, (n,), generator=g)})

    return DataBundle("synthetic", split(n_train), split(n_test), {"class": 10}, {"image": "image"})


def load_dataset(name: str, root: str | Path | None = None, **options: object) -> DataBundle:
    """Load a registered dataset from ``root`` (or $POLYMODAL_DATA), verifying checksums; ``options``
    (``data.options``) are the loader's own keywords, checked by name first."""
    import inspect

    loader = DATASETS.get(name)
    allowed = [p for p in inspect.signature(loader).parameters if p != "root"]
    bad = [k for k in options if k not in allowed]
    if bad:
        allowed_text = ", ".join(allowed) or "none"
        raise ConfigError(
            f"data.options.{bad[0]}: dataset '{name}' has no such option; allowed: {allowed_text}"
        )
    return loader(resolve_root(root), **options)


def label_split(targets: torch.Tensor, labels_per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``labels_per_class`` examples per class, drawn with ``seed``.

    Reproducible across machines: uses a CPU generator and a stable sort, independent of device.
    """
    g = torch.Generator().manual_seed(seed)
    targets = targets.cpu()
    chosen = []
    for c in torch.unique(targets[targets >= 0]).tolist():  # -1: a missing label (own data)
        idx = torch.nonzero(targets == c).flatten()
        if len(idx) < labels_per_class:
            raise ConfigError(
                f"data.labels_per_class={labels_per_class} but class {c} has only {len(idx)} examples"
            )
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    return torch.sort(torch.cat(chosen)).values


def save_split(path: Path, labeled: torch.Tensor, labels_per_class: int | None, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"labels_per_class": labels_per_class, "seed": seed, "labeled": labeled.tolist()})
    )


def load_split(path: Path) -> torch.Tensor:
    try:
        return torch.tensor(json.loads(path.read_text())["labeled"], dtype=torch.int64)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read label split '{path}': {e}") from None
