"""Each page's default settings, in one place: the pages read them, and bench/pages.py times the
pages' demo runs with them, so the benchmark cannot drift from what a user gets.

No streamlit here (bench/pages.py imports it). Chosen so that each page's bundled demo finishes
in under 30 s on a quiet 2-core CPU; the full setting is one click away on each page, with its
cost stated there.
"""

from __future__ import annotations

from saliency_core.engine.methods import page_settings

# ---- the shared sidebar (app.py) ----------------------------------------------------------------
METHODS = ["gradient", "guided_backprop", "smoothgrad", "gradcam"]
# the sidebar's method parameters at the methods' own defaults (each method's Setting)
PARAMS = {key: setting.default for key, setting in page_settings().items() if setting.place != "page"}

# ---- Explain: the first sample photo, the predicted class -----------------------------------------
EXPLAIN_SAMPLES = 1  # sample photos picked when nothing is uploaded

# ---- Validate: the bundled 5-photo demo ---------------------------------------------------------
# Pixels changed per step of the deletion / insertion curves: 11 points per curve by default;
# Petsiuk et al.'s one row of a 224 px image (0.45 %, 224 steps) is the full setting.
VALIDATE_STEPS = {
    "20 % (6 points per curve, quick look)": 0.2,
    "10 % (11 points per curve)": 0.1,
    "5 % (21 points)": 0.05,
    "2 % (51 points)": 0.02,
    "1 % (101 points)": 0.01,
    "0.5 % (201 points, close to Petsiuk et al.; slow)": 0.005,
}
VALIDATE_STEP = "10 % (11 points per curve)"
VALIDATE_FULL_STEP = "0.5 % (201 points, close to Petsiuk et al.; slow)"
VALIDATE_FAITHFULNESS = True

# ---- Stability: generated variants, one of each kind ----------------------------------------------
STABILITY_VARIANTS = 6
STABILITY_FULL_VARIANTS = 24  # four of each kind

# ---- Sanity check: the top half of the blocks, maps at a few of the steps --------------------------
SANITY_MODE = "cascading"
SANITY_MAP_STEPS = 4  # maps at 4 evenly spread steps (+ the trained model); full: every step

# ---- Review: maps shown per item (the batch form's default is the sidebar's methods) -----------------
REVIEW_PREFETCH = 1  # items computed ahead while the reviewer looks at the current one
