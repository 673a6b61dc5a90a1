"""Reports: JSON with every number (plus config and checkpoint card) and a self-contained HTML page.

The HTML embeds its plots as PNG data URIs and uses no external script, font or stylesheet, so it opens offline
and can be attached to an issue. Sections: run facts and warnings, metrics table (frame and video level, with
bootstrap CIs), ROC curves, score histograms per method, robustness curves, explanation galleries, t-SNE,
averaged faces and maps.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


# ------------------------------------------------------------------------------------------------------------ JSON
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        f = float(obj)
        return f if math.isfinite(f) else None  # strict JSON: undefined metrics are null
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write strict JSON (NaN → null, numpy → Python). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=False))
    return path


# ---------------------------------------------------------------------------------------------------------- images
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def fig_uri(fig) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def img_uri(rgb: np.ndarray, max_side: int = 256, fmt: str = ".jpg") -> str:
    """An RGB uint8 image as a JPEG (or PNG) data URI, downscaled so its longer side is at most ``max_side``."""
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("image encoding failed")
    mime = "jpeg" if fmt == ".jpg" else "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.tobytes()).decode()


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str):
    """ROC curves, one per test set: name -> (fpr, tpr, auc)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=100)
    for name, (fpr, tpr, a) in curves.items():
        if len(fpr):
            ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUC {a:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def hist_figure(scores_by_group: dict[str, np.ndarray], title: str, threshold: float = 0.5):
    """Score histograms, one per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2), dpi=100)
    bins = np.linspace(0, 1, 26)
    for name, s in scores_by_group.items():
        ax.hist(s, bins=bins, alpha=0.55, label=f"{name} (n={len(s)})")
    ax.axvline(threshold, c="k", lw=0.8, ls=":")
    ax.set(xlabel="P(fake)", ylabel="faces", title=title)
    ax.legend(fontsize=7)
    return fig


def robustness_figure(robustness: dict[str, Any], level: str = "video"):
    """One panel per sweep: AUC against the degradation level (BiG-Arts Fig. 9)."""
    plt = _plt()
    n = len(robustness)
    fig, axes = plt.subplots(1, n, figsize=(2.45 * n, 2.6), dpi=100, squeeze=False)
    for ax, (name, res) in zip(axes[0], robustness.items(), strict=True):
        xs = [r["level"] for r in res["levels"]]
        for lv, style in (("frame", "--"), ("video", "-")):
            ys = [np.nan if r[lv]["auc"] is None else r[lv]["auc"] for r in res["levels"]]
            ax.plot(xs, ys, style, marker="o", ms=3, label=lv)
        ax.set(xlabel=res["label"], ylabel="AUC", ylim=(0, 1.02), title=name)
        if name == "jpeg":
            ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24;max-width:1280px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:28px}
h3{font-size:14px;margin:14px 0 6px} .muted{color:#57606a;font-size:12px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right}
th{background:#f6f8fa} td.l,th.l{text-align:left}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;font-size:12.5px;margin:4px 0}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs img{border:1px solid #d0d7de}
.case{display:inline-block;margin:0 14px 14px 0;vertical-align:top;font-size:11.5px}
.case img{height:128px;margin-right:2px;border:1px solid #d0d7de} .tag{font-weight:600}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px;font-size:12px}
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def metrics_table(tests: dict[str, Any], levels: Sequence[str] = ("frame", "video")) -> str:
    """HTML table of every test set's metrics (BiG-Arts Table 2 columns), CIs beside the AUC."""
    cols = ("auc", "eer", "ap", "acc", "precision", "recall", "f1")
    head = "".join(f"<th>{c.upper()}</th>" for c in cols)
    rows = []
    for name, t in tests.items():
        if t.get("status") != "ok":
            rows.append(
                f"<tr><td class=l>{html.escape(name)}</td><td class=l colspan={len(cols) + 3}>"
                f"{html.escape(t.get('status', ''))}: {html.escape(str(t.get('reason', '')))}</td></tr>"
            )
            continue
        for lv in levels:
            m = t[lv]
            ci = m.get("auc_ci") or {}
            ci_s = f"[{_fmt(ci.get('low'), 3)}, {_fmt(ci.get('high'), 3)}]" if ci else ""
            seen = t.get("seen")
            tag = "" if seen is None else f" <span class=muted>({'seen' if seen else 'unseen'})</span>"
            cells = "".join(f"<td>{_fmt(m.get(c))}</td>" for c in cols)
            rows.append(
                f"<tr><td class=l>{html.escape(name)}{tag}</td><td class=l>{lv}</td><td>{m['n']} "
                f"<span class=muted>({m['n_fake']}F/{m['n_real']}R)</span></td>{cells}<td>{ci_s}</td></tr>"
            )
    return (
        f"<table><tr><th class=l>test set</th><th class=l>level</th><th>n</th>{head}<th>AUC 95% CI</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(
    results: dict[str, Any],
    *,
    figures: Sequence[tuple[str, str]] = (),
    galleries: Sequence[tuple[str, list[dict[str, Any]]]] = (),
    extra_sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The report page.

    Args:
        results: the JSON results (``tests``, ``checkpoint``, ``protocol``, ``warnings`` …).
        figures: ``(title, data URI)`` plots.
        galleries: ``(title, cases)``; each case has ``caption`` and ``panels`` = ``[(title, data URI)]``.
        extra_sections: ``(title, html)`` appended at the end.
    """
    ck = results.get("checkpoint", {})
    card = ck.get("card") or {}
    proto = results.get("protocol", {})
    title = f"dflab eval — {html.escape(str(card.get('detector', card.get('name', 'detector'))))} · " + html.escape(
        str(proto.get("name", results.get("kind", "")))
    )
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{title}</h1>")
    facts = [
        ("checkpoint", ck.get("path", "")),
        ("detector", card.get("variant") or card.get("detector", "")),
        ("protocol", f"{proto.get('name', '')} — {proto.get('description', '')} ({proto.get('paper', '')})"),
        ("data", ", ".join(map(str, results.get("config", {}).get("data", [])))),
        ("aggregation", results.get("config", {}).get("aggregation", "")),
        ("created", results.get("created", "")),
        ("git", results.get("git_sha", "")),
    ]
    parts.append(
        "<table>"
        + "".join(f"<tr><th class=l>{k}</th><td class=l>{_fmt(v)}</td></tr>" for k, v in facts if v)
        + "</table>"
    )
    for w in results.get("warnings", []):
        parts.append(f"<div class=warn>⚠ {html.escape(w)}</div>")
    if results.get("selection"):
        sel = results["selection"]
        parts.append(
            f"<p class=muted>checkpoint selected on split <code>{html.escape(sel['split'])}</code> by "
            f"{sel['level']} {sel['metric']} among {len(sel['candidates'])} candidates</p>"
        )
    if results.get("tests"):
        parts.append("<h2>Metrics</h2>" + metrics_table(results["tests"]))
        parts.append(
            "<p class=muted>video score = aggregation of its frame scores (per face track, then over tracks); "
            "thresholded metrics at P(fake) ≥ "
            + _fmt(results.get("config", {}).get("threshold", 0.5), 2)
            + "; n/a = undefined (one class only).</p>"
        )
    if figures:
        parts.append("<h2>Plots</h2><div class=figs>")
        parts.extend(
            f"<figure><img src='{uri}' alt='{html.escape(t)}'><figcaption class=muted>{html.escape(t)}"
            "</figcaption></figure>"
            for t, uri in figures
        )
        parts.append("</div>")
    for gtitle, cases in galleries:
        parts.append(f"<h2>{html.escape(gtitle)}</h2>")
        if not cases:
            parts.append("<p class=muted>none</p>")
        for c in cases:
            imgs = "".join(f"<img src='{u}' title='{html.escape(t)}' alt='{html.escape(t)}'>" for t, u in c["panels"])
            parts.append(f"<div class=case>{imgs}<br>{c['caption']}</div>")
    for stitle, body in extra_sections:
        parts.append(f"<h2>{html.escape(stitle)}</h2>{body}")
    parts.append("<p class=muted>all numbers are in results.json beside this file.</p></body></html>")
    return "\n".join(parts)
