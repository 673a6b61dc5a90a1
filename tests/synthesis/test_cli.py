from __future__ import annotations

import json

import cv2
import numpy as np

from dflab.cli import main
from dflab.synthesis import replay
from dflab.synthesis._faces import face_sample
from dflab.synthesis.sheet import sheet_entries, write_sheet


def test_synth_cli_writes_replayable_samples(tmp_path, astronaut):
    src = tmp_path / "astronaut.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    rc = main(
        [
            "synth",
            "--method",
            "addg",
            "--category",
            "Rotation",
            "--input",
            str(src),
            "--out",
            str(out),
            "--seed",
            "3",
            "--n",
            "2",
        ]
    )
    assert rc == 0
    rec = json.loads((out / "0001_addg_params.json").read_text())
    assert rec["params"]["category"] == "Rotation" and rec["seed"] == 3
    saved = cv2.cvtColor(cv2.imread(str(out / "0001_addg.png")), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(str(out / "0001_addg_mask.png"), cv2.IMREAD_GRAYSCALE)
    face = face_sample(astronaut, size=256)
    again = replay(rec["params"], face)
    np.testing.assert_array_equal(again.image, saved)
    np.testing.assert_array_equal((again.mask * 255).round().astype(np.uint8), mask)
    assert not np.array_equal(saved, cv2.cvtColor(cv2.imread(str(out / "0000_addg.png")), cv2.COLOR_BGR2RGB))
    rc = main(
        ["synth", "--replay", str(out / "0001_addg_params.json"), "--input", str(src), "--out", str(tmp_path / "re")]
    )
    assert rc == 0
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "re" / "replay_addg.png")), cv2.imread(str(out / "0001_addg.png"))
    )


def test_synth_cli_errors_are_reported(tmp_path, capsys):
    rc = main(["synth", "--method", "partial", "--input", str(tmp_path / "nope.png"), "--out", str(tmp_path)])
    assert rc == 2 and "--pair" in capsys.readouterr().out
    rc = main(["synth", "--method", "fwa", "--input", str(tmp_path / "nope.png"), "--out", str(tmp_path)])
    assert rc == 1 and "error" in capsys.readouterr().out


def test_contact_sheet_has_every_category(tmp_path, astro_face, fake_face, pool):
    entries = sheet_entries(astro_face, pool, fake_face, seed=0)
    titles = [t for t, _, _ in entries]
    assert "SB-Sim" in titles and "partial right" in titles and "LiSiam SSIM mask" in titles
    assert len(titles) == 1 + 9 + 4 + 1 + 7 + 3
    path = write_sheet(tmp_path / "sheet.png", astro_face, pool, fake_face, tile=64)
    img = cv2.imread(str(path))
    assert img.shape == (4 * (2 * 64 + 20), 7 * 64, 3)


def _manifest(tmp_path, astro_face, fake_face):
    from dflab.data.manifest import FaceRow, Manifest, VideoRecord

    def png(name, img):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        return name

    tmp_path.mkdir(parents=True, exist_ok=True)
    box = [0.0, 0.0, 256.0, 256.0]
    with Manifest(tmp_path) as m:
        for i in range(3):
            row = FaceRow(
                "folder",
                f"v{i}",
                0,
                0,
                0,
                "real",
                "train",
                "",
                png(f"r{i}.png", astro_face.image),
                box,
                box,
                (astro_face.landmarks + i).tolist(),
            )
            m.commit_video(VideoRecord("folder", f"v{i}", str(tmp_path / f"v{i}.mp4"), 0), [row])
        row = FaceRow(
            "folder",
            "f0",
            0,
            0,
            1,
            "Deepfakes",
            "train",
            "",
            png("f0.png", fake_face.image),
            box,
            box,
            fake_face.landmarks.tolist(),
            original_id="v0",
            original_crop=png("o0.png", fake_face.original),
        )
        m.commit_video(VideoRecord("folder", "f0", str(tmp_path / "f0.mp4"), 1, method="Deepfakes"), [row])
    return tmp_path


def test_synth_cli_on_a_manifest(tmp_path, astro_face, fake_face):
    root = _manifest(tmp_path / "prep", astro_face, fake_face)
    out = tmp_path / "out"
    assert (
        main(["synth", "--method", "addg", "--category", "SB-Sim", "--input", str(root), "--out", str(out), "--n", "2"])
        == 0
    )
    rec = json.loads((out / "0000_addg_params.json").read_text())
    assert rec["params"]["donor_key"].startswith("folder:v") and rec["params"]["donor_key"] != rec["face_key"]
    assert main(["synth", "--method", "bigarts_fr", "--input", str(root), "--out", str(out)]) == 0
    rec = json.loads((out / "0000_bigarts_fr_params.json").read_text())
    assert rec["face_key"] == "folder:f0:0:0" and rec["params"]["donor_key"] != "folder:v0:0:0"
    assert (out / "0000_bigarts_fr_mask_in.png").exists() and (out / "0000_bigarts_fr_mask_ex.png").exists()


def test_sheet_of_one_photo_without_a_pool(tmp_path, astronaut, capsys):
    """Issue 13: ``dflab synth --sheet --input photo.jpg`` used to fail (SB-Rand "needs a donor pool"): donors now
    come from the photo itself (its mirror image, its other faces)."""
    src = tmp_path / "photo.jpg"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    rc = main(["synth", "--sheet", "--input", str(src), "--out", str(tmp_path / "sheet.png")])
    assert rc == 0, capsys.readouterr().out
    assert "photo:mirror" in capsys.readouterr().out
    img = cv2.imread(str(tmp_path / "sheet.png"))
    assert img.shape == (2 * (2 * 160 + 20), 7 * 160, 3)  # 1 + 9 ADDG + 4 other cells, 7 per row


def test_sheet_without_any_donor_shows_needs_pool(astro_face):
    entries = sheet_entries(astro_face, None, seed=0)
    grey = {t for t, img, m in entries if (img == 200).mean() > 0.8 and not m.any()}
    assert grey == {"SB-Rand", "SB-Sim", "BiG (Real,Real) M_ex", "BI (X-ray)"}
    assert len(entries) == 1 + 9 + 4
