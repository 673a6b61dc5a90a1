"""Experiment (issue 11): *reconstruction* twins — real faces re-rendered by an image decoder — beside SBI's blends.

The weak family of the default is whole-face synthesis (EMO / VASA-1 clips of the V-Express folder, AniPortrait,
DreamTalk): no blending boundary, but every pixel of the face came out of a generator's decoder (AniPortrait,
V-Express and EMO decode through Stable Diffusion's VAE; GAN faces through upsampling convolutions). Rajan et al.
(ICLR 2025, "On the effectiveness of dataset alignment for fake image detection") train on real images and their
reconstructions by the latent-diffusion autoencoder: the pairs differ only by the decoder's trace. SD's VAE weights
are not installable here (no PyPI / npm / Debian package ships them), so this trains a small autoencoder of the
same shape on the real faces themselves (AutoGAN's idea, Zhang et al. 2019: simulate a generator's upsampling
artifacts with an autoencoder trained on reals only): an 8× downsampling encoder to a few latent channels, and a
decoder of nearest-neighbour upsampling + 3 × 3 convolutions, as SD's. Each real face's reconstruction is a fake
twin (label 1, twin weight), kept beside the shipped SBI / ADDG twins; measured under the LOSO protocol.

    python scripts/experiments/decoder_twins.py train   # the autoencoder on the real faces' 224 px crops (~15 min)
    MODE=whole python scripts/experiments/decoder_twins.py make   # reconstruct + encode with CLIP, resumable
    MODE=blend python scripts/experiments/decoder_twins.py make   # ... pasted into the face's hull
    MODES=whole,blend python scripts/experiments/decoder_twins.py eval   # LOSO: shipped set, + each twin set

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import real_aug
import warp_twins

td, tt = pooling.td, pooling.tt
RUN = td.RUN
OUT = RUN / os.environ.get("DECODER_OUT", "decoder")
CHUNK = 128
LATENT = int(os.environ.get("LATENT", "8"))  # latent channels at 1/8 resolution (SD's VAE: 4)
STEPS = int(os.environ.get("STEPS", "900"))
PATCH, BATCH = 96, 16
#: "whole": the reconstructed crop (a face generated whole, as talking heads); "blend": the reconstruction pasted
#: into the face's landmark hull through a feathered mask (a swapped face)
MODE = os.environ.get("MODE", "whole")
FEATS = OUT / MODE


def autoencoder():
    """Encoder: 3 stride-2 stages to 1/8 resolution and ``LATENT`` channels; decoder: 3 stages of nearest ×2
    upsampling and two 3 × 3 convolutions (SiLU), as the decoder of SD's VAE, much thinner."""
    import torch.nn as nn

    def stage(cin: int, cout: int, down: bool) -> list:
        first = nn.Conv2d(cin, cout, 3, stride=2, padding=1) if down else nn.Conv2d(cin, cout, 3, padding=1)
        return [first, nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.SiLU()]

    enc = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.SiLU(),
        *stage(32, 64, True),
        *stage(64, 128, True),
        *stage(128, 128, True),
        nn.Conv2d(128, LATENT, 1),
    )
    up = [nn.Conv2d(LATENT, 128, 3, padding=1), nn.SiLU()]
    for cin, cout in ((128, 128), (128, 64), (64, 32)):
        up += [nn.Upsample(scale_factor=2, mode="nearest"), *stage(cin, cout, False)]
    dec = nn.Sequential(*up, nn.Conv2d(32, 3, 3, padding=1))
    return nn.Sequential(enc, dec)


def _real_idx(meta: list[dict]) -> list[int]:
    return [i for i, m in enumerate(meta) if m["variant"] == "orig" and m["label"] == 0]


def cmd_train() -> None:
    """L1 + L1 of the Laplacian (keeps edges), Adam, random 96 px patches of the real crops with flips; resumable
    from ``ae.pt`` (saved every 100 steps)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    OUT.mkdir(parents=True, exist_ok=True)
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    idx = _real_idx(pooling.crop_meta())
    model = autoencoder()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = 0
    if (OUT / "ae.pt").exists():
        st = torch.load(OUT / "ae.pt")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
    lap = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    rng = np.random.default_rng([td.SEED, 21, step])
    t0 = time.time()
    while step < STEPS:
        batch = []
        for i in rng.choice(idx, BATCH):
            y, x = rng.integers(0, 224 - PATCH + 1, 2)
            p = np.asarray(crops[i, y : y + PATCH, x : x + PATCH])
            batch.append(p[:, ::-1] if rng.random() < 0.5 else p)
        xb = torch.from_numpy(np.stack(batch).astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
        out = model(xb)
        loss = F.l1_loss(out, xb) + F.l1_loss(F.conv2d(out, lap, groups=3), F.conv2d(xb, lap, groups=3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or step == STEPS:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, OUT / "ae.tmp")
            (OUT / "ae.tmp").rename(OUT / "ae.pt")
            print(f"step {step} loss {loss.item():.4f} ({(time.time() - t0) / 100:.2f} s/step)", flush=True)
            t0 = time.time()


def reconstruct(model, imgs: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.stack(imgs).astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
        y = model(x).permute(0, 2, 3, 1).numpy()
    return list(np.clip((y + 1) * 127.5, 0, 255).round().astype(np.uint8))


def cmd_make() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    meta = pooling.crop_meta()
    idx = _real_idx(meta)
    FEATS.mkdir(parents=True, exist_ok=True)
    (FEATS / "idx.json").write_text(json.dumps(idx))
    model = autoencoder()
    model.load_state_dict(torch.load(OUT / "ae.pt")["model"])
    model.eval()
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")

    lms = warp_twins._landmarks(meta, idx) if MODE == "blend" else {}

    def make(start: int, stop: int) -> tuple[list, list]:
        from dflab.synthesis.masks import hull_mask, soften

        part = idx[start:stop]
        imgs = [np.asarray(crops[i]) for i in part]
        out = []
        for s in range(0, len(imgs), 16):
            out += reconstruct(model, imgs[s : s + 16])
        params = [{"method": "reconstruction"}] * len(out)
        if MODE == "blend":
            params = []
            for k, i in enumerate(part):
                sigma = float(np.random.default_rng([td.SEED, 22, i]).uniform(3, 9))
                m = soften(hull_mask(lms[i], (224, 224)).astype(np.float32), sigma)[..., None]
                out[k] = (m * out[k] + (1 - m) * imgs[k]).round().astype(np.uint8)
                params.append({"method": "reconstruction-blend", "sigma": round(sigma, 3)})
        return out, params

    pooling.encode_chunks(FEATS, len(idx), make, CHUNK)


def cmd_eval() -> None:
    meta = pooling.crop_meta()
    base_x, base_m, views = real_aug.shipped_set()
    td.select = pooling.select
    runs = {"shipped set (resampled reals)": (base_x, base_m)}
    for mode in os.environ.get("MODES", "whole").split(","):
        ridx, fr = pooling.load_indexed(OUT / mode)
        runs[f"+ reconstruction twins ({mode})"] = (
            np.concatenate([base_x, fr]),
            base_m + [meta[i] | {"variant": "recon", "label": 1} for i in ridx],
        )
    blocks = tuple(range(int(os.environ.get("FIRST", "4")), 13))
    for name, (x, mm) in runs.items():
        o = np.array([m["variant"] == "orig" for m in mm])
        w = td.face_weights(mm)
        oofs, voofs = td.loso(x, mm, blocks, ("cls", "mean"), (0.01,), labelled=True, views=views, weight=w)
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"train": cmd_train, "make": cmd_make, "eval": cmd_eval}[sys.argv[1]]()
