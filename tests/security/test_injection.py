"""Injection through text a user controls: XML entities in annotation files (XXE, entity
expansion) and SQL in names and notes. The sweep of issue 15 found these held; kept here so they
keep holding."""

from __future__ import annotations

import os

import pytest

from saliency_core.evaluation import annotations as an
from saliency_core.review import store as rs

HOSTNAME = open("/etc/hostname").read().strip() if os.path.exists("/etc/hostname") else "no-such-file"

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<annotation><filename>&secret;</filename><size><width>100</width><height>100</height></size>
<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>
</annotation>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>
<annotation><filename>&f;</filename></annotation>"""


@pytest.mark.parametrize("data", [XXE, LAUGHS], ids=["external_entity", "entity_expansion"])
def test_xml_entities_are_refused_and_nothing_is_read(data):
    with pytest.raises(ValueError, match="entities or external references, which are refused") as caught:
        an.read_voc(data, "cat.xml")
    assert HOSTNAME not in str(caught.value)
    # through the data set reader: that file is listed with its reason, the rest goes on
    annotations, skipped = an.read_annotation_file("cat.xml", data)
    assert not annotations and len(skipped) == 1 and "refused" in skipped[0].reason


SQL = "x'); DROP TABLE review_decisions; --"


def test_sql_in_names_and_notes_is_stored_as_text(url):
    """Batch, item, reviewer names and notes holding SQL are values, never statements."""
    with rs.ReviewStore(url) as store:
        store.open_batch(SQL, source="upload", created_by=SQL, model_fingerprint="f" * 64, methods={})
        store.record(SQL, "a" * 64, SQL + ".png", "alice", "reject", note=SQL, model_fingerprint="f" * 64)
        store.record(SQL, "b" * 64, "cat.png", SQL, "accept", note="fine", model_fingerprint="f" * 64)
        rows = store.decisions(batch=SQL)
        assert sorted((d.reviewer, d.note) for d in rows) == sorted([("alice", SQL), (SQL, "fine")])
        assert store.batch(SQL).created_by == SQL
        assert len(store.decisions()) == 2  # the table is still there, with both rows
        assert store.verify().ok
