"""Reports carry the qualification in force as an appendix (HTML and PDF, the reasons in words), and
replay checks that the appended record was made on the report's model (real demo model, one photo)."""

from __future__ import annotations

import io

import pypdf

from saliency_core import report as rp
from saliency_core.engine.samples import sample_images

GUIDED = (
    "Fails randomisation sanity check (the map stays like the trained model's when the model is destroyed "
    "on 3 of 3 sampled images (rank correlation up to 0.81, not below 0.50))."
)


def _record(fingerprint: str) -> dict:
    return {
        "id": 7,
        "created_at": "2026-12-06T20:00:00+00:00",
        "model_fingerprint": fingerprint,
        "dataset_fingerprint": "d" * 64,
        "dataset_description": "pasted objects",
        "images": 50,
        "rules": {"min_images": 50, "sanity_threshold": 0.5},
        "run_by": "alice",
        "verdicts": {
            "gradcam": {"verdict": "qualified", "reason": "Passes every criterion."},
            "guided_backprop": {"verdict": "not qualified", "reason": GUIDED},
        },
        "scorecard": [
            {
                "method": "guided_backprop",
                "criterion": "sanity",
                "figure": 0.8,
                "low": 0.7,
                "high": 0.81,
                "rule": "rank correlation below 0.50 on every sampled image",
                "verdict": "fail",
                "detail": "3 images",
            },
        ],  # fmt: skip
        "signoffs": [
            {"admin": "quinn", "via": "oidc", "decision": "approve", "note": "", "at": "2026-12-06T21:00"}
        ],
    }


def test_the_scorecard_in_force_is_an_appendix_and_replay_checks_its_model(demo, tmp_path):
    name, path = next(iter(sample_images().items()))
    report = rp.build_report(demo, [(name, path)], ["gradcam"], qualification=_record(demo.fingerprint))
    html = report.to_html()
    assert "Appendix: qualification of the methods for this model" in html
    assert "guided_backprop: not qualified. Fails randomisation sanity check" in html.replace("&#x27;", "'")
    assert "signed off by quinn (oidc)" in html
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(report.to_pdf())).pages)
    assert "Appendix: qualification of the methods" in text and "not qualified" in text
    out = tmp_path / "report.html"
    out.write_text(html, encoding="utf-8")
    record = rp.read_replay(out)
    assert record["qualification"]["model_fingerprint"] == demo.fingerprint
    results = rp.replay(record, demo)
    assert results[0].image == "(qualification appendix)" and results[0].ok
    record["qualification"]["model_fingerprint"] = "0" * 64  # a scorecard of other weights
    results = rp.replay(record, demo)
    assert results[0].status == "mismatch" and "does not qualify this model" in results[0].detail
    assert all(r.ok for r in results[1:])  # the maps themselves still replay
