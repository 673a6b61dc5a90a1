"""Videos: sampling by count/stride/indices, seeking gives the same frames as decoding everything, bad files."""

from __future__ import annotations

import numpy as np
import pytest

import dflab.media.video as video_mod
from dflab.errors import MediaError
from dflab.media import iter_frames, probe, sample_indices, sniff, write_video

N = 60


def _frame(i: int) -> np.ndarray:
    """A frame whose index can be read back after lossy coding: a grey level of 4·i."""
    return np.full((48, 64, 3), 4 * i, dtype=np.uint8)


def _read_index(rgb: np.ndarray) -> int:
    return round(float(rgb.mean()) / 4)


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "count.mp4", [_frame(i) for i in range(N)], fps=25)


def test_probe(counter_video):
    info = probe(counter_video)
    assert (info.kind, info.n_frames, info.width, info.height) == ("video", N, 64, 48)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(N / 25, abs=0.1)


def test_sample_indices():
    assert sample_indices(100, count=5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, count=8) == [0, 1, 2]
    assert sample_indices(25, stride=10) == [0, 10, 20]
    assert sample_indices(25) is None
    with pytest.raises(ValueError):
        sample_indices(10, count=2, stride=2)


def test_all_frames_in_order(counter_video):
    got = [(i, _read_index(f)) for i, f in iter_frames(counter_video)]
    assert [i for i, _ in got] == list(range(N))
    assert all(i == j for i, j in got)


@pytest.mark.parametrize("seek_gap", [2, 10_000])
def test_count_stride_indices_match_content(counter_video, monkeypatch, seek_gap):
    """With seeking forced on every gap (2) or never (10 000), the same frames come back."""
    monkeypatch.setattr(video_mod, "SEEK_GAP", seek_gap)
    for kwargs, expected in [
        ({"count": 7}, sample_indices(N, count=7)),
        ({"stride": 10}, list(range(0, N, 10))),
        ({"indices": [59, 3, 40, 3]}, [3, 40, 59]),
    ]:
        got = list(iter_frames(counter_video, **kwargs))
        assert [i for i, _ in got] == expected, kwargs
        assert [_read_index(f) for _, f in got] == expected, kwargs
        assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in got)


def test_frame_folder_is_a_video(tmp_path, astronaut):
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(_frame(i)).save(folder / f"{i:03d}.png")
    assert sniff(folder) == "video"
    assert probe(folder).n_frames == 5
    assert [i for i, _ in iter_frames(folder, stride=2)] == [0, 2, 4]


def test_image_is_one_frame(tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    frames = list(iter_frames(tmp_path / "a.png", count=8))
    assert len(frames) == 1 and frames[0][0] == 0
    np.testing.assert_array_equal(frames[0][1], astronaut)


def test_bad_videos(tmp_path, counter_video):
    data = counter_video.read_bytes()
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 20)
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov atom lost (written at the end)
    for name, cause in [
        ("zero.mp4", "zero_bytes"),
        ("text.mp4", "not_media"),
        ("cut.mp4", "truncated"),
        ("absent.mp4", "missing"),
    ]:
        with pytest.raises(MediaError) as info:
            list(iter_frames(tmp_path / name, count=4))
        assert info.value.cause == cause, (name, info.value)
        assert name in str(info.value)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_phone_video_stored_sideways_is_decoded_upright(phone_video, rotation):
    path, upright = phone_video(rotation)
    for frames in (list(iter_frames(path)), list(iter_frames(path, count=2))):
        rgb = frames[0][1]
        assert rgb.shape == upright.shape, (rotation, rgb.shape)  # was the stored, sideways frame
        assert np.abs(rgb.astype(int) - upright).mean() < 6


@pytest.mark.parametrize("count", [None, 24])
def test_a_break_after_good_frames_is_truncated(tmp_path, count, astronaut):
    from dflab.scan.corpus import _broken_midstream

    path = tmp_path / "broken.mp4"
    _broken_midstream(path, [np.roll(astronaut[::4, ::4], 2 * i, axis=1) for i in range(24)])  # second half noise
    got = []
    with pytest.raises(MediaError) as info:
        for i, _rgb in iter_frames(path, count=count):
            got.append(i)
    # with sampled frames the cause read decode_error: the count of frames yielded was lost with the exception
    assert got and info.value.cause == "truncated", info.value
    assert f"after {len(got)} frames" in info.value.detail and "Errno" not in info.value.detail


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "notes.txt"])
def test_text_under_any_name_is_not_media(tmp_path, name):
    # FFmpeg opens any bytes named *.jpg with its image2 demuxer, as a 0x0 "video": that was reported as
    # bad_dimensions "0x0", which sent analysts looking for a tiny image
    path = tmp_path / name
    path.write_text("this is a text file\n" * 40)
    with pytest.raises(MediaError) as info:
        probe(path)
    assert info.value.cause == "not_media", info.value
    assert "Errno" not in info.value.detail and str(tmp_path) not in info.value.detail  # FFmpeg's noise, our path


@pytest.mark.slow
def test_single_late_frame_after_seek_equals_full_decode(shared_data):
    """Regression: a seek as the first decoder operation gave corrupt (green) frames on FF++ c23 (H.264 4:4:4)."""
    path = shared_data / "ffpp/original_sequences/youtube/c23/videos/519.mp4"
    full = dict(iter_frames(path, indices=[250, 300, 653, 726]))  # sorted request: sequential + seeks
    sequential = {i: f for i, f in iter_frames(path) if i in full}
    for i in (300, 653, 726):
        ((j, frame),) = list(iter_frames(path, indices=[i]))
        assert j == i
        assert np.abs(frame.astype(int) - sequential[i]).mean() < 1.0, f"frame {i} differs from a full decode"
        assert np.abs(full[i].astype(int) - sequential[i]).mean() < 1.0


def test_unwanted_non_reference_frames_are_not_decoded(counter_video, monkeypatch):
    """Non-reference H.264 pictures between wanted frames never reach the decoder, and every wanted frame, B-frames
    included, still comes back bit-identical to a full decode."""
    import av

    with av.open(str(counter_video)) as c:
        stream = c.streams.video[0]
        nal = video_mod._avcc_nal_length_size(stream)
        assert nal is not None
        kinds = [video_mod._is_h264_nonref(bytes(p), nal) for p in c.demux(stream) if p.size]
    assert any(kinds) and not all(kinds)  # x264's default GOP has non-reference B-frames (the fixture's premise)

    decoded = []
    real = av.Packet.decode
    monkeypatch.setattr(av.Packet, "decode", lambda self: decoded.append(self.pts) or real(self))
    full = dict(iter_frames(counter_video))
    n_full = len(decoded)
    decoded.clear()
    wanted = [i for i in range(N) if i % 7 == 0 or i in (1, 2, 3)]
    got = dict(iter_frames(counter_video, indices=wanted))
    assert sorted(got) == wanted
    assert all(np.array_equal(got[i], full[i]) for i in wanted)
    assert len(decoded) < n_full  # some packets were skipped


def test_annex_b_and_other_codecs_are_never_skipped():
    assert not video_mod._is_h264_nonref(b"", 4)
    assert not video_mod._is_h264_nonref(b"\x00\x00\x00\x09garbage", 4)  # length past the end: a reference
    assert video_mod._is_h264_nonref(b"\x00\x00\x00\x02\x01\x00", 4)  # one slice, nal_ref_idc 0
    assert not video_mod._is_h264_nonref(b"\x00\x00\x00\x02\x21\x00", 4)  # nal_ref_idc 1
    assert not video_mod._is_h264_nonref(b"\x00\x00\x00\x02\x06\x00", 4)  # SEI only: no slice


def _tasks() -> int:
    import os

    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/task"), reason="counts threads through Linux /proc")
def test_decode_threads_caps_ffmpegs_threads_and_keeps_the_frames(counter_video):
    """``set_decode_threads(1)`` (``dflab prepare``'s workers on 2 cores) starts no decoding thread, where FFmpeg's
    default starts one per core (the threads counted also hold swscale's, for the RGB conversion). The frames are
    the same."""
    wanted = list(range(0, N, 5))

    def decode() -> tuple[dict[int, np.ndarray], int]:
        before = _tasks()
        frames = iter_frames(counter_video, indices=wanted)
        got = dict([next(frames)])
        during = _tasks() - before
        got.update(frames)
        return got, during

    default, threads_default = decode()
    try:
        video_mod.set_decode_threads(1)
        capped, threads_capped = decode()
    finally:
        video_mod.set_decode_threads(0)
    if len(__import__("os").sched_getaffinity(0)) >= 2:
        assert threads_capped < threads_default
    assert sorted(capped) == sorted(default) == wanted
    assert all(np.array_equal(capped[i], default[i]) for i in wanted)
    with pytest.raises(ValueError):
        video_mod.set_decode_threads(-1)


def test_4_4_4_frames_convert_to_the_same_rgb_through_planar_rgb(tmp_path):
    """4:4:4 frames (every FF++ video) are converted through planar RGB (swscale's fast path), which must give the
    packed RGB conversion's pixels: for every (Y, U, V) value, and for a decoded 4:4:4 H.264 video."""
    import av

    assert video_mod._RGB_VIA["yuv444p"] == "gbrp"
    y, u, v = np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 3, indexing="ij")
    frame = av.VideoFrame(4096, 4096, "yuv444p")
    for plane, values in zip(frame.planes, (y, u, v), strict=True):
        np.frombuffer(plane, np.uint8).reshape(4096, plane.line_size)[:, :4096] = values.reshape(4096, 4096)
    assert np.array_equal(video_mod._to_rgb(frame), frame.to_ndarray(format="rgb24"))

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    path = tmp_path / "444.mp4"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert {f.format.name for f in decoded} == {"yuv444p"}
    packed = [f.to_ndarray(format="rgb24") for f in decoded]
    got = dict(iter_frames(path))
    assert sorted(got) == list(range(6))
    assert all(np.array_equal(got[i], packed[i]) for i in range(6))


def test_h264_qp_reads_how_coarsely_a_video_was_quantised(tmp_path, astronaut):
    """The mean macroblock quantiser of an H.264 video rises with the encoder's CRF (x264 gives I-frames about
    CRF - 1 and predicted frames more), and there is nothing to say for another codec, an image or a missing file."""
    import av

    from dflab.media.video import h264_qp

    face = astronaut[:256, 128:384]
    frames = np.stack([np.roll(face, 3 * i, axis=1) for i in range(14)])
    qps = {crf: h264_qp(write_video(tmp_path / f"crf{crf}.mp4", frames, crf=crf)) for crf in (18, 30, 42)}
    assert 17 <= qps[18] < qps[30] < qps[42] <= 51, qps
    assert qps[42] - qps[18] > 15
    assert h264_qp(tmp_path / "crf42.mp4", frames=1) == pytest.approx(41, abs=1.5)  # the I-frame alone
    mpeg4 = tmp_path / "mpeg4.mp4"
    with av.open(str(mpeg4), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(stream.encode())
    assert h264_qp(mpeg4) is None
    from PIL import Image

    Image.fromarray(face).save(tmp_path / "still.png")
    assert h264_qp(tmp_path / "still.png") is None
    assert h264_qp(tmp_path / "missing.mp4") is None
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    assert h264_qp(tmp_path / "junk.mp4") is None
