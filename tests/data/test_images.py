"""Reading one image file: every mode to uint8 L or RGB, EXIF orientation, read errors, fitting to size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from podium.data.images import ImageReadError, decode_image, fit_image, open_image, read_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # 10 wide, 6 high: a transposed read would show
GRAY = RNG.integers(0, 256, (6, 10), dtype=np.uint8)


def test_rgb_and_l_pass_through_unchanged(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "c.png")
    Image.fromarray(GRAY).save(tmp_path / "g.png")
    assert np.array_equal(read_image(tmp_path / "c.png", 3), RGB)
    assert np.array_equal(read_image(tmp_path / "g.png", 1)[:, :, 0], GRAY)
    assert read_image(tmp_path / "g.png", 3).shape == (6, 10, 3)  # gray spread over three equal channels
    assert read_image(tmp_path / "c.png", 1).shape == (6, 10, 1)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((6, 10, 4), np.uint8)
    rgba[..., :3] = RGB
    rgba[:, :5, 3] = 255  # left half opaque, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img, mode = decode_image(tmp_path / "a.png")
    arr = np.asarray(img)
    assert (mode, img.mode) == ("RGBA", "RGB")
    assert np.array_equal(arr[:, :5], RGB[:, :5]) and (arr[:, 5:] == 255).all()


def test_la_stays_gray(tmp_path):
    la = np.stack([GRAY, np.full_like(GRAY, 255)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    img = open_image(tmp_path / "la.png")
    assert img.mode == "L" and np.array_equal(np.asarray(img), GRAY)


def test_palette_colour_gray_and_transparent(tmp_path):
    Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "c.png")
    colour = open_image(tmp_path / "c.png")
    assert colour.mode == "RGB"
    assert np.abs(np.asarray(colour).astype(int) - RGB).mean() < 20  # palette quantisation, not garbage
    gray_pal = Image.fromarray(GRAY).convert("P")
    gray_pal.save(tmp_path / "g.png")
    gray = open_image(tmp_path / "g.png")
    assert gray.mode == "L" and np.array_equal(np.asarray(gray), GRAY)  # a gray palette reads as gray
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [200, 100, 50] * 255)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0  # palette entry 0 is see-through
    p.save(tmp_path / "t.png")
    arr = np.asarray(open_image(tmp_path / "t.png"))
    assert tuple(arr[0, 0]) == (200, 100, 50) and tuple(arr[1, 1]) == (255, 255, 255)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    deep = np.linspace(0, 65535, 60).astype(np.uint16).reshape(6, 10)
    Image.fromarray(deep).save(tmp_path / "d.png")
    img, mode = decode_image(tmp_path / "d.png")
    assert mode == "I;16" and img.mode == "L"
    assert np.array_equal(np.asarray(img), np.round(deep / 257).astype(np.uint8))


@pytest.mark.parametrize("mode, top", [("I", 65535), ("F", 1.0)])
def test_32_bit_int_and_float(tmp_path, mode, top):
    vals = np.linspace(0, top, 60).reshape(6, 10)
    Image.fromarray(vals.astype(np.int32 if mode == "I" else np.float32), mode).save(tmp_path / "x.tif")
    arr = read_image(tmp_path / "x.tif", 1)[:, :, 0]
    expected = np.linspace(0, 255, 60).reshape(6, 10)  # scaled by the type's range, not clipped at 255
    assert np.abs(arr - expected).max() <= 1


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    flat = np.zeros((8, 8, 3), np.uint8)
    flat[:] = (200, 40, 40)
    Image.fromarray(flat).convert("CMYK").save(tmp_path / "k.jpg", quality=100)
    img, mode = decode_image(tmp_path / "k.jpg")
    assert (mode, img.mode) == ("CMYK", "RGB")
    assert np.abs(np.asarray(img).astype(int) - flat).max() < 12  # red stays red (not inverted)


def test_bilevel_reads_as_l(tmp_path):
    Image.fromarray(GRAY > 128).save(tmp_path / "b.png")
    arr = np.asarray(open_image(tmp_path / "b.png"))
    assert set(np.unique(arr)) <= {0, 255} and np.array_equal(arr == 255, GRAY > 128)


@pytest.mark.parametrize("orientation, turn", [(6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
                                               (3, lambda a: np.rot90(a, 2)), (2, lambda a: a[:, ::-1])])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    img = Image.fromarray(RGB)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "r.jpg") as raw:  # the pixels as stored, JPEG loss included
        stored = np.asarray(raw.convert("RGB"))
    arr = read_image(tmp_path / "r.jpg", 3)
    assert np.array_equal(arr, turn(stored))
    if orientation in (6, 8):
        assert arr.shape == (10, 6, 3)  # width and height swapped


def test_read_errors_have_kinds(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "head.png").write_bytes(data[:20])  # cut inside the header chunk
    (tmp_path / "junk.jpg").write_bytes(b"<html>not found</html>" * 10)
    Image.fromarray(RGB).save(tmp_path / "ok.jpg")
    jpg = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(jpg[: len(jpg) * 3 // 4])
    expected = {"empty.png": "zero-byte", "half.png": "truncated", "head.png": "truncated",
                "junk.jpg": "unreadable", "half.jpg": "truncated", "nothere.png": "missing"}
    for name, kind in expected.items():
        with pytest.raises(ImageReadError) as exc:
            open_image(tmp_path / name)
        assert exc.value.kind == kind, name


def test_fit_image_policies():
    arr = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
    assert fit_image(arr, 8, "resize").shape == (8, 8, 3)
    padded = fit_image(np.full((6, 10, 1), 200, np.uint8), 20, "pad")
    assert padded.shape == (20, 20, 1)
    # 10x6 scaled by 2 → 20 wide, 12 high, centred: 4 black rows above and below
    assert (padded[:4] == 0).all() and (padded[16:] == 0).all() and (padded[4:16] == 200).all()
    square = np.zeros((8, 8, 1), np.uint8)
    assert fit_image(square, 8, "keep") is square
    with pytest.raises(ValueError, match="data.resize=keep"):
        fit_image(arr, 8, "keep")
    with pytest.raises(ValueError, match="unknown resize policy"):
        fit_image(arr, 8, "crop")
    assert fit_image(np.zeros((30, 30, 1), np.uint8), 10, "resize").shape == (10, 10, 1)  # 1 channel survives
