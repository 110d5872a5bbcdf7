"""Label resolution: exactly one class per label, exact before loose, ambiguity refused with the
candidates named, a mapping file settles it."""

import io

import pytest
from PIL import Image

from saliency_core.engine.classifier import imagenet_labels
from saliency_core.evaluation.labelled import open_folder
from saliency_core.evaluation.labels import map_labels, mapping_rows, match_label, read_label_map

LABELS = ["Apple", "apple", "pear", "tabby, tabby cat", "green-tea"]


def test_a_label_differing_from_another_class_only_in_case_resolves_to_the_exact_case_class():
    assert match_label("apple", LABELS).indices == (1,)
    assert match_label("Apple", LABELS).indices == (0,)
    # ImageNet's own case: 'Cardigan' (the dog, 264) and 'cardigan' (the sweater, 474)
    names = imagenet_labels()
    assert names[264] == "Cardigan" and names[474] == "cardigan"
    assert match_label("cardigan", names).indices == (474,)
    assert match_label("Cardigan", names).indices == (264,)


def test_a_loose_match_fitting_several_classes_is_refused_with_the_candidates_named():
    m = match_label("APPLE", LABELS)
    assert m.indices == ()
    assert "'Apple' (#0)" in m.problem and "'apple' (#1)" in m.problem and "mapping file" in m.problem
    found, missing = map_labels(["APPLE", "Pear", "tabby", "Green_Tea", "7"], LABELS)
    assert found == {"Pear": (2,), "tabby": (3,), "Green_Tea": (4,)}
    assert set(missing) == {"APPLE", "7"}
    # two classes with one exact name are refused too (older ImageNet lists name two classes 'crane')
    crane = match_label("crane", ["crane", "heron", "crane"])
    assert crane.indices == () and "(#0)" in crane.problem and "(#2)" in crane.problem


def test_a_mapping_file_resolves_an_ambiguous_label():
    mapping = read_label_map(b"label,class\nAPPLE,Apple\nfruit,pear\nfruit,1\n", "map.csv")
    assert mapping == {"APPLE": ["Apple"], "fruit": ["pear", "1"]}
    found, missing = map_labels(["APPLE", "fruit"], LABELS, mapping, "map.csv")
    assert found == {"APPLE": (0,), "fruit": (2, 1)} and missing == {}
    rows = {r["label"]: r for r in mapping_rows(found, LABELS, {"APPLE": 3})}
    assert rows["APPLE"]["matched by"] == "mapping file" and rows["APPLE"]["images"] == 3
    assert rows["APPLE"]["model classes"] == "Apple (#0)"
    # a mapping that itself names an ambiguous class is refused, not guessed
    found, missing = map_labels(["APPLE"], LABELS, {"APPLE": ["APPLE"]}, "map.csv")
    assert found == {} and "map.csv maps it to" in missing["APPLE"] and "(#0)" in missing["APPLE"]


def test_mapping_rows_say_how_each_label_matched():
    found, _ = map_labels(["apple", "Pear", "tabby", "2"], LABELS)
    how = {r["label"]: r["matched by"] for r in mapping_rows(found, LABELS)}
    assert how == {
        "apple": "exact class name",
        "Pear": "loose (case, spaces or punctuation differ)",
        "tabby": "exact alias (part of a class name)",
        "2": "class index",
    }


@pytest.mark.parametrize(
    "data, words",
    [
        (b"a,b,c\n", "two columns"),
        (b"\xff\xfe", "UTF-8"),
        (b"", "empty"),
        (b"label,class\nx,\n", "two columns"),
    ],
)
def test_a_mapping_file_that_cannot_be_read_says_why(data, words):
    with pytest.raises(ValueError, match=words):
        read_label_map(data, "map.csv")


def test_a_folder_set_with_an_ambiguous_label_leaves_it_out_until_mapped(tmp_path):
    for label in ("APPLE", "pear"):
        (tmp_path / label).mkdir()
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (len(label) * 20, 0, 0)).save(buf, "PNG")
        (tmp_path / label / "a.png").write_bytes(buf.getvalue())
    refused = open_folder(tmp_path, LABELS)
    assert [it.label for it in refused.items] == ["pear"]
    assert any("'Apple' (#0)" in p.reason for p in refused.problems)
    mapped = open_folder(tmp_path, LABELS, mapping={"APPLE": ["apple"]})
    assert {it.label: it.classes for it in mapped.items} == {"APPLE": (1,), "pear": (2,)}
