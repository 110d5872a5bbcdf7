"""Sanity check: does each method's map change when the model's weights are destroyed?
(model parameter randomisation, Adebayo et al. 2018)"""

from __future__ import annotations

import dataclasses
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import pages._defaults as defaults
import saliency_core as sc
from pages._detail import detail_settings
from pages._frame import require_frame
from pages._guard import report_error
from pages._images import UPLOAD_TYPES, single_image
from pages._layout import colour_bar, map_rows
from pages._models import model_key
from pages._results import computed, is_computed
from pages._run import cancellable, estimate_caption, finish_run, request_run, run_active
from pages._settings import page_setup
from pages._text import DISCLAIMER, map_alt, plain
from pages._verdicts import record_sanity_verdict
from saliency_core.engine import estimate as es
from saliency_core.engine import render as rd
from saliency_core.engine.safe_text import json_text, to_csv
from saliency_core.evaluation import sanity as rz
from saliency_core.pipeline import method_params

MEASURE_NAMES = {
    "spearman_abs": "rank correlation of the map's size",
    "spearman_signed": "rank correlation, signed",
    "ssim": "structural similarity (SSIM)",
    "hog": "edge-pattern similarity (HOG)",
}
MEASURE_STYLE = {
    "spearman_abs": ("solid", "circle"),
    "spearman_signed": ("dash", "square"),
    "ssim": ("dot", "diamond"),
    "hog": ("dashdot", "triangle-up"),
}
EVERY, FEW = "every", "few"


@dataclasses.dataclass(frozen=True)
class Controls:
    """The settings on screen: how the weights are destroyed, where maps are computed, the threshold."""

    mode: str
    depth: int
    seed: int
    threshold: float
    maps_choice: str
    maps_at: list


@dataclasses.dataclass(frozen=True)
class SanityRun:
    """One requested check on one photo: names each method's cached run and computes it."""

    model: object
    image: object
    name: str
    image_hash: str
    request: dict
    cfg: object
    threshold: float

    def key(self, method: str) -> tuple:
        """The cache key of one method's run."""
        request = self.request
        return (
            "sanity",
            *model_key(self.model),
            self.image_hash,
            method,
            request["mode"],
            request["depth"],
            request["seed"],
            request["maps_at"],
            tuple(sorted(method_params(method, self.cfg.params).items())),
        )

    def compute(self, method: str, progress=None) -> rz.SanityResult:
        """One method's run, computed once per model, image, method and settings."""
        return computed(
            self.key(method),
            lambda: rz.sanity_check(
                self.model,
                self.image,
                [method],
                mode=self.request["mode"],
                depth=self.request["depth"],
                seed=self.request["seed"],
                params=method_params(method, self.cfg.params),
                threshold=self.threshold,
                image_name=self.name,
                progress=progress,
                maps_at=list(self.request["maps_at"]),
            ),
        )

    def done(self, method: str) -> bool:
        """Whether one method's run is in the cache."""
        return is_computed(self.key(method))


def intro() -> None:
    """Show the title, the one-line aim and how the check works."""
    st.title("Sanity check: model randomisation")
    st.markdown(
        "Check that each method's map depends on what the model learned: destroy the model's weights step "
        "by step and see whether the map changes. **Pick a photo and press Run the sanity check.**"
    )
    with st.expander("How it works"):
        st.markdown(
            "The weights of the model are re-initialised layer block by layer block, from the output "
            "down (Adebayo et al. 2018), and each map is computed again. A map that explains the model "
            "must change as the model is destroyed; a map that stays the same shows the image, not the "
            "model. The run works on a copy: the model used everywhere else is never changed. " + DISCLAIMER
        )


def layer_blocks(model) -> list:
    """The model's layer blocks; stop with an error when the check cannot run on it."""
    try:
        return computed(("layer blocks", *model_key(model)), lambda: rz.layer_blocks(model))
    except ValueError as err:
        st.error(f"The sanity check cannot run on this model: {plain(err)}")
        st.stop()


def steps_control(column, depth: int) -> tuple[str, list]:
    """Show the choice of steps with maps (a few or every one); return the choice and the steps."""
    if st.session_state.get("sanity_maps") not in (FEW, EVERY):
        st.session_state["sanity_maps"] = FEW
    few_steps = rz.checkpoints(depth, defaults.SANITY_MAP_STEPS)
    maps_choice = column.radio(
        "Maps computed",
        [FEW, EVERY],
        key="sanity_maps",
        format_func={
            FEW: f"at {len(few_steps)} of the {depth} steps (quick)",
            EVERY: f"at every step ({depth})",
        }.get,
        help="Cascading runs re-initialise every block either way, so the verdict is the same; maps at "
        "every step "
        "draw the whole curve. Independent runs test only the blocks with maps.",
    )
    return maps_choice, few_steps if maps_choice == FEW else list(range(1, depth + 1))


def controls(blocks: list) -> Controls:
    """Show the settings: how the weights are destroyed, how deep, which steps get maps, the threshold."""
    c1, c2, c3 = st.columns(3)
    mode = c1.radio(
        "How the weights are destroyed",
        rz.MODES,
        key="sanity_mode",
        format_func=lambda m: {
            "cascading": "Cascading: from the output down, adding up",
            "independent": "Independent: one block at a time",
        }[m],
        index=rz.MODES.index(defaults.SANITY_MODE),
    )
    depth = c2.slider(
        "Layer blocks to re-initialise (from the output)",
        1,
        len(blocks),
        rz.default_depth(blocks),
        help=f"This model has {len(blocks)} blocks of layers. The default, the top half, leaves the "
        "prediction meaningless; re-initialising the first layers too changes every map, so the "
        "curve matters more than its end there.",
    )
    maps_choice, maps_at = steps_control(c2, int(depth))
    threshold = c3.slider(
        "Pass if the final rank correlation is below",
        0.05,
        0.95,
        rz.DEFAULT_THRESHOLD,
        0.05,
        help="Spearman rank correlation of the map's size with the trained model's map at the "
        "last step (independent runs: the mean over the steps).",
    )
    seed = c3.number_input("Seed of the random weights", 0, 2**31 - 1, 0)
    return Controls(
        mode=mode,
        depth=int(depth),
        seed=int(seed),
        threshold=threshold,
        maps_choice=maps_choice,
        maps_at=maps_at,
    )


def estimate(model, methods: list, cfg, chosen: Controls) -> None:
    """Show the time the check takes and, while maps are at a few steps, the full-setting button."""
    maps = {m: method_params(m, cfg.params) for m in methods}
    estimate_caption(
        es.sanity_seconds(es.pass_times(model), len(chosen.maps_at), maps),
        f"This check ({len(methods)} methods × {len(chosen.maps_at) + 1} maps)",
    )
    if chosen.maps_choice == FEW and len(chosen.maps_at) < chosen.depth:
        full = es.sanity_seconds(es.pass_times(model), chosen.depth, maps)
        st.button(
            f"Use the full setting (maps at every step: {es.describe_seconds(full)})",
            icon=":material/tune:",
            key="sanity_full",
            on_click=lambda: st.session_state.update(sanity_maps=EVERY),
        )


def start() -> None:
    """Ask for a check with this run's widget values."""
    st.session_state["sanity_new"] = True
    request_run("sanity")


def asked_request(chosen: Controls, model, image_hash: str) -> dict:
    """Show the Run button and keep the settings it was pressed with; stop while none fits this photo."""
    st.button("Run the sanity check", type="primary", icon=":material/play_arrow:", on_click=start)
    if st.session_state.pop("sanity_new", False):  # this run's widget values
        st.session_state["sanity_request"] = {
            "mode": chosen.mode,
            "depth": chosen.depth,
            "seed": chosen.seed,
            "maps_at": tuple(chosen.maps_at),
            "for": (model_key(model), image_hash),
        }
    request = st.session_state.get("sanity_request")
    if request is None or request["for"] != (model_key(model), image_hash):  # no long run unasked
        finish_run("sanity")
        st.info("Nothing is computed until you press **Run the sanity check**.")
        st.stop()
    return request


def compute_missing(run: SanityRun, methods: list) -> None:
    """Compute the methods not yet cached, with a progress bar; a Cancel keeps the methods done."""
    missing = [m for m in methods if not run.done(m)]
    if missing and run_active("sanity"):
        started = time.perf_counter()
        with cancellable("sanity", "Sanity check…") as bar:
            for n, m in enumerate(missing):
                label = sc.METHODS[m].label

                def progress(done, total, n=n, label=label):
                    bar.progress(
                        min(1.0, (n + done / total) / len(missing)), text=f"{label}: map {done} of {total}"
                    )

                try:
                    run.compute(m, progress)
                except Exception as err:  # one method failing never hides the others
                    report_error(f"{label} sanity check", err)
        finish_run("sanity")
        st.caption(f":material/timer: Sanity check done in {time.perf_counter() - started:.1f} s.")
    left = [m for m in methods if not run.done(m)]
    if left and not run_active("sanity"):
        done = len(methods) - len(left)
        if done:
            st.warning(
                f"Stopped after {done} of {len(methods)} methods: the results below cover those.",
                icon=":material/pause_circle:",
            )
        st.button(
            f"Go on with {', '.join(sc.METHODS[m].label for m in left)}",
            icon=":material/play_arrow:",
            key="sanity_go_on",
            on_click=request_run,
            args=("sanity",),
        )


def finished(run: SanityRun, methods: list, model, threshold: float) -> tuple[dict, dict]:
    """The computed runs and their verdicts (kept for the Explain page); show failures, stop if none."""
    results = {}
    for m in methods:
        if not run.done(m):
            continue  # failed above, already reported
        result = run.compute(m)
        if m in result.errors:
            st.error(f"**{sc.METHODS[m].label}** could not be computed at {plain(result.errors[m])}")
        else:
            results[m] = result
    if not results:
        st.stop()
    verdicts = {}
    for m, result in results.items():
        verdicts[m] = result.verdicts(threshold)[m]
        record_sanity_verdict(model, verdicts[m])  # the Explain page's caution marks show it
    return results, verdicts


def summary(results: dict, verdicts: dict, mode: str) -> None:
    """Show the trained model's prediction and the table of verdicts."""
    first = next(iter(results.values()))
    top = first.prediction[0]
    st.markdown(
        f"**Prediction of the trained model:** {plain(top[1])} ({top[2]:.1%}). Every map explains the score "
        f"of **{plain(first.target_label)}**, at every step."
    )
    table = pd.DataFrame(
        [
            {
                "Method": sc.METHODS[m].label,
                "Verdict": "passes" if v.passed else "fails",
                "Rank correlation at the end" if mode == "cascading" else "Mean rank correlation": round(
                    v.final_similarity, 3
                ),
                "Pass below": v.threshold,
                "Layer blocks re-initialised": f"{v.blocks} of {v.total_blocks}",
            }
            for m, v in verdicts.items()
        ]
    )
    st.dataframe(table, hide_index=True)
    st.caption(
        "Rank correlation: how closely the map still orders the pixels like the trained model's map (1 = the "
        "same order, 0 = unrelated). A method passes when its map has moved away from the trained model's "
        "(below the threshold)."
    )


def step_title(step, mode: str, blocks: list) -> str:
    """A step in words (block names such as _blocks.15 stay in the exports)."""
    if step.index == 0:
        return "trained model"
    if mode == "cascading":
        return f"top {step.index} of {len(blocks)} blocks random"
    return f"block {step.index} from the top random"


def curve_chart(result: rz.SanityResult, method: str, threshold: float, blocks: list) -> go.Figure:
    """One method's similarity to the trained model's map over the steps, one line per measure."""
    steps = result.steps
    x = [step_title(s, result.mode, blocks) for s in steps]
    fig = go.Figure()
    for measure, title in MEASURE_NAMES.items():
        dash, marker = MEASURE_STYLE[measure]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[s.similarity[method][measure] for s in steps],
                mode="lines+markers",
                name=title,
                line=dict(dash=dash, width=2 if measure == "spearman_abs" else 1.5),
                marker=dict(symbol=marker, size=8),
                customdata=[s.block or "(trained)" for s in steps],
                hovertemplate="%{x} (%{customdata}): %{y:.2f}<extra>" + title + "</extra>",
            )
        )
    fig.add_hline(
        y=threshold,
        line_dash="dash",
        line_color="grey",
        annotation_text=f"pass threshold {threshold:.2f}",
        annotation_position="bottom right",
    )
    fig.update_layout(
        height=360,
        margin=dict(l=0, r=0, t=60, b=0),
        yaxis_range=[-0.5, 1.05],
        title=f"{sc.METHODS[method].label}: similarity to the trained model's map as weights are destroyed",
        yaxis_title="similarity to the trained model's map",
        xaxis_title=None,
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def step_maps(result: rz.SanityResult, m: str, name: str, blocks: list) -> None:
    """Show one method's map at each step with its colour scale and the detail each is drawn at."""
    meta = sc.METHODS[m]
    steps = [s for s in result.steps if m in s.saliency]
    legend, detail_words = None, []
    for row, cols in map_rows(steps, key=f"sanity-{m}"):
        for col, step in zip(cols, row):
            shown = rd.shown_map(step.saliency[m], m, step.diagnostics.get(m), **detail_settings())
            title = step_title(step, result.mode, blocks)
            detail_words.append(f"{title}: {shown.words}" if shown.words else "")
            r = rd.render(
                shown.saliency, result.image, target_label=result.target_label, meaning=meta.meaning
            )
            legend = legend or r
            similarity = step.similarity[m]["spearman_abs"]
            col.image(
                r.overlay,
                width="stretch",
                caption=f"{title} · predicts {plain(step.prediction[1])} ({step.prediction[2]:.0%}) · "
                f"similarity {similarity:.2f}"
                + (f" · drawn at {shown.detail_px:g}-pixel detail" if shown.detail_px else "")
                + (" · map is zero" if r.near_zero else ""),
                alt=map_alt(meta.label, f"{name}, {title}", result.target_label),
            )
    if legend is not None:
        left, _ = st.columns([1, 2])
        with left:
            colour_bar(
                legend, alt=f"Colour scale of the {meta.label} maps: dark = low, bright = high influence"
            )
        st.caption(
            f"{plain(legend.words)} Each map is drawn on its own scale. Similarity = rank correlation "
            "with the trained model's map, on the raw maps (pixel by pixel)."
        )
    if any(detail_words):
        with st.expander("Detail each map is drawn at"):
            st.markdown("\n".join(f"- {plain(w)}" for w in detail_words if w))


def method_section(result: rz.SanityResult, m: str, verdict, name: str, blocks: list) -> None:
    """Show one method's verdict, its similarity curve, its maps at each step and the technical notes."""
    meta = sc.METHODS[m]
    with st.container(border=True):
        st.subheader(meta.label)
        text = plain(verdict.summary)
        if verdict.passed:
            st.success(text, icon=":material/check_circle:")
        else:  # one warning: the verdict with the method's known limit
            st.warning(
                text + (f" Known limit: {meta.caution}" if meta.caution else ""), icon=":material/error:"
            )
        if meta.caution and verdict.passed:
            st.caption(f"Known limit: {meta.caution}")
        st.plotly_chart(
            curve_chart(result, m, verdict.threshold, blocks),
            key=f"curve-{m}",
            alt=f"Line chart: how similar the {meta.label} map stays to the trained model's map at "
            "each step; four measures, each with its own line style and marker.",
        )
        st.markdown(
            "**Maps at each step** (each on its own colour scale, so the pattern stays visible "
            "even where the values shrink):"
        )
        step_maps(result, m, name, blocks)
        notes = sorted({n for s in result.steps for n in s.notes})
        if notes:
            with st.expander("Technical notes: what was re-initialised and how"):
                st.markdown("\n".join(f"- {plain(n)}" for n in notes))


def export(results: dict, name: str, model, threshold: float) -> None:
    """Show the downloads: the similarities per step and the verdicts with their settings."""
    rows = [
        {"image": name, "model_fingerprint": model.fingerprint, **row}
        for result in results.values()
        for row in result.rows()
    ]
    record = {
        "image": name,
        "model": model.describe(),
        "threshold": threshold,
        "runs": {
            m: {**r.record(), "verdicts": {k: v.record() for k, v in r.verdicts(threshold).items()}}
            for m, r in results.items()
        },
    }
    c1, c2 = st.columns(2)
    c1.download_button(
        "Similarities per step (CSV)",
        to_csv(pd.DataFrame(rows)),
        "sanity_check.csv",
        "text/csv",
        icon=":material/download:",
        wrap=True,
    )
    c2.download_button(
        "Verdicts and settings (JSON)",
        json_text(record, indent=2),
        "sanity_check.json",
        "application/json",
        icon=":material/download:",
        wrap=True,
    )


require_frame()
intro()
cfg, model, methods = page_setup()
blocks = layer_blocks(model)
name, image, image_hash = single_image(UPLOAD_TYPES)
chosen = controls(blocks)
estimate(model, methods, cfg, chosen)
request = asked_request(chosen, model, image_hash)
run = SanityRun(model, image, name, image_hash, request, cfg, chosen.threshold)
compute_missing(run, methods)
results, verdicts = finished(run, methods, model, chosen.threshold)
summary(results, verdicts, request["mode"])
for m, result in results.items():
    method_section(result, m, verdicts[m], name, blocks)
export(results, name, model, chosen.threshold)
