"""Saliency Lens: router and frame."""
import streamlit as st

st.set_page_config(page_title="Saliency Lens", layout="wide")
st.title("Saliency Lens")
st.write("Which image regions drove the classifier's decision.")
