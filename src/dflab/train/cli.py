"""``dflab train RECIPE [--data.manifest M] [key.path=value ...] [--run-dir DIR] [--resume]``.

``RECIPE`` is a registered recipe name (``dflab list recipes``) or a YAML path. Every other ``--a.b V`` or
``a.b=V`` is a dotted override of the recipe (unknown keys are rejected). ``--resume`` continues the run in
``--run-dir`` from its ``last/`` checkpoint (after a crash or a SIGKILL). Under ``torchrun`` every rank runs this
command; rank 0 writes the run directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dflab.errors import CheckpointError, ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe name (dflab list recipes) or YAML file")
    parser.add_argument("--run-dir", default=None, help="run directory (default: <out>/<recipe>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from last/")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="dotted overrides: a.b=V or --a.b V")


def _split_overrides(args: argparse.Namespace) -> list[str]:
    """Take this command's own flags back out of the REMAINDER (they may come after the recipe's overrides)."""
    rest = list(args.overrides or [])
    out: list[str] = []
    i = 0
    while i < len(rest):
        item = rest[i]
        if item in ("--resume", "--print-config"):
            setattr(args, item[2:].replace("-", "_"), True)
        elif item == "--run-dir" and i + 1 < len(rest):
            args.run_dir = rest[i + 1]
            i += 1
        elif item.startswith("--run-dir="):
            args.run_dir = item.split("=", 1)[1]
        else:
            out.append(item)
        i += 1
    return out


def run(args: argparse.Namespace) -> int:
    import yaml

    from dflab.train.config import recipe_to_dict
    from dflab.train.recipes import load_recipe

    overrides = _split_overrides(args)
    try:
        cfg = load_recipe(args.recipe, overrides)
    except ConfigError as exc:
        print(f"dflab train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(recipe_to_dict(cfg), sort_keys=False))
        return 0
    if args.resume and not args.run_dir:
        print("dflab train: --resume needs --run-dir", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or Path(cfg.out) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    from dflab.train.loop import Trainer

    try:
        trainer = Trainer(cfg, run_dir, resume=args.resume, argv=sys.argv)
    except (ConfigError, CheckpointError) as exc:  # e.g. pretrained weights that cannot be had: say how to get them
        print(f"dflab train: {exc}", file=sys.stderr)
        return 2
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.is_main:
        best = summary["best"]
        last = summary["history"][-1] if summary["history"] else {}
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}
        print(f"[train] done: {summary['steps']} steps; last validation {shown}; best {best}; run dir {run_dir}")
    return 0
