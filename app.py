"""Saliency Lens: router and frame (st.navigation) with the shared sidebar."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import streamlit as st

import pages._signin as signin
import saliency_core as sc
from pages._detail import detail_controls
from pages._guard import page_guard
from pages._method_settings import setting_widgets
from pages._models import get_model
from pages._plans import plan_caption
from pages._qualification import start_demo_qualification
from pages._settings import DEFAULT_METHODS
from pages._text import plain
from saliency_core.engine.cards import UPLOAD_SUFFIXES, card_rows, find_models, store_upload
from saliency_core.engine.demo_variants import VARIANTS as DEMO_VARIANTS
from saliency_core.engine.devices import describe as describe_device
from saliency_core.engine.models import check_upload, code_models_allowed

DEMO_LABEL = "EfficientNet-Lite0, ImageNet (demo)"
MODELS_DIR = os.environ.get("SALIENCY_MODELS_DIR", "models")  # the operator's models
ALLOW_UPLOAD = os.environ.get("SALIENCY_ALLOW_MODEL_UPLOAD", "") == "1"  # off unless enabled
UPLOAD_DIR = Path(tempfile.gettempdir()) / "saliency_lens_uploads"


def navigation():
    """The pages in their sidebar order (the list is hidden on the sign-in screen)."""
    return st.navigation(
        [
            st.Page("pages/explain.py", title="Explain", icon=":material/image_search:", default=True),
            st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:"),
            st.Page("pages/review.py", title="Review", icon=":material/fact_check:"),
            st.Page("pages/stability.py", title="Stability", icon=":material/center_focus_strong:"),
            st.Page("pages/sanity.py", title="Sanity check", icon=":material/science:"),
            st.Page("pages/validate.py", title="Validate", icon=":material/rule:"),
            st.Page("pages/qualify.py", title="Qualify", icon=":material/verified:"),
            st.Page("pages/compare.py", title="Compare models", icon=":material/compare:"),
            st.Page("pages/report.py", title="Report", icon=":material/description:"),
        ],
        position=signin.nav_position(),  # hidden on the sign-in screen
    )


def model_choices() -> dict:
    """The models to choose from: demo, its variants, the models folder and this session's uploads."""
    return {
        "demo": DEMO_LABEL,
        **DEMO_VARIANTS,  # demo-pruned (a Compare candidate), demo-watermark (the shortcut demo)
        **dict(find_models(MODELS_DIR)),
        **st.session_state.get("uploaded_models", {}),
    }


def model_upload(choices: dict) -> None:
    """The model uploader (when the operator allows it); a stored upload joins ``choices``."""
    files = st.file_uploader(
        "Upload a model",
        type=[s.lstrip(".") for s in UPLOAD_SUFFIXES],
        accept_multiple_files=True,
        key="model_upload",
        help="A state dict .pth or a .safetensors file with its card (.json/.yaml naming the torchvision "
        "architecture), optionally a labels .txt (ONNX models: the operator's models folder only)"
        + (
            "; also a TorchScript .pt or a torch.export .pt2"
            if code_models_allowed()
            else ". Formats that hold code (TorchScript, torch.export) are not accepted here"
        )
        + ". Pickles that need code are refused.",
    )
    if files:
        try:
            path = str(store_upload([(f.name, f.getvalue()) for f in files], UPLOAD_DIR))
            try:
                check_upload(path)  # weights only, unless the operator allows code formats
            except ValueError:
                shutil.rmtree(Path(path).parent, ignore_errors=True)  # never loaded: remove it
                raise
            if path not in choices:
                st.session_state.setdefault("uploaded_models", {})[path] = f"Uploaded: {Path(path).name}"
                choices[path] = f"Uploaded: {Path(path).name}"
                st.session_state["model_choice"] = path
        except ValueError as err:
            st.error(f"Upload: {plain(err)}")


def choose_model():
    """The model box; a failing choice says why and keeps the last good model (None when none loads)."""
    choices = model_choices()
    if ALLOW_UPLOAD:
        model_upload(choices)
    st.session_state["model_choices"] = dict(choices)  # the Compare page picks models A and B from it
    active = st.session_state.get("model", "demo")
    if st.session_state.get("model_choice") not in choices:
        st.session_state["model_choice"] = active if active in choices else "demo"
    choice = st.selectbox(
        "Model",
        list(choices),
        key="model_choice",
        format_func=lambda s: choices.get(s, s),
        help=f"The built-in demo, or a model card / model file in {MODELS_DIR}.",
    )
    model = None
    try:
        model = get_model(choice)
        st.session_state["model"] = choice
    except ValueError as err:
        st.error(f"This model cannot be used. {plain(err)}")
        if choice != active:
            try:
                model = get_model(active)
                st.caption(f"Still using **{plain(choices.get(active, model.name))}**.")
            except ValueError:
                pass
    if model is not None:
        model_facts(model, choices)
    return model


def model_facts(model, choices: dict) -> None:
    """The model's full name, classes, input, device, execution plan and card."""
    # the full name, wrapped (the box above cuts long names)
    st.markdown(f"**{plain(choices.get(st.session_state.get('model', 'demo'), model.name))}**")
    kind = (" · greyscale (1 channel)" if model.channels == 1 else "") + (
        f" · multi-label (every class above {model.threshold:.0%})" if model.multilabel else ""
    )
    st.caption(
        f"{len(model.labels)} classes · input {model.input_size} px{kind} · "
        f"computed on {describe_device(model.device)}",
        help=f"Weights sha256 {model.fingerprint}, recorded with every result. Device: set "
        "SALIENCY_DEVICE=auto|cpu|cuda before starting the dashboard (auto uses a GPU when "
        "there is one).",
    )
    plan_caption(model)  # the execution plan of averaging methods, in words
    if model.card:
        with st.expander("Model card"):
            st.markdown(
                "\n".join(
                    f"- **{plain(k)}**: {plain(v)}" + (" *(default)*" if d else "")
                    for k, v, d in card_rows(model.card)
                )
            )
            st.caption(f"Weights sha256 `{model.fingerprint}`; recorded with every result.")


def choose_methods(model) -> None:
    """The methods form: those the model supports (the others with the reason), settings, Apply."""
    unusable = {m: r for m, r in (sc.available_methods(model) if model else {}).items() if r}
    options = [m for m in sc.METHODS if m not in unusable]
    current = st.session_state.get("methods")
    wanted = [m for m in (DEFAULT_METHODS if current is None else current) if m in options]
    if current is None or wanted != list(current) or st.session_state.get("method_options") != options:
        st.session_state["methods"] = wanted
    st.session_state["method_options"] = options
    with st.form("analysis"):
        st.caption(":material/info: Changes here wait for **Apply**.")
        st.multiselect(
            "Saliency methods",
            options,
            key="methods",
            format_func=lambda n: sc.METHODS[n].label,
            help="\n".join(f"- **{m.label}**: {m.description}" for m in sc.METHODS.values()),
        )
        if unusable:
            st.caption(
                "Not available for this model:\n"
                + "\n".join(f"- **{sc.METHODS[m].label}** {reason}" for m, reason in unusable.items())
            )
        setting_widgets("top")  # each method's own label, range, step, help and default
        with st.expander("More parameters"):
            setting_widgets("more")
        st.form_submit_button(
            "Apply",
            type="primary",
            width="stretch",
            icon=":material/check:",
            on_click=lambda: st.session_state.update(settings_applied=True),
        )
    if st.session_state.pop("settings_applied", False):  # in words here: Streamlit's toast has no name
        st.caption(f":material/check: Settings applied at {time.strftime('%H:%M:%S')}.")


st.set_page_config(page_title="Saliency Lens", page_icon=":material/image_search:", layout="wide")
page = navigation()
signin.gate()  # SALIENCY_REQUIRE_SIGN_IN=1: the sign-in screen and nothing else until signed in
start_demo_qualification()  # the demo's scorecard, once per server, in the background
with st.sidebar, page_guard("the sidebar"):
    choose_methods(choose_model())
    detail_controls()
with page_guard("this page"):
    page.run()
