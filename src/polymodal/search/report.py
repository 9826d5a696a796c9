"""``DIR/report.md`` (+ ``fitness.png``, ``best_genome.png``, ``summary.json``) after a search.

Fitness per generation (best and mean), the best genome (JSON, a mermaid graph, the PNG drawing,
where each pair of modalities meets), the top 10 (fitness, parameters, steps, time, inherited
blocks), the warm-start numbers (steps per candidate, steps to the target accuracy), failures with
their reasons, and the best genome retrained from scratch with its test accuracy. Plots need the
``plot`` extra (matplotlib, imported here only); without it the report says so.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from polymodal.engine.checkpoint import write_text_atomic
from polymodal.fusion.spec import FusionSpec
from polymodal.models.base import Encoder
from polymodal.search.config import SearchConfig
from polymodal.search.features import Context
from polymodal.search.ga import best, fitness, ranked
from polymodal.search.retrain import choose, retrain_engine, test_context
from polymodal.search.space import Space, mermaid, pairings

NA = "—"


def per_generation(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows, top = [], float("-inf")
    mean = lambda v: statistics.mean(v) if v else None  # noqa: E731
    for g in sorted({r["generation"] for r in history}):
        recs = [r for r in history if r["generation"] == g]
        ok = [fitness(r) for r in recs if fitness(r) > float("-inf")]
        top = max([top, *ok])
        trained = [r for r in recs if r["status"] == "ok" and not r.get("memo_of")]
        rows.append(
            {
                "generation": g,
                "best_so_far": top,
                "best": max(ok) if ok else None,
                "mean": mean(ok),
                "candidates": len(recs),
                "failed": sum(r["status"] != "ok" for r in recs),
                "steps": sum(int(r.get("steps") or 0) for r in recs),
                "mean_steps": mean([r["steps"] for r in trained]),
                "inherited": mean([r["inherited"] / max(r["blocks"], 1) for r in trained]),
            }
        )
    return rows


def steps_to_level(history: list[dict[str, Any]], level: float) -> int | None:
    """Training steps the search spent (candidates in id order) until its best fitness reached ``level``."""
    spent = 0
    for r in sorted(history, key=lambda r: r["id"]):
        spent += int(r.get("steps") or 0)
        if fitness(r) >= level:
            return spent
    return None


def warm_stats(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Steps per trained candidate, and to the target accuracy (of those reaching it), all and after gen 0."""
    trained = [r for r in history if r["status"] == "ok" and not r.get("memo_of")]
    later = [r for r in trained if r["generation"] > 0]
    mean = lambda v: statistics.mean(v) if v else None  # noqa: E731
    reach = lambda rs: [r["steps_to_target"] for r in rs if r.get("steps_to_target") is not None]  # noqa: E731
    return {
        "candidates": len(trained),
        "mean_steps": mean([r["steps"] for r in trained]),
        "mean_steps_after_gen0": mean([r["steps"] for r in later]),
        "reached_target": len(reach(trained)),
        "mean_steps_to_target": mean(reach(trained)),
        "mean_steps_to_target_after_gen0": mean(reach(later)),
        "inherited_fraction_after_gen0": mean([r["inherited"] / max(r["blocks"], 1) for r in later]),
    }


def _f(v: Any, digits: int = 4) -> str:
    return NA if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _reads(r: dict[str, Any]) -> str:
    """Modalities read, each with its permutation importance (validation points lost when shuffled)."""
    imp = r.get("importance") or {}
    return ", ".join(f"{m} ({100 * imp[m]:+.1f})" if m in imp else m for m in r["modalities"])


def _top_table(history: list[dict[str, Any]], n: int = 10) -> list[str]:
    lines = [
        "| rank | candidate | fitness | val acc % | modalities (importance, points) | params | steps "
        "| stopped | time s | inherited blocks | origin |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(ranked([r for r in history if r["status"] == "ok"])[:n], 1):
        origin = f"memo of {r['memo_of']}" if r.get("memo_of") else r["origin"]
        lines.append(
            f"| {i} | {r['id']} | {r['fitness']:.4f} | {100 * r['accuracy']:.2f} "
            f"| {_reads(r)} "
            f"| {r['params']:,} | {r['steps']} | {r.get('stopped', NA)} | {r['seconds']:.1f} "
            f"| {r['inherited']}/{r.get('blocks', NA)} | {origin} |"
        )
    return lines


def plot_fitness(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    gens = [r["generation"] for r in rows]
    ax.plot(gens, [r["best_so_far"] for r in rows], "o-", label="best so far")
    ax.plot(
        gens,
        [r["mean"] if r["mean"] is not None else float("nan") for r in rows],
        "s--",
        label="mean of generation",
    )
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_genome(spec: FusionSpec, path: Path) -> None:
    """Taps left, nodes by depth, the decision right; arrows for every read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth: dict[str, int] = {}
    taps = sorted(
        {r for n in spec.nodes for r in n.inputs if "." in r} | {r for r in spec.head_refs if "." in r}
    )
    for t in taps:
        depth[t] = 0
    for n in spec.nodes:
        depth[n.name] = 1 + max(depth[r] for r in n.inputs)
    last = max(depth.values()) + 1
    cols: dict[int, list[str]] = {}
    for ref, d in depth.items():
        cols.setdefault(d, []).append(ref)
    pos = {ref: (d, -j + (len(refs) - 1) / 2) for d, refs in cols.items() for j, ref in enumerate(refs)}
    pos["decision"] = (last, 0.0)
    labels = {n.name: f"{n.name}\n{n.op} {n.width}\n{n.activation}, {n.pool}" for n in spec.nodes}
    out = f"decision: {spec.decision}" if len(spec.head_refs) > 1 else f"head (trunk {spec.trunk})"
    labels["decision"] = out
    edges = [(r, n.name) for n in spec.nodes for r in n.inputs] + [(r, "decision") for r in spec.head_refs]
    fig, ax = plt.subplots(figsize=(2.4 * (last + 1), 1.2 + 1.1 * max(len(v) for v in cols.values())))
    for a, b in edges:
        ax.annotate(
            "",
            xy=pos[b],
            xytext=pos[a],
            arrowprops={"arrowstyle": "->", "color": "0.4", "shrinkA": 28, "shrinkB": 28},
        )
    for ref, (x, y) in pos.items():
        face = "#dbe9f6" if "." in ref else "#fde2c8" if ref != "decision" else "#d5f0d5"
        ax.text(
            x,
            y,
            labels.get(ref, ref),
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round", "fc": face},
        )
    ax.set_xlim(-0.6, last + 0.6)
    ax.set_ylim(min(y for _, y in pos.values()) - 0.8, max(y for _, y in pos.values()) + 0.8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plots(sd: Any, rows: list[dict[str, Any]], spec: FusionSpec, title: str) -> str | None:
    try:
        plot_fitness(rows, sd.path / "fitness.png", title)
        plot_genome(spec, sd.path / "best_genome.png")
    except ImportError:
        return 'plots skipped: matplotlib is not installed (pip install -e ".[plot]")'
    return None


def _chosen(cfg: SearchConfig, state: dict, ctx: Context, encoders: dict) -> tuple[dict, dict]:
    """(the search's answer, the retrain results so far): the fittest, or the best of the finalists."""
    top = best(state)
    assert top is not None
    if not cfg.retrain.steps:
        return top, {}
    pick = choose(cfg, state["history"], ctx, test_context(cfg, ctx, encoders))
    top = next(r for r in state["history"] if r["id"] == pick["id"])
    out = {"pretrained": pick["result"]}
    if cfg.retrain.finalists > 1:
        out["finalists"] = {k: pick[k] for k in ("finalists", "steps", "score")}
    return top, out


def _retrained(sd: Any, cfg: SearchConfig, spec: FusionSpec, ctx: Context, out: dict, quiet: bool) -> dict:
    if cfg.retrain.engine_steps:
        out["engine"] = retrain_engine(cfg, spec, ctx.task, sd.path / "retrain", quiet)
    return out


def _retrain_lines(res: dict[str, Any], cfg: SearchConfig) -> list[str]:
    lines = ["## Best genome retrained from scratch (test split)", ""]
    if "finalists" in res:
        f = res["finalists"]
        each = ", ".join(
            f"{x['id']} (fitness {x['fitness']:.4f}, retrained validation {100 * x['val_accuracy']:.2f}%, "
            f"score {x['score']:.4f})"
            for x in f["finalists"]
        )
        lines += [
            f"- chosen among the {len(f['finalists'])} fittest genomes, each retrained {cfg.retrain.steps} "
            f"steps (validation accuracy + the penalties of its fitness; {f['steps']:,} steps): {each}",
        ]
    if "pretrained" in res:
        r = res["pretrained"]
        drops = ", ".join(f"without {m} {100 * a:.2f}%" for m, a in r["test_without"].items())
        lines.append(
            f"- on the pretrained {cfg.pretrain.mode} encoders, fusion weights fresh, {r['steps']} steps: "
            f"**test accuracy {100 * r['test_accuracy']:.2f}%** (validation {100 * r['val_accuracy']:.2f}%"
            f"{'; ' + drops if drops else ''}), {r['seconds']:.1f} s"
        )
    for r in res.get("engine", []):
        lines.append(
            f"- end to end (`polymodal train`, encoders from scratch, {cfg.retrain.engine_steps} steps, seed "
            f"{r['seed']}): **test accuracy {100 * r['test_accuracy']:.2f}%**, {r['seconds']:.0f} s"
        )
    return lines + ([] if res else ["- skipped (retrain.steps = 0 and retrain.engine_steps = 0)"]) + [""]


def _header(cfg: SearchConfig, state: dict, ctx: Context) -> list[str]:
    t = state["totals"]
    pre = ", ".join(f"{m} {100 * e['val_accuracy']:.2f}%" for m, e in ctx.encoders.items())
    return [
        f"# Fusion search: {cfg.data.name}, {cfg.ga.strategy}, "
        f"warm start {'on' if cfg.cache.warm_start else 'off'}",
        "",
        f"Seed {cfg.seed}; backend {cfg.backend.name}; {t['evaluated']} candidates ({t['failed']} failed), "
        f"{t['steps']:,} training steps, {t['seconds']:.0f} s of candidate time, "
        f"{state.get('wall_s', 0):.0f} s wall (search only). Encoders {cfg.pretrain.mode}, pretrained alone "
        f"(validation accuracy: {pre}).",
        "",
    ]


def _generations(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| generation | best so far | best | mean | candidates | failed | steps | mean steps / candidate "
        "| inherited blocks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {r['generation']} | {_f(r['best_so_far'])} | {_f(r['best'])} | {_f(r['mean'])} "
        f"| {r['candidates']} "
        f"| {r['failed']} | {r['steps']} | {_f(r['mean_steps'], 1)} | {_f(r['inherited'], 2)} |"
        for r in rows
    ]


def _best(top: dict, spec: FusionSpec, pairs: dict[str, str], space: Space, png: bool) -> list[str]:
    unused = ", ".join(m for m in space.modalities if m not in top["modalities"]) or "none"
    how = ", ".join(f"{p} {h}" for p, h in pairs.items()) or "none (one modality)"
    return [
        f"## Best genome: {top['id']}, fitness {top['fitness']:.4f}, "
        f"validation accuracy {100 * top['accuracy']:.2f}%",
        "",
        f"Reads {', '.join(top['modalities'])} (not: {unused}); where modality pairs meet: {how}.",
        "",
        "```mermaid",
        mermaid(spec),
        "```",
        "",
        *(["![best genome](best_genome.png)", ""] if png else []),
        f"```json\n{json.dumps(spec.to_dict(), indent=1)}\n```",
        "",
    ]


def _warm(warm: dict[str, Any], cfg: SearchConfig) -> list[str]:
    return [
        "## Warm start",
        "",
        f"Trained candidates: {warm['candidates']}; mean steps per candidate {_f(warm['mean_steps'], 1)} "
        f"(after generation 0: {_f(warm['mean_steps_after_gen0'], 1)}); {warm['reached_target']} reached "
        f"validation accuracy {cfg.fitness.target_accuracy}, in "
        f"{_f(warm['mean_steps_to_target'], 1)} steps on "
        f"average (after generation 0: {_f(warm['mean_steps_to_target_after_gen0'], 1)}); inherited block "
        f"fraction after generation 0: {_f(warm['inherited_fraction_after_gen0'], 2)}.",
        "",
    ]


def write_report(
    sd: Any,
    cfg: SearchConfig,
    state: dict,
    space: Space,
    ctx: Context,
    encoders: dict[str, Encoder],
    quiet: bool,
) -> dict[str, Any]:
    hist = state["history"]
    if best(state) is None:
        write_text_atomic("# Fusion search\n\nEvery candidate failed; see candidates/*.json.\n", sd.report)
        return {"best": None, "report": str(sd.report)}
    top, res = _chosen(cfg, state, ctx, encoders)
    rows, spec = per_generation(hist), FusionSpec.from_json(top["genome"])
    pairs = pairings(spec, {m: s[0] for m, s in space.taps.items()})
    res, warm = _retrained(sd, cfg, spec, ctx, res, quiet), warm_stats(hist)
    note = _plots(sd, rows, spec, f"{cfg.data.name} {cfg.ga.strategy} seed {cfg.seed}")
    failed = [f"- {r['id']}: {r['reason']}" for r in hist if r["status"] != "ok"] or ["- none"]
    lines = [
        *_header(cfg, state, ctx),
        note or "![fitness per generation](fitness.png)",
        "",
        *_generations(rows),
        "",
        *_best(top, spec, pairs, space, png=note is None),
        "## Top 10",
        "",
        *_top_table(hist),
        "",
        *_retrain_lines(res, cfg),
        *_warm(warm, cfg),
        "## Failed candidates",
        "",
        *failed,
    ]
    write_text_atomic("\n".join(lines) + "\n", sd.report)
    keep = ("id", "genome", "fitness", "accuracy", "params", "modalities", "without", "importance")
    summary = {
        "best": {k: top.get(k) for k in keep},
        "fittest": best(state)["id"],  # type: ignore[index]
        "pairings": pairs,
        "retrain": res,
        "warm": warm,
        "totals": state["totals"],
        "wall_s": state.get("wall_s"),
        "generations": rows,
        "report": str(sd.report),
    }
    write_text_atomic(json.dumps(summary, indent=1), sd.summary)
    return summary
