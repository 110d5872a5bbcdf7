"""``python -m saliency_core qualify``: scorecard CSV and JSON, the record in the review database, exit
status 1 while a method asked for is not qualified, and a rerun with tightened-or-loosened rules
that reuses the finished units (resume)."""

from __future__ import annotations

import csv
import json

from saliency_core.cli import main
from saliency_core.review.qualification import QualificationStore
from saliency_core.review.store import ReviewStore, sqlite_url

CHEAP = ["--step", "0.5", "--sanity-images", "1", "--stability-images", "1", "--steps", "8"]


def test_qualify_writes_the_scorecard_and_fails_while_a_method_is_not_qualified(tmp_path, capsys):
    out, url = tmp_path / "out", sqlite_url(tmp_path / "reviews.sqlite")
    args = ["qualify", "--pasted", "3", "--methods", "gradcam", "--out", str(out), *CHEAP]
    assert main([*args, "--store", url, "--by", "alice"]) == 1  # 3 images: provisional, not qualified
    err = capsys.readouterr().err
    assert "recorded as qualification record 1" in err
    with open(out / "scorecard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["criterion"] for r in rows] == [
        "pointing_game", "relevance_mass", "deletion", "insertion", "sanity", "stability", "reproducibility",
        "overall",
    ]  # fmt: skip
    assert rows[-1]["verdict"] == "provisional" and "only 3 annotated image(s)" in rows[-1]["detail"]
    assert rows[0]["rule"].startswith("paired gain over the centre-bias and the random map")
    record = json.loads((out / "qualification.json").read_text())
    assert record["verdicts"]["gradcam"]["verdict"] == "provisional"
    assert record["images"] == 3 and record["rules"]["min_images"] == 50
    assert record["model"]["fingerprint"] and record["dataset"]["fingerprint"]
    with ReviewStore(url) as store:
        rec = QualificationStore(store).records()[0]
        assert (rec.run_by, rec.run_via, rec.images) == ("alice", "command line", 3)
        assert store.verify().ok
    # the same run judged with the minimum lowered and loose margins: every unit reused, qualified
    loose = ["--min-images", "3", "--localisation-margin", "-1", "--faithfulness-margin", "-1"]
    loose += ["--sanity-threshold", "1", "--stability-min", "0"]
    assert main([*args, *loose]) == 0
    err = capsys.readouterr().err
    assert "resuming: 5 of 5 units already done" in err
    record = json.loads((out / "qualification.json").read_text())
    assert record["verdicts"]["gradcam"]["verdict"] == "qualified"
    assert record["rules"]["min_images"] == 3


def test_qualify_usage_errors(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as stop:
        main(["qualify", "--methods", "gradcam", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "give one data set" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["qualify", "--pasted", "3", "--methods", "nope", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "unknown method 'nope'" in capsys.readouterr().err
