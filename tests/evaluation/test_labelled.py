"""Labelled sets (saliency_core/evaluation/labelled.py): label -> class mapping, folder / table / ZIP layouts,
and every bad input listed by name with its reason while the rest of the set opens."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from saliency_core.engine.classifier import imagenet_labels
from saliency_core.evaluation.labelled import (
    DEMO_CLASSES,
    DEMO_PASTED,
    DEMO_PHOTOS,
    demo_set,
    map_labels,
    open_folder,
    open_zip,
    read_table,
)

LABELS = imagenet_labels()


def _png(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write(root, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _problems(labelled) -> dict[str, str]:
    return {p.item: p.reason for p in labelled.problems}


# ---- label mapping ---------------------------------------------------------------------------------


def test_labels_match_class_names_ignoring_case_underscores_and_hyphens():
    found, missing = map_labels(["tabby", "Tiger_Cat", "tiger-cat", "281", "espresso"], LABELS)
    assert found == {
        "tabby": (281,),
        "Tiger_Cat": (282,),
        "tiger-cat": (282,),
        "281": (281,),
        "espresso": (967,),
    }
    assert missing == {}


def test_label_naming_no_class_says_so_with_the_closest_names():
    found, missing = map_labels(["tabbby", "1000", "dog"], LABELS)
    assert found == {}
    assert "names no class of this model" in missing["tabbby"] and "'tabby'" in missing["tabbby"]
    assert "names no class" in missing["1000"]  # index out of range
    assert "classes.json" in missing["dog"]  # says how to fix it


def test_mapping_lets_one_label_stand_for_several_classes():
    found, missing = map_labels(
        ["cat", "bike", "empty"],
        LABELS,
        {"cat": ["tabby", "tiger cat", 285], "bike": ["moped", "motorbike"], "empty": []},
    )
    assert found == {"cat": (281, 282, 285)}
    assert "'motorbike'" in missing["bike"] and "not a class of this model" in missing["bike"]
    assert "no class" in missing["empty"]


# ---- folders -----------------------------------------------------------------------------------------


def test_imagefolder_layout_with_every_bad_input_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_GALLERY_MAX_FILE_MB", "1")
    root = tmp_path / "set"
    _write(root, "tabby/a.png", _png(1))
    _write(root, "tabby/deeper/b.png", _png(2))
    _write(root, "espresso/c.png", _png(3))
    _write(root, "tripod/copy_of_a.png", _png(1))  # same bytes as tabby/a.png
    _write(root, "espresso/not_an_image.png", b"this is text")  # decoded later: listed by the run
    _write(root, "espresso/huge.png", b"\0" * (2 * 2**20))  # over the 1 MiB limit
    _write(root, "dog/d.png", _png(4))  # label naming no class
    _write(root, "loose.png", _png(5))  # not in a class folder
    _write(root, "espresso/notes.txt", b"hello")
    (tmp_path / "outside.png").write_bytes(_png(6))
    os.symlink(tmp_path / "outside.png", root / "tabby" / "link.png")  # points out of the root
    labelled = open_folder(root, LABELS)
    names = [it.name for it in labelled.items]
    assert names == ["espresso/c.png", "espresso/not_an_image.png", "tabby/a.png", "tabby/deeper/b.png"]
    assert [it.label for it in labelled.items] == ["espresso", "espresso", "tabby", "tabby"]
    assert labelled.classes == {"espresso": (967,), "tabby": (281,)}
    problems = _problems(labelled)
    assert (
        "duplicate file" in problems["tripod/copy_of_a.png"]
        and "tabby/a.png" in problems["tripod/copy_of_a.png"]
    )
    assert "too large" in problems["espresso/huge.png"]
    assert "names no class" in problems["dog/d.png"] and "names no class" in problems["label 'dog'"]
    assert "not inside a class folder" in problems["loose.png"]
    assert "not an image file" in problems["espresso/notes.txt"]
    assert "outside" in problems["tabby/link.png"]
    # the bytes read later are the ones hashed now
    assert labelled.items[0].read() == _png(3)


def test_duplicate_with_conflicting_labels_names_both(tmp_path):
    _write(tmp_path, "tabby/a.png", _png(1))
    _write(tmp_path, "espresso/a.png", _png(1))
    labelled = open_folder(tmp_path, LABELS)
    assert [it.name for it in labelled.items] == ["espresso/a.png"]
    reason = _problems(labelled)["tabby/a.png"]
    assert "espresso/a.png" in reason and "'espresso' there, 'tabby' here" in reason


def test_empty_folder_is_an_error_in_plain_words(tmp_path):
    (tmp_path / "tabby").mkdir()
    with pytest.raises(ValueError, match="empty: it holds no image files"):
        open_folder(tmp_path, LABELS)
    with pytest.raises(ValueError, match="no such folder"):
        open_folder(tmp_path / "missing", LABELS)


def test_set_where_nothing_is_usable_says_why(tmp_path):
    _write(tmp_path, "dog/a.png", _png(1))
    with pytest.raises(ValueError, match="none of its images can be used.*names no class"):
        open_folder(tmp_path, LABELS)


def test_images_over_the_configured_count_are_listed(tmp_path, monkeypatch):
    for i in range(5):
        _write(tmp_path, f"tabby/{i}.png", _png(i))
    monkeypatch.setenv("SALIENCY_GALLERY_MAX_IMAGES", "3")
    labelled = open_folder(tmp_path, LABELS)
    assert len(labelled) == 3
    over = [p for p in labelled.problems if "more than 3 images" in p.reason]
    assert [p.item for p in over] == ["tabby/3.png", "tabby/4.png"]
    monkeypatch.setenv("SALIENCY_GALLERY_MAX_IMAGES", "lots")
    with pytest.raises(ValueError, match="SALIENCY_GALLERY_MAX_IMAGES must be a whole number"):
        open_folder(tmp_path, LABELS)


def test_total_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_GALLERY_MAX_TOTAL_MB", "1")
    for i in range(3):
        _write(tmp_path, f"tabby/{i}.png", _png(i, size=400))  # ~480 KB each
    labelled = open_folder(tmp_path, LABELS)
    assert len(labelled) == 2
    assert "exceed 1 MiB" in _problems(labelled)["tabby/2.png"]


def test_file_changed_after_opening_is_refused(tmp_path):
    _write(tmp_path, "tabby/a.png", _png(1))
    labelled = open_folder(tmp_path, LABELS)
    _write(tmp_path, "tabby/a.png", _png(2))
    with pytest.raises(ValueError, match="changed since the set was opened"):
        labelled.items[0].read()


def test_label_table_csv(tmp_path):
    for name, seed in [("a.png", 1), ("b.png", 2), ("sub/c.png", 3), ("unlisted.png", 4)]:
        _write(tmp_path, name, _png(seed))
    (tmp_path / "labels.csv").write_text(
        "image,class\n"
        "a.png,tabby\n"
        "./sub//c.png,espresso\n"
        "b.png,tripod\n"
        "a.png,espresso\n"  # listed twice
        "../escape.png,tabby\n"  # leaves the root
        "/etc/passwd,tabby\n"  # absolute
        "missing.png,tabby\n"
        "b.png\n"
    )  # incomplete
    labelled = open_folder(tmp_path, LABELS)
    assert {(it.name, it.label) for it in labelled.items} == {
        ("a.png", "tabby"),
        ("sub/c.png", "espresso"),
        ("b.png", "tripod"),
    }
    problems = _problems(labelled)
    assert "twice" in problems["a.png"]
    assert "leaves the set's root" in problems["../escape.png"]
    assert "absolute" in problems["/etc/passwd"]
    assert "no such image" in problems["missing.png"]
    assert "not listed in labels.csv" in problems["unlisted.png"]
    assert "incomplete" in problems["labels.csv row 9"]


def test_label_table_json_and_classes_json(tmp_path):
    _write(tmp_path, "one.png", _png(1))
    _write(tmp_path, "two.png", _png(2))
    (tmp_path / "labels.json").write_text(
        json.dumps([{"file": "one.png", "label": "cat"}, {"file": "two.png", "label": 967}, {"oops": 1}])
    )
    (tmp_path / "classes.json").write_text(json.dumps({"cat": ["tabby", "tiger cat"]}))
    labelled = open_folder(tmp_path, LABELS)
    assert {(it.name, it.label, it.classes) for it in labelled.items} == {
        ("one.png", "cat", (281, 282)),
        ("two.png", "967", (967,)),
    }
    assert "expected an object" in _problems(labelled)["labels.json entry 3"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe bad", "not UTF-8"),
        (b"just one column\nx\n", "expected a header with a file column"),
        (b"", "empty"),
    ],
)
def test_unreadable_label_tables(content, message):
    with pytest.raises(ValueError, match=message):
        read_table(content, "labels.csv")


def test_json_table_errors():
    with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
        read_table(b"{", "labels.json")
    with pytest.raises(ValueError, match="nested too deeply|not valid"):
        read_table(b"[" * 100_000 + b"]" * 100_000, "labels.json")
    rows, problems = read_table(json.dumps({"a.png": True, "b.png": "cat"}).encode(), "labels.json")
    assert rows == [("b.png", "cat")] and "whole number" in problems[0].reason


# ---- ZIP ---------------------------------------------------------------------------------------------


def _zip(entries: list[tuple[object, bytes]], encrypted: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    data = bytearray(buf.getvalue())
    for name in encrypted:  # zipfile cannot write encrypted members: set the flag in both headers
        for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
            at = data.find(signature)
            while at != -1:
                length = int.from_bytes(
                    data[at + name_at - (4 if signature == b"PK\x03\x04" else 18) :][:2], "little"
                )
                if bytes(data[at + name_at : at + name_at + length]) == name.encode():
                    data[at + flag_at] |= 0x1
                at = data.find(signature, at + 4)
    return bytes(data)


def test_zip_with_top_folder_and_every_hostile_member(monkeypatch):
    monkeypatch.setenv("SALIENCY_GALLERY_MAX_FILE_MB", "1")
    link = zipfile.ZipInfo("set/tabby/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = _zip(
        [
            ("set/tabby/a.png", _png(1)),
            ("set/espresso/b.png", _png(2)),
            ("set/tripod/dup.png", _png(1)),
            ("../../evil.png", _png(3)),
            ("/abs/evil.png", _png(4)),
            ("set\\..\\..\\win.png", _png(5)),
            ("C:/windows/evil.png", _png(6)),
            ("set/espresso/bomb.png", b"\0" * (3 * 2**20)),  # inflates past the 1 MiB limit
            (link, b"/etc/passwd"),
            ("set/tabby/locked.png", _png(8)),
            ("set/.hidden/x.png", _png(7)),
            ("__MACOSX/set/._a.png", b"junk"),
        ],
        encrypted=("set/tabby/locked.png",),
    )
    labelled = open_zip(data, "upload.zip", LABELS)
    assert [(it.name, it.label) for it in labelled.items] == [
        ("espresso/b.png", "espresso"),
        ("tabby/a.png", "tabby"),
    ]
    problems = _problems(labelled)
    for name in ("../../evil.png", "/abs/evil.png", "set\\..\\..\\win.png", "C:/windows/evil.png"):
        assert "archive's root" in problems[name] or "absolute" in problems[name], (name, problems)
    assert "duplicate file" in problems["tripod/dup.png"]
    assert "too large" in problems["espresso/bomb.png"]
    assert "symbolic link" in problems["set/tabby/link.png"]
    assert "encrypted" in problems["set/tabby/locked.png"]
    assert not any("hidden" in k or "MACOSX" in k for k in problems)
    assert labelled.items[1].read() == _png(1)


def test_zip_with_a_label_table():
    data = _zip(
        [
            ("images/x.png", _png(1)),
            ("y.png", _png(2)),
            ("labels.csv", b"file,label\nimages/x.png,tabby\ny.png,espresso\n"),
        ]
    )
    labelled = open_zip(data, "t.zip", LABELS)
    assert {(it.name, it.label) for it in labelled.items} == {
        ("images/x.png", "tabby"),
        ("y.png", "espresso"),
    }


def test_zip_errors():
    with pytest.raises(ValueError, match="not a readable ZIP"):
        open_zip(b"PK\x03\x04 not really", "bad.zip", LABELS)
    with pytest.raises(ValueError, match="no images found"):
        open_zip(_zip([("readme.txt", b"hi")]), "empty.zip", LABELS)
    with pytest.raises(ValueError, match="holds no image files"):
        open_zip(_zip([]), "nothing.zip", LABELS)
    with pytest.raises(ValueError, match="no image files.*archive's root"):
        open_zip(_zip([("../x.png", _png(1))]), "escape.zip", LABELS)


# ---- demo ---------------------------------------------------------------------------------------------


def test_demo_set_opens_with_true_labels_mapped_to_imagenet():
    labelled = demo_set(LABELS)
    assert len(labelled) == DEMO_PASTED + len(DEMO_PHOTOS) and not labelled.problems
    assert set(labelled.classes) == set(DEMO_CLASSES)
    assert labelled.classes["cat"] == (281, 282, 283, 284, 285)
    assert labelled.classes["motorcycle"] == (665, 670)
    cats = [it for it in labelled.items if it.label == "cat"]
    assert "cat/chelsea.png" in [it.name for it in cats]
    # pasted images are generated the same each time, so the set's id is stable
    assert demo_set(LABELS).id == labelled.id
    assert Image.open(io.BytesIO(labelled.items[1].read())).size == (256, 256)


def test_demo_set_on_a_model_without_those_classes_says_why():
    with pytest.raises(ValueError, match="'tabby'.*not a class of this model"):
        demo_set([f"defect {i}" for i in range(4)])
