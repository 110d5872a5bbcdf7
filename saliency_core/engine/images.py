"""Decoding and validation of user images: everything before the model's preprocessing."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .untrusted import read_regular

ImageSource = Image.Image | str | os.PathLike | bytes | io.IOBase

MAX_PIXELS = 50_000_000  # larger images are refused (decompression-bomb guard)
MIN_SIDE = 8  # smaller images carry too little to explain
MAX_BYTES = 512 * 2**20  # larger files are refused before they are read into memory
FRAMES_KEY = "saliency_frames"  # Image.info key: frames in the file when it held more than one


def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Decode an image into an RGB ``PIL.Image`` with EXIF orientation applied.

    Args:
        source: a ``PIL.Image``, a file path, raw bytes or a binary file object.
        name: how to call the image in error messages (defaults to the path).
    Returns:
        ``PIL.Image`` in mode ``"RGB"``, fully loaded. An animated or multi-page file (GIF,
        APNG, WebP, TIFF) gives its first frame; ``image_notes`` then says so.
    Raises:
        ValueError: the data is not a readable image, is truncated, too small or too large,
            in plain words naming the file.

    Example:
        >>> load_image("skimage/data/chelsea.png").size
        (451, 300)
    """
    if isinstance(source, Image.Image):
        image = source
        label = name or "image"
    else:
        label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "uploaded file")
        if isinstance(source, (str, os.PathLike)):
            data = _read_file(Path(source), label)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            data = source.read()
        if not data:
            raise ValueError(f"{label}: the file is empty.")
        image = _decode(data, label)
    frames = _frames(image)
    _check_size(image, label)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF block: keep the pixels as stored
        pass
    image = _to_rgb(image, label)
    if frames > 1:
        if image.info is None:
            image.info = {}
        image.info[FRAMES_KEY] = frames
        image.info["saliency_name"] = label
    return image


def _frames(image: Image.Image) -> int:
    """Frames (or pages) in the file an image came from; 1 when it cannot tell."""
    try:
        n = int(getattr(image, "n_frames", 1) or 1)
    except Exception:  # a damaged frame table: the first frame is what we have
        return 1
    return n if n > 1 else 1


def image_notes(image: Image.Image) -> list[str]:
    """Things a reviewer should know about a decoded image (``load_image``), in plain words:
    for now, that only the first frame of an animated or multi-page file is used.

    Example:
        >>> image_notes(load_image("spinner.gif"))
        ['spinner.gif is animated or has several pages (12 frames); only its first frame is explained.']
    """
    frames = (image.info or {}).get(FRAMES_KEY)
    if not frames:
        return []
    name = str((image.info or {}).get("saliency_name") or "The image")
    return [
        f"{name} is animated or has several pages ({int(frames)} frames); only its first frame is explained."
    ]


def _read_file(path: Path, label: str) -> bytes:
    if path.is_dir():
        raise ValueError(f"{label}: this is a folder, not an image file.")
    if not path.is_file():
        raise ValueError(f"{label}: no such file.")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(
                f"{label}: the file is too large ({path.stat().st_size / 2**20:,.0f} MiB; "
                f"the limit is {MAX_BYTES // 2**20} MiB)."
            )
        return read_regular(path, MAX_BYTES, label)  # a regular file, bounded, never blocks
    except OSError as err:
        raise ValueError(f"{label}: cannot read the file ({err.strerror or err}).") from None


def _decode(data: bytes, label: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            _check_size(image, label)
            _frames(image)  # counted before load(): seeking later would change the loaded frame
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(
                f"{label}: the image is too large to process safely (more than {MAX_PIXELS:,} pixels)."
            ) from None
        except UnidentifiedImageError:
            raise ValueError(
                f"{label}: this is not an image file, or not in a format that can be "
                "read (PNG, JPEG, WebP, BMP, GIF or TIFF)."
            ) from None
        except ValueError as err:
            if str(err).startswith(label):
                raise
            raise ValueError(f"{label}: the image file is damaged or incomplete ({err}).") from None
        except MemoryError:
            raise ValueError(f"{label}: not enough memory to decode this image.") from None
        except Exception as err:  # decoders raise many types on corrupt data
            raise ValueError(f"{label}: the image file is damaged or incomplete ({err}).") from None
    return image


def _check_size(image: Image.Image, label: str) -> None:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise ValueError(
            f"{label}: the image is too large to process safely ({w}x{h} pixels; "
            f"the limit is {MAX_PIXELS:,} pixels). Resize it and try again."
        )
    if min(w, h) < MIN_SIDE:
        raise ValueError(
            f"{label}: the image is too small ({w}x{h} pixels); "
            f"it needs at least {MIN_SIDE} pixels on each side."
        )


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(grey_to_8bit(np.asarray(image), label)).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"{label}: cannot convert colour mode {mode} to RGB ({err}).") from None


def grey_to_8bit(samples: np.ndarray, label: str) -> np.ndarray:
    """16-bit, 32-bit integer or floating-point grey samples scaled to 8 bits: the image's own
    range (lowest sample black, highest white), uint8 (H, W).

    Raises:
        ValueError: a sample is not a number (NaN) or infinite: such an image has no range to
            scale, and any picture made of it would not be what the file holds.
    """
    a = np.asarray(samples, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        bad = int(a.size - np.count_nonzero(finite))
        raise ValueError(
            f"{label}: {bad:,} of its {a.size:,} pixel values are not numbers (NaN) or are infinite; "
            "a floating-point image must hold finite values to be shown or explained."
        )
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    span = hi - lo
    if not (span > 0 and np.isfinite(span)):
        # one value, or a range too wide for float64 (e.g. -1e308 .. 1e308): scale in two halves
        a = a / 2.0
        lo, hi, span = lo / 2.0, hi / 2.0, hi / 2.0 - lo / 2.0
    out = (a - lo) / span * 255.0 if span > 0 else np.zeros_like(a)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def image_hash(image: Image.Image) -> str:
    """sha256 of the decoded RGB pixels and size: the cache and record key for an image."""
    h = hashlib.sha256(f"{image.size}".encode())
    h.update(np.asarray(image.convert("RGB")).tobytes())
    return h.hexdigest()
