"""`polymodal` command line: train, eval, data list, demo.

User errors (`PolymodalError`) print one line and exit 2; nothing else is caught, so a real bug
still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polymodal.errors import PolymodalError


def _default_out(config: str | None) -> Path:
    import time

    stem = Path(config).stem if config else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    from polymodal.config import load_config, parse_set
    from polymodal.engine.rundir import RunDir
    from polymodal.engine.trainer import train

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
        cfg = load_config(args.config, args.set)
        run_dir = RunDir(args.out or _default_out(args.config))
        if run_dir.checkpoint.exists():
            raise PolymodalError(f"'{run_dir}' already holds a run; resume it with --resume {run_dir}")
    train(cfg, run_dir, resume=bool(args.resume), quiet=args.quiet)
    print(run_dir)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from polymodal.engine.evaluate import evaluate_run

    # multi-modal runs also report accuracy with each modality removed
    for case, res in evaluate_run(Path(args.run_dir), data_root=args.data_root).items():
        suffix = "" if case == "all" else f"  ({case.replace('_', ' ')})"
        for task, r in res.items():
            print(f"{task:12s} accuracy {100 * r['accuracy']:6.2f}%  error {100 * r['error']:6.2f}%{suffix}")
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
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run's checkpoint on its test split")
    e.add_argument("run_dir")
    e.add_argument("--data-root", help=root_help)
    e.set_defaults(fn=cmd_eval)

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

    tr = sub.add_parser("transfer", help="latent space transfer: modality B through modality A's head")
    tr.add_argument("config", help="YAML transfer config (see configs/transfer_*.yaml)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    tr.add_argument("--out", help="folder for transfer.json")
    tr.add_argument("--data-root", help=root_help)
    tr.set_defaults(fn=cmd_transfer)

    m = sub.add_parser("demo", help="supervised vs UDA on 10 labels per class of MNIST (CPU, ~2 min)")
    m.add_argument("--out", default="runs/demo", help="folder for the runs and demo.json")
    m.add_argument("--data-root", help=root_help)
    m.add_argument("--steps", type=int, default=None, help="training steps per method")
    m.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
