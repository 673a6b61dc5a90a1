"""Dataset adapters on small trees built in the documented official layouts (and the real FF++/DFDC subsets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dflab.data.datasets import DATASETS, scan_dataset
from dflab.errors import ConfigError
from dflab.media import probe


def _by_id(records):
    return {r.video_id: r for r in records}


def test_registry_lists_every_seed_dataset():
    for name in (
        "ffpp",
        "celebdf",
        "dfdc",
        "dfdc_preview",
        "dfd",
        "uadfv",
        "dftimit",
        "wilddeepfake",
        "folder",
        "media",
    ):
        assert name in DATASETS


def test_ffpp_layout_splits_compression_masks(tmp_path, tiny_mp4, place):
    r = tmp_path / "ff"
    for comp in ("raw", "c40"):
        place(
            tiny_mp4,
            r / f"original_sequences/youtube/{comp}/videos/000.mp4",
            r / f"original_sequences/youtube/{comp}/videos/003.mp4",
            r / f"manipulated_sequences/Face2Face/{comp}/videos/000_003.mp4",
            r / f"manipulated_sequences/FaceShifter/{comp}/videos/003_000.mp4",
        )
    place(tiny_mp4, r / "manipulated_sequences/Face2Face/masks/videos/000_003.mp4")
    (r / "splits").mkdir()
    (r / "splits/test.json").write_text(json.dumps([["000", "003"]]))
    (r / "splits/train.json").write_text(json.dumps([["001", "002"]]))
    recs = _by_id(scan_dataset("ffpp", r, compression="c40"))
    assert set(recs) == {"000", "003", "Face2Face/000_003", "FaceShifter/003_000"}
    f2f = recs["Face2Face/000_003"]
    assert (f2f.label, f2f.method, f2f.split, f2f.compression) == (1, "Face2Face", "test", "c40")
    assert (f2f.original_id, f2f.source_id, f2f.identity) == ("000", "003", "000")
    assert f2f.mask_path.endswith("masks/videos/000_003.mp4")
    assert recs["FaceShifter/003_000"].original_id == "003" and recs["FaceShifter/003_000"].mask_path == ""
    assert recs["000"].label == 0 and recs["000"].split == "test"
    assert {x.compression for x in scan_dataset("ffpp", r)} == {"c0"}  # raw is c0; c23 absent
    with pytest.raises(ConfigError, match="c23"):
        scan_dataset("ffpp", r, compression="c23")


def test_ffpp_shared_subset(shared_data):
    recs = _by_id(scan_dataset("ffpp", shared_data / "ffpp"))
    assert set(recs) == {"004", "519", "Deepfakes/519_515", "NeuralTextures/004_982"}
    assert recs["Deepfakes/519_515"].original_id == "519"
    assert recs["NeuralTextures/004_982"].original_id == "004"
    assert all(r.compression == "c23" and r.split in ("train", "val", "test") for r in recs.values())


def test_dfdc_shared_reports_absent_files(shared_data):
    recs = scan_dataset("dfdc", shared_data / "dfdc")
    present = [r for r in recs if Path(r.path).exists()]
    assert [r.video_id for r in present] == ["widuwuoiur"]
    assert len(recs) == 6 and all(r.label == 1 and r.original_id for r in recs)


def test_dfdc_parts_and_cross_part_originals(tmp_path, tiny_mp4, place):
    p0, p1 = tmp_path / "dfdc_train_part_0", tmp_path / "dfdc_train_part_1"
    place(tiny_mp4, p0 / "aaa.mp4", p1 / "bbb.mp4")
    (p0 / "metadata.json").write_text(json.dumps({"aaa.mp4": {"label": "REAL", "split": "train", "original": None}}))
    (p1 / "metadata.json").write_text(
        json.dumps(
            {
                "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
                "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
            }
        )
    )
    recs = _by_id(scan_dataset("dfdc", tmp_path))
    assert recs["aaa"].label == 0 and recs["aaa"].identity == "aaa"
    assert recs["bbb"].original_id == "aaa" and recs["bbb"].identity == "aaa"
    assert recs["ccc"].extra["part"] == "dfdc_train_part_1"  # listed but absent: still returned


def test_dfdc_preview(tmp_path, tiny_mp4, place):
    place(tiny_mp4, tmp_path / "original_videos/1/1_A/001.mp4", tmp_path / "method_A/1/1_A/2_001.mp4")
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "original_videos/1/1_A/001.mp4": {"label": "real", "set": "train"},
                "method_A/1/1_A/2_001.mp4": {"label": "fake", "set": "test", "target_id": "1"},
            }
        )
    )
    recs = _by_id(scan_dataset("dfdc_preview", tmp_path))
    fake = recs["method_A/1/1_A/2_001"]
    assert (fake.label, fake.method, fake.split, fake.identity) == (1, "method_A", "test", "1")
    assert recs["original_videos/1/1_A/001"].label == 0


def test_celebdf_test_list(tmp_path, tiny_mp4, place):
    place(
        tiny_mp4,
        tmp_path / "Celeb-real/id0_0000.mp4",
        tmp_path / "Celeb-synthesis/id0_id1_0000.mp4",
        tmp_path / "YouTube-real/00001.mp4",
        tmp_path / "Celeb-real/id1_0003.mp4",
    )
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00001.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n1 Celeb-real/id9_0009.mp4\n"
    )
    recs = _by_id(scan_dataset("celebdf", tmp_path))
    fake = recs["Celeb-synthesis/id0_id1_0000"]
    assert (fake.label, fake.split, fake.original_id, fake.source_id) == (1, "test", "Celeb-real/id0_0000", "id1")
    assert recs["Celeb-real/id1_0003"].split == "train"
    assert recs["YouTube-real/00001"].split == "test"
    assert "Celeb-real/id9_0009" in recs  # listed but absent: reported later, not dropped


def test_dfd(tmp_path, tiny_mp4, place):
    place(
        tiny_mp4,
        tmp_path / "original_sequences/actors/c23/videos/01__exit_phone_room.mp4",
        tmp_path / "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__exit_phone_room__YVGY8LOK.mp4",
    )
    recs = _by_id(scan_dataset("dfd", tmp_path))
    fake = recs["DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK"]
    assert (fake.original_id, fake.source_id, fake.identity) == ("01__exit_phone_room", "02", "01")
    assert recs["01__exit_phone_room"].identity == "01"


def test_uadfv(tmp_path, tiny_mp4, place):
    place(tiny_mp4, tmp_path / "real/0000.mp4", tmp_path / "fake/0000_fake.mp4")
    recs = _by_id(scan_dataset("uadfv", tmp_path))
    assert recs["fake/0000_fake"].original_id == "real/0000" and recs["real/0000"].label == 0


def test_dftimit_quality_and_vidtimit_frames(tmp_path, tiny_mp4, place):
    from PIL import Image

    place(
        tiny_mp4,
        tmp_path / "DeepfakeTIMIT/lower_quality/fadg0/sa1-video-fram1.avi",
        tmp_path / "DeepfakeTIMIT/higher_quality/fadg0/sa1-video-fram1.avi",
    )
    frames = tmp_path / "VidTIMIT/fadg0/video/sa1"
    frames.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 32)).save(frames / f"{i:03d}", format="JPEG")  # VidTIMIT: no extension
    recs = _by_id(scan_dataset("dftimit", tmp_path))
    assert recs["LQ/fadg0/sa1-video-fram1"].compression == "LQ"
    assert recs["HQ/fadg0/sa1-video-fram1"].original_id == "fadg0/sa1"
    assert recs["fadg0/sa1"].label == 0
    assert probe(recs["fadg0/sa1"].path).n_frames == 3
    assert {r.compression for r in scan_dataset("dftimit", tmp_path, compression="HQ") if r.label} == {"HQ"}


def test_wilddeepfake_frame_folders(tmp_path):
    from PIL import Image

    for top, lab in (("real_train", "real"), ("fake_test", "fake")):
        d = tmp_path / top / "17" / lab / "3"
        d.mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(d / "1.png")
    recs = _by_id(scan_dataset("wilddeepfake", tmp_path))
    assert recs["fake_test/17/fake/3"].label == 1 and recs["fake_test/17/fake/3"].split == "test"
    assert recs["real_train/17/real/3"].kind == "frames"


def test_folder_with_and_without_splits(tmp_path, tiny_mp4, astronaut, place):
    from PIL import Image

    place(tiny_mp4, tmp_path / "a/real/x.mp4", tmp_path / "a/fake/FaceSwap/y.mp4", tmp_path / "a/fake/z.mp4")
    Image.fromarray(astronaut).save(tmp_path / "a/real/p.jpg")
    recs = _by_id(scan_dataset("folder", tmp_path / "a"))
    assert recs["fake/FaceSwap/y"].method == "FaceSwap" and recs["fake/z"].method == "fake"
    assert recs["real/p"].kind == "image" and recs["real/x"].label == 0
    place(tiny_mp4, tmp_path / "b/train/real/x.mp4", tmp_path / "b/test/fake/x.mp4")
    recs = _by_id(scan_dataset("folder", tmp_path / "b"))
    assert recs["train/real/x"].split == "train" and recs["test/fake/x"].label == 1
    with pytest.raises(ConfigError):
        scan_dataset("folder", tmp_path / "a" / "real")


def test_media_adapter_takes_files_and_folders(tmp_path, tiny_mp4, place):
    place(tiny_mp4, tmp_path / "in/one.mp4", tmp_path / "in/sub/two.mp4", tmp_path / "three.mp4")
    recs = scan_dataset("media", None, paths=[tmp_path / "in", tmp_path / "three.mp4", tmp_path / "in/one.mp4"])
    assert sorted(r.video_id for r in recs) == ["in/one.mp4", "in/sub/two.mp4", "three.mp4"]
    assert all(r.label == -1 for r in recs)


def test_media_ids_are_relative_paths_so_shared_names_in_different_folders_are_kept(tmp_path, tiny_mp4, place):
    """Issue 14 item 14: an analyst's folders reuse names (``1.jpg``, ``driving.mp4``); they used to be refused as
    duplicate video ids."""
    place(tiny_mp4, tmp_path / "case1/driving.mp4", tmp_path / "case2/driving.mp4", tmp_path / "x/clips/driving.mp4",
          tmp_path / "y/clips/driving.mp4")  # fmt: skip
    files = scan_dataset("media", None, paths=[tmp_path / "case1/driving.mp4", tmp_path / "case2/driving.mp4"])
    assert sorted(r.video_id for r in files) == ["case1/driving.mp4", "case2/driving.mp4"]
    folders = scan_dataset("media", None, paths=[tmp_path / "x/clips", tmp_path / "y/clips"])
    assert sorted(r.video_id for r in folders) == ["x/clips/driving.mp4", "y/clips/driving.mp4"]
    one = scan_dataset("media", tmp_path / "case1")
    assert [r.video_id for r in one] == ["case1/driving.mp4"]
