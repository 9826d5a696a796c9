"""Run configuration: YAML + dotted ``--set`` overrides, validated into typed objects.

Every bad value becomes one `ConfigError` line naming the dotted key and what is allowed, e.g.
``train.stepz: unknown key; allowed: steps, lr, ...`` or ``method='foo': allowed: 'supervised', 'uda'``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from polymodal.errors import ConfigError
from polymodal.options import Options


def _registered(name: str, registry: Any, kind: str) -> str:
    """``name`` if ``registry`` has it; else the one-line error listing what it has."""
    if name not in registry:
        raise ValueError(f"unknown {kind}; available: {', '.join(registry.names())}")
    return name


class DataConfig(Options):
    name: str = "mnist"
    root: str | None = None  # default: $POLYMODAL_DATA
    tasks: list[str] | None = None  # default: every task of the dataset
    labels_per_class: int | None = Field(None, gt=0)  # None: every training label is used
    batch_size: int = Field(64, gt=0)  # labeled examples per step
    unlabeled_ratio: int = Field(7, gt=0)  # μ: unlabeled batch = μ × labeled batch
    eval_batch_size: int = Field(1000, gt=0)
    one_label_per_example: bool = False  # keep each training example's label for one seeded task only
    # where the splits live: auto (device if they fit), device, pinned (host; batches copied
    # asynchronously), mmap (the on-disk form `polymodal data pack NAME` writes; never loaded whole)
    placement: Literal["auto", "device", "pinned", "mmap"] = "auto"
    # the dataset loader's own keyword options, e.g. speakers: {path: DIR, sample_rate: 16000}
    options: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from polymodal.data import DATASETS

        return _registered(v, DATASETS, "dataset")


class ViewsConfig(Options):
    """Augmentation pipelines per view: lists of ``{op: name, **params}``."""

    clean: list[dict[str, Any]] = []  # the un-augmented view (feature extraction only)
    weak: list[dict[str, Any]] = []  # labeled examples
    strong: list[dict[str, Any]] = []  # the consistency target's augmented copy


class HeadConfig(Options):
    """The task heads: ``linear`` (softmax over a linear layer) or a margin softmax over cosines to
    learnt class centres (models/margin.py): ``aam`` (ArcFace) or ``am`` (CosFace / AM-softmax)."""

    kind: Literal["linear", "aam", "am"] = "linear"
    margin: float = Field(0.2, ge=0.0)  # aam: radians added to the target angle; am: subtracted cosine
    scale: float = Field(30.0, gt=0.0)
    tasks: list[str] | None = None  # the tasks that get this head; None: every task


class ModelConfig(Options):
    # encoder name -> {name: encoder, input: modality (default: the key), **kwargs}; fusion refs read
    # "<key>.<stage>", so two encoders may read one modality (e.g. sinc: {name: sincnet, input: audio})
    encoders: dict[str, dict[str, Any]] = {"image": {"name": "cnn28"}}
    head_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    head: HeadConfig = HeadConfig()
    # a fusion graph (polymodal.fusion.FusionSpec as a dict); None: concat of the encoders' outputs
    fusion: dict[str, Any] | None = None
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # hide each modality w.p. p in training
    # independent: each modality hidden w.p. p; one: w.p. p hide exactly one present modality (ModDrop)
    modality_dropout_mode: Literal["independent", "one"] = "independent"
    aux_loss: float = Field(0.0, ge=0.0)  # fusion: weight of per-modality auxiliary heads' cross-entropy

    @field_validator("encoders")
    @classmethod
    def _inputs(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, spec in v.items():
            if "." in key:
                raise ValueError(f"encoder key '{key}' must not contain '.' (fusion refs are 'key.stage')")
            if not isinstance(spec.get("input", key), str):
                raise ValueError(f"{key}.input must be a modality name, got {spec['input']!r}")
        return v

    def inputs(self) -> dict[str, str]:
        """Encoder key -> the modality it reads (``input``, default: the key)."""
        return {k: spec.get("input", k) for k, spec in self.encoders.items()}

    def modalities(self) -> list[str]:
        """The modalities the encoders read, each once, in order (masks, dropout, `without` act on these)."""
        return list(dict.fromkeys(self.inputs().values()))

    @field_validator("fusion")
    @classmethod
    def _fusion(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        from polymodal.fusion.spec import FusionSpec

        if v is not None:  # one-line ConfigError naming the bad key
            try:
                FusionSpec.from_dict(v)
            except ConfigError as e:
                raise ConfigError(f"model.{e}") from None
        return v


class TrainConfig(Options):
    steps: int = Field(1000, gt=0)
    lr: float = Field(0.03, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    ema: float | None = Field(None, ge=0.0, lt=1.0)  # decay of the evaluated EMA (warm-up: ssl/teacher.py)
    eval_every: int = Field(500, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    log_every: int = Field(50, gt=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on cuda, fp32 elsewhere
    channels_last: bool | None = None  # None: channels_last weights on cuda (tensor cores), not on cpu
    compile: bool = False  # torch.compile the model (in place: checkpoint keys do not change)
    deterministic: bool = False
    threads: int | None = Field(None, gt=0)  # CPU threads; None: torch's default


class MultitaskConfig(Options):
    """How per-task losses become one update; see docs/multitask.md."""

    weighting: str = "equal"  # a name in polymodal.mtl.BALANCERS
    options: dict[str, Any] = {}  # the method's own options, e.g. {c: 0.4} for cagrad
    update: Literal["all_tasks", "task_batches", "one_task"] = "all_tasks"
    task_sampling: Literal["uniform", "proportional", "temperature"] = "proportional"  # one_task only
    sampling_temperature: float = Field(2.0, gt=0.0)
    recompute_every: int = Field(1, gt=0)  # gradient methods: reuse the last task weights in between

    @field_validator("weighting")
    @classmethod
    def _known_weighting(cls, v: str) -> str:
        from polymodal.mtl import BALANCERS

        return _registered(v, BALANCERS, "weighting")


class SpeakerConfig(Options):
    """How `polymodal eval` scores a speaker run (polymodal/speaker, docs/speaker.md); training ignores it.

    Identification: full utterances, and SincNet's protocol (chunk log-posteriors summed over sliding
    windows). Verification: cosine scores of embeddings on seeded trials (``RUN/trials.tsv``), on the
    dataset's held-out speakers when it has them (meta "verification"), else on the test split.
    """

    task: str = "speaker"  # the task whose classes are speakers
    embedding: list[str] = []  # []: the features the heads read; else stages "key.stage", concatenated
    chunk_s: float = Field(0.2, gt=0.0)  # identification window (SincNet: 200 ms)
    chunk_shift_s: float = Field(0.1, gt=0.0)  # window shift (SincNet: 10 ms)
    test_crop_s: list[float] = []  # extra conditions: each test utterance cut to its centre crop
    test_snr_db: list[float] = []  # extra conditions: white noise added to the test audio at this SNR
    trials_target: int = Field(2000, gt=0)  # at most; capped by the pairs that exist
    trials_nontarget: int = Field(20000, gt=0)
    trial_seed: int = Field(0, ge=0)  # the same for every run, so runs (and seeds) share trials
    length_norm: bool = True  # subtract the cohort mean, then unit length, before cosine scoring
    score_norm: Literal["none", "znorm", "snorm"] = "none"  # against a cohort of training utterances
    cohort_size: int = Field(300, ge=2)  # training utterances drawn (seeded) for the cohort
    cohort_top_k: int | None = Field(None, ge=2)  # adaptive s-norm: each side's k highest cohort scores
    p_targets: list[float] = [0.01, 0.001]  # minDCF operating points (C_miss = C_fa = 1)
    batch_size: int = Field(64, gt=0)  # utterances (or windows) per forward in evaluation


class Config(Options):
    """The run config. `config_class()` adds one section per registered method that has options
    (``uda:``, ``fixmatch:``, ...), each validated by the options model the method registered."""

    seed: int = Field(0, ge=0)
    method: str = "supervised"  # a name in polymodal.ssl.METHODS
    data: DataConfig = DataConfig()
    augment: dict[str, ViewsConfig] = {}  # modality -> views
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    multitask: MultitaskConfig = MultitaskConfig()
    speaker: SpeakerConfig = SpeakerConfig()  # evaluation of speaker runs only

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from polymodal.ssl import METHODS

        return _registered(v, METHODS, "method")

    def method_options(self) -> Options:
        """The options section of ``self.method`` (its defaults when the method has no knobs)."""
        from polymodal.ssl import METHODS

        return getattr(self, self.method, None) or METHODS.get(self.method).options()


def config_class() -> type[Config]:
    """`Config` with one field per registered method that has options; rebuilt when methods change."""
    from polymodal.ssl import METHODS

    return _config_class(tuple((n, m.options) for n, m in METHODS.items() if m.options.model_fields))


@functools.lru_cache(maxsize=8)
def _config_class(sections: tuple[tuple[str, type[Options]], ...]) -> type[Config]:
    fields: dict[str, Any] = {n: (opts, Field(default_factory=opts)) for n, opts in sections}
    return create_model("Config", __base__=Config, **fields)


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the config location ``loc`` (for unknown-key messages)."""
    model: Any = config_class()
    parts = list(loc[:-1])
    while parts and model is not None:
        field = model.model_fields.get(str(parts.pop(0)))
        ann = field.annotation if field else None
        args = get_args(ann)
        if get_origin(ann) is dict and args and isinstance(args[1], type):
            parts = parts[1:]  # skip the free-form key (a modality name)
            ann = args[1]
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model is not None and not parts else []


def format_validation_error(err: ValidationError) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        allowed = _allowed(tuple(e["loc"]))
        return f"{key}: unknown key; allowed: {', '.join(allowed)}"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{key}={e.get('input')!r}: {msg}"


def parse_set(items: list[str]) -> dict[str, Any]:
    """``['train.steps=10', 'method=uda']`` -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE, e.g. --set train.steps=100")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{p}' is set to a value and used as a section")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing, unreadable, empty or non-mapping file is one line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config '{path}' is a directory; give a YAML file (see configs/)")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not text (UTF-8 YAML expected)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{path}'{where}: not valid YAML") from None
    if data is None:
        raise ConfigError(f"config file '{path}' is empty; it needs at least 'method:' or 'data:' keys")
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def build_config(raw: dict[str, Any]) -> Config:
    try:
        return config_class().model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


def load_config(path: str | Path | None, sets: list[str] | tuple[str, ...] = ()) -> Config:
    """YAML (missing keys take defaults), then ``--set`` overrides applied on top of the full config.

    Overriding the full config lets ``--set model.encoders.image.width=8`` change one option of a
    default or YAML-given encoder without restating its name.
    """
    base = build_config(read_yaml(path) if path is not None else {})
    return build_config(merge(to_dict(base), parse_set(list(sets))))


def to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
