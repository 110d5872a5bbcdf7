"""The qualification in force as a report appendix (HTML and PDF draw the same words and table), its
replay block, and the replay's check that the record was made on the report's model."""

from __future__ import annotations

TITLE = "Appendix: qualification of the methods for this model"
COLUMNS = ["Method", "Criterion", "Figure", "Interval", "Rule", "Verdict", "Detail"]


def _number(value) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def appendix(record: dict) -> dict:
    """``QualificationRecord.record()`` -> ``{"title", "paragraphs", "columns", "rows"}``, in words."""
    approvals = [s for s in record.get("signoffs", []) if s.get("decision") == "approve"]
    signed = approvals[-1] if approvals else None
    qualified = [m for m, v in record.get("verdicts", {}).items() if v.get("verdict") == "qualified"]
    paragraphs = [
        f"Qualification record {record.get('id')} for the model with weights sha256 "
        f"{record.get('model_fingerprint', '')}: {', '.join(qualified) or 'no method'} qualified, on "
        f"{record.get('images')} annotated images ({record.get('dataset_description', '')}; data set sha256 "
        f"{record.get('dataset_fingerprint', '')}), run by {record.get('run_by')} on "
        f"{str(record.get('created_at', ''))[:10]}"
        + (f", signed off by {signed['admin']} ({signed['via']}) on {signed['at'][:10]}." if signed else ".")
    ]
    for method, v in record.get("verdicts", {}).items():
        paragraphs.append(f"{method}: {v.get('verdict')}. {v.get('reason', '')}")
    rules = record.get("rules", {})
    paragraphs.append(
        "Rules used: " + "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in rules.items()) + "."
    )
    rows = [
        dict(
            zip(
                COLUMNS,
                (
                    r.get("method"),
                    r.get("criterion"),
                    _number(r.get("figure")),
                    ""
                    if r.get("low") is None or r.get("high") is None
                    else f"[{_number(r['low'])}, {_number(r['high'])}]",
                    r.get("rule"),
                    r.get("verdict"),
                    r.get("detail"),
                ),
            )
        )
        for r in record.get("scorecard", [])
    ]
    return {"title": TITLE, "paragraphs": paragraphs, "columns": COLUMNS, "rows": rows}


def replay_block(record: dict) -> dict:
    """What the replay block keeps of the appended record: enough to check it against the model."""
    return {
        "record_id": record.get("id"),
        "model_fingerprint": record.get("model_fingerprint"),
        "dataset_fingerprint": record.get("dataset_fingerprint"),
        "verdicts": {m: v.get("verdict") for m, v in record.get("verdicts", {}).items()},
    }


def check(block, fingerprint: str) -> tuple[str, str]:
    """("match" | "mismatch", words): was the appended record made on the weights with ``fingerprint``?"""
    if not isinstance(block, dict):
        return "mismatch", "the report's qualification block is damaged"
    recorded = block.get("model_fingerprint")
    if isinstance(recorded, str) and recorded == fingerprint:
        return "match", "the appended qualification record was made on this model's weights"
    shown = recorded[:12] if isinstance(recorded, str) else repr(recorded)[:20]
    return (
        "mismatch",
        f"the appended qualification record was made on other weights (sha256 {shown}…, the model's "
        f"{fingerprint[:12]}…): it does not qualify this model",
    )
