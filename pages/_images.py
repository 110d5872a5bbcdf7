"""Images the pages read: the upload types, decoding (cached), one image or sample photo, PNG
bytes of an array, and the regions of a model's crop."""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image

import saliency_core as sc
from pages._text import plain
from saliency_core.engine.images import image_notes

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]


@st.cache_data(max_entries=128, show_spinner=False)
def decode(data: bytes, name: str) -> Image.Image:
    """Validated RGB image from uploaded bytes (ValueError in plain words otherwise)."""
    return sc.load_image(data, name=name)


def unreadable(sources) -> list[str]:
    """Why each (name, bytes) upload that cannot be decoded will be left out: known as soon as the
    files are read, so a page says it before any run, not after."""
    why = []
    for name, data in sources:
        try:
            decode(data, name)
        except ValueError as err:
            why.append(" ".join(str(err).split()))
    return why


def single_image(upload_types: list[str]) -> tuple[str, Image.Image, str]:
    """One uploaded image or sample photo: (name, RGB image, image hash); stops with a message
    when there is none or it cannot be read."""
    from saliency_core.engine.samples import sample_images

    left, right = st.columns([3, 2])
    with left:
        upload = st.file_uploader("Upload an image", type=upload_types)
    with right:
        samples = sample_images()
        picked = st.selectbox("…or use a sample photo", list(samples), disabled=upload is not None)
    if upload is not None:
        name, data = upload.name, upload.getvalue()
    elif picked:
        name, data = picked, open(samples[picked], "rb").read()
    else:
        st.info("Upload an image to begin.")
        st.stop()
    try:
        image = decode(data, name)
    except ValueError as err:
        st.error(plain(err))
        st.stop()
    for note in image_notes(image):
        st.info(plain(note))
    return name, image, sc.image_hash(image)


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def crop_key(model: sc.Classifier, image_hash: str) -> tuple:
    """What a model's crop of an image depends on."""
    return (image_hash, model.input_size, model.resize, model.interpolation)


@st.cache_data(max_entries=256, show_spinner=False)
def region_labels(key: tuple, _crop: Image.Image):
    """SLIC regions of a crop the model saw (``saliency_core.regions.segment``); ``key`` names the
    crop: (image hash, model preprocessing)."""
    from saliency_core.engine.regions import segment

    return segment(_crop)
