"""images.load_image: every kind of upload either becomes RGB of the right size or a plain ValueError."""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

import saliency_core as sc
from saliency_core.engine.images import MAX_PIXELS, load_image

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
CHELSEA = os.path.join(DATA, "chelsea.png")
COFFEE = os.path.join(DATA, "coffee.png")


@pytest.fixture(scope="module")
def model():
    return sc.load_model("demo")


@pytest.fixture(scope="module")
def photo():
    with Image.open(COFFEE) as im:
        return im.convert("RGB").resize((120, 80))


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _png_with_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR claims width x height (CRC fixed)."""
    data = bytearray(_encode(Image.new("L", (16, 16)), "PNG"))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _assert_rgb(image: Image.Image, size: tuple) -> None:
    assert image.mode == "RGB" and image.size == size
    image.load()


def _value_error(source, *words, name="upload.png"):
    with pytest.raises(ValueError) as info:
        load_image(source, name=name)
    message = str(info.value)
    assert message.startswith(name), message
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return message


# --- inputs that must be refused ---------------------------------------------------------


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not pixels\n")
    _value_error(path, "not an image", name=str(path))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_file(photo, fmt, keep):
    data = _encode(photo, fmt)
    _value_error(data[: int(len(data) * keep)], "damaged or incomplete")


def test_one_pixel_image():
    _value_error(_encode(Image.new("RGB", (1, 1), "red"), "PNG"), "too small", "1x1")


def test_thin_image_is_too_small():
    _value_error(_encode(Image.new("RGB", (500, 4)), "PNG"), "too small", "500x4")


def test_decompression_bomb_header():
    # 16x16 pixels of data behind a header claiming 60000 x 60000 (3.6 gigapixels).
    _value_error(_png_with_size(60000, 60000), "too large")


def test_large_real_image_over_our_limit():
    # A real 8000 x 7000 1-bit PNG: 56 megapixels, a few kB on disk, under PIL's own bomb
    # limit but over MAX_PIXELS; refused before its pixels are decoded.
    assert 8000 * 7000 > MAX_PIXELS
    data = _encode(Image.new("1", (8000, 7000)), "PNG")
    assert len(data) < 100_000
    _value_error(data, "too large", "8000x7000")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.jpg"
    _value_error(path, "no such file", name=str(path))
    # Without a name the path itself names the file.
    with pytest.raises(ValueError, match="nowhere.jpg"):
        load_image(path)


def test_folder_is_not_an_image(tmp_path):
    _value_error(tmp_path, "folder", name=str(tmp_path))


def test_empty_bytes_and_empty_file(tmp_path):
    _value_error(b"", "empty")
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _value_error(path, "empty", name=str(path))


# --- inputs that must work ---------------------------------------------------------------


def test_rgb_png_path_bytes_and_file_object():
    with Image.open(CHELSEA) as im:
        size = im.size
    data = Path(CHELSEA).read_bytes()
    for source in (CHELSEA, Path(CHELSEA), data, io.BytesIO(data)):
        _assert_rgb(load_image(source), size)


def test_grayscale(photo):
    image = load_image(_encode(photo.convert("L"), "PNG"))
    _assert_rgb(image, photo.size)
    a = np.asarray(image)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])


def test_rgba_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 0, 10, 10))  # left half fully transparent blue
    a = np.asarray(load_image(_encode(rgba, "PNG")))
    assert a.shape == (10, 20, 3)
    assert tuple(a[5, 2]) == (255, 255, 255) and tuple(a[5, 15]) == (255, 0, 0)


def test_palette_without_transparency(photo):
    p = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    image = load_image(_encode(p, "PNG"))
    _assert_rgb(image, photo.size)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(p.convert("RGB")))


def test_palette_with_transparency():
    p = Image.new("P", (16, 16), 1)
    p.putpalette([0, 0, 0] + [0, 200, 0] + [0, 0, 0] * 254)
    p.paste(0, (0, 0, 8, 16))  # index 0 on the left half, declared transparent
    a = np.asarray(load_image(_encode(p, "PNG", transparency=0)))
    assert a.shape == (16, 16, 3)
    assert tuple(a[3, 2]) == (255, 255, 255) and tuple(a[3, 12]) == (0, 200, 0)


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # pure red in CMYK
    data = _encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "CMYK"
    a = np.asarray(load_image(data)).astype(int)
    assert a.shape == (24, 32, 3)
    assert a[12, 16, 0] > 220 and a[12, 16, 1] < 40 and a[12, 16, 2] < 40


def test_16_bit_png_keeps_its_range():
    ramp = np.linspace(1000, 60000, 64 * 48).reshape(48, 64).astype(np.uint16)
    data = _encode(Image.fromarray(ramp), "PNG")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode.startswith("I")
    a = np.asarray(load_image(data))
    assert a.shape == (48, 64, 3)
    assert a[0, 0, 0] == 0 and a[-1, -1, 0] == 255  # stretched, not clipped or truncated to 8 bits
    assert np.all(np.diff(a[..., 0].ravel().astype(int)) >= 0)  # order kept


def test_exif_rotated_jpeg():
    # Stored 60 wide x 30 high, red block in the stored top-left corner, orientation 6
    # ("rotate 90 degrees clockwise to display").
    stored = Image.new("RGB", (60, 30), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_image(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.size == (30, 60)  # width and height swapped
    a = np.asarray(image).astype(int)
    # Clockwise rotation takes the stored top-left corner to the displayed top-right.
    assert a[3, -4, 0] > 200 and a[3, -4, 2] < 60
    assert a[3, 3, 0] < 60 and a[3, 3, 2] > 200
    assert a[-4, 3, 2] > 200
    # Loading the result again (explain() and crop() do) must not rotate it twice.
    again = load_image(image)
    assert again.size == (30, 60) and np.array_equal(np.asarray(again), np.asarray(image))


def test_pil_image_input_is_converted():
    _assert_rgb(load_image(Image.new("LA", (10, 12))), (10, 12))
    with pytest.raises(ValueError, match="too small"):
        load_image(Image.new("RGB", (3, 30)))


# --- the model accepts what load_image produced ------------------------------------------


def _mode_samples(photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "L": _encode(photo.convert("L"), "PNG"),
        "RGBA": _encode(photo.convert("RGBA"), "PNG"),
        "P": _encode(photo.convert("P"), "PNG"),
        "P+transparency": _encode(photo.convert("P"), "PNG", transparency=0),
        "CMYK": _encode(photo.convert("CMYK"), "JPEG"),
        "I;16": _encode(Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257), "PNG"),
        "EXIF-6": _encode(photo, "JPEG", exif=exif.tobytes()),
        "1": _encode(photo.convert("1"), "PNG"),
    }


def test_demo_model_predicts_every_converted_mode(model, photo):
    for mode, data in _mode_samples(photo).items():
        image = load_image(data, name=mode)
        assert image.mode == "RGB", mode
        top = model.predict(image, k=5)
        assert len(top) == 5, mode
        probabilities = [p for _, _, p in top]
        assert probabilities == sorted(probabilities, reverse=True), mode
        assert 0 < sum(probabilities) <= 1.0 + 1e-6, mode
        assert all(label == model.labels[i] for i, label, _ in top), mode


def test_image_hash_depends_on_pixels_only(photo):
    a = sc.image_hash(load_image(_encode(photo, "PNG")))
    b = sc.image_hash(load_image(_encode(photo, "BMP")))
    c = sc.image_hash(load_image(_encode(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")))
    assert a == b and a != c
