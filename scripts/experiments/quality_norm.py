"""Experiment (issue 11): normalise a file's score by the level *real* files of the same quality score at.

The tenth run's videos rank well within a source but not across sources: under the video band, 39 % of DeepFaceLive's
real clips and 29 % of ``real_videos`` were called fake, while 27 % of the DFDC fakes and 43 % of AniPortrait's were
called real, and a band chosen on half the video sources transferred badly to the other half. If those level shifts
follow what the scanner can measure of a file's quality (its face's size in pixels, the frame's size, the H.264
quantiser of a video, the JPEG quality of a still), they can be taken out as speaker verification takes out a
recording's quality (quality-dependent score normalisation):

    s'(file) = s(file) − E[s | quality, real]

where s is the logit of the scanner's file score and E[s | quality, real] a ridge regression on the quality
measures fitted on **real files only**. Fitted on reals alone, the normaliser cannot learn that a resolution or a
codec is typical of one generator's demo folder; it only says at what level honest footage of that quality sits.
For contrast the script also fits the quality measures with both classes (a logistic regression on s and the
measures), which can learn exactly that dataset bias.

Protocol (as ``train_default.band_check``, on its halvings, ``source_halves``): the sources split in random halves
(20 halvings); the face-level Platt map fitted on all files of the kind (it only sets the scale); on one half the
normaliser and the conformal band; the other half judged: file AUC per kind, uncertain share and decisive accuracy at
the card's α per kind. Needs ``train_default train`` (its ``loso_files.json``)::

    python scripts/experiments/quality_norm.py quality   # each file's quality measures (~1 min), cached
    python scripts/experiments/quality_norm.py eval

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_default as td

from dflab.eval.calibration import conformal_band, logit, verdict_stats

OUT = td.RUN / "quality.json"
ALPHA = {"image": 0.1, "video": 0.2}
REPEATS = 20
#: quality measures per kind (columns of :func:`raw_measures`)
MEASURES = {"image": ("log_face_px", "log_short_side", "jpeg_q"), "video": ("log_face_px", "log_short_side", "qp")}


def measure(files: dict[str, dict]) -> dict[str, dict]:
    """Each file's quality measures, as the scanner can read them: the decisive track's median face size, the frame's
    short side, and the JPEG quality (100 for a file that is not a JPEG) or the H.264 QP (``None`` if not H.264)."""
    import av
    from PIL import Image

    from dflab.media.image import jpeg_quality
    from dflab.media.video import h264_qp

    paths = td._media_paths()
    sizes = td.face_sizes()
    out = {}
    for n, f in sorted(files.items()):
        path = paths[n]
        rec = {"face_px": sizes.get((n, f["decisive_track"]))}
        if td.kind_of(n) == "image":
            with Image.open(path) as im:
                rec["short_side"] = min(im.size)
            rec["jpeg_q"] = jpeg_quality(path) or 100
        else:
            with av.open(path) as c:
                s = c.streams.video[0]
                rec["short_side"] = min(s.codec_context.width, s.codec_context.height)
            rec["qp"] = h264_qp(path)
        out[n] = rec
    return out


def raw_measures(names: list[str], q: dict[str, dict], kind: str) -> np.ndarray:
    """(N, M) quality measures of :data:`MEASURES` (``log_``: log2 of it), NaN where the file has none."""
    cols = []
    for m in MEASURES[kind]:
        raw = m.removeprefix("log_")
        v = np.array([q[n].get(raw) if q[n].get(raw) is not None else np.nan for n in names], float)
        cols.append(np.log2(np.maximum(v, 1)) if m.startswith("log_") else v)
    return np.stack(cols, 1)


def evaluate(files: dict[str, dict], q: dict[str, dict], kind: str, mode: str) -> dict:
    from sklearn.linear_model import LogisticRegression, Ridge

    names = sorted(n for n in files if td.kind_of(n) == kind)
    a, b = td.platt_of(files, names)  # the face-level map fitted on all files of the kind, as band_check
    aucs, stats = [], []
    for fit, ev in td.source_halves(files, names, REPEATS):
        yf = np.array([files[n]["label"] for n in fit])
        ye = np.array([files[n]["label"] for n in ev])
        if min(yf.sum(), (yf == 0).sum(), ye.sum(), (ye == 0).sum()) < 3:
            continue
        sf, se = logit(td.file_probs(files, fit, a, b)), logit(td.file_probs(files, ev, a, b))
        if mode != "none":
            xf, xe = raw_measures(fit, q, kind), raw_measures(ev, q, kind)
            fill = np.nanmean(xf, 0)  # a missing measure (a video that is not H.264) at the fit half's mean
            xf, xe = np.where(np.isnan(xf), fill, xf), np.where(np.isnan(xe), fill, xe)
            mu, sd = xf.mean(0), xf.std(0) + 1e-6
            xf, xe = (xf - mu) / sd, (xe - mu) / sd
            if mode == "real_norm":
                reg = Ridge(alpha=1.0).fit(xf[yf == 0], sf[yf == 0])
                sf, se = sf - reg.predict(xf), se - reg.predict(xe)
            else:  # both classes: a logistic regression on the score and the measures
                lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
                lr.fit(np.c_[sf, xf], yf)
                sf, se = lr.decision_function(np.c_[sf, xf]), lr.decision_function(np.c_[se, xe])
        aucs.append(td.auc(ye, se))
        lo, hi = conformal_band(sf, yf, ALPHA[kind])
        stats.append(verdict_stats(se, ye, lo, hi))
    keys = ("uncertain", "decisive_accuracy", "fake_called_real", "real_called_fake")
    return {"auc": round(float(np.nanmean(aucs)), 3)} | {
        k: round(float(np.nanmean([s[k] for s in stats])), 3) for k in keys
    }


def main() -> None:
    files = json.loads((td.RUN / "loso_files.json").read_text())
    if sys.argv[1] == "quality":
        OUT.write_text(json.dumps(measure(files), indent=1))
        return
    q = json.loads(OUT.read_text())
    for kind in ("video", "image"):
        names = [n for n in files if td.kind_of(n) == kind]
        y = np.array([files[n]["label"] for n in names])
        x = raw_measures(names, q, kind)
        for j, m in enumerate(MEASURES[kind]):
            v = x[:, j]
            print(f"{kind} {m}: real median {np.nanmedian(v[y == 0]):.2f}, fake median {np.nanmedian(v[y == 1]):.2f}, "
                  f"missing {np.isnan(v).mean():.0%}")  # fmt: skip
        for mode in ("none", "real_norm", "both_classes"):
            print(kind, f"{mode:13s}", evaluate(files, q, kind, mode), flush=True)


if __name__ == "__main__":
    main()
