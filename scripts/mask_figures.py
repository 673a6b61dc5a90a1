"""Predicted masks of a trained BiG-Arts / LiSiam checkpoint on a fake frame (FF++ Deepfakes 519_515) and on an
on-the-fly fake of a held-out real face: the pictures docs/big_arts_masks.png and docs/lisiam_masks.png.

Usage (see README, "Mask-supervised detectors" for the prepare/train commands):
    python scripts/mask_figures.py CKPT SYNTH FFPP_PREPARED REAL_PREPARED OUT.png
    e.g. python scripts/mask_figures.py runs/big_arts_tiny/best bigarts_rr prep_ffpp prep_rv docs/big_arts_masks.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch

from dflab.data.manifest import Manifest
from dflab.models.checkpoint import load_detector
from dflab.synthesis import SYNTHESIZERS
from dflab.synthesis.base import FaceSample
from dflab.synthesis.big_arts_aug import bigarts_targets
from dflab.synthesis.masks import ssim_mask
from dflab.train.data import build_pool, face_key, read_rgb, select_rows
from dflab.train.recipes import load_recipe

ckpt, synth_name, ffpp_dir, real_dir, out = sys.argv[1:6]
loaded = load_detector(ckpt)
model = loaded.model.eval()
spec = model.input_spec
size = spec.size


def tensor(img):
    x = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1))[None]


cases = []
# 1) FF++ Deepfakes frame with its original (ground truth from the pair)
m = Manifest(ffpp_dir, readonly=True)
row = [r for r in m.faces(method="Deepfakes")][8]
fake = read_rgb(m.root / row.crop_path)
orig = read_rgb(m.root / row.original_crop)
face = FaceSample(image=fake, landmarks=row.landmarks_array(), original=orig, label=1)
gt = bigarts_targets(face)
gt["mask"] = ssim_mask(fake, orig)
cases.append(("FF++ Deepfakes 519_515 (unseen kind)", fake, gt))
# 2) an on-the-fly fake of a held-out (validation) real face, the training distribution
recipe = load_recipe(
    loaded.card.get("recipe", "big_arts_tiny") if isinstance(loaded.card.get("recipe"), str) else "big_arts_tiny"
)
mv = Manifest(real_dir, readonly=True)
vcfg = recipe.data.val
rows = select_rows(mv, vcfg, recipe.data.unsplit_val_fraction)
pool = build_pool(mv.root, rows)
r = rows[len(rows) // 2]
img = read_rgb(mv.root / r.crop_path)
f = FaceSample(image=img, landmarks=r.landmarks_array(), identity=r.identity or r.video_id, key=face_key(r), label=0)
synth = SYNTHESIZERS.get(synth_name)
res = synth.apply(f, synth.sample_params(np.random.default_rng(1), f, pool), pool)
cases.append((f"on-the-fly {synth_name} fake of a held-out real face", res.image, {"mask": res.mask, **res.masks}))

rows_out = []
for title, img, gt in cases:
    with torch.no_grad():
        o = model(tensor(img))
    pred = {k: v[0, 0].numpy() for k, v in model.explain_maps(o).items()}
    p_fake = float(model.score(o)[0])
    rows_out.append((title, img, gt, pred, p_fake))

keys = list(rows_out[0][3])
ncol = 1 + 2 * len(keys)
fig, axes = plt.subplots(len(rows_out), ncol, figsize=(2.4 * ncol, 2.6 * len(rows_out)))
for i, (title, img, gt, pred, p) in enumerate(rows_out):
    axes[i, 0].imshow(cv2.resize(img, (size * 2, size * 2)))
    axes[i, 0].set_title(f"{title}\nP(fake)={p:.2f}", fontsize=7)
    for j, k in enumerate(keys):
        g = gt.get(k)
        axes[i, 1 + 2 * j].imshow(g if g is not None else np.zeros((size, size)), cmap="gray", vmin=0, vmax=1)
        axes[i, 1 + 2 * j].set_title(f"ground truth {k}", fontsize=7)
        axes[i, 2 + 2 * j].imshow(pred[k], cmap="inferno", vmin=0, vmax=1)
        axes[i, 2 + 2 * j].set_title(f"predicted {k}", fontsize=7)
for a in axes.ravel():
    a.axis("off")
fig.tight_layout()
fig.savefig(out, dpi=110)
print("wrote", out, [(t, round(p, 3)) for t, _, _, _, p in rows_out])
