"""Saliency Lens: router and frame (st.navigation) with the shared sidebar."""
import streamlit as st

import saliency_core as sc
from pages._common import DEFAULT_METHODS, get_model

st.set_page_config(page_title="Saliency Lens", page_icon="🔍", layout="wide")

page = st.navigation([
    st.Page("pages/explain.py", title="Explain", icon="🖼️", default=True),
])

with st.sidebar:
    st.selectbox("Model", ["demo"], key="model",
                 format_func=lambda s: "EfficientNet-Lite0, ImageNet (demo)" if s == "demo" else s)
    try:
        model = get_model(st.session_state.get("model", "demo"))
        st.caption(f"{len(model.labels)} classes · input {model.input_size} px · "
                   f"weights sha256 `{model.fingerprint[:12]}…`")
    except ValueError as err:
        st.error(str(err))
    with st.form("analysis"):
        st.multiselect("Saliency methods", list(sc.METHODS), default=DEFAULT_METHODS, key="methods",
                       format_func=lambda n: sc.METHODS[n].label,
                       help="\n".join(f"- **{m.label}**: {m.description}" for m in sc.METHODS.values()))
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
        st.form_submit_button("Apply", type="primary", width="stretch")

page.run()
