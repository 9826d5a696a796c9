"""`polymodal` command line: train, eval, embed, data, demo, report.

User errors (`PolymodalError`) print one line and exit 2; nothing else is caught, so a real bug
still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from polymodal.errors import PolymodalError


def _default_out(config: str | None) -> Path:
    import time

    stem = Path(config).stem if config else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    from polymodal.config import load_config, parse_set
    from polymodal.engine.rundir import RunDir
    from polymodal.engine.trainer import train

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # relaunch this command under torchrun
        from polymodal.engine.distributed import launch

        argv = _without_option(args.argv, "--nproc")
        if not args.resume and not args.out:
            argv += ["--out", str(_default_out(args.config))]  # one run dir for every process
        return launch(args.nproc, argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (args.out or args.resume):
        raise PolymodalError("under torchrun give --out RUN_DIR (every process must write to the same run)")
    if args.data_root:
        args.set.append(f"data.root={args.data_root}")
    if args.resume:
        if args.config:
            raise PolymodalError(
                "--resume reads RUN_DIR/config.yaml; drop CONFIG (use --set to change a key)"
            )
        run_dir = RunDir(args.resume)
        cfg = run_dir.read_config(parse_set(args.set), resuming=True)
        if not run_dir.checkpoint.is_file():
            raise PolymodalError(f"'{run_dir}' has no checkpoint yet; start it again without --resume")
    else:
        if not args.config:
            raise PolymodalError("give a CONFIG file (see configs/) or --resume RUN_DIR")
        from polymodal.speaker.fusion import is_fusion_config, train_score_fusion

        if is_fusion_config(args.config):  # score-level fusion: train each system, then fuse
            out = Path(args.out or _default_out(args.config))
            res = train_score_fusion(args.config, args.set, out, quiet=args.quiet)
            _print_speaker(res)
            print(out)
            return 0
        cfg = load_config(args.config, args.set)
        run_dir = RunDir(args.out or _default_out(args.config))
        if run_dir.checkpoint.exists():
            raise PolymodalError(f"'{run_dir}' already holds a run; resume it with --resume {run_dir}")
    train(cfg, run_dir, resume=bool(args.resume), quiet=args.quiet)
    if os.environ.get("RANK", "0") == "0":
        print(run_dir)
    return 0


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` less ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(f"{name}="):
            out.append(a)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    from polymodal.config import parse_set
    from polymodal.engine.evaluate import evaluate_missing, load_run
    from polymodal.speaker import evaluate_speaker_run, is_speaker_run
    from polymodal.speaker.fusion import FUSION_FILE, evaluate_fusion_dir

    sets = parse_set(args.set)
    if (Path(args.run_dir) / FUSION_FILE).is_file():  # a score-fusion directory
        _print_speaker(evaluate_fusion_dir(args.run_dir, sets, args.data_root))
        return 0
    run = load_run(Path(args.run_dir), data_root=args.data_root)
    _threads(run.cfg.train.threads)
    if sets and not is_speaker_run(run):
        raise PolymodalError("eval --set applies to speaker runs only (speaker.* keys)")
    # multi-modal runs also report accuracy with each modality removed
    for case, res in evaluate_missing(run.model, run.data.test, run.views, run.cfg, run.device).items():
        suffix = "" if case == "all" else f"  ({case.replace('_', ' ')})"
        for task, r in res.items():
            print(f"{task:12s} accuracy {100 * r['accuracy']:6.2f}%  error {100 * r['error']:6.2f}%{suffix}")
    if is_speaker_run(run):
        _print_speaker(evaluate_speaker_run(args.run_dir, sets, loaded=run))
    return 0


def _threads(n: int | None) -> None:
    """Evaluate with the run's train.threads: on a busy machine more threads than cores is much slower."""
    import torch

    if n:
        torch.set_num_threads(n)


def _print_speaker(res: dict) -> None:
    from polymodal.speaker.report import format_report

    print("\n".join(format_report(res)))


def cmd_embed(args: argparse.Namespace) -> int:
    from polymodal.speaker.embed import embed_folder

    info = embed_folder(args.run_dir, args.audio_dir, args.out, data_root=args.data_root)
    known = "with speakers" if info["speakers"] else "speakers unknown"
    print(f"{info['utterances']} embeddings of dimension {info['dim']} ({known}) -> {info['file']}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from polymodal.data import DATASET_INFO, dataset_status
    from polymodal.data.files import resolve_root

    try:
        root = resolve_root(args.data_root)
    except PolymodalError as e:
        root = None
        print(f"(data root: {e})")
    print(f"{'name':14s} {'status':9s} folder / description")
    for name, (folder, about) in DATASET_INFO.items():
        print(f"{name:14s} {dataset_status(name, root):9s} {folder}/ — {about}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from polymodal.config import parse_set
    from polymodal.data import BUILDERS
    from polymodal.data.files import resolve_root

    builder = BUILDERS.get(args.name)
    print(builder(resolve_root(args.data_root), **parse_set(args.set)))
    return 0


def cmd_data_pack(args: argparse.Namespace) -> int:
    from polymodal.data import load_dataset
    from polymodal.data.packed import pack, packed_dir

    bundle = load_dataset(args.name, args.data_root)
    print(pack(bundle, Path(args.out) if args.out else packed_dir(args.name)))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from polymodal.config import load_config, parse_set
    from polymodal.data.check import check_dataset, format_check, target
    from polymodal.data.files import resolve_root

    options = parse_set(args.set)
    if Path(args.path).suffix.lower() in (".yaml", ".yml"):  # the data section of a run config
        cfg = load_config(args.path)
        name, options = cfg.data.name, {**cfg.data.options, **options}
        root = resolve_root(args.data_root or cfg.data.root)
    else:
        (name, options), root = target(args.path, options), Path.cwd()
    res = check_dataset(name, root, options)
    print("\n".join(format_check(res)))
    if not res.ok:
        n = len(res.problems.errors)
        raise PolymodalError(f"data check: {n} error(s) in '{args.path}' (listed above)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from polymodal.report import write_report

    print(write_report([Path(r) for r in args.runs], Path(args.out), args.missing, args.data_root))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from polymodal.transfer import transfer_main

    if args.data_root:
        args.set.append(f"root={args.data_root}")
    result = transfer_main(args.config, args.set, args.out)
    for name, acc in result["accuracy"].items():
        print(f"{name:48s} " + (f"{100 * acc:6.2f}%" if acc is not None else "(not run)"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from polymodal.demo import run_demo

    result = run_demo(Path(args.out), data_root=args.data_root, steps=args.steps)
    print(json.dumps(result))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from polymodal.search import load_search_config, run_search

    if not args.resume and not args.config:
        raise PolymodalError("give a search CONFIG (see configs/search_*.yaml) or --resume SEARCH_DIR")
    if args.data_root:
        args.set.append(f"data.root={args.data_root}")
    cfg = None if args.resume else load_search_config(args.config, args.set)
    out = args.resume or args.out or _default_out(args.config)
    summary = run_search(cfg, out, resume=bool(args.resume), quiet=args.quiet)
    if summary["best"] is not None:
        best = summary["best"]
        print(f"best {best['id']}: fitness {best['fitness']:.4f} -> {summary['report']}")
    return 0


def _add_data_check(dsub: Any, root_help: str) -> None:
    dc = dsub.add_parser("check", help="validate your own data: counts per class / modality, every problem")
    dc.add_argument("path", help="a class folder, a .csv / .jsonl table or manifest, or a config .yaml")
    dc.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a data option, e.g. kind=audio, modalities={img: image, age: number}, tasks=[label]",
    )
    dc.add_argument("--data-root", help=root_help + " (a config's relative data.options.path)")
    dc.set_defaults(fn=cmd_data_check)


def _add_report(sub: Any, root_help: str) -> None:
    r = sub.add_parser("report", help="a markdown page + PNGs of runs: curves, final metrics, config diff")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    r.add_argument("--out", required=True, help="folder for report.md and its PNGs")
    r.add_argument("--missing", action="store_true", help="evaluate each checkpoint without each modality")
    r.add_argument("--data-root", help=root_help + " (for --missing)")
    r.set_defaults(fn=cmd_report)


def _search_parser(sub: argparse._SubParsersAction, root_help: str) -> None:
    se = sub.add_parser("search", help="fusion architecture search by a genetic algorithm (docs/search.md)")
    se.add_argument("config", nargs="?", help="YAML search config (see configs/search_*.yaml)")
    se.add_argument("--out", help="search directory (default: runs/<config name>-<time>)")
    se.add_argument("--resume", metavar="SEARCH_DIR", help="continue a killed search; keeps finished ones")
    se.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    se.add_argument("--data-root", help=root_help)
    se.add_argument("--quiet", action="store_true", help="no progress lines")
    se.set_defaults(fn=cmd_search)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polymodal", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    root_help = "data root (default: $POLYMODAL_DATA)"

    t = sub.add_parser("train", help="train from a YAML config")
    t.add_argument("config", nargs="?", help="YAML config (see configs/)")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.steps=500 (repeatable)",
    )
    t.add_argument("--out", help="run directory (default: runs/CONFIG-TIME)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--data-root", help=root_help)
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.add_argument(
        "--nproc", type=int, default=1, help="data-parallel processes (runs this command under torchrun)"
    )
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser(
        "eval", help="evaluate a run's checkpoint on its test split (speaker runs: EER, minDCF)"
    )
    e.add_argument("run_dir")
    e.add_argument("--data-root", help=root_help)
    e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="speaker runs: e.g. speaker.test_snr_db=[0,5]",
    )
    e.set_defaults(fn=cmd_eval)

    em = sub.add_parser("embed", help="write a speaker run's embeddings of a folder of audio (npz)")
    em.add_argument("run_dir")
    em.add_argument("audio_dir", help="wav / flac files, FSDD style or {speaker}/[{session}/]{utt}")
    em.add_argument("--out", required=True, help="the .npz to write (names, speakers if known, embeddings)")
    em.add_argument("--data-root", help=root_help)
    em.set_defaults(fn=cmd_embed)

    d = sub.add_parser("data", help="datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("list", help="list datasets and whether they are under the data root")
    dl.add_argument("--data-root", help=root_help)
    dl.set_defaults(fn=cmd_data_list)
    db = dsub.add_parser("build", help="build a derived dataset (seeded, cached with checksums)")
    db.add_argument("name", help="e.g. multimnist, avmnist")
    db.add_argument("--data-root", help=root_help)
    db.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="builder option")
    db.set_defaults(fn=cmd_data_build)
    dp = dsub.add_parser("pack", help="write a dataset as memory-mapped arrays (data.placement: mmap)")
    dp.add_argument("name", help="a dataset name (polymodal data list)")
    dp.add_argument("--data-root", help=root_help)
    dp.add_argument("--out", help="folder (default: $POLYMODAL_CACHE/packed/NAME, where mmap runs look)")
    dp.set_defaults(fn=cmd_data_pack)
    _add_data_check(dsub, root_help)

    tr = sub.add_parser("transfer", help="latent space transfer: modality B through modality A's head")
    tr.add_argument("config", help="YAML transfer config (see configs/transfer_*.yaml)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    tr.add_argument("--out", help="folder for transfer.json")
    tr.add_argument("--data-root", help=root_help)
    tr.set_defaults(fn=cmd_transfer)

    _search_parser(sub, root_help)
    m = sub.add_parser("demo", help="supervised vs UDA on 10 labels per class of MNIST (CPU, ~2 min)")
    m.add_argument("--out", default="runs/demo", help="folder for the runs and demo.json")
    m.add_argument("--data-root", help=root_help)
    m.add_argument("--steps", type=int, default=None, help="training steps per method")
    m.set_defaults(fn=cmd_demo)

    _add_report(sub, root_help)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.fn(args)
    except PolymodalError as e:
        print(f"polymodal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "polymodal: interrupted (the last checkpoint is kept; resume with --resume RUN_DIR)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
