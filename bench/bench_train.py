"""Training throughput: the model step alone vs the full pipeline (crop I/O + on-the-fly BI synthesis + step).

A manifest of face crops is built in a temporary folder from scikit-image's astronaut photo (dlib landmarks,
jittered crops, one "identity" per video so BI always finds a donor), so the benchmark needs no shared data.
Reported (images/s, median of the timed batches):

* ``model_step_ips`` — forward + loss + backward + Adam step on a batch already in memory;
* ``data_only_ips`` — the data stream alone (read crops, BI fakes for half the items, resize, normalise, collate);
* ``pipeline_ips`` — both, as the trainer runs them (``num_workers`` = 0: everything on the training thread);
* ``pipeline_workers2_ips`` — the same with 2 DataLoader workers.

If ``data_only_ips`` is below ``model_step_ips`` the pipeline is data-bound.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ARCH = "resnet18"
SIZE = 128
BATCH = 16
STEPS = 6


def _manifest(root: Path, n_videos: int = 12, frames: int = 4) -> Path:
    from skimage import data

    from dflab.data.manifest import FaceRow, Manifest, VideoRecord
    from dflab.faces import FaceDetector, crop_face, transform_points

    img = data.astronaut()
    face = FaceDetector(backend="dlib").detect(img)[0]
    rng = np.random.default_rng(0)
    with Manifest(root) as m:
        for v in range(n_videos):
            rows = []
            for f in range(frames):
                box = np.asarray(face.box, np.float64) + rng.uniform(-6, 6, 4)
                crop = crop_face(img, tuple(box), size=SIZE, margin=1.3)
                lm = transform_points(face.landmarks, crop.matrix)
                rel = f"crops/v{v}_{f}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / rel), cv2.cvtColor(crop.image, cv2.COLOR_RGB2BGR))
                rows.append(
                    FaceRow(
                        dataset="bench", video_id=f"v{v}", frame_index=f, track_id=0, label=0, method="real",
                        split="train", compression="", crop_path=rel, box=list(map(float, crop.box)),
                        det_box=list(map(float, face.box)), landmarks=np.asarray(lm).tolist(), identity=f"id{v}",
                        crop_size=SIZE,
                    )
                )  # fmt: skip
            m.commit_video(VideoRecord("bench", f"v{v}", str(root / f"v{v}"), 0, split="train"), rows, n_frames=frames)
    return root / "manifest.sqlite"


def _median_ips(times: list[float]) -> float:
    return round(BATCH / float(np.median(times)), 2)


def run() -> dict[str, Any]:
    from dflab.models.base import build_detector
    from dflab.train.config import DataConfig, StreamConfig
    from dflab.train.data import PlanSampler, build_stream, collate
    from dflab.train.ddp import DistInfo
    from dflab.train.loop import _StreamIter

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        man_path = _manifest(Path(tmp))
        from dflab.data.manifest import Manifest

        manifest = Manifest(man_path, readonly=True)
        model = build_detector(ARCH)
        spec = model.input_spec
        scfg = StreamConfig(mode="real_only", split="train", synthesizers=["bi"], fake_ratio=0.5)
        dcfg = DataConfig(size=SIZE, batch_size=BATCH, streams={"default": scfg})
        stream = build_stream(manifest, scfg, dcfg, targets=frozenset(), mean=spec.mean, std=spec.std, seed=0,
                              name="default")  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        model.train()

        def step(batch: dict[str, Any]) -> None:
            opt.zero_grad(set_to_none=True)
            out = model(batch["image"])
            model.compute_loss(batch, out)["loss"].backward()
            opt.step()

        items = list(PlanSampler(stream))
        batch = collate([stream[it] for it in items[:BATCH]])
        step(batch)  # warm-up
        t_model = []
        for _ in range(STEPS):
            t0 = time.perf_counter()
            step(batch)
            t_model.append(time.perf_counter() - t0)

        t_data = []
        for k in range(STEPS):
            t0 = time.perf_counter()
            collate([stream[it] for it in items[k * BATCH % len(items) :][:BATCH]])
            t_data.append(time.perf_counter() - t0)

        results = {}
        for workers in (0, 2):
            it = _StreamIter(stream, BATCH, workers, DistInfo())
            step(it.next())  # warm-up (starts the workers)
            times = []
            for _ in range(STEPS):
                t0 = time.perf_counter()
                step(it.next())
                times.append(time.perf_counter() - t0)
            results[workers] = _median_ips(times)
            it._it = None
        manifest.close()
    return {
        "detector": ARCH,
        "size_px": SIZE,
        "batch": BATCH,
        "synthesizer": "bi (half of the items)",
        "threads": torch.get_num_threads(),
        "model_step_ips": _median_ips(t_model),
        "data_only_ips": _median_ips(t_data),
        "pipeline_ips": results[0],
        "pipeline_workers2_ips": results[2],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
