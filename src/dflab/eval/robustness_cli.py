"""``dflab robustness CHECKPOINT --data MANIFEST``: AUC against JPEG quality, blur, rescale, noise and H.264 CRF
(BiG-Arts §5, Fig. 9, Table 8), written as results.json and a report with the curves.

The rows are the protocol's first test set (``--protocol``, default ``within``: the test split) unless ``--where``
overrides the filters.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from dflab.eval.cli import add_common, parse_where
from dflab.eval.predict import load_rows, subsample_per_track
from dflab.eval.protocols import get_protocol
from dflab.eval.report import fig_uri, render_html, robustness_figure, write_json
from dflab.eval.robustness import SWEEPS, run_sweeps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint path (safetensors + card)")
    parser.add_argument("--protocol", default="within", help="protocol whose first test set is swept")
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help=f"comma-separated, from {', '.join(SWEEPS)}")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from dflab.models.checkpoint import load_detector

    if not args.data:
        print("give at least one --data MANIFEST", file=sys.stderr)
        return 2
    protocol = get_protocol(args.protocol)
    loaded = load_detector(args.checkpoint)  # first: an unusable checkpoint is refused before any data is read
    where = {**protocol.tests[0].where, **parse_where(args.where)}
    rows = subsample_per_track(load_rows(args.data, where), args.frames_per_track)
    if not rows:
        print(f"no rows match {where}", file=sys.stderr)
        return 1
    sweeps = [s for s in args.sweeps.split(",") if s]
    print(f"[robustness] {len(rows)} faces, sweeps {sweeps}")
    res = run_sweeps(
        loaded.model,
        rows,
        sweeps=sweeps,
        spec=loaded.spec,
        batch_size=args.batch_size,
        how=args.agg,
        seed=args.seed,
        progress=lambda m: print(f"[robustness] {m}"),
    )
    out = Path(args.out or f"eval_out/{Path(args.checkpoint).stem}_robustness")
    results = {
        "kind": "robustness",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "protocol": {
            "name": f"robustness on {protocol.name}/{protocol.tests[0].name}",
            "description": str(where),
            "paper": "BiG-Arts Sec. 5, Fig. 9, Table 8",
        },
        "config": {
            "data": args.data,
            "where": where,
            "frames_per_track": args.frames_per_track,
            "aggregation": args.agg,
            "sweeps": sweeps,
        },
        "checkpoint": {"path": args.checkpoint, "card": loaded.card},
        "robustness": {"test_set": protocol.tests[0].name, "sweeps": res},
        "warnings": [f"test filters overridden: {parse_where(args.where)}"] if args.where else [],
    }
    write_json(out / "results.json", results)
    figs = [("AUC against degradation level (BiG-Arts Fig. 9)", fig_uri(robustness_figure(res)))]
    table = ["<table><tr><th class=l>sweep</th><th>level</th><th>frame AUC</th><th>video AUC</th><th>n</th></tr>"]
    for name, r in res.items():
        for lv in r["levels"]:
            fa, va = lv["frame"]["auc"], lv["video"]["auc"]
            table.append(
                f"<tr><td class=l>{name}</td><td>{lv['level']:g}</td><td>{fa:.4f}</td><td>{va:.4f}</td>"
                f"<td>{lv['n']}</td></tr>"
            )
    table.append("</table>")
    (out / "report.html").write_text(render_html(results, figures=figs, extra_sections=[("Table", "".join(table))]))
    print(f"[robustness] wrote {out / 'results.json'} and {out / 'report.html'}")
    return 0
