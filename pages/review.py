"""Review: a queue of items to accept, reject or send to an expert; decisions recorded per reviewer.

Identity: pages/_signin.py (local accounts or the organisation's identity provider); roles and what
they allow: saliency_core.review.identity. Without sign-in, or as a viewer, the queue can be
browsed, nothing is recorded. Time per item: from the moment the item's overlays were on screen
(end of the server run that first drew it) to the moment the decision click reached the server;
added up over the visits that changed the decision; time spent computing maps is not counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import streamlit as st

import pages._qualification as qualification
import pages._signin as signin
import saliency_core as sc
from pages._detail import drawn
from pages._frame import require_frame
from pages._images import UPLOAD_TYPES, decode
from pages._layout import colour_bar, map_rows
from pages._maps import cached_explain
from pages._prefetch import prefetch
from pages._settings import page_model, settings
from pages._text import DISCLAIMER, map_alt, plain
from saliency_core import pipeline
from saliency_core.engine import render as rd
from saliency_core.engine.safe_text import file_name
from saliency_core.engine.samples import sample_images
from saliency_core.pipeline import method_params
from saliency_core.review import batches, folders
from saliency_core.review import store as rs
from saliency_core.review.identity import can
from saliency_core.review.schema import DECISION_LABELS
from saliency_core.review.summary import summarize
from saliency_core.review.summary import to_csv as decisions_csv

FOLDER_ENV = "SALIENCY_REVIEW_DIR"
MAX_ITEMS = 2000
ss = st.session_state
require_frame()

st.title("Review queue")
st.markdown(
    "Go through a batch of photos and accept, reject or send each to an expert after checking that the "
    "model looked at the right features. **Sign in, open a batch, then decide item by item.**"
)
with st.expander("Before you decide"):
    st.markdown(DISCLAIMER + " The next item's maps are computed while you look at the current one.")

cfg = settings()
model = page_model(cfg)
qualification.status(model)  # which methods are qualified for this model


@st.cache_resource(show_spinner="Opening the review database…")
def open_store(url: str) -> rs.ReviewStore:
    return rs.ReviewStore(url)


store, store_error = None, None
try:
    store = open_store(rs.database_url())
except ValueError as err:  # StoreError: not cached, so the next run tries again
    store_error = str(err)


@st.cache_data(max_entries=4096, show_spinner=False)
def file_hash(path: str, mtime_ns: int, size: int) -> str:
    """Image hash of a sample photo or a file in the review folder, recomputed only when the file changes."""
    return sc.image_hash(sc.load_image(read_path(path), name=os.path.basename(path)))


def read_path(path: str) -> bytes:
    """A sample photo, or a file of the review folder (refused if it leads outside the folder)."""
    if path in samples.values():
        return Path(path).read_bytes()
    return folders.read_file(folder_root, path)


@st.cache_data(max_entries=512, show_spinner=False)
def bytes_hash(data: bytes, name: str) -> str:
    return sc.image_hash(sc.load_image(data, name=name))


def flash(kind: str, text: str) -> None:
    """A message shown once at the top of the next run (set from button callbacks). ``text`` is
    Markdown: quote user text in it through plain()."""
    ss["review_flash"] = (kind, text)


def fresh_queue() -> None:
    """After a sign-in: resume from what the database holds for this reviewer."""
    for key in [k for k in ss if str(k).startswith("review_pos::")] + ["review_batch", "review_timer"]:
        ss.pop(key, None)


# ---- who is reviewing ---------------------------------------------------------------------------------
account = signin.current_account()
can_decide = can(account, "decide")
with st.container(border=True):
    if account is None:
        st.markdown(
            "**Sign in to record decisions.** Without signing in you can browse the queue; "
            "nothing is recorded."
        )
        if not signin.sign_in_options(after=fresh_queue):
            st.info(
                "**No reviewer accounts exist yet**, so decisions cannot be recorded. An operator creates "
                "them on the server (docs/sign-in.md). You can still browse the queue.",
                icon=":material/person_off:",
            )
    else:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.markdown(
            f"Signed in as **{plain(account.label)}** ({account.role}"
            f"{', organisation account' if account.via == 'oidc' else ''}). "
            + (
                f"Your decisions are recorded as **{plain(account.name)}**."
                if can_decide
                else "Your role lets you look at the queue; it records no decisions."
            )
        )
        c2.button("Sign out", on_click=signin.sign_out, width="stretch", key="review_sign_out")
    if store_error:
        st.error(f"Decisions cannot be recorded: {plain(store_error)}")
    elif store is not None:  # the database's location stays on the server
        st.caption(f"Decisions are stored in the review database ({store.backend}).")

can_record = can_decide and store is not None


# ---- admin: audit log integrity and sign-in lockouts ---------------------------------------------------
def verify_audit() -> None:
    try:
        ss["review_audit_check"] = store.verify()
    except ValueError as err:
        flash("error", plain(err))


def unlock(scope: str, key: str) -> None:
    who = signin.current_account()
    if not can(who, "unlock"):
        flash("error", "Only an admin can unlock; nothing was changed.")
        return
    try:
        signin.throttle().unlock(actor=who.actor, **{scope: key})
    except ValueError as err:
        flash("error", plain(err))
        return
    flash("success", f"Unlocked {'the user name' if scope == 'account' else 'the client'} {plain(key)}.")


if can(account, "oversee"):
    with st.expander("Audit log check and sign-in lockouts (admin)"):
        if store is not None:
            st.button(
                "Verify the audit log",
                on_click=verify_audit,
                key="review_verify",
                help="Recomputes the hash chain of every audit row and sign-in event and compares each "
                "decision with its last audit row (python -m saliency_core audit verify).",
            )
            check = ss.get("review_audit_check")
            if check is not None:
                (st.success if check.ok else st.error)(plain(check.message))
                if not check.ok:
                    st.caption(f"First broken row: {check.table} row {check.row}.")
        locks = signin.throttle().locks()
        if not locks:
            st.caption("No user name or client is locked out.")
        for n, lock in enumerate(locks):
            c1, c2 = st.columns([4, 1], vertical_alignment="center")
            c1.text(
                f"{'User name' if lock.scope == 'account' else 'Client'} {lock.key}: locked until "
                f"{lock.until:%Y-%m-%d %H:%M} UTC ({lock.detail})"
            )
            c2.button("Unlock", key=f"review_unlock::{n}", on_click=unlock, args=(lock.scope, lock.key))

# ---- which batch -------------------------------------------------------------------------------------
folder_root = os.environ.get(FOLDER_ENV, "").strip()
samples = sample_images()


def folder_choices() -> list[str]:
    """The configured review folder and its direct subfolders, relative to it ("." = the folder);
    links that lead outside it are left out (saliency_core.folders)."""
    if not folder_root or not Path(folder_root).is_dir():
        return []
    return ["."] + folders.subfolders(folder_root)


def batch_items(source: str, uploads) -> tuple[list[dict], list[str]]:
    """Queue items [{name, hash, path | data}] in order, and messages about files left out
    (the rules: saliency_core.batches)."""
    if source.startswith("gallery:"):  # a selection sent from the Gallery (pages/gallery.py)
        entries, problems = gallery_entries(source[len("gallery:") :]), []
    else:
        entries, problems = batches.source_entries(
            source,
            samples=samples,
            folder_root=folder_root,
            suffixes=UPLOAD_TYPES,
            max_items=MAX_ITEMS,
            uploads=[(f.name, f.getvalue()) for f in uploads or []],
        )

    def hash_of(name, where):
        if isinstance(where, bytes):
            return bytes_hash(where, name)
        return file_hash(where, *batches.file_signature(where))

    items, left_out = batches.queue_items(entries, hash_of)
    return items, problems + left_out


def gallery_entries(selection: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of the images the Gallery sent as ``selection``."""
    from saliency_core.gallery import ResultStore, gallery_path

    found = ResultStore(gallery_path()).selection_items(selection)
    if not found:
        raise ValueError(f"The Gallery's selection {selection!r} is not in {gallery_path()}.")
    return [(it["name"], it["data"]) for it in found]


SOURCES = {"Sample photos": "samples", "Server folder": "folder", "Uploaded images": "upload"}
source_labels = [k for k in SOURCES if k != "Server folder" or folder_choices()]
usable = sc.available_methods(model)
offered = qualification.offered(model, [m for m in sc.METHODS if not usable.get(m)])  # the operator's hide

if can_record and "review_batch" not in ss:
    # Come back tomorrow: reopen the batch this reviewer last worked on, where items can be found again.
    last = store.last_batch(account.name)
    batch = store.batch(last) if last else None
    if batch and (
        batch.source == "samples"
        or (batch.source.startswith("folder:") and folder_root)
        or batch.source.startswith("gallery:")
    ):
        ss["review_batch"] = {"name": batch.name, "source": batch.source, "methods": batch.methods}
        flash("info", f"Continuing batch **{plain(batch.name)}** where you stopped.")


def open_batch() -> None:
    """Form callback: set up the batch chosen in the form (registered in the database when signed in)."""
    who = signin.current_account()
    kind = SOURCES[ss.get("rb_source", source_labels[0])]
    rel = ss.get("rb_folder") or "."
    source = f"folder:{rel}" if kind == "folder" else kind
    chosen = [m for m in ss.get("rb_methods", []) if m in sc.METHODS]
    try:
        if not chosen:
            raise ValueError("Choose at least one method to show.")
        items, _ = batch_items(source, ss.get("rb_uploads"))
        if not items:
            raise ValueError("No readable images for this batch: upload images or pick another source.")
        derived = batches.default_name(source, (i["hash"] for i in items))
        spec = {
            "name": str(ss.get("rb_name", "")).strip() or derived,
            "source": source,
            "methods": {m: method_params(m, cfg.params) for m in chosen},
        }
        if can(who, "decide") and store is not None:  # a viewer's batch is not registered
            batch = store.open_batch(
                spec["name"],
                source=source,
                created_by=who.name,
                model_fingerprint=model.fingerprint,
                methods=spec["methods"],
            )
            if batch.methods != spec["methods"]:
                flash(
                    "info",
                    f"Batch **{plain(batch.name)}** already exists (opened by {plain(batch.created_by)} on "
                    f"{batch.created_at:%Y-%m-%d}); it keeps its methods "
                    f"{', '.join(sc.METHODS[m].label for m in batch.methods if m in sc.METHODS)}.",
                )
            spec = {
                "name": batch.name,
                "source": batch.source if batch.source != "upload" else source,
                "methods": batch.methods,
            }
    except ValueError as err:
        flash("error", plain(err))
        return
    ss["review_batch"] = spec
    ss.pop(f"review_pos::{spec['name']}", None)
    ss.pop("review_timer", None)


with st.expander("Batch: choose the items and methods", expanded="review_batch" not in ss):
    with st.form("review_batch_form", border=False):
        st.radio("Items", source_labels, horizontal=True, key="rb_source")
        if "Server folder" in source_labels:
            st.selectbox(
                "Folder", folder_choices(), key="rb_folder", help=f"Folders under {FOLDER_ENV} on the server."
            )
        st.file_uploader("Images to upload", type=UPLOAD_TYPES, accept_multiple_files=True, key="rb_uploads")
        st.multiselect(
            "Methods shown for each item",
            offered,
            default=qualification.default_methods(model, offered, cfg.methods),
            key="rb_methods",
            format_func=lambda n: sc.METHODS[n].label,
            help="Fixed for the batch when it is first opened, so every reviewer sees the same.",
        )
        st.text_input(
            "Batch name",
            key="rb_name",
            placeholder="blank: named after the items",
            help="Reviewers who open the same batch name review the same queue.",
        )
        st.form_submit_button("Open batch", type="primary", on_click=open_batch)

if "review_flash" in ss:
    kind, text = ss.pop("review_flash")
    {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(text)

spec = ss.get("review_batch")
if spec is None:
    st.info("Open a batch above to start reviewing." if source_labels else "No items available.")
    st.stop()

try:
    items, problems = batch_items(spec["source"], ss.get("rb_uploads"))
except ValueError as err:
    st.error(plain(err))
    st.stop()
for text in problems:
    st.warning(f"Left out of the queue: {plain(text)}")
if not items:
    st.info(
        "This batch has no readable items here. Batches of uploaded images need the same images "
        "uploaded again: use the Batch panel above."
    )
    st.stop()

batch_name = spec["name"]
methods = {m: p for m, p in spec["methods"].items() if m in offered}
for m in [m for m in spec["methods"] if m not in methods]:
    st.warning(f"Method {plain(repr(m))} of this batch is not available here; it is not shown.")
try:
    batches.check_batch_work(methods, len(items), batch_name)
except ValueError as err:
    st.error(plain(err))
    st.stop()

try:
    mine = (
        {d.item_hash: d for d in store.decisions(batch=batch_name, reviewer=account.name)}
        if can_record
        else {}
    )
except ValueError as err:
    st.error(plain(err))
    mine = {}

pos_key = f"review_pos::{batch_name}"
if pos_key not in ss:  # resume at the first item this reviewer has not decided
    ss[pos_key] = batches.resume_position(items, mine)
ss[pos_key] = min(max(int(ss[pos_key]), 0), len(items) - 1)
pos = ss[pos_key]
item = items[pos]
decided = sum(it["hash"] in mine for it in items)

st.subheader(f"Batch {plain(batch_name)}")
if can_record:
    st.progress(decided / len(items), text=f"{decided} of {len(items)} items decided by you")
    if decided == len(items):
        st.success(
            "You have decided every item of this batch. Use Previous to revisit one, "
            "or see the summary below."
        )


def go(to: int) -> None:
    ss[pos_key] = min(max(to, 0), len(items) - 1)


def decide(choice: str, it: dict, index: int, expected_version: int, note_key: str) -> None:
    who = signin.current_account()
    if who is None or store is None:
        flash("error", "Sign in to record decisions; nothing was recorded.")
        return
    if not can(who, "decide"):
        flash("error", f"Your role ({who.role}) records no decisions; nothing was recorded.")
        return
    timer = ss.get("review_timer")
    seconds = time.monotonic() - timer[2] if timer and timer[:2] == (batch_name, it["hash"]) else 0.0
    try:
        done = store.record(
            batch_name,
            it["hash"],
            it["name"],
            who.name,
            choice,
            note=ss.get(note_key, ""),
            seconds=seconds,
            model_fingerprint=model.fingerprint,
            methods=methods,
            expected_version=expected_version,
            actor=who.actor,
        )
    except rs.DecisionConflict as err:
        flash("warning", plain(err))
        return
    except ValueError as err:
        flash("error", f"Not recorded: {plain(err)}")
        return
    label = DECISION_LABELS[choice]
    if done.action == "unchanged":
        flash("info", f"{plain(it['name'])}: already recorded as **{label}**; nothing changed.")
    elif done.action == "changed":
        flash(
            "success",
            f"Changed your decision on {plain(it['name'])} to **{label}** (the earlier one is kept "
            "in the audit log).",
        )
    else:
        flash("success", f"Recorded **{label}** for {plain(it['name'])}.")
    ss.pop("review_timer", None)
    ss[pos_key] = min(index + 1, len(items) - 1)


nav = st.columns([1, 1, 1, 3], vertical_alignment="center")
nav[0].button(
    "Previous",
    icon=":material/arrow_back:",
    on_click=go,
    args=(pos - 1,),
    disabled=pos == 0,
    width="stretch",
    key="review_prev",
)
nav[1].button(
    "Next",
    icon=":material/arrow_forward:",
    icon_position="right",
    on_click=go,
    args=(pos + 1,),
    disabled=pos == len(items) - 1,
    width="stretch",
    key="review_next",
)
undecided = next((i for i, it in enumerate(items) if it["hash"] not in mine and i != pos), None)
nav[2].button(
    "Next undecided",
    on_click=go,
    args=(undecided if undecided is not None else pos,),
    disabled=undecided is None or not can_record,
    width="stretch",
    key="review_undecided",
)
nav[3].markdown(f"**Item {pos + 1} of {len(items)}:** {plain(item['name'])}")
if spec["source"].startswith("gallery:"):

    def to_gallery(it: dict) -> None:
        ss["gallery_focus"] = {
            "selection": spec["source"][len("gallery:") :],
            "hash": it["hash"],
            "name": it["name"],
        }

    if st.button(
        "Open in the Gallery",
        key="review_to_gallery",
        on_click=to_gallery,
        args=(item,),
        help="This image in the Gallery: its true class, prediction and stored maps.",
    ):
        st.switch_page("pages/gallery.py")

# ---- the item: image, prediction, overlays -----------------------------------------------------------
try:
    image = decode(item["data"] if "data" in item else read_path(item["path"]), item["name"])
except (ValueError, OSError) as err:
    st.error(f"{plain(item['name'])}: {plain(err)}")
    st.stop()
bar, finished = st.empty(), []


def progress(done: int, total: int) -> None:  # called only while a map is computed, not for cached maps
    bar.progress(
        min(1.0, (len(finished) + done / total) / len(methods)), text=f"Computing maps: {done}/{total}"
    )


result = pipeline.explain_image(
    model,
    image,
    item["name"],
    list(methods),
    methods,
    explain_fn=cached_explain,
    progress=progress,
    on_map=finished.append,
)
bar.empty()
if not result.ok:
    st.error(plain(result.failed or (result.crashed or {}).get("message", "the image could not be used")))
    st.stop()
for m, why in {**result.errors, **{m: c["message"] for m, c in result.crashes.items()}}.items():
    st.error(f"{sc.METHODS[m].label}: {plain(why)}")
prediction, target = result.prediction, result.prediction[0][0]

with st.container(border=True):
    st.image(
        result.crop,
        caption="What the model sees",
        width=260,
        alt=f"{item['name']} as the model sees it: the centre crop, {model.input_size} pixels square",
    )
    for row, cols in map_rows(list(methods), key="review"):
        for col, m in zip(cols, row):
            meta = sc.METHODS[m]
            with col:
                exp = result.maps.get(m)
                if exp is None:  # why is shown above
                    st.caption(f"{meta.label}: no map")
                    continue
                shown = drawn(exp)  # averaged maps at their reproducible detail
                r = rd.render(
                    shown.saliency,
                    exp.image,
                    sign="absolute",
                    alpha=0.5,
                    clip_percentile=99.0,
                    target_label=exp.target_label,
                    meaning=meta.meaning,
                )
                st.image(
                    r.overlay,
                    caption=meta.label,
                    width="stretch",
                    alt=map_alt(meta.label, item["name"], exp.target_label, prediction[0][2]),
                )
                colour_bar(
                    r, alt=f"Colour scale of the {meta.label} map: dark = low, bright = high influence"
                )
                st.caption(plain(r.words) + (f"\n\n{plain(shown.words)}" if shown.words else ""))
                if r.near_zero:
                    st.info("This map is zero (or numerically negligible) everywhere.")
        for m in row:  # cautions below the row, full width
            if sc.METHODS[m].caution:
                st.warning(f"**{sc.METHODS[m].label}:** {sc.METHODS[m].caution}", icon=":material/warning:")

    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"**Prediction:** {plain(prediction[0][1])} ({prediction[0][2]:.1%} confidence)")
        st.dataframe(
            pd.DataFrame([{"class": label, "probability": f"{p:.1%}"} for _, label, p in prediction]),
            hide_index=True,
            key=f"top5-{pos}",
        )
        st.caption(
            f"Maps explain **{plain(model.labels[target])}**.",
            help=f"Model weights sha256 {model.fingerprint}",
        )
    with right:
        current = mine.get(item["hash"])
        if current:
            st.markdown(
                f"**Your decision:** {current.label} · {current.decided_at:%Y-%m-%d %H:%M} UTC · "
                f"{current.seconds:.0f} s on this item"
                + (f" · changed {current.version - 1}×" if current.version > 1 else "")
            )
        elif can_record:
            st.markdown("**Your decision:** none yet")
        note_key = f"review_note::{batch_name}::{item['hash']}"
        st.text_area(
            "Note",
            value=current.note if current else "",
            key=note_key,
            height=80,
            disabled=not can_record,
            max_chars=rs.MAX_NOTE,
            placeholder="What did the maps show? (optional)",
        )
        buttons = st.columns(3)
        for col, choice in zip(buttons, rs.DECISIONS):
            col.button(
                DECISION_LABELS[choice],
                key=f"decide::{choice}::{batch_name}::{item['hash']}",
                type="primary" if current and current.decision == choice else "secondary",
                disabled=not can_record,
                width="stretch",
                on_click=decide,
                args=(choice, item, pos, current.version if current else 0, note_key),
                help=None
                if can_record
                else "Your role records no decisions."
                if account is not None
                else "Sign in to record decisions.",
            )
        if can(account, "oversee") and store is not None:
            others = [
                d
                for d in store.decisions(batch=batch_name)
                if d.item_hash == item["hash"] and d.reviewer != account.name
            ]
            if others:  # notes and names are the reviewers' own words: shown as text, never as Markdown
                st.caption("Other reviewers on this item:")
                for d in others:
                    st.text(f"{d.reviewer}: {d.label}" + (f". Note: {d.note}" if d.note else ""))

# The reviewer's clock for this item starts once its maps are on screen.
if can_record and (ss.get("review_timer") or (None, None))[:2] != (batch_name, item["hash"]):
    ss["review_timer"] = (batch_name, item["hash"], time.monotonic())

# While the reviewer looks at this item, the next one's maps are computed in the background.
if pos + 1 < len(items):
    following = items[pos + 1]
    try:
        prefetch(
            model,
            decode(
                following["data"] if "data" in following else read_path(following["path"]), following["name"]
            ),
            following["hash"],
            methods,
        )
    except (ValueError, OSError):
        pass  # an unreadable item says so when it is shown

if can_record:
    with st.expander(f"Your queue ({decided} of {len(items)} decided)"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "#": i + 1,
                        "item": it["name"],
                        "your decision": mine[it["hash"]].label if it["hash"] in mine else "",
                        "note": mine[it["hash"]].note if it["hash"] in mine else "",
                        "decided (UTC)": f"{mine[it['hash']].decided_at:%Y-%m-%d %H:%M:%S}"
                        if it["hash"] in mine
                        else "",
                    }
                    for i, it in enumerate(items)
                ]
            ),
            hide_index=True,
            key="review_queue_table",
        )

# ---- summary ----------------------------------------------------------------------------------------
if not can_record:
    st.stop()

st.header("Summary")
try:
    every = store.decisions(batch=batch_name)
    names = [b.name for b in store.batches()]
except ValueError as err:
    st.error(plain(err))
    st.stop()
summary = summarize(every)
c1, c2, c3 = st.columns(3)
c1.metric("Items decided", f"{summary.items} of {len(items)}")
c2.metric("Decisions", summary.decisions)
c3.metric("Reviewers", len(summary.by_reviewer))
rows = [
    {"reviewer": r, **{DECISION_LABELS[d]: n for d, n in counts.items()}, "total": sum(counts.values())}
    for r, counts in sorted(summary.by_reviewer.items())
]
rows.append(
    {
        "reviewer": "all",
        **{DECISION_LABELS[d]: n for d, n in summary.by_decision.items()},
        "total": summary.decisions,
    }
)
st.markdown("**Decisions by reviewer**")
st.dataframe(pd.DataFrame(rows), hide_index=True, key="review_counts")
left, right = st.columns(2)
with left:
    st.markdown("**Agreement between reviewers** (Cohen's kappa over items both decided)")
    if summary.agreement:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "reviewers": f"{a.reviewer_a} / {a.reviewer_b}",
                        "shared items": a.items,
                        "agreed": a.agreed,
                        "kappa": "undefined (one category only)" if a.kappa is None else f"{a.kappa:.2f}",
                    }
                    for a in summary.agreement
                ]
            ),
            hide_index=True,
            key="review_kappa",
        )
    else:
        st.caption("No item has been decided by two reviewers yet.")
with right:
    st.markdown("**Median time per decision**")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "decision": DECISION_LABELS[d],
                    "median seconds": round(s, 1),
                    "decisions": summary.by_decision[d],
                }
                for d, s in summary.median_seconds.items()
            ]
        ),
        hide_index=True,
        key="review_median",
    )
    st.caption(
        "Seconds from the item's maps appearing to the decision click, summed over the visits "
        "that changed the decision."
    )

if can(account, "oversee"):
    with st.expander("All decisions with notes (admin)"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "item": d.item_name,
                        "reviewer": d.reviewer,
                        "decision": d.label,
                        "note": d.note,
                        "seconds": round(d.seconds, 1),
                        "decided (UTC)": f"{d.decided_at:%Y-%m-%d %H:%M:%S}",
                        "version": d.version,
                    }
                    for d in every
                ]
            ),
            hide_index=True,
            key="review_all",
        )
    with st.expander("Audit log of this batch (admin)"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "when (UTC)": f"{e.at:%Y-%m-%d %H:%M:%S}",
                        "by": e.actor,
                        "reviewer": e.reviewer,
                        "item": e.item_name,
                        "action": e.action,
                        "from": e.old_decision or "",
                        "to": e.new_decision,
                        "old note": e.old_note or "",
                        "new note": e.new_note,
                    }
                    for e in store.audit_log(batch=batch_name)
                ]
            ),
            hide_index=True,
            key="review_audit",
        )
    e1, e2 = st.columns(2)
    e1.download_button(
        "Export this batch (CSV)",
        decisions_csv(every),
        file_name(f"{batch_name}_decisions.csv"),
        "text/csv",
        key="export_batch",
    )
    e2.download_button(
        "Export every batch (CSV)",
        decisions_csv(store.decisions()),
        "all_decisions.csv",
        "text/csv",
        key="export_all",
    )
else:
    own = [d for d in every if d.reviewer == account.name]
    st.download_button(
        "Export your decisions in this batch (CSV)",
        decisions_csv(own),
        file_name(f"{batch_name}_{account.name}_decisions.csv"),
        "text/csv",
        key="export_mine",
    )
    st.caption("Other reviewers' notes and the full export are for admins.")
if len(names) > 1:
    st.caption(f"{len(names)} batches in the database; open another from the Batch panel above.")
