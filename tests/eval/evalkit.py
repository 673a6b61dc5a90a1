"""Test kit for eval tests: tiny detectors (no registry, no checkpoint engine needed) and a synthetic manifest."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from dflab.data.manifest import FaceRow, Manifest, VideoRecord
from dflab.models.base import Detector, InputSpec

SPEC = InputSpec(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class BrightnessDetector(Detector):
    """P(fake) rises with the mean brightness of the crop: a detector whose right answers we know."""

    def __init__(self) -> None:
        super().__init__(SPEC)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, 0.0)
        self.gain = 10.0

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.conv(images) + images.mean(dim=1, keepdim=True)  # (B, 4, H, W)
        m = f.mean(dim=(1, 2, 3))
        z = self.gain * (m - 0.5)
        logits = torch.stack([-z / 2, z / 2], dim=1)
        return {"logits": logits, "embedding": f.mean(dim=(2, 3)), "mask": torch.sigmoid(f[:, :1])}

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"mask": outputs["mask"]}


class TinyConvDetector(Detector):
    """Encoder → classifier, plus a decoder that does not feed the classifier (like BiG-Arts / LiSiam)."""

    def __init__(self, size: int = 32) -> None:
        super().__init__(InputSpec(size=size))
        torch.manual_seed(0)
        self.enc1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 2)
        self.decoder = nn.Conv2d(16, 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.relu(self.enc2(torch.relu(self.enc1(images))))
        emb = f.mean(dim=(2, 3))
        return {"logits": self.head(emb), "embedding": emb, "mask": torch.sigmoid(self.decoder(f))}


def _write(path: Path, value: int, rng: np.random.Generator, size: int = 32) -> None:
    img = np.clip(value + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def make_manifest(root: Path, videos: list[dict], seed: int = 0) -> Path:
    """Write crops and a manifest. Each video dict: id, label, method, split, brightness, frames, tracks."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with Manifest(root) as man:
        for v in videos:
            rec = VideoRecord(
                dataset=v.get("dataset", "synth"),
                video_id=v["id"],
                path=str(root / f"{v['id']}.mp4"),
                label=v["label"],
                method=v["method"],
                split=v["split"],
                compression=v.get("compression", "c23"),
            )
            faces = []
            for t in range(v.get("tracks", 1)):
                for fi in range(v.get("frames", 3)):
                    b = v["brightness"][t] if isinstance(v["brightness"], list) else v["brightness"]
                    rel = f"crops/{v['id']}/{fi:04d}_{t}.png"
                    _write(root / rel, b, rng)
                    faces.append(
                        FaceRow(
                            dataset=rec.dataset,
                            video_id=v["id"],
                            frame_index=fi * 10,
                            track_id=t,
                            label=v["label"],
                            method=v["method"],
                            split=v["split"],
                            compression=rec.compression,
                            crop_path=rel,
                            box=[10.0, 20.0, 74.0, 84.0],
                            det_box=[18.0, 28.0, 66.0, 76.0],
                            landmarks=[[16.0, 16.0]] * 68,
                            frame_width=128,
                            frame_height=128,
                            crop_size=32,
                        )
                    )
            man.commit_video(rec, faces, n_frames=v.get("frames", 3))
    return root / "manifest.sqlite"


STANDARD = [
    {"id": "r1", "label": 0, "method": "real", "split": "test", "brightness": 40},
    {"id": "r2", "label": 0, "method": "real", "split": "test", "brightness": 90},
    {"id": "f1", "label": 1, "method": "Deepfakes", "split": "test", "brightness": 200},
    {"id": "f2", "label": 1, "method": "NeuralTextures", "split": "test", "brightness": 150, "tracks": 2},
    {"id": "rv", "label": 0, "method": "real", "split": "val", "brightness": 60},
    {"id": "fv", "label": 1, "method": "Deepfakes", "split": "val", "brightness": 180},
    {"id": "rt", "label": 0, "method": "real", "split": "train", "brightness": 50},
]
