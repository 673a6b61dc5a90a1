"""``dflab compare RUN...``: several runs' results in one table, like the papers' tables (rows = detectors,
columns = test sets, plus the average as in BiG-Arts Tables 1, 4–6).

A RUN is an eval output folder or its ``results.json``. With ``--robustness`` each sweep level becomes a column too.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from pathlib import Path
from typing import Any


def load_run(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise FileNotFoundError(f"no results.json at {p}")
    res = json.loads(p.read_text())
    res["_path"] = str(p)
    return res


def run_name(res: dict[str, Any]) -> str:
    card = (res.get("checkpoint") or {}).get("card") or {}
    det = card.get("variant") or card.get("detector") or card.get("name")
    return str(det or Path(res["_path"]).parent.name)


def table(
    runs: list[dict[str, Any]], metric: str = "auc", level: str = "video", robustness: bool = False
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: one row per run, one column per test set with data in some run, then ``Avg`` over the test
    sets (as the papers' tables); with ``robustness``, one more column per sweep level after ``Avg`` (not averaged).
    """
    cols: list[str] = []
    rcols: list[str] = []
    values: list[dict[str, float | None]] = []
    for r in runs:
        vals: dict[str, float | None] = {}
        for name, t in (r.get("tests") or {}).items():
            vals[name] = t[level].get(metric) if t.get("status") == "ok" else None
            if vals[name] is not None and name not in cols:
                cols.append(name)
        for sw, sres in ((r.get("robustness") or {}).get("sweeps") or {}).items() if robustness else ():
            for lv in sres["levels"]:
                key = f"{sw}@{lv['level']:g}"
                vals[key] = lv[level].get(metric)
                if key not in rcols:
                    rcols.append(key)
        values.append(vals)
    header = ["run", "protocol", *cols, "Avg", *rcols]
    rows = []
    for r, vals in zip(runs, values, strict=True):
        nums = [vals.get(c) for c in cols]
        finite = [v for v in nums if v is not None and math.isfinite(v)]
        avg = sum(finite) / len(finite) if finite else None
        rows.append([run_name(r), (r.get("protocol") or {}).get("name", ""), *nums, avg, *[vals.get(c) for c in rcols]])
    return header, rows


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def to_markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


def to_html(header: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="eval output folders or results.json files")
    parser.add_argument("--metric", default="auc", help="auc, eer, ap, acc, precision, recall, f1")
    parser.add_argument("--level", default="video", choices=["frame", "video"])
    parser.add_argument("--format", default="markdown", choices=["markdown", "csv", "html"])
    parser.add_argument("--robustness", action="store_true", help="add the robustness sweep levels as columns")
    parser.add_argument("--out", default=None, help="write the table to this file as well")


def run(args: argparse.Namespace) -> int:
    runs = [load_run(p) for p in args.runs]
    header, rows = table(runs, args.metric, args.level, args.robustness)
    text = {"markdown": to_markdown, "csv": to_csv, "html": to_html}[args.format](header, rows)
    print(f"{args.level}-level {args.metric.upper()}")
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0
