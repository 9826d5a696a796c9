"""The search config (`configs/search_*.yaml`): YAML + ``--set``, validated, one line per bad key.

Sections: ``data`` (dataset, the validation carve), ``encoders`` (modality -> encoder spec; only these
modalities are searched over), ``pretrain`` (the unimodal encoders, trained once and cached by their
config hash), ``space`` (what a genome may contain), ``candidate`` (how each candidate trains),
``fitness``, ``ga`` (strategy, population, generations, step budget), ``cache`` (warm start and the
weight cache's bounds), ``backend`` and ``retrain`` (the best genome, from scratch, on the test split).
See docs/search.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from polymodal.config import format_validation_error, merge, parse_set, read_yaml
from polymodal.errors import ConfigError
from polymodal.fusion.spec import ACTIVATIONS, DECISIONS, POOLS
from polymodal.options import Options


class SearchData(Options):
    name: str = "avmnist"
    root: str | None = None  # default: $POLYMODAL_DATA
    task: str | None = None  # default: the dataset's first task
    val_fraction: float = Field(0.1, gt=0, lt=1)  # validation rows carved from the training split
    train_rows: int | None = Field(None, gt=0)  # search on a seeded subset of the rest (None: all)
    seed: int = Field(0, ge=0)  # the carve and the subset


class PretrainConfig(Options):
    """Each modality's encoder + a linear head, trained alone on the search's training rows."""

    mode: Literal["frozen", "finetune"] = "frozen"  # frozen: candidates train on cached features
    steps: int = Field(500, ge=0)  # 0: no pretraining (random encoders; with finetune: from scratch)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(0.003, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = Field(0, ge=0)  # not the search seed: searches with other seeds share the encoders


class SpaceConfig(Options):
    taps: dict[str, list[str]] | None = None  # modality -> stages nodes may read (None: all stages)
    ops: list[str] = ["concat", "sum", "gated", "attention", "lowrank", "tensor"]
    widths: list[int] = [32, 64, 128]
    activations: list[str] = list(ACTIVATIONS)
    pools: list[str] = list(POOLS)
    trunks: list[list[int]] = [[], [64]]
    decisions: list[str] = list(DECISIONS)
    max_nodes: int = Field(3, ge=0)
    max_inputs: int = Field(3, ge=1)  # refs one node reads
    max_heads: int = Field(3, ge=1)  # branches of a late / hybrid genome

    @field_validator("activations", "pools", "decisions")
    @classmethod
    def _known(cls, v: list[str], info: Any) -> list[str]:
        allowed = {"activations": ACTIVATIONS, "pools": POOLS, "decisions": DECISIONS}[info.field_name]
        bad = [x for x in v if x not in allowed]
        if bad or not v:
            raise ValueError(f"allowed: {', '.join(allowed)} (at least one)")
        return v

    @field_validator("ops")
    @classmethod
    def _ops(cls, v: list[str]) -> list[str]:
        from polymodal.fusion.ops import FUSION_OPS

        bad = [x for x in v if x not in FUSION_OPS]
        if bad or not v:
            raise ValueError(f"allowed: {', '.join(FUSION_OPS.names())} (at least one)")
        return v


class CandidateConfig(Options):
    """One candidate's training: AdamW at a constant rate, validation every ``eval_every`` steps (and
    at step 0, so a fully inherited child can stop at once), stopping early on a plateau or when
    hopeless; the weights kept are those of the best validation accuracy."""

    steps: int = Field(300, gt=0)  # the most steps a candidate trains
    batch_size: int = Field(64, gt=0)
    lr: float = Field(0.003, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    eval_every: int = Field(25, gt=0)
    patience: int | None = Field(3, gt=0)  # stop after this many evaluations without a new best
    min_delta: float = Field(0.0, ge=0)  # a new best must beat the old one by more than this
    hopeless_after: int | None = Field(100, gt=0)  # from this step on, stop a candidate whose best
    hopeless_fraction: float = Field(0.8, gt=0, le=1)  # val accuracy < fraction x the best fitness so far
    modality_dropout: float = Field(0.0, ge=0, lt=1)
    time_limit_s: float = Field(300.0, gt=0)  # over it: recorded as failed
    threads: int = Field(1, gt=0)  # torch threads per evaluation (the same on every backend)
    eval_rows: int = Field(1000, gt=0)  # validation batch size
    # measurement only: a candidate that inherited weights is trained again from fresh weights (same
    # seed and batches) and its steps to fitness.target_accuracy recorded as "cold"; doubles the cost
    paired_cold: bool = False


class FitnessConfig(Options):
    """fitness = (1 - robust) acc + robust mean_m acc_without_m - params_penalty P / 1e6
    - latency_penalty ms - modality_penalty M - unused_penalty U (acc: validation accuracy;
    acc_without_m: with modality m removed; P: inference parameters; M: modalities read; U: modalities
    read whose permutation importance (Breiman 2001: the accuracy lost when that modality's inputs are
    shuffled across the validation rows, the others kept) is below ``unused_below`` — a modality the
    genome reads but does not use, such as a distractor)."""

    params_penalty: float = Field(0.0, ge=0)  # per million inference parameters (used encoders included)
    modality_penalty: float = Field(0.0, ge=0)  # per modality read: a sensor must earn its keep
    latency_penalty: float = Field(0.0, ge=0)  # per ms of a 256-row forward (measured: not bit-reproducible)
    robust: float = Field(0.0, ge=0, le=1)  # weight of the accuracy with each used modality removed
    unused_penalty: float = Field(0.0, ge=0)  # per modality read whose importance is below unused_below
    unused_below: float = Field(0.005, ge=0)  # importance: val accuracy lost when its rows are shuffled
    target_accuracy: float = Field(0.85, gt=0, le=1)  # "steps to reach" this validation accuracy


class GAConfig(Options):
    strategy: Literal["ga", "random"] = "ga"  # random: every generation is fresh random genomes
    population: int = Field(12, ge=2)
    generations: int = Field(8, gt=0)
    budget_steps: int | None = Field(None, gt=0)  # stop after the generation that reaches it
    tournament: int = Field(3, ge=1)
    elite: int = Field(2, ge=0)
    crossover: float = Field(0.5, ge=0, le=1)  # probability a child is a crossover of two parents
    mutations: int = Field(2, ge=1)  # each child gets 1..mutations mutations
    seed_genomes: list[dict[str, Any]] = []  # FusionSpec dicts that open generation 0 (e.g. hand-made ones)

    @field_validator("seed_genomes")
    @classmethod
    def _genomes(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from polymodal.fusion.spec import FusionSpec

        for i, g in enumerate(v):
            try:
                FusionSpec.from_dict(g)
            except ConfigError as e:
                raise ValueError(f"seed_genomes[{i}]: {e}") from None
        return v


class CacheConfig(Options):
    warm_start: bool = True  # children start shared blocks from the cached trained weights
    match: Literal["exact", "position"] = "position"  # block keys: Merkle, or MFAS-like (FusionModel.blocks)
    max_blocks: int = Field(4000, gt=0)
    disk_mb: float = Field(512.0, gt=0)
    memory_mb: float = Field(256.0, gt=0)


class BackendConfig(Options):
    name: str = "inprocess"  # a name in polymodal.search.backends.BACKENDS (checked when a search starts)
    workers: int = Field(2, gt=0)
    address: str | None = None  # ray: a cluster address (None: a local Ray)


class RetrainConfig(Options):
    steps: int = Field(1000, ge=0)  # the best genome from scratch on the cached features (0: skip)
    engine_steps: int = Field(0, ge=0)  # also end to end with `polymodal train` (0: skip)
    engine_seeds: list[int] = [0]
    finalists: int = Field(1, ge=1)  # >1: the top genomes by fitness retrained; the best on validation wins
    modality_dropout: float = Field(0.3, ge=0, lt=1)  # end-to-end retrain only


class SearchConfig(Options):
    seed: int = Field(0, ge=0)
    data: SearchData = SearchData()
    encoders: dict[str, dict[str, Any]] = {
        "image": {"name": "lenet", "out_dim": 64},
        "audio": {"name": "audio_cnn", "n_mels": 20, "width": 8, "out_dim": 64},
    }
    pretrain: PretrainConfig = PretrainConfig()
    space: SpaceConfig = SpaceConfig()
    candidate: CandidateConfig = CandidateConfig()
    fitness: FitnessConfig = FitnessConfig()
    ga: GAConfig = GAConfig()
    cache: CacheConfig = CacheConfig()
    backend: BackendConfig = BackendConfig()
    retrain: RetrainConfig = RetrainConfig()

    @field_validator("encoders")
    @classmethod
    def _encoders(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("give at least one modality's encoder")
        for m, spec in v.items():
            if "." in m or "name" not in spec:
                raise ValueError(f"'{m}': a modality name without '.' and an encoder spec with 'name'")
        return v


def validate_search_config(raw: dict[str, Any]) -> SearchConfig:
    try:
        return SearchConfig.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        if e["type"] != "extra_forbidden":
            raise ConfigError(format_validation_error(err)) from None
        model: Any = SearchConfig
        for part in e["loc"][:-1]:
            ann = model.model_fields[str(part)].annotation
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if model is None:
                break
        allowed = ", ".join(model.model_fields) if model is not None else "see docs/search.md"
        raise ConfigError(f"{'.'.join(map(str, e['loc']))}: unknown key; allowed: {allowed}") from None


def load_search_config(path: str | Path | None, sets: list[str] | tuple[str, ...] = ()) -> SearchConfig:
    """A search config from YAML (missing keys take defaults) with ``--set`` overrides on top."""
    base = read_yaml(path) if path is not None else {}
    return validate_search_config(merge(base, parse_set(list(sets))))
