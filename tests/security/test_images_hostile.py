"""Images that are more than one picture: an animated GIF, APNG or WebP, or a multi-page TIFF is
explained from its first frame, and the reviewer is told so instead of it happening silently.

Real files written by Pillow, the real Explain page through AppTest."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import saliency_core as sc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _animation(fmt: str, frames: int = 6) -> bytes:
    pictures = [Image.new("RGB", (64, 48), (40 * i, 255 - 40 * i, 90)) for i in range(frames)]
    buf = io.BytesIO()
    pictures[0].save(buf, format=fmt, save_all=True, append_images=pictures[1:], duration=100, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt, name",
    [("GIF", "spinner.gif"), ("PNG", "spinner.png"), ("WEBP", "spinner.webp"), ("TIFF", "scan.tiff")],
)
def test_multi_frame_image_says_it_was_cut_to_its_first_frame(fmt, name):
    """Hostile input: a 6-frame file of each multi-frame format."""
    from saliency_core.engine.images import image_notes

    image = sc.load_image(_animation(fmt), name=name)
    assert image.size == (64, 48) and image.mode == "RGB"
    assert image.getpixel((0, 0))[:2] == (0, 255)  # the first frame's colour
    assert image_notes(image) == [
        f"{name} is animated or has several pages (6 frames); only its first frame is explained."
    ]
    still = io.BytesIO()
    Image.new("RGB", (64, 48)).save(still, format=fmt)
    assert image_notes(sc.load_image(still.getvalue(), name=name)) == []


def test_explain_page_tells_the_reviewer_about_the_first_frame():
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at.multiselect[0].set_value([])
    at.file_uploader[0].set_value([("spinner.png", _animation("PNG"), "image/png")])  # an APNG
    at.sidebar.multiselect(key="methods").set_value(["gradient"])
    at.sidebar.button[0].click()
    at = at.run()
    assert not at.exception, at.exception
    infos = [i.value for i in at.info]
    assert any(
        "spinner\\.png is animated or has several pages \\(6 frames\\)" in i and "first frame" in i
        for i in infos
    ), infos
