"""Speaker metrics of a run: ``RUN/speaker_eval.json``, ``RUN/trials.tsv``, ``RUN/det.png`` and the text
`polymodal eval` prints. Every minDCF is given normalised (divided by the cost of the better trivial
system, min(p_target, 1 - p_target) with C_miss = C_fa = 1) and raw, and says which."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from polymodal.config import SpeakerConfig, format_validation_error, merge
from polymodal.engine.checkpoint import write_text_atomic
from polymodal.engine.evaluate import LoadedRun, load_run
from polymodal.errors import ConfigError
from polymodal.speaker.scores import SpeakerScorer, SystemScores, conditions
from polymodal.speaker.verify import trials_text, verification_metrics

Results = dict[str, Any]


def is_speaker_run(run: LoadedRun) -> bool:
    return run.cfg.speaker.task in run.data.tasks and "sample_rate" in run.data.bundle.meta


def speaker_options(base: SpeakerConfig, sets: Mapping[str, Any] | None) -> SpeakerConfig:
    """``base`` with ``--set speaker.KEY=VALUE`` overrides (any other key is one line)."""
    sets = dict(sets or {})
    other = sorted(set(sets) - {"speaker"})
    if other:
        raise ConfigError(f"--set {other[0]}: eval accepts speaker.* keys only (and --data-root)")
    try:
        return SpeakerConfig.model_validate(merge(base.model_dump(), sets.get("speaker") or {}))
    except ValidationError as e:
        raise ConfigError("speaker." + format_validation_error(e)) from None


def condition_metrics(s: SystemScores, labels: np.ndarray, p_targets: Sequence[float]) -> Results:
    hit = lambda z: float((z.argmax(-1) == s.targets).float().mean())  # noqa: E731
    out: Results = {
        "accuracy": hit(s.full),
        "chunk_accuracy": s.chunk_accuracy,
        "summed_chunk_accuracy": hit(s.chunks),
    }
    if s.scores is not None:
        out |= verification_metrics(s.scores, labels, p_targets)
    return out


def describe(scorer: SpeakerScorer, score_norm: str | None = None) -> Results:
    spk, bundle = scorer.spk, scorer.run.data.bundle
    t = scorer.trials
    norm = spk.score_norm if score_norm is None else score_norm
    return {
        "dataset": bundle.name,
        "protocol": bundle.meta.get("protocol", f"{bundle.name}: official train / test split"),
        "identification": {"utterances": len(scorer.test), "speakers": scorer.run.data.tasks[spk.task]},
        "verification": {
            "set": "held-out speakers" if scorer.heldout else "test split (training speakers)",
            "utterances": int(len(scorer.ver_ids)),
            "speakers": int(len(np.unique(scorer.ver_ids))),
            "target_trials": int(t[:, 2].sum()),
            "nontarget_trials": int((1 - t[:, 2]).sum()),
            "trial_seed": spk.trial_seed,
            "scoring": "cosine" + (", length-normalised" if spk.length_norm else "") + f", score norm {norm}",
        },
        "chunks": {"window_s": spk.chunk_s, "shift_s": spk.chunk_shift_s},
        "p_targets": list(spk.p_targets),
    }


def utterance_names(scorer: SpeakerScorer) -> list[str]:
    """The verification set's utterance names (from the dataset's meta), else utt0, utt1, ..."""
    meta = scorer.run.data.bundle.meta
    key = "verification_names" if scorer.heldout else "test_names"
    names = meta.get(key)
    n = len(scorer.ver_ids)
    return list(names) if isinstance(names, list) and len(names) == n else [f"utt{i}" for i in range(n)]


def evaluate_speaker_run(
    run_dir: str | Path,
    sets: Mapping[str, Any] | None = None,
    data_root: str | None = None,
    loaded: LoadedRun | None = None,
    plot: bool = True,
) -> Results:
    """Identification and verification metrics per test condition; writes speaker_eval.json,
    trials.tsv and (with matplotlib) det.png into the run directory."""
    run_dir = Path(run_dir)
    loaded = loaded or load_run(run_dir, data_root)
    spk = speaker_options(loaded.cfg.speaker, sets)
    scorer = SpeakerScorer(loaded, spk)
    labels = scorer.trials[:, 2]
    write_text_atomic(trials_text(scorer.trials, utterance_names(scorer)), run_dir / "trials.tsv")
    results = describe(scorer) | {"conditions": {}}
    curves = {}
    for cond in conditions(spk):
        s = scorer.run_condition(cond)
        results["conditions"][cond.name] = condition_metrics(s, labels, spk.p_targets)
        curves[cond.name] = s.scores
    save_scores(run_dir / "speaker_scores.npz", labels, curves)
    write_text_atomic(json.dumps(results, indent=2), run_dir / "speaker_eval.json")
    if plot:
        results["det_plot"] = plot_det(curves, labels, run_dir / "det.png", results["protocol"])
    return results


def save_scores(path: Path, labels: np.ndarray, curves: Mapping[str, np.ndarray | None]) -> None:
    """The trials' labels and each condition's scores (what the DET curves are drawn from)."""
    with open(path, "wb") as f:
        np.savez(f, labels=labels, **{k: v for k, v in curves.items() if v is not None})


def format_report(res: Results) -> list[str]:
    """The tables `polymodal eval` prints for a speaker run."""
    ident, ver, ch = res["identification"], res["verification"], res["chunks"]
    lines = [
        f"protocol: {res['protocol']}",
        f"identification (closed set, {ident['speakers']} speakers, {ident['utterances']} test utterances; "
        f"chunks {1000 * ch['window_s']:g} ms every {1000 * ch['shift_s']:g} ms):",
        f"  {'condition':14s} {'full utterance':>15s} {'single chunk':>13s} {'summed chunks':>14s}",
    ]
    pct = lambda v, w: f"{'—':>{w + 1}s}" if v != v else f"{100 * v:{w}.2f}%"  # noqa: E731 (NaN: not defined)
    for name, m in res["conditions"].items():
        accs = (
            f"{pct(m['accuracy'], 14)} {pct(m['chunk_accuracy'], 12)} {pct(m['summed_chunk_accuracy'], 13)}"
        )
        lines.append(f"  {name:14s} {accs}")
    lines.append(
        f"verification ({ver['set']}: {ver['speakers']} speakers, {ver['utterances']} utterances; "
        f"{ver['target_trials']} target + {ver['nontarget_trials']} non-target trials, trials.tsv; "
        f"{ver['scoring']}):"
    )
    heads = "".join(f"  minDCF p={p:g} normalised (raw)" for p in res["p_targets"])
    lines.append(f"  {'condition':14s} {'EER (threshold)':>20s}{heads}")
    for name, m in res["conditions"].items():
        if "eer" not in m:
            continue
        dcf = "".join(
            f"  {d['normalised']:>19.4f} ({d['raw']:.5f})"
            for d in (m["min_dcf"][str(p)] for p in res["p_targets"])
        )
        lines.append(f"  {name:14s} {100 * m['eer']:10.2f}% ({m['eer_threshold']:+.3f}){dcf}")
    for system, conds in res.get("per_system", {}).items():
        eers = ", ".join(f"{c} {100 * m['eer']:.2f}%" for c, m in conds.items() if "eer" in m)
        accs = ", ".join(f"{c} {100 * m['accuracy']:.2f}%" for c, m in conds.items())
        lines.append(f"  alone, {system}: accuracy {accs}; EER {eers}")
    if res.get("det_plot"):
        lines.append(f"DET curve: {res['det_plot']}")
    return lines


def _probit(p: np.ndarray) -> np.ndarray:
    from statistics import NormalDist

    inv = NormalDist().inv_cdf
    return np.array([inv(v) for v in np.clip(p, 1e-5, 1 - 1e-5)])


def det_axes(ax: Any, title: str) -> None:
    """Normal-deviate axes from 0.05 % to 99 %, ticks in percent."""
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(_probit(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlim(*_probit(np.array([0.0005, 0.99]))), ax.set_ylim(*_probit(np.array([0.0005, 0.99])))
    ax.set_xlabel("false-alarm probability (%)"), ax.set_ylabel("miss probability (%)")
    ax.set_title(title[:80], fontsize=8), ax.grid(alpha=0.3), ax.legend(fontsize=7)


def plot_det(
    curves: Mapping[str, np.ndarray | None], labels: np.ndarray, path: Path, title: str
) -> str | None:
    """DET curves (miss vs false-alarm probability on normal-deviate axes); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from polymodal.metrics import det_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in curves.items():
        if scores is not None:
            p_miss, p_fa, _ = det_curve(scores, labels)
            ax.plot(_probit(p_fa), _probit(p_miss), label=name)
    det_axes(ax, title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
