"""Run a protocol: predictions per test set → metrics, CIs, seen/unseen marks, explanations → JSON + HTML.

This is what ``dflab eval`` calls; tests call it directly with an in-memory detector.
"""

from __future__ import annotations

import csv
import datetime as _dt
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dflab.data.manifest import Manifest
from dflab.data.sampling import eval_sampling_warnings, manifest_settings
from dflab.eval import metrics
from dflab.eval.predict import (
    Predictions,
    load_rows,
    predict,
    predict_on_ray,
    subsample_per_track,
    video_paths,
)
from dflab.eval.protocols import Protocol, get_protocol
from dflab.eval.report import fig_uri, hist_figure, img_uri, render_html, robustness_figure, roc_figure, write_json
from dflab.models.base import Detector, InputSpec


@dataclass
class EvalConfig:
    """Everything that decides the numbers of an evaluation (written into results.json).

    Attributes:
        protocol: registered protocol name.
        data: prepared manifests (files or folders).
        where: column overrides applied to every test set (e.g. ``{"split": "val"}``); reported as a deviation.
        how: frame → track aggregation; ``track_how``: track → video aggregation.
        threshold: P(fake) threshold of the thresholded metrics.
        bootstrap: bootstrap resamples for AUC CIs (0 = none).
        frames_per_track: evaluate at most this many evenly spaced frames per face track (None = all).
        batch_size: crops per forward pass.
        gallery: cases per outcome in the explanation gallery (0 = none).
        gradcam: compute Grad-CAM in the gallery and averaged maps.
        tsne: t-SNE of embeddings when the detector gives one.
        average: averaged face / map per dataset and class (BiG-Arts Fig. 6).
        robustness: sweeps (``dflab.eval.robustness.SWEEPS``) run on the first test set with data.
        seed: bootstrap / t-SNE seed.
    """

    protocol: str = "within"
    data: list[str] = field(default_factory=list)
    where: dict[str, Any] = field(default_factory=dict)
    how: str = "mean"
    track_how: str = "max"
    threshold: float = 0.5
    bootstrap: int = 1000
    frames_per_track: int | None = None
    batch_size: int = 32
    gallery: int = 3
    gradcam: bool = True
    tsne: bool = True
    average: bool = True
    robustness: list[str] = field(default_factory=list)
    seed: int = 0


def training_facts(card: dict[str, Any]) -> dict[str, set[str] | None]:
    """Datasets and methods the checkpoint was trained on, as far as its card tells (``None`` = unknown).

    Explicit ``datasets``/``methods`` lists anywhere in the card count (except under ``val``/``eval``/``metrics``).
    When the card names its training manifest (``training.manifest``, as ``dflab train`` writes it) and that file
    still exists, the methods and datasets of its training-stream rows are read from it as well, so a stream with
    no method filter still says which manipulations were seen.
    """
    found: dict[str, set[str]] = {"datasets": set(), "methods": set()}

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("val", "eval", "metrics", "validation"):
                    continue
                if k in found and isinstance(v, list | tuple):
                    found[k].update(str(x) for x in v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(card or {})
    training = (card or {}).get("training") or {}
    manifest = training.get("manifest")
    if manifest and Path(manifest).exists():
        with Manifest(manifest, readonly=True) as man:
            for stream in (training.get("streams") or {}).values():
                where: dict[str, Any] = {"split": stream.get("split", "train")}
                if stream.get("datasets"):
                    where["dataset"] = stream["datasets"]
                if stream.get("methods"):
                    where["method"] = stream["methods"]
                for r in man.faces(**where):
                    found["datasets"].add(r.dataset)
                    found["methods"].add(r.method)
    return {k: (v or None) for k, v in found.items()}


def _faceless_media(manifests: Sequence[str | Path], where: dict[str, Any]) -> list[dict[str, str]]:
    """Media of the test set that contributed no face (no face found, or an error recorded by ``prepare``)."""
    from dflab.data.manifest import VideoRecord

    cols = {f for f in VideoRecord.__dataclass_fields__}
    vwhere = {k: v for k, v in where.items() if k in cols}
    out = []
    for m in manifests:
        with Manifest(m, readonly=True) as man:
            for v in man.videos(**vwhere):
                if not v.get("n_faces"):
                    out.append(
                        {
                            "dataset": v["dataset"],
                            "video_id": v["video_id"],
                            "status": v.get("status", ""),
                            "cause": v.get("error_cause") or "no_face",
                        }
                    )
    return out


def _git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        return ""


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    from dflab import __version__

    return {
        "dflab": __version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
    }


def _downsample_roc(fpr: np.ndarray, tpr: np.ndarray, n: int = 200) -> dict[str, list[float]]:
    if len(fpr) > n:
        idx = np.unique(np.linspace(0, len(fpr) - 1, n).round().astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def score_set(pred: Predictions, cfg: EvalConfig) -> dict[str, Any]:
    """Frame- and video-level metrics (with CIs), per-method AUCs and ROC curves of one test set."""
    y, s = pred.labels, pred.scores
    vids = np.array([f"{r.dataset}/{r.video_id}" for r in pred.rows])
    frame = metrics.binary_metrics(y, s, cfg.threshold)
    g = pred.videos(cfg.how, cfg.track_how)
    video = metrics.binary_metrics(g.labels, g.scores, cfg.threshold)
    if cfg.bootstrap:
        frame["auc_ci"] = metrics.bootstrap_ci(y, s, n_boot=cfg.bootstrap, seed=cfg.seed, groups=vids)
        video["auc_ci"] = metrics.bootstrap_ci(g.labels, g.scores, n_boot=cfg.bootstrap, seed=cfg.seed)
    methods = [r.method for r in pred.rows]
    per_method = {}
    for m in sorted({mm for mm, lab in zip(methods, y, strict=True) if lab == 1}):
        keep = np.array([(lab == 0) or (mm == m) for mm, lab in zip(methods, y, strict=True)])
        sub = pred.subset(keep)
        sg = sub.videos(cfg.how, cfg.track_how)
        per_method[m] = {
            "frame_auc": metrics.auc(sub.labels, sub.scores),
            "video_auc": metrics.auc(sg.labels, sg.scores),
            "video_acc": metrics.acc(sg.labels, sg.scores, cfg.threshold),
            "n_videos": len(sg.keys),
        }
    fpr, tpr, _ = metrics.roc(y, s)
    vfpr, vtpr, _ = metrics.roc(g.labels, g.scores)
    return {
        "status": "ok",
        "frame": frame,
        "video": video,
        "per_method": per_method,
        "roc": {"frame": _downsample_roc(fpr, tpr), "video": _downsample_roc(vfpr, vtpr)},
        "videos": [
            {"dataset": k[0], "video_id": k[1], "label": int(lab), "score": float(sc), "n_faces": int(n)}
            for k, lab, sc, n in zip(g.keys, g.labels, g.scores, g.sizes, strict=True)
        ],
        "n_missing": len(pred.missing),
        "missing": pred.missing[:20],
    }


def evaluate(
    model: Detector,
    cfg: EvalConfig,
    *,
    spec: InputSpec | None = None,
    card: dict[str, Any] | None = None,
    checkpoint: str = "",
    out_dir: str | Path | None = None,
    selection: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    ray: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` with ``cfg.protocol`` on ``cfg.data``; write results.json, predictions.csv and
    report.html into ``out_dir`` when given. Returns the results dict.

    With ``ray`` (an address or ``"local"``), the prediction step runs one Ray task per video, each worker loading
    ``checkpoint`` itself (:func:`dflab.eval.predict.predict_on_ray`); the numbers are the same.
    """
    if ray is not None and not checkpoint:
        raise ValueError("evaluate(ray=...) needs the checkpoint path: Ray workers load the detector themselves")
    protocol: Protocol = get_protocol(cfg.protocol)
    spec = spec or model.input_spec
    card = card or {}
    facts = training_facts(card)
    warnings: list[str] = []
    if cfg.where:
        warnings.append(f"test filters overridden on the command line: {cfg.where} (not the protocol's own test data)")
    for k, want in protocol.train.items():
        have = facts.get(k + "s") if k in ("dataset", "method") else None
        if have is not None and want not in have:
            warnings.append(
                f"protocol {protocol.name!r} expects training on {k}={want!r}; the card says {sorted(have)}"
            )

    # the recipe's paper sampling (data.sampling, carried by the card) against the test data and --frames-per-track
    sampling = (card.get("training") or {}).get("sampling")
    settings = manifest_settings(cfg.data) if sampling else []

    tests: dict[str, Any] = {}
    preds: dict[str, Predictions] = {}
    for ts in protocol.tests:
        where = {**ts.where, **cfg.where}
        all_rows = load_rows(cfg.data, where)
        if all_rows:
            found = eval_sampling_warnings(
                sampling, rows=all_rows, frames_per_track=cfg.frames_per_track, settings=settings
            )
            for w in found:
                if w not in warnings:
                    warnings.append(w)
                    log(f"[eval] warning: {w}")
        rows = subsample_per_track(all_rows, cfg.frames_per_track)
        if ts.method and not any(r.method == ts.method for r in rows):
            rows = []  # the reals alone do not measure this manipulation
        if not rows:
            tests[ts.name] = {"status": "no data", "reason": f"no manifest rows match {where}", "where": where}
            warnings.append(f"test set {ts.name!r}: no rows match {where}")
            continue
        transform = None
        if ts.synth is not None:
            from dflab.eval.partial import partial_transform

            transform = partial_transform(**ts.synth[1])
        log(f"[eval] {ts.name}: {len(rows)} faces")
        kw = {"spec": spec, "batch_size": cfg.batch_size, "transform": transform, "embeddings": cfg.tsne}
        pred = predict_on_ray(checkpoint, rows, address=ray, **kw) if ray is not None else predict(model, rows, **kw)
        if len(pred) == 0:
            tests[ts.name] = {"status": "no data", "reason": f"all {len(rows)} crops unreadable", "where": where}
            continue
        res = score_set(pred, cfg)
        faceless = _faceless_media(cfg.data, where)
        if faceless:
            res["media_without_faces"] = faceless[:50]
            warnings.append(
                f"test set {ts.name!r}: {len(faceless)} media item(s) gave no face or failed to decode and are not "
                "scored (listed in JSON)"
            )
        res["where"] = where
        res["paper"] = ts.paper
        res["seen"] = (ts.method in facts["methods"]) if (ts.method and facts["methods"] is not None) else None
        if len(set(pred.labels.tolist())) < 2:
            warnings.append(f"test set {ts.name!r} holds one class only: AUC/EER/AP are undefined")
        if pred.missing:
            warnings.append(f"test set {ts.name!r}: {len(pred.missing)} crop(s) could not be used (listed in JSON)")
        tests[ts.name] = res
        preds[ts.name] = pred
        log(f"[eval] {ts.name}: frame AUC {res['frame']['auc']:.4f}  video AUC {res['video']['auc']:.4f}")

    results: dict[str, Any] = {
        "kind": "eval",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": _git_sha(),
        "versions": _versions(),
        "protocol": protocol.to_dict(),
        "config": {**asdict(cfg), "aggregation": f"frames→track: {cfg.how}, tracks→video: {cfg.track_how}"},
        "checkpoint": {"path": str(checkpoint), "card": card, "input_spec": spec.to_dict()},
        "training_facts": {k: sorted(v) if v else None for k, v in facts.items()},
        "selection": selection,
        "tests": tests,
        "warnings": warnings,
    }

    robust_rows = next(iter(preds.values())).rows if preds else []
    if cfg.robustness and robust_rows:
        from dflab.eval.robustness import run_sweeps

        name = next(iter(preds))
        log(f"[eval] robustness sweeps {cfg.robustness} on {name!r} ({len(robust_rows)} faces)")
        results["robustness"] = {
            "test_set": name,
            "sweeps": run_sweeps(
                model,
                robust_rows,
                sweeps=cfg.robustness,
                spec=spec,
                batch_size=cfg.batch_size,
                how=cfg.how,
                seed=cfg.seed,
                progress=lambda m: log(f"[robustness] {m}"),
            ),
        }
    if out_dir is not None:
        write_outputs(Path(out_dir), results, preds, model, spec, cfg, log=log)
    return results


def write_outputs(
    out: Path,
    results: dict[str, Any],
    preds: dict[str, Predictions],
    model: Detector,
    spec: InputSpec,
    cfg: EvalConfig,
    log: Callable[[str], None] = print,
) -> None:
    """results.json, predictions.csv and the HTML report with plots and explanations."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.csv").open("w", newline="") as fh:
        w = None
        for name, p in preds.items():
            for rec in p.records():
                rec = {"test_set": name, **rec}
                if w is None:
                    w = csv.DictWriter(fh, fieldnames=list(rec))
                    w.writeheader()
                w.writerow(rec)
    figures, galleries, extra = build_visuals(results, preds, model, spec, cfg, log=log)
    write_json(out / "results.json", results)
    (out / "report.html").write_text(render_html(results, figures=figures, galleries=galleries, extra_sections=extra))
    log(f"[eval] wrote {out / 'results.json'} and {out / 'report.html'}")


def build_visuals(
    results: dict[str, Any],
    preds: dict[str, Predictions],
    model: Detector,
    spec: InputSpec,
    cfg: EvalConfig,
    log: Callable[[str], None] = print,
) -> tuple[list[tuple[str, str]], list[tuple[str, list[dict[str, Any]]]], list[tuple[str, str]]]:
    """Plots (ROC, histograms, robustness, t-SNE), galleries and averaged faces for the HTML report."""
    figures: list[tuple[str, str]] = []
    tests = results["tests"]
    for lv in ("frame", "video"):
        curves = {
            n: (np.array(t["roc"][lv]["fpr"]), np.array(t["roc"][lv]["tpr"]), t[lv]["auc"])
            for n, t in tests.items()
            if t.get("status") == "ok"
        }
        if any(len(c[0]) for c in curves.values()):
            figures.append((f"ROC, {lv} level", fig_uri(roc_figure(curves, f"ROC ({lv} level)"))))
    for name, p in preds.items():
        groups: dict[str, list[float]] = {}
        for r, s in zip(p.rows, p.scores, strict=True):
            groups.setdefault(r.method, []).append(float(s))
        figures.append(
            (
                f"scores per method — {name}",
                fig_uri(
                    hist_figure(
                        {k: np.array(v) for k, v in sorted(groups.items())},
                        f"{name}: P(fake) per method",
                        cfg.threshold,
                    )
                ),
            )
        )
    if results.get("robustness"):
        rb = results["robustness"]
        figures.append((f"robustness on {rb['test_set']} (BiG-Arts Fig. 9)", fig_uri(robustness_figure(rb["sweeps"]))))
    all_pred = _union(preds)
    if cfg.tsne and all_pred is not None and all_pred.embeddings is not None and len(all_pred) >= 8:
        from dflab.explain.tsne import plot_tsne, tsne

        n = len(all_pred)
        keep = np.zeros(n, bool)
        keep[np.random.default_rng(cfg.seed).permutation(n)[:1500]] = True
        sub = all_pred.subset(keep)
        pts = tsne(sub.embeddings, seed=cfg.seed)
        figures.append(
            (
                "t-SNE of embeddings by method (LiSiam Fig. 5, MML Fig. 5)",
                fig_uri(plot_tsne(pts, sub.column("method"), "t-SNE by method")),
            )
        )
        figures.append(
            (
                "t-SNE of embeddings by label",
                fig_uri(plot_tsne(pts, ["fake" if v else "real" for v in sub.labels], "t-SNE by label")),
            )
        )
    galleries: list[tuple[str, list[dict[str, Any]]]] = []
    extra: list[tuple[str, str]] = []
    if all_pred is not None and (cfg.gallery or cfg.average):
        from dflab.explain.gallery import explain_rows, pick_cases

        media = video_paths(cfg.data)
        if cfg.gallery:
            log("[eval] explanations for the gallery")
            for outcome, idx in pick_cases(all_pred, cfg.gallery, cfg.threshold).items():
                rows = [all_pred.rows[i] for i in idx]
                cases = []
                for i, ex in zip(
                    idx, explain_rows(model, rows, spec=spec, media=media, use_gradcam=cfg.gradcam), strict=True
                ):
                    r = ex["row"]
                    cap = (
                        f"<span class=tag>{r.method}</span> {r.dataset}/{r.video_id} f{r.frame_index} "
                        f"t{r.track_id}<br>P(fake) = {all_pred.scores[i]:.3f}"
                    )
                    cases.append({"caption": cap, "panels": [(t, img_uri(im)) for t, im in ex["panels"]]})
                galleries.append((f"Most confident: {outcome}", cases))
        if cfg.average:
            extra.append(
                ("Averaged faces and maps per dataset (BiG-Arts Fig. 6)", _average_section(model, spec, all_pred, cfg))
            )
    return figures, galleries, extra


def _union(preds: dict[str, Predictions]) -> Predictions | None:
    """All test sets' predictions with each face once (FF++ reals appear in every per-method set)."""
    if not preds:
        return None
    seen: set[tuple] = set()
    rows, scores, embs = [], [], []
    has_emb = all(p.embeddings is not None for p in preds.values())
    for p in preds.values():
        for i, r in enumerate(p.rows):
            k = (r.dataset, r.video_id, r.frame_index, r.track_id)
            if k in seen:
                continue
            seen.add(k)
            rows.append(r)
            scores.append(p.scores[i])
            if has_emb:
                embs.append(p.embeddings[i])
    return Predictions(rows, np.array(scores), np.stack(embs) if has_emb and embs else None)


def _average_section(model: Detector, spec: InputSpec, pred: Predictions, cfg: EvalConfig) -> str:
    from dflab.eval.predict import read_rgb, to_tensor
    from dflab.explain.average import average_by_group, sample_per_video
    from dflab.explain.gradcam import detector_maps, gradcam
    from dflab.explain.overlay import overlay

    rows = sample_per_video(pred.rows, k=5)[:400]  # BiG-Arts §4.2: five frames per video
    faces, maps, groups = [], [], []
    for start in range(0, len(rows), cfg.batch_size):
        chunk = rows[start : start + cfg.batch_size]
        imgs = [read_rgb(r.crop_path) for r in chunk]
        x = to_tensor(imgs, spec)
        if cfg.gradcam:
            m = gradcam(model, x)
        else:
            dm = detector_maps(model, x)
            if not dm:
                return "<p class=muted>no Grad-CAM and no detector maps</p>"
            m = next(iter(dm.values()))
        faces.extend(imgs)
        maps.extend(m)
        groups.extend((r.dataset, "fake" if r.label else "real") for r in chunk)
    avg = average_by_group(faces, maps, groups)
    cells = []
    for (ds, cls), a in sorted(avg.items()):
        cells.append(
            f"<div class=case><img src='{img_uri(a['face'])}'><img src='{img_uri(overlay(a['face'], a['map']))}'>"
            f"<br><span class=tag>{ds} · {cls}</span> (n={a['n']} faces)</div>"
        )
    what = "Grad-CAM" if cfg.gradcam else "detector map"
    return f"<p class=muted>mean face and mean {what} over five frames per video</p>" + "".join(cells)
