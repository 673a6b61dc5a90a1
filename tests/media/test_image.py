"""Images: every pixel format to RGB uint8, EXIF orientation, and specific errors for bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dflab.errors import MediaError
from dflab.media import probe, read_image, sniff


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_grey_rgba_cmyk_and_16bit_become_rgb_uint8(tmp_path, astronaut):
    rgb = astronaut[:64, :48]
    grey = Image.fromarray(rgb).convert("L")
    out = read_image(_save(grey, tmp_path / "g.png"))
    assert out.shape == (64, 48, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.asarray(grey))

    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent rows composite onto white
    out = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert out.shape == (64, 48, 3)
    assert (out[:10] == 255).all()
    np.testing.assert_array_equal(out[10:], rgb[10:])

    cmyk = Image.fromarray(rgb).convert("CMYK")
    out = read_image(_save(cmyk, tmp_path / "c.jpg", quality=98))
    assert out.shape == (64, 48, 3)
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 12

    g16 = (np.asarray(grey).astype(np.uint16) * 257).astype(np.uint16)  # full 16-bit range
    out = read_image(_save(Image.fromarray(g16), tmp_path / "g16.png"))
    assert out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - np.asarray(grey).astype(int)).max() <= 1


def test_exif_orientation_is_applied(tmp_path, astronaut):
    rgb = astronaut[:40, :80]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = _save(Image.fromarray(rgb), tmp_path / "o.jpg", exif=exif, quality=98)
    out = read_image(path)
    assert out.shape == (80, 40, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 6


def test_bad_files_give_specific_causes(tmp_path, astronaut):
    cases = {}
    cases["missing"] = tmp_path / "nope.png"
    (tmp_path / "zero.jpg").write_bytes(b"")
    cases["zero_bytes"] = tmp_path / "zero.jpg"
    (tmp_path / "text.jpg").write_text("hello, not an image\n" * 10)
    cases["not_media"] = tmp_path / "text.jpg"
    full = _save(Image.fromarray(astronaut), tmp_path / "full.jpg", quality=90).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 3])
    cases["truncated"] = tmp_path / "trunc.jpg"
    for cause, path in cases.items():
        with pytest.raises(MediaError) as info:
            read_image(path)
        assert info.value.cause == cause, (path, info.value)
        assert str(path) in str(info.value)


def _png_bomb(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares huge dimensions with almost no data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def test_decompression_bomb_refused_from_header(tmp_path):
    path = _png_bomb(tmp_path / "bomb.png", 60000, 60000)  # 3.6 GP declared, 100 bytes of data
    assert sniff(path) == "image"
    with pytest.raises(MediaError) as info:
        read_image(path)
    assert info.value.cause == "too_large"
    for width, height in ((60000, 60000), (10000, 9000)):  # above PIL's own bomb limit, and only above ours
        with pytest.raises(MediaError) as info:
            probe(_png_bomb(tmp_path / f"bomb{width}.png", width, height))
        assert info.value.cause == "too_large"


def test_tiny_image_is_bad_dimensions(tmp_path):
    path = _save(Image.new("RGB", (4, 4)), tmp_path / "tiny.png")
    with pytest.raises(MediaError) as info:
        read_image(path)
    assert info.value.cause == "bad_dimensions"


def test_jpeg_over_the_limit_is_decoded_reduced_not_refused(tmp_path, astronaut):
    # phones' 50-200 MP modes were refused as too_large; libjpeg decodes them at 1/2, 1/4 or 1/8 within the limit
    big = Image.fromarray(astronaut).resize((2048, 2048), Image.BICUBIC)
    jpg = _save(big, tmp_path / "big.jpg", quality=95)
    png = _save(big, tmp_path / "big.png")
    full = read_image(jpg)
    assert full.shape == (2048, 2048, 3)
    half = read_image(jpg, max_pixels=1_100_000)  # 4.2 MP > 1.1 MP: 1/2 scale (1024² = 1.05 MP) fits
    assert half.shape == (1024, 1024, 3)
    quarter = read_image(jpg, max_pixels=300_000)
    assert quarter.shape == (512, 512, 3)
    # the same picture, not a crop or garbage: close to an area downscale of the full decode
    ref = np.asarray(Image.fromarray(full).resize((512, 512), Image.BOX), np.float32)
    assert np.abs(quarter.astype(np.float32) - ref).mean() < 4.0
    with pytest.raises(MediaError) as info:  # even 1/8 (256² = 65 536 px) is over
        read_image(jpg, max_pixels=50_000)
    assert info.value.cause == "too_large" and "1/8" in info.value.detail
    with pytest.raises(MediaError) as info:  # a PNG has no reduced decode: refused as before
        read_image(png, max_pixels=1_100_000)
    assert info.value.cause == "too_large"
    assert probe(jpg).jpeg and not probe(png).jpeg


def test_fit_scale():
    from dflab.media.image import fit_scale

    assert fit_scale(12000, 9000, 40_000_000, jpeg=True) == 2  # a 108 MP phone photo at 1/2: 27 MP
    assert fit_scale(12000, 9000, 40_000_000, jpeg=False) == 0
    assert fit_scale(4000, 3000, 40_000_000, jpeg=False) == 1
    assert fit_scale(100_000, 100_000, 40_000_000, jpeg=True) == 0  # 10 GP: 1/8 is still 156 MP
    assert fit_scale(1001, 1001, 251_001, jpeg=True) == 2  # sides round up: 501² = 251 001


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_photo_formats_are_images(tmp_path, astronaut, fmt):
    # an iPhone's photos are HEIC: they were skipped by folder scans and read as "truncated" video containers
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / f"photo.{'heic' if fmt == 'HEIF' else 'avif'}"
    if fmt == "HEIF":  # written without registering the Pillow plugin: dflab must register it itself
        pillow_heif.from_pillow(Image.fromarray(astronaut)).save(path, quality=95)
    else:
        Image.fromarray(astronaut).save(path, format=fmt, quality=95)
    assert sniff(path) == "image"
    info = probe(path)
    assert (info.kind, info.width, info.height) == ("image", 512, 512)
    rgb = read_image(path)
    assert rgb.shape == (512, 512, 3)
    assert np.abs(rgb.astype(int) - astronaut).mean() < 6  # the photo, lossy-coded


def test_heif_header_without_image_is_not_media(tmp_path):
    path = tmp_path / "broken.heic"
    path.write_bytes(b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64)
    with pytest.raises(MediaError) as info:
        read_image(path)
    assert info.value.cause in ("not_media", "truncated", "decode_error")


def test_jpeg_quality_reads_the_quality_a_still_was_saved_at(tmp_path, astronaut):
    from dflab.media.image import ijg_table, jpeg_quality

    img = Image.fromarray(astronaut)
    for q in (10, 30, 49, 50, 75, 95):
        assert jpeg_quality(_save(img, tmp_path / f"q{q}.jpg", quality=q)) == q
    # an encoder with its own tables (here: libjpeg's q40 table coarsened by a third) maps to the libjpeg quality
    # of the same coarseness, between 30 and 40
    own = [int(v) for v in np.minimum(255, np.round(ijg_table(40) * 4 / 3)).ravel()]
    q = jpeg_quality(_save(img, tmp_path / "own.jpg", qtables=[own, own]))
    assert 25 <= q < 40
    assert jpeg_quality(_save(img, tmp_path / "a.png")) is None  # not a JPEG: nothing to say
    assert jpeg_quality(tmp_path / "missing.jpg") is None
