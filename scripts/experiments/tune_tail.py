"""Experiment (issue 11): does tuning CLIP's last blocks lift the default detector beyond its frozen linear probe?

The default (``scripts/train_default.py``) is a linear probe on frozen int8 CLIP features. GenD tunes every
LayerNorm; with 2 CPU cores, a full forward and backward pass runs at ~2 faces/s. Tuning only the last K blocks is
cheap when the blocks before them are frozen: their output tokens are computed once (this script's ``tokens``
stage, ONNX Runtime), and the tail runs in float torch (weights dequantised from the same ONNX file,
:mod:`dflab.models.clip_torch`) at ~9 faces/s for K = 2.

Honest protocol: the sources are split in two halves along the leave-one-source-out folds of ``train_default``
(GroupKFold, odd / even folds). A half's files are encoded with a tail tuned on the *other* half only (its real
faces and their twins, optionally its labelled fakes), then scored by the same LOSO probe as the shipped default
(blocks 6-12 class + mean tokens, +labelled, C = 0.01) with the tuned blocks' features replacing the frozen ones.
So no file is scored by a tail that saw its source, and the numbers compare with the shipped 0.850.

Stages (same ``DFLAB_DEFAULT_RUN`` as ``train_default``, whose ``features`` and ``views`` must be done)::

    python scripts/experiments/tune_tail.py tokens            # block-8/10 tokens of every crop and view (~8 min)
    K=2 EPOCHS=2 LR=1e-5 python scripts/experiments/tune_tail.py tune    # two tails (~25 min for K = 2)
    python scripts/experiments/tune_tail.py eval k2_all_e2_lr1e-05       # LOSO with the tuned features

Environment: ``K`` (2 or 4), ``EPOCHS``, ``LR`` (the blocks'; the head's is 1e-3), ``MODE`` (``all`` parameters of
the tail or ``ln`` only), ``LABELLED=1`` (the tuning half's labelled fakes too), ``TAG``. Results of 2026-11-30 are
in docs/default-weights.md ("Light tuning of the last blocks").
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "train_default", Path(__file__).resolve().parents[1] / "train_default.py"
)
td = importlib.util.module_from_spec(_spec)
sys.modules["train_default"] = td
_spec.loader.exec_module(td)

RUN = td.RUN
TOKEN_BLOCKS = (8, 10)  # inputs of a K = 4 or K = 2 tail
PROBE_SET, PROBE_C = "b6-12_cls_mean", 0.01  # the shipped default's probe


def cmd_tokens() -> None:
    """Token states after blocks 8 and 10 (int8 ONNX, as the scanner runs it) of every planned crop, then of every
    still's test-time views, one file per media file under ``tokens/`` (resumable)."""
    from dflab.data.manifest import Manifest
    from dflab.media import read_image
    from dflab.models.clip import ClipOnnxEncoder, preprocess

    out = RUN / "tokens"
    out.mkdir(exist_ok=True)
    with Manifest(RUN / "faces", readonly=True) as man:
        rows = man.faces()
    index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in rows}
    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    enc = ClipOnnxEncoder(TOKEN_BLOCKS)
    t0, n = time.time(), 0
    for key, items in sorted(td.plan(rows).items()):
        fid = td._fid(key)
        if not (RUN / "features" / f"{fid}.npz").exists() or (out / f"{fid}.npz").exists():
            continue
        crops = [td.item_crop(key, it, rows[it["row"]])[0] for it in items]
        views = []
        if td.kind_of(key) == "image":
            rgb = read_image(paths[key])
            for it in items:
                if it["variant"] == "orig":
                    r = rows[it["row"]]
                    views += td.view_crops(rgb, index[(key, r.frame_index, r.track_id)])
        hidden = enc(preprocess(crops + views))
        np.savez(
            out / f"{fid}.tmp.npz", n_items=len(crops), **{f"b{b}": hidden[b].astype(np.float16) for b in TOKEN_BLOCKS}
        )
        (out / f"{fid}.tmp.npz").rename(out / f"{fid}.npz")
        n += len(crops) + len(views)
        print(f"{key}: {len(crops)}+{len(views)} ({(time.time() - t0) / n:.3f} s/crop)", flush=True)


def _load(in_block: int):
    """(features, meta, tokens of the crops, tokens of the views, the views' (file, frame, track) keys), in
    ``train_default.load_features`` order."""
    feats, meta, toks, vtoks, vkeys = [], [], [], [], []
    for p in sorted((RUN / "features").glob("*.npz")):
        if p.name.endswith(".tmp.npz"):
            continue
        z, t = np.load(p), np.load(RUN / "tokens" / p.name)
        m, n, b = json.loads(str(z["meta"])), int(t["n_items"]), t[f"b{in_block}"]
        feats.append(z["feats"])
        meta += m
        toks.append(b[:n])
        if len(b) > n:
            vtoks.append(b[n:])
            vkeys += [(x["file"], x["frame"], x["track"]) for x in m if x["variant"] == "orig"]
    return np.concatenate(feats), meta, np.concatenate(toks), np.concatenate(vtoks), vkeys


def _halves(meta: list[dict]) -> np.ndarray:
    """0/1 per crop: the LOSO folds of ``train_default.loso`` (GroupKFold over sources), even / odd."""
    from sklearn.model_selection import GroupKFold

    src = np.array([m["source"] for m in meta])
    y = np.array([m["label"] for m in meta])
    half = np.zeros(len(meta), int)
    folds = GroupKFold(n_splits=min(td.N_FOLDS, len(set(src)))).split(np.zeros(len(meta)), y, groups=src)
    for f, (_, idx) in enumerate(folds):
        half[idx] = f % 2
    return half


def cmd_tune(k: int, epochs: float, lr: float, mode: str, labelled: bool, tag: str) -> None:
    """Tune a tail on each half; save its pooled features (class + mean token per tuned block) and head logits for
    every crop and view."""
    import torch
    from torch import nn

    from dflab.models.clip_torch import create_clip_vitb16

    torch.set_num_threads(2)
    torch.manual_seed(0)
    in_block = 12 - k
    feats, meta, toks, vtoks, _ = _load(in_block)
    y = np.array([m["label"] for m in meta])
    orig = np.array([m["variant"] == "orig" for m in meta])
    half = _halves(meta)
    tuned = list(range(in_block + 1, 13))
    vit = create_clip_vitb16(pretrained=True, num_classes=0).eval()
    out = RUN / "tuned" / tag
    out.mkdir(parents=True, exist_ok=True)

    class Tail(nn.Module):
        """The last K blocks, each block's class and mean token standardised, a linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.blocks = copy.deepcopy(vit.blocks[in_block:])
            sel = td.select(feats, tuned, ("cls", "mean"))  # standardised by the frozen features' statistics
            self.register_buffer("mu", torch.tensor(sel.mean(0)))
            self.register_buffer("sd", torch.tensor(sel.std(0) + 1e-3))
            self.head = nn.Linear(sel.shape[1], 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def pooled(self, x: torch.Tensor) -> torch.Tensor:
            outs = []
            for blk in self.blocks:
                x = blk(x)
                outs += [x[:, 0], x[:, 1:].mean(1)]
            return torch.stack(outs, 1)

        def logit(self, p: torch.Tensor) -> torch.Tensor:
            return self.head((p.flatten(1) - self.mu) / self.sd).squeeze(1)

    @torch.no_grad()
    def encode(m: Tail, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = [], []
        for s in range(0, len(arr), 64):
            p = m.pooled(torch.from_numpy(arr[s : s + 64].astype(np.float32)))
            pooled.append(p.numpy().astype(np.float16))
            logits.append(m.logit(p).numpy())
        return np.concatenate(pooled), np.concatenate(logits)

    for h in (0, 1):
        if (out / f"half{h}.npz").exists():
            continue
        train = np.flatnonzero((half != h) & (~orig | (y == 0) | labelled))
        m = Tail()
        for name, p in m.blocks.named_parameters():
            p.requires_grad = mode == "all" or "norm" in name
        opt = torch.optim.AdamW(
            [{"params": [p for p in m.blocks.parameters() if p.requires_grad], "lr": lr},
             {"params": m.head.parameters(), "lr": 1e-3}], weight_decay=0.05)  # fmt: skip
        bs = 32
        steps = int(epochs * len(train) / bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, 1e-3], total_steps=steps, pct_start=0.1)
        pos_weight = torch.tensor(float((y[train] == 0).sum() / max(1, (y[train] == 1).sum())))
        rng, order, t0 = np.random.default_rng(0), np.array([], int), time.time()
        print(f"half {h}: tuning on {len(train)} crops ({int(y[train].sum())} fake), {steps} steps", flush=True)
        m.train()
        for s in range(steps):
            if len(order) < bs:
                order = np.r_[order, rng.permutation(train)]
            b, order = order[:bs], order[bs:]
            x = torch.from_numpy(toks[b].astype(np.float32))
            loss = nn.functional.binary_cross_entropy_with_logits(
                m.logit(m.pooled(x)), torch.from_numpy(y[b].astype(np.float32)), pos_weight=pos_weight
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if s % 20 == 0 or s == steps - 1:
                ms = (time.time() - t0) / (s + 1) / bs * 1e3
                print(f"  step {s + 1}/{steps} loss {loss.item():.3f} ({ms:.0f} ms/face)", flush=True)
        m.eval()
        pf, hl = encode(m, toks)
        pv, hv = encode(m, vtoks)
        np.savez(out / f"half{h}.npz", pooled=pf, head=hl, vpooled=pv, vhead=hv)


@dataclass
class Shipped:
    """The run's faces and the shipped recipe, as the experiments that measure a change against it load them."""

    feats: np.ndarray
    meta: list[dict]
    views: dict
    blocks: tuple[int, ...]
    tokens: tuple[str, ...]
    c: float
    labelled: bool
    weight: np.ndarray
    orig: np.ndarray

    @classmethod
    def load(cls) -> Shipped:
        feats, meta = td.load_features()
        return cls(
            feats,
            meta,
            td.load_views(),
            *td.shipped_recipe(),
            td.face_weights(meta),
            np.array([m["variant"] == "orig" for m in meta]),
        )

    def loso(self, feats=None, meta=None, *, views=None, weight=None, blocks=None, c=None, tokens=None):
        """Out-of-fold (face logits, view logits) of the shipped recipe at one C; each argument given replaces the
        run's own (``views={}``: no test-time views)."""
        c = self.c if c is None else c
        o, v = td.loso(
            self.feats if feats is None else feats,
            self.meta if meta is None else meta,
            self.blocks if blocks is None else blocks,
            self.tokens if tokens is None else tokens,
            (c,),
            self.labelled,
            self.views if views is None else views,
            weight=self.weight if weight is None else weight,
        )
        return o[c], v[c]

    def summary(self, name: str, oof: np.ndarray, voof: dict, meta=None, orig=None) -> None:
        """:func:`summary` of out-of-fold logits of this run's faces (or of ``meta``/``orig`` when given)."""
        summary(name, self.meta if meta is None else meta, self.orig if orig is None else orig, oof, voof)


def summary(name: str, meta: list[dict], orig: np.ndarray, oof: np.ndarray, voof: dict) -> None:
    """One line: calibrated file AUC (the scanner's per-kind Platt), videos, stills, the per-kind bands' uncertain
    share and decisive accuracy (chosen and judged as ``train_default`` does), and the file AUC of each family with
    >= 5 files against all real files (calibrated, as the README's table)."""
    files = td.file_scores(meta, oof, orig, voof)
    names = sorted(files)
    fy = np.array([files[n]["label"] for n in names])
    platts = td.platt_by_kind(files, names)
    per_file: dict = {}
    for kind, (a, b) in platts.items():
        sub = {n: files[n] for n in names if td.kind_of(n) == kind}
        td.band_check(sub, td.choose_band(sub, sorted(sub), a, b)[2], per_file=per_file)
    ver = [v for n in names for v in per_file.get(n, [])]
    rep = td.report(files)
    p = td.scanner_probs(files, names, platts)
    fam = np.array([files[n]["family"] for n in names])
    fams = {  # each family's fakes against all real files, on the scanner's calibrated score (as cmd_report)
        str(f): round(
            td.auc(np.r_[np.ones((fam == f).sum()), np.zeros((fy == 0).sum())], np.r_[p[fam == f], p[fy == 0]]), 3
        )
        for f in sorted(set(fam) - {"real"})
        if (fam == f).sum() >= 5
    }
    print(f"{name:24s} calibrated {td.auc(fy, p)} videos {rep['video_auc']} "
          f"stills {rep['image_auc']} uncertain {np.mean([u for u, _ in ver]):.2f} "
          f"right {np.mean([r for u, r in ver if not u]):.2f} families {fams}", flush=True)  # fmt: skip


def cmd_eval(tag: str) -> None:
    """Calibrated file AUC, per kind, verdicts and families: the frozen probe, the probe on tuned features, and the
    tuned head alone (each half's files scored by the tail tuned on the other half)."""
    k = int(tag.split("_")[0][1:])
    feats, meta = td.load_features()
    views = td.load_views()
    vkeys = [
        (m["file"], m["frame"], m["track"]) for m in meta if m["variant"] == "orig" and td.kind_of(m["file"]) == "image"
    ]
    orig = np.array([m["variant"] == "orig" for m in meta])
    half = _halves(meta)
    blocks, tokens = td.FEATURE_SETS[PROBE_SET]
    tuned = [b - 1 for b in range(13 - k, 13)]

    oofs, voofs = td.loso(feats, meta, blocks, tokens, [PROBE_C], labelled=True, views=views)
    summary("frozen probe", meta, orig, oofs[PROBE_C], voofs[PROBE_C])
    oof, hoof = np.full(len(meta), np.nan, np.float32), np.full(len(meta), np.nan, np.float32)
    voof: dict = {}
    hvoof: dict = {}
    vindex = {key: j for j, key in enumerate(vkeys)}
    for h in (0, 1):
        z = np.load(RUN / "tuned" / tag / f"half{h}.npz")
        fh = feats.copy()
        fh[:, tuned] = z["pooled"].reshape(len(meta), k, 2, -1)
        vp, vh = z["vpooled"].reshape(len(vkeys), -1, k, 2, fh.shape[-1]), z["vhead"].reshape(len(vkeys), -1)
        vt = {}
        for key, j in vindex.items():
            vt[key] = views[key].copy()
            vt[key][:, tuned] = vp[j]
        o, vo = td.loso(fh, meta, blocks, tokens, [PROBE_C], labelled=True, views=vt)
        sel = half == h
        oof[sel], hoof[sel] = o[PROBE_C][sel], z["head"][sel]
        voof.update({i: v for i, v in vo[PROBE_C].items() if sel[i]})
        for i in np.flatnonzero(sel & orig):
            j = vindex.get((meta[i]["file"], meta[i]["frame"], meta[i]["track"]))
            if j is not None:
                hvoof[i] = vh[j]
    summary("probe, tuned features", meta, orig, oof, voof)
    summary("tuned head alone", meta, orig, hoof, hvoof)


def main() -> None:
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    if stage == "tokens":
        cmd_tokens()
    elif stage == "tune":
        k, epochs, lr = (
            int(os.environ.get("K", 2)),
            float(os.environ.get("EPOCHS", 2)),
            float(os.environ.get("LR", 1e-5)),
        )
        mode, labelled = os.environ.get("MODE", "all"), os.environ.get("LABELLED") == "1"
        tag = os.environ.get("TAG", f"k{k}_{mode}_e{epochs:g}_lr{lr:g}" + ("_lab" if labelled else ""))
        cmd_tune(k, epochs, lr, mode, labelled, tag)
    elif stage == "eval" and len(sys.argv) > 2:
        cmd_eval(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
