"""Integration: the shipped default detector on a real FF++ video (held out from its training) and on a forgery
synthesised from that very video — the forgery must score higher, through the CLI, with a complete report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dflab.cli import main
from dflab.scan.pipeline import DEFAULT_WEIGHTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_and_forgery(shared_data, tmp_path_factory):
    from dflab.faces import FaceDetector
    from dflab.media import iter_frames, write_video
    from dflab.scan.demo import self_blend

    real = shared_data / "ffpp" / "original_sequences" / "youtube" / "c23" / "videos" / "004.mp4"
    if not real.exists():
        pytest.skip(f"{real} not found")
    out = tmp_path_factory.mktemp("real_scan")
    det = FaceDetector(backend="dlib")
    rng = np.random.default_rng(0)
    frames_real, frames_fake = [], []
    for _i, rgb in iter_frames(real, count=8):
        rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
        faces = det.detect(rgb)
        assert faces, "FF++ 004 has a face in every sampled frame"
        face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        fake, _mask = self_blend(rgb, face.landmarks, rng)
        frames_real.append(rgb)
        frames_fake.append(fake)
    write_video(out / "real_004.mp4", np.stack(frames_real), fps=8)
    write_video(out / "forgery_004.mp4", np.stack(frames_fake), fps=8)
    return out / "real_004.mp4", out / "forgery_004.mp4"


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no shipped default weights")
def test_forgery_scores_above_the_real_video(real_and_forgery, tmp_path, capsys):
    real, fake = real_and_forgery
    code = main(["scan", str(real), str(fake), "--out", str(tmp_path), "--no-progress"])
    records = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads((tmp_path / "scan.json").read_text())["files"]}
    r, f = records["real_004.mp4"], records["forgery_004.mp4"]
    assert r["status"] == f["status"] == "ok"
    assert r["n_sampled"] == f["n_sampled"] == 8
    assert f["score"] > r["score"], (r["score"], f["score"])
    assert code == (1 if "fake" in (r["verdict"], f["verdict"]) else 0)
    page = (tmp_path / "report.html").read_text()
    assert page.count('alt="timeline"') == 2
    print(capsys.readouterr().out)
