"""Files we hand back stay harmless when they carry hostile user text: CSV cells that a
spreadsheet would run as formulas (OWASP "CSV injection") and ZIP member names that climb out of
the folder they are unpacked into ("zip slip").

Real store (SQLite), the real CLI validate command and the real Explain page (AppTest)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile

import pandas as pd
import pytest
import skimage
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from saliency_core.cli import main
from saliency_core.review import store as rs
from saliency_core.review import summary as rsum

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
FORMULAS = [
    '=HYPERLINK("http://example.invalid/x","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


def test_decision_notes_that_start_like_formulas_are_neutralised(tmp_path):
    """Hostile input: review notes and item names starting with =, +, -, @, tab, CR."""
    with rs.ReviewStore(rs.sqlite_url(tmp_path / "r.sqlite")) as store:
        for n, text in enumerate(FORMULAS):
            store.record("b", f"{n:064x}", text + ".png", "alice", "accept", note=text, seconds=1.5)
        store.record("b", "f" * 64, "ok.png", "alice", "reject", note="fine - as typed", seconds=2)
        rows = list(csv.DictReader(io.StringIO(rsum.to_csv(store.decisions()), newline="")))
    by_note = {r["note"]: r for r in rows}
    for text in FORMULAS:
        row = by_note["'" + text]
        assert row["item_name"] == "'" + text + ".png"
        assert float(row["seconds"]) == 1.5  # numbers stay numbers
    assert by_note["fine - as typed"]["item_name"] == "ok.png"  # ordinary text unchanged


def test_validation_tables_neutralise_names_and_keep_negative_numbers(tmp_path):
    """Hostile input: image files named like formulas, through ``python -m saliency_core validate``."""
    images = tmp_path / "images"
    images.mkdir()
    formula = '=HYPERLINK("example.invalid")'
    shutil.copy(os.path.join(DATA, "chelsea.png"), images / f"{formula}.png")
    shutil.copy(os.path.join(DATA, "coffee.png"), images / "-unannotated.png")
    with open(tmp_path / "boxes.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["image", "x_min", "y_min", "x_max", "y_max"], [f"{formula}.png", 125, 70, 355, 285]]
        )
    out = tmp_path / "out"
    code = main(
        [
            "validate",
            "--images",
            str(images),
            "--annotations",
            str(tmp_path / "boxes.csv"),
            "--methods",
            "gradient",
            "--no-faithfulness",
            "--out",
            str(out),
        ]
    )
    assert code == 1  # one image was skipped (no annotation)
    per_image = pd.read_csv(out / "per_image.csv")
    assert set(per_image["image"]) == {"'" + formula + ".png"}
    assert per_image["pointing_game"].dtype.kind == "f"  # numeric columns stay numeric
    skipped = pd.read_csv(out / "skipped.csv")
    assert "'-unannotated.png" in set(skipped["item"])
    summary = pd.read_csv(out / "summary.csv")
    assert summary["mean"].dtype.kind == "f"
    from saliency_core.engine.safe_text import to_csv  # the writers' one helper (imported here: new module)

    # a negative number in a numeric column is written as a number, a text
    # that starts with "-" is not
    assert to_csv(pd.DataFrame({"score": [-0.25], "name": ["-0.25"]})).splitlines()[1] == "-0.25,'-0.25"


@pytest.fixture
def downloads(monkeypatch):
    """Every download a page offers, captured as {file name: bytes} (AppTest keeps them in memory)."""
    captured: dict[str, bytes] = {}
    original = MediaFileManager.add

    def add(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if file_name:
            captured[file_name] = data
        return original(
            self,
            data,
            mimetype,
            coordinates,
            file_name=file_name,
            is_for_static_download=is_for_static_download,
        )

    monkeypatch.setattr(MediaFileManager, "add", add)
    return captured


def test_explain_zip_member_names_and_table_are_safe(downloads):
    """Hostile input: uploads named ``../../evil.png`` and ``=HYPERLINK(...).png`` on the Explain
    page; the ZIP download must hold no member that leaves its folder, and its table no formula."""
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at.multiselect[0].set_value([])
    with open(os.path.join(DATA, "chelsea.png"), "rb") as f:
        cat = f.read()
    with open(os.path.join(DATA, "coffee.png"), "rb") as f:
        cup = f.read()
    formula = '=HYPERLINK("http://example.invalid","x")'
    at.file_uploader[0].set_value(
        [("../../evil.png", cat, "image/png"), (f"{formula}.png", cup, "image/png")]
    )
    at.sidebar.multiselect(key="methods").set_value(["gradient"])
    at.sidebar.button[0].click()
    at = at.run()
    assert not at.exception, at.exception
    archive = zipfile.ZipFile(io.BytesIO(downloads["saliency_maps.zip"]))
    names = archive.namelist()
    assert (
        len(names) == len(set(n.lower() for n in names)) == 7
    )  # 2 captioned PNG + 2 bare overlays + 2 JSON + the table
    for name in names:
        assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith("."), name
        assert all(c.isprintable() for c in name) and len(name) <= 120, name
    table = pd.read_csv(io.BytesIO(archive.read("maps.csv")))
    assert "'" + formula + ".png" in set(table["image"])
    assert not any(str(v).startswith(("=", "+", "-", "@")) for v in table.select_dtypes(object).stack())
    assert table["top1_probability"].dtype.kind == "f"
    # every download's file name is safe as well
    for name in downloads:
        assert "/" not in name and ".." not in name, name
