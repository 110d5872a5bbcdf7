"""Review: a queue of items to accept, reject or send to an expert; decisions recorded per reviewer.

Identity: pages/_signin.py (local accounts or the organisation's identity provider); roles and what
they allow: saliency_core.review.identity. Without sign-in, or as a viewer, the queue can be
browsed, nothing is recorded. Time per item: from the moment the item's overlays were on screen
(end of the server run that first drew it) to the moment the decision click reached the server;
added up over the visits that changed the decision; time spent computing maps is not counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st

import pages._qualification as qualification
import pages._signin as signin
import saliency_core as sc
from pages._detail import drawn
from pages._frame import require_frame
from pages._images import UPLOAD_TYPES
from pages._layout import colour_bar, map_rows
from pages._maps import cached_explain
from pages._prefetch import prefetch
from pages._review_items import FOLDER_ENV, SOURCES, ItemSource
from pages._review_summary import show_summary
from pages._settings import page_model, settings
from pages._text import DISCLAIMER, map_alt, plain
from saliency_core import pipeline
from saliency_core.engine import render as rd
from saliency_core.pipeline import method_params
from saliency_core.review import batches
from saliency_core.review import store as rs
from saliency_core.review.auth import Account
from saliency_core.review.identity import can
from saliency_core.review.schema import DECISION_LABELS

ss = st.session_state


def show_intro() -> None:
    """The page's title, what it is for, and what to keep in mind before deciding."""
    st.title("Review queue")
    st.markdown(
        "Go through a batch of photos and accept, reject or send each to an expert after checking that the "
        "model looked at the right features. **Sign in, open a batch, then decide item by item.**"
    )
    with st.expander("Before you decide"):
        st.markdown(DISCLAIMER + " The next item's maps are computed while you look at the current one.")


@st.cache_resource(show_spinner="Opening the review database…")
def open_store(url: str) -> rs.ReviewStore:
    """The review database at ``url``, opened once per server process."""
    return rs.ReviewStore(url)


def review_store() -> tuple[rs.ReviewStore | None, str | None]:
    """The review database, or None and the reason it cannot be opened."""
    store, store_error = None, None
    try:
        store = open_store(rs.database_url())
    except ValueError as err:  # StoreError: not cached, so the next run tries again
        store_error = str(err)
    return store, store_error


def flash(kind: str, text: str) -> None:
    """A message shown once at the top of the next run (set from button callbacks). ``text`` is
    Markdown: quote user text in it through plain()."""
    ss["review_flash"] = (kind, text)


def fresh_queue() -> None:
    """After a sign-in: resume from what the database holds for this reviewer."""
    for key in [k for k in ss if str(k).startswith("review_pos::")] + ["review_batch", "review_timer"]:
        ss.pop(key, None)


# ---- who is reviewing ---------------------------------------------------------------------------------
def show_reviewer(store: rs.ReviewStore | None, store_error: str | None) -> Account | None:
    """Who is reviewing: the sign-in, or who is signed in and what the role records; where decisions go."""
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
                    "**No reviewer accounts exist yet**, so decisions cannot be recorded. An operator "
                    "creates them on the server (docs/sign-in.md). You can still browse the queue.",
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
    return account


# ---- admin: audit log integrity and sign-in lockouts ---------------------------------------------------
def verify_audit(store: rs.ReviewStore) -> None:
    """Button callback: check the audit log's hash chain; the outcome is shown in the admin panel."""
    try:
        ss["review_audit_check"] = store.verify()
    except ValueError as err:
        flash("error", plain(err))


def unlock(scope: str, key: str) -> None:
    """Button callback: lift a sign-in lockout of a user name or a client (admins only)."""
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


def show_admin_tools(store: rs.ReviewStore | None) -> None:
    """The admin panel: verify the audit log, and each sign-in lockout with its Unlock button."""
    with st.expander("Audit log check and sign-in lockouts (admin)"):
        if store is not None:
            st.button(
                "Verify the audit log",
                on_click=verify_audit,
                args=(store,),
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
def batch_choices(model: sc.Classifier, items_from: ItemSource) -> tuple[list[str], list[str]]:
    """The item sources to choose from (the server folder only when configured) and the methods offered."""
    source_labels = [k for k in SOURCES if k != "Server folder" or items_from.folder_choices()]
    usable = sc.available_methods(model)
    offered = qualification.offered(
        model, [m for m in sc.METHODS if not usable.get(m)]
    )  # the operator's hide
    return source_labels, offered


def resume_last_batch(store: rs.ReviewStore, account: Account, items_from: ItemSource) -> None:
    """Come back tomorrow: reopen the batch this reviewer last worked on, where items can be found again."""
    last = store.last_batch(account.name)
    batch = store.batch(last) if last else None
    if batch and (
        batch.source == "samples"
        or (batch.source.startswith("folder:") and items_from.folder_root)
        or batch.source.startswith("gallery:")
    ):
        ss["review_batch"] = {"name": batch.name, "source": batch.source, "methods": batch.methods}
        flash("info", f"Continuing batch **{plain(batch.name)}** where you stopped.")


def open_batch(
    items_from: ItemSource, source_labels: list[str], cfg, store: rs.ReviewStore | None, model: sc.Classifier
) -> None:
    """Form callback: set up the batch chosen in the form (registered in the database when signed in)."""
    who = signin.current_account()
    kind = SOURCES[ss.get("rb_source", source_labels[0])]
    rel = ss.get("rb_folder") or "."
    source = f"folder:{rel}" if kind == "folder" else kind
    chosen = [m for m in ss.get("rb_methods", []) if m in sc.METHODS]
    try:
        if not chosen:
            raise ValueError("Choose at least one method to show.")
        items, _ = items_from.batch_items(source, ss.get("rb_uploads"))
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


def show_batch_form(
    items_from: ItemSource,
    source_labels: list[str],
    offered: list[str],
    cfg,
    store: rs.ReviewStore | None,
    model: sc.Classifier,
) -> None:
    """The Batch panel: which items, the methods shown for each, the batch name; Open batch."""
    with st.expander("Batch: choose the items and methods", expanded="review_batch" not in ss):
        with st.form("review_batch_form", border=False):
            st.radio("Items", source_labels, horizontal=True, key="rb_source")
            if "Server folder" in source_labels:
                st.selectbox(
                    "Folder",
                    items_from.folder_choices(),
                    key="rb_folder",
                    help=f"Folders under {FOLDER_ENV} on the server.",
                )
            st.file_uploader(
                "Images to upload", type=UPLOAD_TYPES, accept_multiple_files=True, key="rb_uploads"
            )
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
            st.form_submit_button(
                "Open batch",
                type="primary",
                on_click=open_batch,
                args=(items_from, source_labels, cfg, store, model),
            )


def show_flash() -> None:
    """The message a callback left for this run (once)."""
    if "review_flash" in ss:
        kind, text = ss.pop("review_flash")
        {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(text)


# ---- the queue: position and navigation --------------------------------------------------------------
@dataclass
class Queue:
    """The open batch as this reviewer sees it: its items, the methods shown, their own decisions."""

    name: str
    source: str
    methods: dict[str, dict]
    items: list[dict]
    mine: dict  # item hash -> this reviewer's decision
    pos_key: str
    pos: int

    @property
    def item(self) -> dict:
        """The item on screen."""
        return self.items[self.pos]

    @property
    def decided(self) -> int:
        """How many of the items this reviewer has decided."""
        return sum(it["hash"] in self.mine for it in self.items)


def open_queue(
    items_from: ItemSource,
    source_labels: list[str],
    offered: list[str],
    store: rs.ReviewStore | None,
    account: Account | None,
    can_record: bool,
) -> Queue:
    """The open batch's items and methods, this reviewer's decisions and position; or why there is none."""
    spec = ss.get("review_batch")
    if spec is None:
        st.info("Open a batch above to start reviewing." if source_labels else "No items available.")
        st.stop()
    try:
        items, problems = items_from.batch_items(spec["source"], ss.get("rb_uploads"))
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
    return Queue(batch_name, spec["source"], methods, items, mine, pos_key, ss[pos_key])


def go(pos_key: str, to: int, count: int) -> None:
    """Button callback: move to item ``to`` of ``count``."""
    ss[pos_key] = min(max(to, 0), count - 1)


def to_gallery(selection: str, it: dict) -> None:
    """Button callback: the Gallery shows this item of its selection."""
    ss["gallery_focus"] = {
        "selection": selection,
        "hash": it["hash"],
        "name": it["name"],
    }


def show_position(queue: Queue, can_record: bool) -> None:
    """The batch's name and progress, Previous / Next / Next undecided, and the link to the Gallery."""
    items, pos, mine = queue.items, queue.pos, queue.mine
    decided = queue.decided
    st.subheader(f"Batch {plain(queue.name)}")
    if can_record:
        st.progress(decided / len(items), text=f"{decided} of {len(items)} items decided by you")
        if decided == len(items):
            st.success(
                "You have decided every item of this batch. Use Previous to revisit one, "
                "or see the summary below."
            )
    nav = st.columns([1, 1, 1, 3], vertical_alignment="center")
    nav[0].button(
        "Previous",
        icon=":material/arrow_back:",
        on_click=go,
        args=(queue.pos_key, pos - 1, len(items)),
        disabled=pos == 0,
        width="stretch",
        key="review_prev",
    )
    nav[1].button(
        "Next",
        icon=":material/arrow_forward:",
        icon_position="right",
        on_click=go,
        args=(queue.pos_key, pos + 1, len(items)),
        disabled=pos == len(items) - 1,
        width="stretch",
        key="review_next",
    )
    undecided = next((i for i, it in enumerate(items) if it["hash"] not in mine and i != pos), None)
    nav[2].button(
        "Next undecided",
        on_click=go,
        args=(queue.pos_key, undecided if undecided is not None else pos, len(items)),
        disabled=undecided is None or not can_record,
        width="stretch",
        key="review_undecided",
    )
    nav[3].markdown(f"**Item {pos + 1} of {len(items)}:** {plain(queue.item['name'])}")
    if queue.source.startswith("gallery:"):
        if st.button(
            "Open in the Gallery",
            key="review_to_gallery",
            on_click=to_gallery,
            args=(queue.source[len("gallery:") :], queue.item),
            help="This image in the Gallery: its true class, prediction and stored maps.",
        ):
            st.switch_page("pages/gallery.py")


# ---- the item: image, prediction, overlays -----------------------------------------------------------
def compute_maps(model: sc.Classifier, queue: Queue, items_from: ItemSource) -> pipeline.ImageResult:
    """The item's image and its maps (a progress bar while one is computed); stops when it cannot be used."""
    item, methods = queue.item, queue.methods
    try:
        image = items_from.image(item)
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
    return result


def show_overlays(model: sc.Classifier, queue: Queue, result) -> None:
    """What the model sees, then each method's map over the image with its colour bar and words."""
    item, prediction = queue.item, result.prediction
    st.image(
        result.crop,
        caption="What the model sees",
        width=260,
        alt=f"{item['name']} as the model sees it: the centre crop, {model.input_size} pixels square",
    )
    for row, cols in map_rows(list(queue.methods), key="review"):
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


def show_prediction(model: sc.Classifier, result, pos: int) -> None:
    """The model's prediction, its top classes, and which class the maps explain."""
    prediction, target = result.prediction, result.prediction[0][0]
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


def decide(
    choice: str,
    it: dict,
    index: int,
    expected_version: int,
    note_key: str,
    queue: Queue,
    store: rs.ReviewStore | None,
    model: sc.Classifier,
) -> None:
    """Button callback: record this reviewer's decision on the item, then move to the next one."""
    who = signin.current_account()
    if who is None or store is None:
        flash("error", "Sign in to record decisions; nothing was recorded.")
        return
    if not can(who, "decide"):
        flash("error", f"Your role ({who.role}) records no decisions; nothing was recorded.")
        return
    timer = ss.get("review_timer")
    seconds = time.monotonic() - timer[2] if timer and timer[:2] == (queue.name, it["hash"]) else 0.0
    try:
        done = store.record(
            queue.name,
            it["hash"],
            it["name"],
            who.name,
            choice,
            note=ss.get(note_key, ""),
            seconds=seconds,
            model_fingerprint=model.fingerprint,
            methods=queue.methods,
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
    ss[queue.pos_key] = min(index + 1, len(queue.items) - 1)


def show_decision(
    queue: Queue,
    store: rs.ReviewStore | None,
    account: Account | None,
    can_record: bool,
    model: sc.Classifier,
) -> None:
    """This reviewer's decision so far, the note and the decision buttons; other reviewers' (admins)."""
    item, batch_name = queue.item, queue.name
    current = queue.mine.get(item["hash"])
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
            args=(choice, item, queue.pos, current.version if current else 0, note_key, queue, store, model),
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


def show_item(
    model: sc.Classifier,
    queue: Queue,
    result,
    store: rs.ReviewStore | None,
    account: Account | None,
    can_record: bool,
) -> None:
    """The item in one frame: its maps, then the prediction beside the decision."""
    with st.container(border=True):
        show_overlays(model, queue, result)
        left, right = st.columns([2, 3])
        with left:
            show_prediction(model, result, queue.pos)
        with right:
            show_decision(queue, store, account, can_record, model)


def start_clock(queue: Queue) -> None:
    """The reviewer's clock for this item starts once its maps are on screen."""
    if (ss.get("review_timer") or (None, None))[:2] != (queue.name, queue.item["hash"]):
        ss["review_timer"] = (queue.name, queue.item["hash"], time.monotonic())


def prefetch_next(model: sc.Classifier, queue: Queue, items_from: ItemSource) -> None:
    """While the reviewer looks at this item, the next one's maps are computed in the background."""
    if queue.pos + 1 < len(queue.items):
        following = queue.items[queue.pos + 1]
        try:
            prefetch(model, items_from.image(following), following["hash"], queue.methods)
        except (ValueError, OSError):
            pass  # an unreadable item says so when it is shown


def show_queue(queue: Queue) -> None:
    """Every item of the batch with this reviewer's decision and note."""
    items, mine = queue.items, queue.mine
    with st.expander(f"Your queue ({queue.decided} of {len(items)} decided)"):
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


require_frame()
show_intro()
cfg = settings()
model = page_model(cfg)
qualification.status(model)  # which methods are qualified for this model
store, store_error = review_store()
account = show_reviewer(store, store_error)
can_record = can(account, "decide") and store is not None
if can(account, "oversee"):
    show_admin_tools(store)
items_from = ItemSource.from_environment()
source_labels, offered = batch_choices(model, items_from)
if can_record and "review_batch" not in ss:
    resume_last_batch(store, account, items_from)
show_batch_form(items_from, source_labels, offered, cfg, store, model)
show_flash()
queue = open_queue(items_from, source_labels, offered, store, account, can_record)
show_position(queue, can_record)
result = compute_maps(model, queue, items_from)
show_item(model, queue, result, store, account, can_record)
if can_record:
    start_clock(queue)
prefetch_next(model, queue, items_from)
if can_record:
    show_queue(queue)
if not can_record:
    st.stop()
show_summary(store, account, queue.name, len(queue.items))
