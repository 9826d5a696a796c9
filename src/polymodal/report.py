"""`polymodal report RUN [RUN ...] --out DIR`: one markdown page and its PNGs, readable without opening
a JSON file.

From each run directory: ``config.yaml`` (the config differences between runs), ``metrics.jsonl``
(training loss and test error per task against step), ``summary.json`` (final metrics), and, where
present, ``speaker_eval.json`` and ``det.png`` (written by ``polymodal eval`` on a speaker run).
Accuracy without each modality comes from the summary when it has it, or with ``missing=True`` is
computed from the checkpoint (`polymodal.engine.evaluate.evaluate_run`). The figures need matplotlib
(the ``plot`` extra), imported only here; without it the command is one line saying so.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.config import read_yaml
from polymodal.engine.rundir import RunDir
from polymodal.errors import PolymodalError

SPEAKER_FILE = "speaker_eval.json"
NOT_PLOTTED = {"step", "lr", "steps_per_s", "test"}


@dataclass
class RunRecord:
    name: str
    dir: RunDir
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] | None
    speaker: dict[str, Any] | None = None
    missing: dict[str, dict[str, dict[str, float]]] | None = None  # case -> task -> {accuracy, error}
    missing_note: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-") or "run"

    def tasks(self) -> list[str]:
        found: dict[str, None] = {}
        for r in self.metrics:
            found.update(dict.fromkeys(r.get("test", {})))
        found.update(dict.fromkeys((self.summary or {}).get("test", {})))
        return list(found)

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], float(r[key])) for r in self.metrics if isinstance(r.get(key), int | float)]
        return [p[0] for p in pts], [p[1] for p in pts]

    def test_curve(self, task: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r["test"][task]["error"]) for r in self.metrics if task in r.get("test", {})]
        return [p[0] for p in pts], [100 * p[1] for p in pts]

    def final(self) -> dict[str, dict[str, float]]:
        if self.summary and "test" in self.summary:
            return self.summary["test"]
        tests = [r["test"] for r in self.metrics if "test" in r]
        return tests[-1] if tests else {}


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend; one line if the ``plot`` extra is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PolymodalError(
            "polymodal report draws with matplotlib, which is not installed: pip install 'polymodal[plot]'"
        ) from None
    return plt


def _names(paths: list[Path]) -> list[str]:
    """Each run's directory name, with its parent where two runs share a name."""
    names = [p.resolve().name for p in paths]
    return [
        f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n
        for p, n in zip(paths, names, strict=True)
    ]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_record(path: Path, name: str) -> RunRecord:
    rd = RunDir(path)
    if not rd.path.is_dir():
        raise PolymodalError(f"run directory '{path}' does not exist")
    if not rd.config.is_file():
        raise PolymodalError(f"'{path}' is not a run directory: it has no config.yaml")
    summary = _read_json(rd.summary) if rd.summary.is_file() else None
    speaker = _read_json(rd.path / SPEAKER_FILE) if (rd.path / SPEAKER_FILE).is_file() else None
    rec = RunRecord(name, rd, read_yaml(rd.config), rd.read_metrics(), summary, speaker)
    if summary and isinstance(summary.get("missing"), dict):
        rec.missing = summary["missing"]
    return rec


def add_missing(rec: RunRecord, data_root: str | None) -> None:
    """Accuracy with every modality and without each one, from the run's checkpoint."""
    if rec.missing is not None:
        return
    if not rec.dir.checkpoint.is_file():
        rec.missing_note = "no checkpoint"
        return
    from polymodal.engine.evaluate import evaluate_run

    rec.missing = evaluate_run(rec.dir.path, data_root)


def _flatten(d: Any, at: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {at: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flatten(v, f"{at}.{k}" if at else str(k))
    return out


def config_diff(records: list[RunRecord]) -> list[tuple[str, list[str]]]:
    """(dotted key, each run's value as text) for every key whose value is not the same in all runs."""
    flat = [_flatten(r.config) for r in records]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    out = []
    for k in keys:
        values = [json.dumps(f[k], sort_keys=True) if k in f else "—" for f in flat]
        if len(set(values)) > 1:
            out.append((k, values))
    return out


def _short(text: str, width: int = 48) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, int | float) and v == v else "—"


@dataclass
class Page:
    lines: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(head) + " |", "|" + " --- |" * len(head))
        self.add(*("| " + " | ".join(r) + " |" for r in rows), "")


def _loss_keys(records: list[RunRecord]) -> list[str]:
    """``loss`` first, then each task's loss (``sup_<task>``), then the other logged values."""
    keys: dict[str, None] = {}
    for r in records:
        for m in r.metrics:
            keys.update(
                {k: None for k, v in m.items() if k not in NOT_PLOTTED and isinstance(v, int | float)}
            )
    tasks = [f"sup_{t}" for r in records for t in r.tasks()]
    first = [k for k in ("loss", *tasks) if k in keys]
    return list(dict.fromkeys(first + [k for k in keys if k not in first]))


def _panels(plt: Any, n: int, title: str) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    fig.suptitle(title, fontsize=11)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(plt: Any, fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _style(ax: Any, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_losses(plt: Any, records: list[RunRecord], path: Path) -> str | None:
    keys = _loss_keys(records)
    if not keys:
        return None
    fig, axes = _panels(plt, len(keys), "training loss and logged values (mean over each log interval)")
    for ax, key in zip(axes, keys, strict=True):
        for i, r in enumerate(records):
            steps, values = r.curve(key)
            if steps:
                ax.plot(steps, values, f"C{i}", marker="." if len(steps) < 30 else None, label=r.name)
        _style(ax, key, "value")
    return _save(plt, fig, path)


def plot_test_error(plt: Any, records: list[RunRecord], path: Path) -> str | None:
    tasks = list(dict.fromkeys(t for r in records for t in r.tasks()))
    if not tasks:
        return None
    fig, axes = _panels(plt, len(tasks), "test error per task (%, lower is better)")
    for ax, task in zip(axes, tasks, strict=True):
        for i, r in enumerate(records):
            steps, err = r.test_curve(task)
            if steps:
                ax.plot(steps, err, f"C{i}", marker="o", label=r.name)
                ax.annotate(
                    f"{err[-1]:.1f}%",
                    (steps[-1], err[-1]),
                    fontsize=8,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        _style(ax, f"task '{task}'", "test error (%)")
        ax.set_ylim(bottom=0)
    return _save(plt, fig, path)


def plot_run(plt: Any, rec: RunRecord, path: Path) -> str:
    """One run: its loss curves (left) and its test error per task (right)."""
    fig, (left, right) = _panels(plt, 2, f"run {rec.name}")
    for key in _loss_keys([rec]):
        steps, values = rec.curve(key)
        left.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
    _style(left, "loss and logged values", "value")
    for task in rec.tasks():
        steps, err = rec.test_curve(task)
        right.plot(steps, err, marker="o", label=task)
    _style(right, "test error per task", "test error (%)")
    right.set_ylim(bottom=0)
    return _save(plt, fig, path)


def plot_missing(plt: Any, records: list[RunRecord], path: Path) -> str | None:
    """Accuracy with all modalities and without each one, per run and task (grouped bars)."""
    groups = [(r, t) for r in records if r.missing for t in r.missing.get("all", {})]
    if not groups:
        return None
    cases = list(dict.fromkeys(c for r, _ in groups for c in (r.missing or {})))
    if len(cases) < 2:  # single-modality runs: nothing was removed
        return None
    fig, (ax,) = _panels(plt, 1, "test accuracy with a modality removed")
    fig.set_size_inches(max(5.0, 1.2 * len(groups) * len(cases) / 2 + 2), 3.8)
    width = 0.8 / len(cases)
    for j, case in enumerate(cases):
        acc = [
            100 * (r.missing or {}).get(case, {}).get(t, {}).get("accuracy", float("nan")) for r, t in groups
        ]
        ax.bar([i + j * width for i in range(len(groups))], acc, width, label=case.replace("_", " "))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], [f"{r.name}\n{t}" for r, t in groups])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(plt, fig, path)


def _runs_section(page: Page, records: list[RunRecord]) -> None:
    tasks = list(dict.fromkeys(t for r in records for t in r.tasks()))
    rows = []
    for r in records:
        s, data = r.summary or {}, r.config.get("data", {})
        last = max((m.get("step", 0) for m in r.metrics), default=0)
        steps = str(s["steps"]) if "steps" in s else f"{last} (unfinished)"
        seconds = f"{s['seconds']:.1f} s" if isinstance(s.get("seconds"), int | float) else "—"
        final = r.final()
        errs = [_pct(final.get(t, {}).get("error")) for t in tasks]
        labeled = str(s.get("labeled_examples", "—"))
        method, dataset = (
            str(s.get("method", r.config.get("method"))),
            str(s.get("dataset", data.get("name"))),
        )
        rows.append(
            [f"**{r.name}**", dataset, method, steps, labeled, seconds, str(s.get("device", "—")), *errs]
        )
    page.add("## Runs", "")
    page.table(
        [
            "run",
            "dataset",
            "method",
            "steps",
            "labeled",
            "time",
            "device",
            *[f"test error {t}" for t in tasks],
        ],
        rows,
    )
    page.add(*(f"- **{r.name}**: `{r.dir.path}`" for r in records), "")


def _final_section(page: Page, records: list[RunRecord]) -> None:
    rows = []
    for r in records:
        for task, res in r.final().items():
            steps, err = r.test_curve(task)
            best = f"{min(err):.2f}% (step {steps[err.index(min(err))]})" if err else "—"
            rows.append(
                [r.name, task, _pct(res.get("accuracy")), _pct(res.get("error")), best, str(len(err))]
            )
    page.add("## Final test metrics", "")
    if not rows:
        page.add("No test results yet (the runs have not evaluated).", "")
        return
    page.table(["run", "task", "accuracy", "error", "best error (step)", "evaluations"], rows)


def _missing_section(page: Page, records: list[RunRecord], png: str | None, asked: bool) -> None:
    page.add("## Accuracy without each modality", "")
    have = [r for r in records if r.missing]
    if not have:
        why = "no run has a checkpoint" if asked else "pass `--missing` to evaluate each run's checkpoint"
        page.add(f"Not available: {why}.", "")
        return
    cases = list(dict.fromkeys(c for r in have for c in r.missing or {}))
    if cases == ["all"]:
        page.add("Every run reads one modality: there is nothing to remove.", "")
    rows = []
    for r in have:
        res = r.missing or {}
        for task in res.get("all", {}):
            rows.append([r.name, task, *(_pct(res.get(c, {}).get(task, {}).get("accuracy")) for c in cases)])
    page.table(["run", "task", *(c.replace("_", " ") for c in cases)], rows)
    notes = [f"{r.name}: {r.missing_note}" for r in records if r.missing_note]
    if notes:
        page.add("Not evaluated: " + "; ".join(notes) + ".", "")
    if png and len(cases) > 1:
        page.add(f"![accuracy without each modality]({png})", "")


def _speaker_section(page: Page, records: list[RunRecord], out: Path) -> None:
    page.add("## Speaker metrics", "")
    have = [r for r in records if r.speaker and isinstance(r.speaker.get("conditions"), dict)]
    if not have:
        page.add(
            "No speaker evaluation in these runs (`polymodal eval` writes `speaker_eval.json` for one).", ""
        )
        return
    p_targets = list(dict.fromkeys(p for r in have for p in (r.speaker or {}).get("p_targets", [])))
    rows = []
    for r in have:
        for cond, m in (r.speaker or {})["conditions"].items():
            dcf = [m.get("min_dcf", {}).get(str(p), {}).get("normalised") for p in p_targets]
            rows.append(
                [
                    r.name,
                    cond,
                    _pct(m.get("accuracy")),
                    _pct(m.get("summed_chunk_accuracy")),
                    _pct(m.get("eer")),
                ]
                + [f"{d:.4f}" if isinstance(d, int | float) else "—" for d in dcf]
            )
    heads = ["run", "condition", "accuracy", "summed chunks", "EER", *(f"minDCF p={p:g}" for p in p_targets)]
    page.table(heads, rows)
    for r in have:
        page.add(f"- {r.name}: {_short(str((r.speaker or {}).get('protocol', '')), 200)}")
        det = r.dir.path / "det.png"
        if det.is_file():
            shutil.copyfile(det, out / f"det-{r.slug}.png")
            page.add("", f"![DET curve of {r.name}](det-{r.slug}.png)")
    page.add("")


def _config_section(page: Page, records: list[RunRecord]) -> None:
    page.add("## Config differences", "")
    if len(records) < 2:
        page.add("One run: nothing to compare.", "")
        return
    diff = config_diff(records)
    if not diff:
        page.add("The configs are identical.", "")
        return
    page.table(["key", *(r.name for r in records)], [[f"`{k}`", *(_short(v) for v in vs)] for k, vs in diff])


def write_report(runs: list[Path], out: Path, missing: bool = False, data_root: str | None = None) -> Path:
    """``out/report.md`` with its PNGs for ``runs``; returns the markdown's path."""
    plt = pyplot()
    if not runs:
        raise PolymodalError("give at least one run directory")
    records = [load_record(Path(p), n) for p, n in zip(runs, _names([Path(p) for p in runs]), strict=True)]
    if missing:
        for r in records:
            add_missing(r, data_root)
    out.mkdir(parents=True, exist_ok=True)
    page = Page()
    page.add("# polymodal report", "", f"{len(records)} run(s), from `polymodal report`.", "")
    _runs_section(page, records)
    _final_section(page, records)
    for title, png in (
        ("Training loss", plot_losses(plt, records, out / "loss.png")),
        ("Test error", plot_test_error(plt, records, out / "test_error.png")),
    ):
        page.add(f"## {title}", "", f"![{title.lower()}]({png})" if png else "Nothing logged yet.", "")
    _missing_section(page, records, plot_missing(plt, records, out / "missing.png"), missing)
    _speaker_section(page, records, out)
    _config_section(page, records)
    page.add("## Per run", "")
    for r in records:
        page.add(
            f"### {r.name}",
            "",
            f"`{r.dir.path}`",
            "",
            f"![{r.name}]({plot_run(plt, r, out / f'run-{r.slug}.png')})",
            "",
        )
    path = out / "report.md"
    path.write_text("\n".join(page.lines).rstrip() + "\n")
    return path
