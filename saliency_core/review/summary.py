"""What a batch's decisions add up to: counts per reviewer and decision, Cohen's kappa between reviewers,
median seconds per decision, and the CSV export."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from ..engine.safe_text import to_csv as _csv_text
from .schema import DECISIONS, Decision


# ---- summary ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """Cohen's kappa between two reviewers over the ``items`` both decided (None: undefined,
    both gave one and the same decision to every shared item)."""

    reviewer_a: str
    reviewer_b: str
    items: int
    agreed: int
    kappa: float | None


@dataclass(frozen=True)
class Summary:
    """Per-batch figures: counts by decision, by reviewer and decision, pairwise agreement,
    median seconds per decision (over the decisions with that value)."""

    items: int
    decisions: int
    by_decision: dict
    by_reviewer: dict
    agreement: list
    median_seconds: dict


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: (p_o - p_e) / (1 - p_e).

    Args:
        a, b: labels, same length, item i rated a[i] by one rater and b[i] by the other.
    Returns:
        kappa in [-1, 1]; None when p_e == 1 (both used the same single label throughout).

    Example:
        >>> cohen_kappa(["accept"] * 20 + ["accept"] * 5 + ["reject"] * 10 + ["reject"] * 15,
        ...             ["accept"] * 20 + ["reject"] * 5 + ["accept"] * 10 + ["reject"] * 15)
        0.4
    """
    if len(a) != len(b):
        raise ValueError(f"Expected two label lists of the same length; got {len(a)} and {len(b)}.")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n  # Cohen 1960, p_o
    labels = set(a) | set(b)
    expected = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)  # p_e
    if math.isclose(expected, 1.0):
        return None
    return round((observed - expected) / (1.0 - expected), 12)


def summarize(items: Iterable[Decision]) -> Summary:
    """Counts, agreement (Cohen's kappa per pair of reviewers with shared items) and median time.

    Args:
        items: decisions, normally of one batch (``store.decisions(batch=...)``).
    Returns:
        Summary. ``by_reviewer`` is {reviewer: {decision: count}}; ``median_seconds`` is
        {decision: median seconds}; ``agreement`` lists pairs with at least one shared item.
    """
    items = list(items)
    by_decision = {d: sum(x.decision == d for x in items) for d in DECISIONS}
    by_reviewer: dict[str, dict[str, int]] = {}
    for x in items:
        by_reviewer.setdefault(x.reviewer, {d: 0 for d in DECISIONS})[x.decision] += 1
    per_reviewer: dict[str, dict[str, str]] = {}
    for x in items:
        per_reviewer.setdefault(x.reviewer, {})[x.item_hash] = x.decision
    agreement = []
    for ra, rb in combinations(sorted(per_reviewer), 2):
        shared = sorted(set(per_reviewer[ra]) & set(per_reviewer[rb]))
        if not shared:
            continue
        a = [per_reviewer[ra][h] for h in shared]
        b = [per_reviewer[rb][h] for h in shared]
        agreement.append(Agreement(ra, rb, len(shared), sum(x == y for x, y in zip(a, b)), cohen_kappa(a, b)))
    median_seconds = {
        d: statistics.median([x.seconds for x in items if x.decision == d])
        for d in DECISIONS
        if by_decision[d]
    }
    return Summary(
        items=len({x.item_hash for x in items}),
        decisions=len(items),
        by_decision=by_decision,
        by_reviewer=by_reviewer,
        agreement=agreement,
        median_seconds=median_seconds,
    )


CSV_COLUMNS = (
    "batch",
    "item_name",
    "item_hash",
    "reviewer",
    "decision",
    "note",
    "seconds",
    "decided_at",
    "version",
    "model_fingerprint",
    "methods",
)


def to_csv(items: Iterable[Decision], include_notes: bool = True) -> str:
    """Decisions as CSV text (one row each; ``methods`` as JSON; notes blank unless included).
    Text that a spreadsheet would run as a formula gets a leading ``'`` (``safe_text.csv_cell``)."""
    return _csv_text(
        (
            [
                x.batch,
                x.item_name,
                x.item_hash,
                x.reviewer,
                x.decision,
                x.note if include_notes else "",
                round(x.seconds, 3),
                x.decided_at.isoformat(),
                x.version,
                x.model_fingerprint,
                json.dumps(x.methods, sort_keys=True),
            ]
            for x in items
        ),
        columns=CSV_COLUMNS,
    )
