"""Face detector + 68-landmark candidates, measured on the shared real photos (``make bench``; ~2 min).

* landmark NME (mean point error / inter-ocular distance, outer eye corners 36–45) against the iBUG 68-point ground
  truth in ``real_faces/dlib/*_with_face_landmarks.xml``; caveat: that ground truth was itself produced with dlib's
  68-point model (the XML says so), so dlib's number is an agreement score, not an independent error;
* detection recall / false detections (IoU > 0.3) on the faces annotated in ``real_faces/dlib/{training,testing}.xml``;
* detections on ``multi_face/`` against a hand count of visible faces, and faces per frame on the crowd video;
* tight crops, where the face fills the image (what an analyst screenshots): the 22 MTCNN crops of ``dfdc_crops/``
  as they are (50–130 px) and upscaled to 512 px, and the 43 annotated faces of the dlib XMLs cut at their box and
  upscaled to 512 px; goal: every face found;
* milliseconds per image (2 shared CPU cores);
* the video schedule of ``dflab prepare`` (:class:`~dflab.faces.schedule.DetectionSchedule`: reduced searches where
  the faces are large, default searches on key frames and retries) against the default search of every frame, on
  the crowd video and the three reference videos of ``bench_ratios.py``: faces per frame, boxes matched, landmark
  agreement, milliseconds per frame.

Optional candidates (mediapipe 0.10.21 face mesh, facenet-pytorch MTCNN) are measured only when importable; they are
not dependencies of dflab (install them ``--no-deps`` into a separate target and put it on PYTHONPATH to re-measure).
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dflab.faces import FaceDetector, box_iou
from dflab.media import iter_frames, read_image

SHARED = Path(os.environ.get("DFLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
#: visible faces counted by hand (any pose, ≥ ~30 px): couple 2, Friends cast 6, elevator selfie 7
MULTI_FACE_COUNT = {"couple.jpg": 2, "multiface.jpg": 6, "selfie-many-people.jpg": 7}
#: a 478-point mesh → iBUG-68 correspondence commonly used with mediapipe (jaw points only approximate iBUG's)
# fmt: off
MP68 = [162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389, 71, 63, 105, 66, 107,
        336, 296, 334, 293, 301, 168, 197, 5, 4, 75, 97, 2, 326, 305, 33, 160, 158, 133, 153, 144, 362, 385, 387, 263,
        373, 380, 61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87]
# fmt: on
FIVE = {"eye_l": list(range(36, 42)), "eye_r": list(range(42, 48)), "nose": [30], "mouth_l": [48], "mouth_r": [54]}

Det = tuple[tuple[float, float, float, float], np.ndarray | None]  # box, landmarks (68 or 5 points) or None


def _gt(xml: Path) -> list[tuple[str, list[tuple[tuple[float, float, float, float], np.ndarray | None]]]]:
    out = []
    for im in ET.parse(xml).getroot().iter("image"):
        faces = []
        for b in im.iter("box"):
            if b.get("ignore") == "1":
                continue
            x, y, w, h = (float(b.get(k)) for k in ("left", "top", "width", "height"))
            parts = sorted((int(p.get("name")), float(p.get("x")), float(p.get("y"))) for p in b.iter("part"))
            lm = np.array([(px, py) for _, px, py in parts], np.float32) if parts else None
            faces.append(((x, y, x + w, y + h), lm))
        out.append((im.get("file"), faces))
    return out


def _five(lm68: np.ndarray) -> np.ndarray:
    return np.array([lm68[idx].mean(axis=0) for idx in FIVE.values()], np.float32)


def _candidates(only: set[str] | None = None) -> dict[str, Callable[[np.ndarray], list[Det]]]:
    cands: dict[str, Callable[[np.ndarray], list[Det]]] = {}
    for name, backend, kw in [
        ("yunet_max960 (default)", "yunet", {}),
        ("yunet_max960_no_pad_retry", "yunet", {"pad_retry": False}),
        ("yunet_full_resolution", "yunet", {"max_side": None}),
        ("dlib_hog_auto", "dlib", {}),
        ("dlib_hog_auto_no_pad_retry", "dlib", {"pad_retry": False}),
        ("dlib_hog_up0_max1280", "dlib", {"upsample": 0, "max_side": 1280}),
        ("dlib_cnn_up0_max1280", "dlib_cnn", {"upsample": 0, "max_side": 1280}),
    ]:
        if only and name.split(" ")[0] not in only:
            continue
        det = FaceDetector(backend, **kw)
        det.load_landmarks()  # loaded on first use otherwise: the timings below are of detection
        cands[name] = lambda rgb, d=det: [(f.box, f.landmarks) for f in d.detect(rgb)]
    if only:
        return cands
    try:
        import mediapipe as mp

        mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=20, min_detection_confidence=0.5)

        def run_mp(rgb: np.ndarray) -> list[Det]:
            res = mesh.process(rgb)
            h, w = rgb.shape[:2]
            out = []
            for fl in res.multi_face_landmarks or []:
                pts = np.array([(p.x * w, p.y * h) for p in fl.landmark], np.float32)
                lm = pts[MP68]
                x0, y0 = lm.min(axis=0)
                x1, y1 = lm.max(axis=0)
                out.append(((float(x0), float(y0), float(x1), float(y1)), lm))
            return out

        cands["mediapipe_mesh_0.10.21"] = run_mp
    except (ImportError, AttributeError) as exc:
        print(f"[bench_faces] mediapipe not measured: {exc}")
    try:
        from dflab.compat import ensure_torchvision

        ensure_torchvision()
        from facenet_pytorch import MTCNN

        mtcnn = MTCNN(keep_all=True, device="cpu")

        def run_mtcnn(rgb: np.ndarray) -> list[Det]:
            boxes, probs, pts = mtcnn.detect(rgb, landmarks=True)
            if boxes is None:
                return []
            keep = [i for i, pr in enumerate(probs) if pr > 0.9]
            return [(tuple(float(v) for v in boxes[i]), pts[i].astype(np.float32)) for i in keep]

        cands["mtcnn_facenet_2.6.0 (5 pts)"] = run_mtcnn
    except ImportError as exc:
        print(f"[bench_faces] MTCNN not measured: {exc}")
    return cands


def _match(dets: list[Det], box: tuple[float, float, float, float]) -> Det | None:
    scored = [(box_iou(d[0], box), d) for d in dets]
    best = max(scored, key=lambda x: x[0], default=(0.0, None))
    return best[1] if best[0] > 0.3 else None


def _tight_crops(lm_gt: list, images: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Images whose face fills the frame: DFDC's MTCNN crops (as they are, and at 512 px) and the dlib XMLs'
    annotated faces cut at their box and upscaled to 512 px."""
    dfdc = [read_image(p) for p in sorted((SHARED / "dfdc_crops").rglob("*.png"))]
    xml = []
    for fname, faces in lm_gt:
        rgb = images[fname]
        for (x0, y0, x1, y1), _ in faces:
            cut = rgb[max(0, round(y0)) : round(y1), max(0, round(x0)) : round(x1)]
            xml.append(cv2.resize(cut, (512, 512), interpolation=cv2.INTER_CUBIC))
    return {
        "dfdc_crops_native": dfdc,
        "dfdc_crops_512px": [cv2.resize(c, (512, 512), interpolation=cv2.INTER_CUBIC) for c in dfdc],
        "dlib_xml_faces_cut_at_box_512px": xml,
    }


def run(only: set[str] | None = None) -> dict:
    """Measure every candidate (or those named in ``only``, e.g. ``{"yunet_max960", "dlib_hog_auto"}``)."""
    if not (SHARED / "real_faces" / "dlib").is_dir():
        return {"skipped": f"shared data not found at {SHARED}"}
    ddir = SHARED / "real_faces" / "dlib"
    lm_gt = _gt(ddir / "training_with_face_landmarks.xml") + _gt(ddir / "testing_with_face_landmarks.xml")
    images = {f: read_image(ddir / f) for f, _ in lm_gt}
    crowd = [rgb for _, rgb in iter_frames(SHARED / "multi_face" / "crowd_video.mp4", count=6)]
    multi = {f: read_image(SHARED / "multi_face" / f) for f in MULTI_FACE_COUNT}
    tight = _tight_crops(lm_gt, images)
    results: dict[str, dict] = {}
    for name, fn in _candidates(only).items():
        errs, errs5, found, n_gt, false_dets, times = [], [], 0, 0, 0, []
        for fname, faces in lm_gt:
            t0 = time.perf_counter()
            dets = fn(images[fname])
            times.append(time.perf_counter() - t0)
            matched = set()
            for box, gt in faces:
                n_gt += 1
                d = _match(dets, box)
                if d is None:
                    continue
                found += 1
                matched.add(id(d))
                iod = float(np.linalg.norm(gt[36] - gt[45]))
                if d[1] is not None and len(d[1]) == 68:
                    errs.append(float(np.linalg.norm(d[1] - gt, axis=1).mean()) / iod)
                    errs5.append(float(np.linalg.norm(_five(d[1]) - _five(gt), axis=1).mean()) / iod)
                elif d[1] is not None and len(d[1]) == 5:
                    errs5.append(float(np.linalg.norm(d[1] - _five(gt), axis=1).mean()) / iod)
            false_dets += sum(1 for d in dets if id(d) not in matched)
        t0 = time.perf_counter()
        crowd_faces = [len(fn(f)) for f in crowd]
        crowd_ms = (time.perf_counter() - t0) / len(crowd) * 1000
        multi_found = {f: len(fn(rgb)) for f, rgb in multi.items()}
        t0 = time.perf_counter()
        tight_found = {k: f"{sum(1 for im in ims if fn(im))}/{len(ims)}" for k, ims in tight.items()}
        tight_ms = (time.perf_counter() - t0) / sum(len(v) for v in tight.values()) * 1000
        results[name] = {
            "nme68_ibug_interocular": round(float(np.mean(errs)), 4) if errs else None,
            "nme5_interocular": round(float(np.mean(errs5)), 4) if errs5 else None,
            "recall_dlib_xml": f"{found}/{n_gt}",
            "false_detections_dlib_xml": false_dets,
            "multi_face_detections_vs_hand_count": {f: f"{multi_found[f]}/{c}" for f, c in MULTI_FACE_COUNT.items()},
            "crowd_video_faces_per_frame_1080p": crowd_faces,
            "ms_per_image_dlib_xml_mean": round(float(np.mean(times)) * 1000, 1),
            "ms_per_frame_crowd_1080p": round(crowd_ms, 1),
            "tight_crops_with_a_face": tight_found,
            "ms_per_tight_crop": round(tight_ms, 1),
        }
        print(f"[bench_faces] {name}: {results[name]}")
    out = {"candidates": results, "n_landmark_faces": sum(len(f) for _, f in lm_gt)}
    if not only or "schedule" in only:
        out["video_schedule_vs_every_frame_default_search"] = _schedule()
    return out


SCHEDULE_VIDEOS = [
    "multi_face/crowd_video.mp4",
    "ffpp/original_sequences/youtube/c23/videos/519.mp4",
    "ffpp/manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4",
    "real_videos/liveportrait_d0.mp4",
]


def _schedule(n_frames: int = 32) -> dict:
    """The scheduled search of ``dflab prepare`` against the default search of every one of 32 sampled frames."""
    from dflab.faces.schedule import DetectionSchedule

    det = FaceDetector("yunet")
    det.load_landmarks()
    out = {}
    for rel in SCHEDULE_VIDEOS:
        frames = [rgb for _, rgb in iter_frames(SHARED / rel, count=n_frames)]
        t0 = time.perf_counter()
        every = [det.detect(f) for f in frames]
        t_every = time.perf_counter() - t0
        sched = DetectionSchedule(det)
        t0 = time.perf_counter()
        got = [sched.detect(f) for f in frames]
        t_sched = time.perf_counter() - t0
        matched, nme = 0, []
        for fa, fb in zip(got, every, strict=True):
            for b in fb:
                d = max(fa, key=lambda a, b=b: box_iou(a.box, b.box), default=None)
                if d is None or box_iou(d.box, b.box) <= 0.3:
                    continue
                matched += 1
                iod = float(np.linalg.norm(b.landmarks[36] - b.landmarks[45]))
                nme.append(float(np.linalg.norm(d.landmarks - b.landmarks, axis=1).mean()) / iod)
        reduced = [side for _, side, _ in sched.searches if side is not None]
        out[rel] = {
            "faces_every_frame": sum(len(f) for f in every),
            "faces_scheduled": sum(len(f) for f in got),
            "every_frame_faces_matched": f"{matched}/{sum(len(f) for f in every)}",
            "frames_with_other_face_count": sum(1 for a, b in zip(got, every, strict=True) if len(a) != len(b)),
            "landmark_difference_interocular_mean": round(float(np.mean(nme)), 4) if nme else None,
            "searches_default": sum(1 for _, side, _ in sched.searches if side is None),
            "searches_reduced": len(reduced),
            "reduced_sides": sorted(set(reduced)),
            "ms_per_frame_every_frame": round(t_every / len(frames) * 1000, 1),
            "ms_per_frame_scheduled": round(t_sched / len(frames) * 1000, 1),
        }
        print(f"[bench_faces] schedule {rel}: {out[rel]}")
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(set(sys.argv[1:]) or None), indent=2))
