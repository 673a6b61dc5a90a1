"""Experiment (issue 11): GenD's LayerNorm tuning through the whole CLIP encoder, under the default's LOSO protocol.

``tune_tail.py`` tuned the last K blocks on cached tokens and found no gain over the frozen probe. GenD (WACV 2026,
:mod:`dflab.models.detectors.gend`) tunes a different set: the affine parameters of *every* LayerNorm (pre-LN,
``norm1``/``norm2`` of each block, post-LN; 38,400 numbers), so the low-level blocks adapt too. That needs a
forward and backward pass through all 12 blocks: ~0.45 s/face in float32 here, ~0.24 s/face under bfloat16
autocast (this CPU has AVX512-BF16), which puts one tuning of ~1,700 crops × 2 epochs at ~15 min.

Protocol, as ``tune_tail``'s: the sources split in two halves along the LOSO folds of ``train_default``; a tuning
on one half (its real faces and their synthesised twins only — GenD's "real/fake pairs from one source") encodes
every crop, and the other half's files are scored by the shipped LOSO probe (blocks 6-12 class + mean tokens,
+labelled, C = 0.01) on those features, and by GenD's own head alone. No file is scored by a tuning that saw its
source.

The tuned LayerNorms are written back into the int8 ONNX graph (LayerNorm scales and biases are float
initialisers there, the int8 matrices are untouched), so the features are those the scanner would compute.

Stages (same ``DFLAB_DEFAULT_RUN`` as ``train_default``, whose ``features`` and ``views`` must be done)::

    python scripts/experiments/tune_ln.py crops         # every planned crop and still view at 224 px (uint8)
    python scripts/experiments/tune_ln.py tune 0        # tune on the sources of half 1 (to score half 0), ~15 min
    python scripts/experiments/tune_ln.py encode 0      # int8 ONNX with the tuned LayerNorms, all crops, ~10 min
    python scripts/experiments/tune_ln.py tune 1; python scripts/experiments/tune_ln.py encode 1
    python scripts/experiments/tune_ln.py eval

Environment: ``EPOCHS`` (2), ``LR`` (3e-4, GenD's), ``WARM`` (1: LP-FT head), ``LABELLED=1`` (the tuning half's
labelled fakes too), ``TAG``. Results are in docs/default-weights.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("tune_tail", _here / "tune_tail.py")
tt = importlib.util.module_from_spec(_spec)
sys.modules["tune_tail"] = tt
_spec.loader.exec_module(tt)
td = tt.td

RUN = td.RUN
EPOCHS = float(os.environ.get("EPOCHS", 2))
LR = float(os.environ.get("LR", 3e-4))
WARM = os.environ.get("WARM", "1") == "1"  # start the head from a linear probe (LP-FT), see cmd_tune
LABELLED = os.environ.get("LABELLED") == "1"  # the tuning half's labelled fakes too (GenD tunes on labelled pairs)
OUT = RUN / "ln" / os.environ.get("TAG", f"{'lpft_' if WARM else ''}e{EPOCHS:g}_lr{LR:g}{'_lab' if LABELLED else ''}")


def _resized(crop: np.ndarray) -> np.ndarray:
    """The uint8 224 px image :func:`dflab.models.clip.preprocess` normalises (it resizes before converting)."""
    import cv2

    from dflab.models.clip import CLIP_SIZE

    if crop.shape[:2] == (CLIP_SIZE, CLIP_SIZE):
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > CLIP_SIZE else cv2.INTER_CUBIC
    return cv2.resize(crop, (CLIP_SIZE, CLIP_SIZE), interpolation=interp)


def cmd_crops() -> None:
    """``crops.npy`` in ``train_default.load_features`` order, ``views.npy`` (six per still face) and their keys."""
    from dflab.data.manifest import Manifest
    from dflab.media import read_image

    base = RUN / "ln"
    base.mkdir(exist_ok=True)
    if (base / "views.npy").exists():
        return
    with Manifest(RUN / "faces", readonly=True) as man:
        rows = man.faces()
    plans = td.plan(rows)
    index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in rows}
    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    crops, views, vkeys, t0 = [], [], [], time.time()
    for p in sorted((RUN / "features").glob("*.npz")):
        if p.name.endswith(".tmp.npz"):
            continue
        meta = json.loads(str(np.load(p)["meta"]))
        key = meta[0]["file"]
        items = plans[key]
        assert len(items) == len(meta), key
        crops += [_resized(td.item_crop(key, it, rows[it["row"]])[0]) for it in items]
        if td.kind_of(key) == "image":
            rgb = read_image(paths[key])
            for m in meta:
                if m["variant"] == "orig":
                    views += [_resized(v) for v in td.view_crops(rgb, index[(key, m["frame"], m["track"])])]
                    vkeys.append([key, m["frame"], m["track"]])
        print(f"{key}: {len(crops)} crops, {len(views)} views ({time.time() - t0:.0f} s)", flush=True)
    np.save(base / "crops.npy", np.stack(crops))
    (base / "view_keys.json").write_text(json.dumps(vkeys))
    np.save(base / "views.npy", np.stack(views))


def _pixels(batch: np.ndarray):
    import torch

    from dflab.models.clip import CLIP_MEAN, CLIP_STD

    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def cmd_tune(h: int) -> None:
    """GenD on the sources of the other half: LayerNorms + a linear head on the L2-normalised post-LN class token,
    CE + 0.5 uniformity + 0.1 alignment, AdamW lr 3e-4, cosine to 1e-5, weight decay 0 (GenD's released
    configuration), batch 32, random horizontal flips, bfloat16 autocast."""
    import torch
    from safetensors.torch import save_file

    from dflab.models.clip_torch import clip_vitb16_state_dict
    from dflab.models.detectors.gend import GenD

    out = OUT / f"half{h}.safetensors"
    if out.exists():
        return
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    feats, meta = td.load_features()
    y = np.array([m["label"] for m in meta])
    orig = np.array([m["variant"] == "orig" for m in meta])
    half = tt._halves(meta)
    train = np.flatnonzero((half != h) & (~orig | (y == 0) | LABELLED))
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    model = GenD(backbone="clip_vitb16", tune="ln")
    sd = {k: v for k, v in clip_vitb16_state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.backbone.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"CLIP weights: missing {missing}, unexpected {unexpected}")
    if WARM:
        warm_start(model, feats[train, 11, 0].astype(np.float32), y[train])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    bs = 32
    steps = int(EPOCHS * len(train) / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-5)
    rng, order, t0 = np.random.default_rng(h), np.array([], int), time.time()
    print(f"half {h}: tuning {sum(p.numel() for p in params)} parameters on {len(train)} crops "
          f"({int(y[train].sum())} twins), {steps} steps", flush=True)  # fmt: skip
    model.train()
    for s in range(steps):
        if len(order) < bs:
            order = np.r_[order, rng.permutation(train)]
        b, order = np.sort(order[:bs]), order[bs:]
        batch = np.array(crops[b])
        flip = rng.random(len(b)) < 0.5
        batch[flip] = batch[flip, :, ::-1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model(_pixels(batch))
        outputs = {k: v.float() for k, v in outputs.items()}
        losses = model.compute_loss({"label": torch.from_numpy(y[b])}, outputs)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        sched.step()
        if s % 10 == 0 or s == steps - 1:
            acc = (outputs["logits"].argmax(1).numpy() == y[b]).mean()
            print(f"  step {s + 1}/{steps} loss {losses['loss'].item():.3f} ce {losses['ce'].item():.3f} "
                  f"acc {acc:.2f} ({(time.time() - t0) / (s + 1) / bs:.2f} s/face)", flush=True)  # fmt: skip
    tuned = {n: p.detach().float().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tuned, str(out))


def warm_start(model, cls12: np.ndarray, y: np.ndarray) -> None:
    """LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
    Out-of-Distribution"): the head starts from a logistic regression on the frozen encoder's features of the
    training crops (block-12 class token of the int8 run, the frozen post-LN, L2-normalised), so the tuning's
    gradient carries the task from the first step. Without it, GenD's head (zero-mean init, lr 3e-4 on unit-norm
    features) had not learnt the task after this budget's 82 steps (CE 0.688) and the LayerNorms followed the
    uniformity term alone."""
    import torch
    from sklearn.linear_model import LogisticRegression

    norm = model.backbone.norm
    g, b = norm.weight.detach().numpy(), norm.bias.detach().numpy()
    x = (cls12 - cls12.mean(1, keepdims=True)) / np.sqrt(cls12.var(1, keepdims=True) + norm.eps) * g + b
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(z, y)
    w, c = lr.coef_[0] / 2, lr.intercept_[0] / 2  # logits (-w z - c, w z + c): their difference is the probe's
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(np.stack([-w, w]).astype(np.float32)))
        model.head.bias.copy_(torch.tensor([-c, c], dtype=torch.float32))
    print(f"  warm start: probe accuracy {lr.score(z, y):.2f} on the training crops", flush=True)


def _onnx_name(timm_name: str) -> str:
    """GenD's parameter name of a LayerNorm (``backbone.blocks.3.norm1.weight``) -> the HF export's initialiser."""
    module, param = timm_name.removeprefix("backbone.").rsplit(".", 1)
    top = {"norm_pre": "vision_model.pre_layrnorm", "norm": "vision_model.post_layernorm"}
    if module in top:
        return f"{top[module]}.{param}"
    _, idx, norm = module.split(".")  # blocks.3.norm1
    return f"vision_model.encoder.layers.{idx}.layer_{norm}.{param}"


def patched_onnx(h: int) -> Path:
    """The int8 CLIP graph with half ``h``'s tuned LayerNorm scales and biases."""
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    from dflab.models.clip import clip_onnx_path

    path = OUT / f"half{h}.onnx"
    if path.exists():
        return path
    tuned = {_onnx_name(k): v for k, v in load_file(str(OUT / f"half{h}.safetensors")).items() if "norm" in k}
    model = onnx.load(str(clip_onnx_path()))
    n = 0
    for t in model.graph.initializer:
        if t.name in tuned:
            t.CopyFrom(numpy_helper.from_array(tuned[t.name].astype(np.float32), t.name))
            n += 1
    if n != len(tuned):
        raise RuntimeError(f"patched {n} of {len(tuned)} LayerNorm tensors")
    onnx.save(model, str(path))
    return path


def cmd_encode(h: int) -> None:
    """Blocks 1-12 (class + mean) of every crop and of half ``h``'s still views through the patched int8 graph,
    and GenD's head logit (post-LN class token, tuned post-LN, L2-normalised) of each."""
    from safetensors.numpy import load_file

    from dflab.models.clip import ClipOnnxEncoder, preprocess, token_features

    out = OUT / f"half{h}.npz"
    if out.exists():
        return
    sd = load_file(str(OUT / f"half{h}.safetensors"))
    g, b = sd["backbone.norm.weight"], sd["backbone.norm.bias"]
    w, bias = sd["head.weight"], sd["head.bias"]

    def head(cls12: np.ndarray) -> np.ndarray:
        x = (cls12 - cls12.mean(1, keepdims=True)) / np.sqrt(cls12.var(1, keepdims=True) + 1e-5) * g + b
        z = x / np.linalg.norm(x, axis=1, keepdims=True)
        logits = z @ w.T + bias
        return logits[:, 1] - logits[:, 0]

    enc = ClipOnnxEncoder(td.ALL_BLOCKS, path=patched_onnx(h))
    _, meta = td.load_features()
    half = tt._halves(meta)
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    views = np.load(RUN / "ln" / "views.npy", mmap_mode="r")
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    in_half = {(m["file"], m["frame"], m["track"]) for m, hh in zip(meta, half, strict=True) if hh == h}
    vsel = [j for j, k in enumerate(vkeys) if k in in_half]
    t0 = time.time()

    def run(arr, idx) -> tuple[np.ndarray, np.ndarray]:
        feats, logits = [], []
        for s in range(0, len(idx), 16):
            hidden = enc(preprocess(list(arr[idx[s : s + 16]])))
            feats.append(token_features(hidden, td.ALL_BLOCKS).astype(np.float16))
            logits.append(head(hidden[12][:, 0]))
            if s % 320 == 0:
                print(f"  {s + 16}/{len(idx)} ({(time.time() - t0):.0f} s)", flush=True)
        return np.concatenate(feats), np.concatenate(logits)

    f, hl = run(crops, np.arange(len(crops)))
    vidx = np.concatenate([np.arange(6 * j, 6 * j + 6) for j in vsel])
    vf, vh = run(views, vidx)
    np.savez(out, feats=f, head=hl, vfeats=vf, vhead=vh, vkeys=json.dumps([vkeys[j] for j in vsel]))


def cmd_eval() -> None:
    """The frozen probe, the probe on tuned features and GenD's head alone, each half scored by the other's
    tuning (``tune_tail.summary``). With one half encoded so far, all three are judged on that half's files."""
    feats, meta = td.load_features()
    views = td.load_views()
    half = tt._halves(meta)
    done = [h for h in (0, 1) if (OUT / f"half{h}.npz").exists()]
    judged = np.array([m["variant"] == "orig" for m in meta]) & np.isin(half, done)
    y = np.array([m["label"] for m in meta])
    blocks, tokens = td.FEATURE_SETS[tt.PROBE_SET]
    oofs, voofs = td.loso(feats, meta, blocks, tokens, [tt.PROBE_C], labelled=True, views=views)
    print(f"halves {done}: {len({m['file'] for m, j in zip(meta, judged, strict=True) if j})} files", flush=True)
    tt.summary("frozen probe", meta, judged, oofs[tt.PROBE_C], voofs[tt.PROBE_C])
    oof, hoof = np.full(len(meta), np.nan, np.float32), np.full(len(meta), np.nan, np.float32)
    voof: dict = {}
    hvoof: dict = {}
    rows = {(m["file"], m["frame"], m["track"]): i for i, m in enumerate(meta) if m["variant"] == "orig"}
    for h in done:
        z = np.load(OUT / f"half{h}.npz")
        vkeys = [tuple(k) for k in json.loads(str(z["vkeys"]))]
        vt = {k: z["vfeats"][6 * j : 6 * j + 6] for j, k in enumerate(vkeys)}
        o, vo = td.loso(z["feats"], meta, blocks, tokens, [tt.PROBE_C], labelled=True, views=vt)
        sel = half == h
        oof[sel], hoof[sel] = o[tt.PROBE_C][sel], z["head"][sel]
        voof.update({i: v for i, v in vo[tt.PROBE_C].items() if sel[i]})
        for j, k in enumerate(vkeys):
            hvoof[rows[k]] = z["vhead"][6 * j : 6 * j + 6]
    tt.summary("probe, LN-tuned features", meta, judged, oof, voof)
    tt.summary("GenD head alone", meta, judged, hoof, hvoof)
    # the probe (labelled fakes) and the head (twins only) as an ensemble: each logit over its spread on the judged
    # faces, then a weighted mean
    sp, sh = np.nanstd(oof[judged]), np.nanstd(hoof[judged])
    for w in (0.25, 0.5):
        mix = (1 - w) * oof / sp + w * hoof / sh
        vmix = {i: (1 - w) * voof[i] / sp + w * hvoof[i] / sh for i in voof if i in hvoof}
        tt.summary(f"probe + {w} GenD head", meta, judged, mix, vmix)
    # "fake if either says fake": the larger of the two standardised logits (each centred on its real faces' median)
    cp, ch = np.nanmedian(oof[judged & (y == 0)]), np.nanmedian(hoof[judged & (y == 0)])
    both = np.maximum((oof - cp) / sp, (hoof - ch) / sh)
    vboth = {i: np.maximum((voof[i] - cp) / sp, (hvoof[i] - ch) / sh) for i in voof if i in hvoof}
    tt.summary("max(probe, GenD head)", meta, judged, both, vboth)
    fmix = {i: 0.5 * voofs[tt.PROBE_C][i] / np.nanstd(oofs[tt.PROBE_C][judged]) + 0.5 * hvoof[i] / sh
            for i in voofs[tt.PROBE_C] if i in hvoof}  # fmt: skip
    tt.summary("frozen probe + 0.5 head", meta, judged,
               0.5 * oofs[tt.PROBE_C] / np.nanstd(oofs[tt.PROBE_C][judged]) + 0.5 * hoof / sh, fmix)  # fmt: skip


def main() -> None:
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    if stage == "crops":
        cmd_crops()
    elif stage in ("tune", "encode") and len(sys.argv) > 2 and sys.argv[2] in ("0", "1"):
        (cmd_tune if stage == "tune" else cmd_encode)(int(sys.argv[2]))
    elif stage == "eval":
        cmd_eval()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
