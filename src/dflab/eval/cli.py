"""``dflab eval CHECKPOINT... --protocol NAME --data MANIFEST...``: evaluate a checkpoint with a named protocol.

Examples::

    dflab eval runs/x/best --protocol within --data prepared/ffpp
    dflab eval runs/x/best --protocol cross_manipulation_ffpp --data prepared/ffpp --robustness jpeg,blur
    dflab eval runs/x/ckpt-* --select --protocol within --data prepared/ffpp   # choose on val, report test
    dflab eval runs/x/best --protocol folder --root my_folder/                 # real/ and fake/ subfolders

Several checkpoints need ``--select``: the best on the protocol's *validation* split is evaluated; selecting on a
test split is refused (:class:`dflab.eval.protocols.SelectionError`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dflab.distributed import add_ray_argument
from dflab.eval.evaluate import EvalConfig, evaluate
from dflab.eval.protocols import PROTOCOLS, SelectionError, get_protocol


def parse_where(items: list[str] | None) -> dict[str, object]:
    """``["split=val", "method=real,Deepfakes"]`` → ``{"split": "val", "method": ["real", "Deepfakes"]}``."""
    out: dict[str, object] = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"--where expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.split(",") if "," in v else v
    return out


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="MANIFEST",
        help="prepared manifest (file or folder); repeat for cross-dataset protocols",
    )
    parser.add_argument("--out", default=None, help="output folder (default: eval_out/<checkpoint>_<protocol>)")
    parser.add_argument(
        "--frames-per-track", type=int, default=None, help="evaluate at most N evenly spaced frames per face track"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--agg", default="mean", help="frames -> track aggregation (mean, median, max, vote, …)")
    parser.add_argument("--track-agg", default="max", help="tracks -> video aggregation")
    parser.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="override a test filter of every test set (reported as a deviation)",
    )
    parser.add_argument("--seed", type=int, default=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="+", help="checkpoint path(s) (safetensors + card)")
    parser.add_argument("--protocol", default="within", help=f"one of: {', '.join(PROTOCOLS.names())}")
    parser.add_argument("--root", default=None, help="plain folder with real/ and fake/ (protocol 'folder')")
    add_common(parser)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for AUC CIs (0 = none)")
    parser.add_argument("--select", action="store_true", help="choose among the checkpoints on validation data")
    parser.add_argument("--select-split", default="val")
    parser.add_argument("--select-metric", default="auc")
    parser.add_argument("--gallery", type=int, default=3, help="cases per outcome in the explanation gallery")
    parser.add_argument("--no-gradcam", action="store_true")
    parser.add_argument("--no-tsne", action="store_true")
    parser.add_argument("--no-average", action="store_true")
    parser.add_argument("--robustness", default="", help="comma-separated sweeps to add: jpeg,blur,rescale,noise,h264")
    add_ray_argument(parser, "the prediction step, one task per video")


def run(args: argparse.Namespace) -> int:
    from dflab.models.checkpoint import load_detector

    protocol = get_protocol(args.protocol)
    data = list(args.data)
    stem = Path(args.checkpoint[0]).stem if len(args.checkpoint) == 1 else "selected"
    out = Path(args.out or f"eval_out/{stem}_{protocol.name}")
    if protocol.needs_root:
        if not args.root:
            print(f"protocol {protocol.name!r} needs --root DIR", file=sys.stderr)
            return 2
        from dflab.data.prepare import prepare_dataset

        prepared = out / "prepared"
        prepare_dataset("folder", args.root, prepared)
        data.append(str(prepared))
    if not data:
        print("give at least one --data MANIFEST", file=sys.stderr)
        return 2
    where = parse_where(args.where)
    selection = None
    checkpoint = args.checkpoint[0]
    if len(args.checkpoint) > 1 or args.select:
        if not args.select:
            print("several checkpoints given: add --select to choose one on validation data", file=sys.stderr)
            return 2
        from dflab.eval.select import select_checkpoint

        test_where = {t.name: {**t.where, **where} for t in protocol.tests}
        try:
            selection = select_checkpoint(
                args.checkpoint,
                protocol,
                data,
                split=args.select_split,
                metric=args.select_metric,
                frames_per_track=args.frames_per_track,
                test_where=test_where,
                batch_size=args.batch_size,
            )
        except SelectionError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 3
        checkpoint = selection["best"]
        print(f"[eval] selected {checkpoint} ({args.select_metric} on {args.select_split})")
    loaded = load_detector(checkpoint)
    cfg = EvalConfig(
        protocol=protocol.name,
        data=[str(d) for d in data],
        where=where,
        how=args.agg,
        track_how=args.track_agg,
        threshold=args.threshold,
        bootstrap=args.bootstrap,
        frames_per_track=args.frames_per_track,
        batch_size=args.batch_size,
        gallery=args.gallery,
        gradcam=not args.no_gradcam,
        tsne=not args.no_tsne,
        average=not args.no_average,
        robustness=[s for s in args.robustness.split(",") if s],
        seed=args.seed,
    )
    results = evaluate(
        loaded.model,
        cfg,
        spec=loaded.spec,
        card=loaded.card,
        checkpoint=str(checkpoint),
        out_dir=out,
        selection=selection,
        ray=args.ray,
    )
    ok = [t for t in results["tests"].values() if t.get("status") == "ok"]
    return 0 if ok else 1
