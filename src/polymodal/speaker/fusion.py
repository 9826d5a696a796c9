"""Score-level fusion of trained speaker systems (e.g. SincNet and x-vector).

Each system's verification scores are normalised on its own (z-norm or s-norm against a cohort of its
own embeddings of training utterances), so scores from differently scaled systems become comparable,
then averaged trial by trial. Identification fuses the log-posteriors by summing them (the product of
the systems' posteriors). Every system must be scored on the same dataset and trials.

A score-fusion config (``configs/speaker_*_score.yaml``) names the systems' training configs::

    score_fusion:
      systems: [speaker_fsdd_sincnet.yaml, speaker_fsdd_xvector.yaml]  # relative to this file
      norm: snorm

``polymodal train`` on it trains each system into ``OUT/<config stem>`` (a finished run is reused, a
started one resumed), then fuses them (``OUT/score_fusion.json``); ``polymodal eval OUT`` re-scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import Field, ValidationError

from polymodal.config import format_validation_error, load_config, read_yaml
from polymodal.engine.checkpoint import write_text_atomic
from polymodal.engine.evaluate import load_run
from polymodal.engine.rundir import RunDir
from polymodal.engine.trainer import train
from polymodal.errors import ConfigError, DataError
from polymodal.options import Options
from polymodal.speaker.report import (
    Results,
    condition_metrics,
    describe,
    plot_det,
    save_scores,
    speaker_options,
    utterance_names,
)
from polymodal.speaker.scores import SpeakerScorer, SystemScores, conditions
from polymodal.speaker.verify import trials_text

FUSION_FILE = "score_fusion.yaml"


class ScoreFusionConfig(Options):
    systems: list[str] = Field(min_length=2)  # training configs (train) or run directories (eval)
    norm: Literal["znorm", "snorm"] = "snorm"


def fuse(parts: list[SystemScores]) -> SystemScores:
    """Summed log-posteriors; the mean of the (already normalised) verification scores."""
    full = sum(p.full.log_softmax(-1) for p in parts)
    chunks = sum(p.chunks.log_softmax(-1) for p in parts)
    scores = np.mean([p.scores for p in parts], axis=0) if all(p.scores is not None for p in parts) else None
    return SystemScores(full, chunks, float("nan"), parts[0].targets, scores)  # type: ignore[arg-type]


def fuse_runs(
    run_dirs: list[str | Path],
    norm: str = "snorm",
    sets: Mapping[str, Any] | None = None,
    data_root: str | None = None,
    out_dir: str | Path | None = None,
) -> Results:
    """Score-level fusion of trained runs; writes score_fusion.json, trials.tsv, det.png to ``out_dir``."""
    scorers = []
    for r in run_dirs:
        run = load_run(r, data_root)
        if run.cfg.train.threads:  # as the runs trained: more threads than free cores is much slower
            torch.set_num_threads(run.cfg.train.threads)
        scorers.append(SpeakerScorer(run, speaker_options(run.cfg.speaker, sets)))
    first = scorers[0]
    for r, s in zip(run_dirs[1:], scorers[1:], strict=True):
        if s.run.data.bundle.name != first.run.data.bundle.name or not np.array_equal(s.trials, first.trials):
            raise DataError(f"score fusion: '{r}' is not scored on the dataset and trials of '{run_dirs[0]}'")
    labels = first.trials[:, 2]
    res: Results = describe(first, norm) | {"systems": [str(r) for r in run_dirs], "conditions": {}}
    res["per_system"] = {str(r): {} for r in run_dirs}
    curves = {}
    for cond in conditions(first.spk):
        parts = [s.run_condition(cond, score_norm=norm) for s in scorers]
        for r, p in zip(run_dirs, parts, strict=True):
            res["per_system"][str(r)][cond.name] = condition_metrics(p, labels, first.spk.p_targets)
        fused = fuse(parts)
        res["conditions"][cond.name] = condition_metrics(fused, labels, first.spk.p_targets)
        curves[cond.name] = fused.scores
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(trials_text(first.trials, utterance_names(first)), out / "trials.tsv")
        save_scores(out / "speaker_scores.npz", labels, curves)
        write_text_atomic(json.dumps(res, indent=2), out / "score_fusion.json")
        res["det_plot"] = plot_det(curves, labels, out / "det.png", "score fusion: " + res["protocol"])
    return res


def read_fusion_config(path: Path) -> ScoreFusionConfig:
    raw = read_yaml(path)
    if set(raw) != {"score_fusion"}:
        raise ConfigError(
            f"'{path}': a score-fusion config holds one key, score_fusion (got {', '.join(raw)})"
        )
    try:
        return ScoreFusionConfig.model_validate(raw["score_fusion"])
    except ValidationError as e:
        raise ConfigError("score_fusion." + format_validation_error(e)) from None


def is_fusion_config(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix in (".yaml", ".yml") and "score_fusion" in read_yaml(p)


def train_score_fusion(config: str | Path, sets: list[str], out: str | Path, quiet: bool = False) -> Results:
    """Train (or reuse) each system of a score-fusion config into ``out/<stem>``, then fuse them."""
    config, out = Path(config), Path(out)
    fc = read_fusion_config(config)
    runs = []
    for system in fc.systems:
        path = (config.parent / system).resolve()
        cfg = load_config(path, sets)
        rd = RunDir(out / path.stem)
        if not (rd.summary.is_file() or rd.checkpoint.is_file()):
            train(cfg, rd, quiet=quiet)
        elif not rd.summary.is_file():
            train(rd.read_config(resuming=True), rd, resume=True, quiet=quiet)
        runs.append(rd.path)
    spec = {"score_fusion": {"systems": [r.name for r in runs], "norm": fc.norm}}
    write_text_atomic(yaml.safe_dump(spec, sort_keys=False), out / FUSION_FILE)
    return fuse_runs(runs, fc.norm, out_dir=out)


def evaluate_fusion_dir(
    out: str | Path, sets: Mapping[str, Any] | None = None, data_root: str | None = None
) -> Results:
    """Re-score a fused directory written by `train_score_fusion` (its systems are relative to it)."""
    out = Path(out)
    fc = read_fusion_config(out / FUSION_FILE)
    return fuse_runs([out / s for s in fc.systems], fc.norm, sets, data_root, out_dir=out)
