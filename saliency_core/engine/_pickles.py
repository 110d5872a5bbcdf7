"""What a pickle refers to, read without running it (pickletools): one reader for every model format."""

from __future__ import annotations

import io
import pickletools


def pickle_globals(data: bytes) -> list[str] | None:
    """The global names (module.name) a pickle refers to, read with ``pickletools`` without
    running anything; None if ``data`` is not a well-formed pickle."""
    found, strings, memo, count, last = [], [], {}, 0, None
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            if name in (
                "SHORT_BINUNICODE",
                "BINUNICODE",
                "BINUNICODE8",
                "UNICODE",
                "STRING",
                "BINSTRING",
                "SHORT_BINSTRING",
            ):
                last = str(arg)
                strings.append(last)
                continue
            if name == "MEMOIZE":
                if last is not None:
                    memo[count] = last
                count += 1
                continue  # MEMOIZE keeps the stack as it is: ``last`` stays on top
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if last is not None:
                    memo[arg] = last
                continue
            if name in ("GET", "BINGET", "LONG_BINGET") and arg in memo:
                last = memo[arg]
                strings.append(last)
                continue
            last = None
    except Exception:  # any parse failure means "not a pickle"
        return None
    return found
