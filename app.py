"""Saliency Lens: router and frame (st.navigation) with the shared sidebar."""
import os
import tempfile
from pathlib import Path

import streamlit as st

import saliency_core as sc
from pages._common import DEFAULT_METHODS, get_model
from saliency_core.cards import UPLOAD_SUFFIXES, card_rows, find_models, store_upload
from saliency_core.devices import describe as describe_device

DEMO_LABEL = "EfficientNet-Lite0, ImageNet (demo)"
MODELS_DIR = os.environ.get("SALIENCY_MODELS_DIR", "models")             # the operator's models
ALLOW_UPLOAD = os.environ.get("SALIENCY_ALLOW_MODEL_UPLOAD", "") == "1"  # off unless enabled
UPLOAD_DIR = Path(tempfile.gettempdir()) / "saliency_lens_uploads"

st.set_page_config(page_title="Saliency Lens", page_icon="🔍", layout="wide")

page = st.navigation([
    st.Page("pages/explain.py", title="Explain", icon="🖼️", default=True),
    st.Page("pages/review.py", title="Review", icon="✅"),
    st.Page("pages/stability.py", title="Stability", icon="🎯"),
    st.Page("pages/sanity.py", title="Sanity check", icon="🧪"),
    st.Page("pages/validate.py", title="Validate", icon="📐"),
    st.Page("pages/report.py", title="Report", icon="📄"),
])

with st.sidebar:
    # ---- model: demo, the models folder, an upload; a failing choice keeps the last good one
    choices = {"demo": DEMO_LABEL, **dict(find_models(MODELS_DIR)),
               **st.session_state.get("uploaded_models", {})}
    if ALLOW_UPLOAD:
        files = st.file_uploader(
            "Upload a model", type=[s.lstrip(".") for s in UPLOAD_SUFFIXES], accept_multiple_files=True,
            key="model_upload", help="A TorchScript .pt, a torch.export .pt2, an ONNX .onnx, or a state dict .pth "
                                     "with its card (.json/.yaml naming the torchvision architecture); optionally a "
                                     "card and a labels .txt. Pickles that need code are refused.")
        if files:
            try:
                path = str(store_upload([(f.name, f.getvalue()) for f in files], UPLOAD_DIR))
                if path not in choices:
                    st.session_state.setdefault("uploaded_models", {})[path] = f"Uploaded: {Path(path).name}"
                    choices[path] = f"Uploaded: {Path(path).name}"
                    st.session_state["model_choice"] = path
            except ValueError as err:
                st.error(f"Upload: {err}")
    active = st.session_state.get("model", "demo")
    if st.session_state.get("model_choice") not in choices:
        st.session_state["model_choice"] = active if active in choices else "demo"
    choice = st.selectbox("Model", list(choices), key="model_choice", format_func=lambda s: choices.get(s, s),
                          help=f"The built-in demo, or a model card / model file in {MODELS_DIR}.")
    model = None
    try:
        model = get_model(choice)
        st.session_state["model"] = choice
    except ValueError as err:
        st.error(f"This model cannot be used. {err}")
        if choice != active:
            try:
                model = get_model(active)
                st.caption(f"Still using **{choices.get(active, model.name)}**.")
            except ValueError:
                pass
    if model is not None:
        st.caption(f"{len(model.labels)} classes · input {model.input_size} px · "
                   f"computed on {describe_device(model.device)} · "
                   f"weights sha256 `{model.fingerprint[:12]}…`",
                   help="Device: set SALIENCY_DEVICE=auto|cpu|cuda before starting the dashboard "
                        "(auto uses a GPU when there is one). It is recorded with every result.")
        if model.card:
            with st.expander("Model card"):
                st.markdown("\n".join(f"- **{k}**: {v}" + (" *(default)*" if d else "")
                                       for k, v, d in card_rows(model.card)))
                st.caption(f"Weights sha256 `{model.fingerprint}`; recorded with every result.")

    # ---- methods: only those the model supports; the others are listed with the reason
    unusable = {m: r for m, r in (sc.available_methods(model) if model else {}).items() if r}
    options = [m for m in sc.METHODS if m not in unusable]
    current = st.session_state.get("methods")
    wanted = [m for m in (DEFAULT_METHODS if current is None else current) if m in options]
    if current is None or wanted != list(current) or st.session_state.get("method_options") != options:
        st.session_state["methods"] = wanted
    st.session_state["method_options"] = options
    with st.form("analysis"):
        st.multiselect("Saliency methods", options, key="methods",
                       format_func=lambda n: sc.METHODS[n].label,
                       help="\n".join(f"- **{m.label}**: {m.description}" for m in sc.METHODS.values()))
        if unusable:
            st.caption("Not available for this model:\n" + "\n".join(
                f"- **{sc.METHODS[m].label}** {reason}" for m, reason in unusable.items()))
        st.slider("SmoothGrad samples", 1, 200, 50, key="samples",
                  help="Noisy copies averaged per map. The paper sees little change past 50.")
        st.slider("SmoothGrad noise (fraction of the pixel range)", 0.0, 0.5, 0.15, 0.01, key="noise",
                  help="Standard deviation of the added noise; the paper recommends 0.10-0.20.")
        with st.expander("More parameters"):
            st.number_input("Random seed", 0, 2**31 - 1, 0, key="seed",
                            help="The same seed gives the same map.")
            st.slider("Integrated Gradients steps", 8, 300, 50, key="steps")
            st.selectbox("Integrated Gradients baseline", ["black", "blurred", "uniform"], key="baseline",
                         help="The reference image the path starts from.")
            st.select_slider("Occlusion square (pixels)", [8, 16, 24, 32, 48, 64], 32, key="window",
                             help="Side of the grey square hidden at a time.")
            st.select_slider("Occlusion step (pixels)", [4, 8, 16, 24, 32], 16, key="stride",
                             help="How far the square moves between tries; must not exceed its side. "
                                  "Half the side: every pixel is hidden by up to 4 squares.")
            st.slider("RISE masks", 100, 8000, 1000, 100, key="masks",
                      help="Random masks averaged. The paper used 4000-8000; 1000 take up to about "
                           "40 s per image on a 2-core CPU. More masks: a steadier map.")
        st.form_submit_button("Apply", type="primary", width="stretch")

page.run()
