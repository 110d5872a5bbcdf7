"""Errors on a page: a short message with a reference to quote, never a stack trace; the trace
goes to the server log under that reference."""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager

import streamlit as st

from pages._text import plain

log = logging.getLogger("saliency_lens")


@contextmanager
def page_guard(where: str):
    """Run a page (or the sidebar) so that an unexpected error shows a short message with a
    reference, never a stack trace; the trace goes to the server log under that reference.
    st.stop() and reruns pass through (they are not Exceptions)."""
    try:
        yield
    except Exception as err:  # the last line of defence for a page
        reference = secrets.token_hex(4)
        log.error("unexpected error in %s (reference %s)", where, reference, exc_info=err)
        st.error(
            f"Something went wrong in {where} and it stopped. The other pages still work. If it happens "
            f"again, give the operator the reference **{reference}**: the details are in the server log."
        )


def report_error(where: str, err: Exception) -> None:
    """A plain message on the page; the traceback goes to the server log only. ``where`` and the
    message are shown as text (they may quote file names)."""
    if isinstance(err, ValueError):
        message = str(err)
        for name in (where, where.split(" · ")[0]):  # messages that start with the file's name: once
            if message.startswith(f"{name}: "):
                message = message[len(name) + 2 :]
                break
        st.error(f"**{plain(where)}**: {plain(message)}")
    else:
        reference = secrets.token_hex(4)
        log.error("%s failed (reference %s)", where, reference, exc_info=err)
        st.error(
            f"**{plain(where)}**: something went wrong ({type(err).__name__}). The other results are "
            f"unaffected; the details are in the server log under reference **{reference}**."
        )
