"""Right answer, wrong reason and shortcut groups, on a hand-built model that scores "apple" by a
corner watermark and a set where part of the apples carry it: the filter lists exactly the
watermarked apples predicted right; their spectral group is pure and flagged."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_core import gallery
from saliency_core.evaluation.labelled import open_folder
from saliency_core.gallery import ResultStore
from saliency_core.gallery.groups import downsample, flag, spectral_groups
from saliency_core.gallery.reasons import (
    AT_PART,
    ELSEWHERE,
    annotated,
    read_annotations,
    reason_counts,
    region_scores,
    with_reasons,
)
from tests._watermark import watermark_model, write_set


@pytest.fixture(scope="module")
def watermarked(tmp_path_factory):
    root = tmp_path_factory.mktemp("wm") / "set"
    truth = write_set(root)
    model = watermark_model()
    store = ResultStore(root.parent / "gallery.sqlite")
    labelled = open_folder(root, model.labels)
    report = gallery.run(model, labelled, ["gradient"], {}, store)
    assert report.failed == [] and report.errors == [] and report.computed == len(labelled)
    rows = gallery.table(store, model, labelled, ["gradient"], {})
    yield model, store, labelled, rows, truth
    store.close()


def test_right_answer_looked_elsewhere_lists_exactly_the_watermarked_images_predicted_right(watermarked):
    model, store, labelled, rows, truth = watermarked
    annotations, skipped = read_annotations(truth["boxes"])
    assert skipped == []
    by_name, unmatched = annotated(labelled, annotations)
    assert len(by_name) == len(labelled) and unmatched == []
    scores = region_scores(store, model, labelled, by_name, ["gradient"], {})
    assert scores["share_inside"].notna().all()
    rows = with_reasons(rows, scores, "gradient")
    elsewhere = gallery.filter_rows(rows, reason="right answer, looked elsewhere", threshold=0.5)
    right = rows.set_index("name")["correct"]
    assert all(right[n] for n in truth["marked_apples"])
    assert sorted(elsewhere["name"]) == sorted(truth["marked_apples"])
    # the watermarked plum is predicted "apple" (wrong) and looked at the corner: in neither filter
    at_part = gallery.filter_rows(rows, reason="wrong answer, looked at the part", threshold=0.5)
    assert truth["marked_plums"][0] not in set(at_part["name"])
    assert not right[truth["marked_plums"][0]]
    counts = reason_counts(rows, 0.5)
    assert counts.loc["correct", ELSEWHERE] == len(truth["marked_apples"])
    assert counts.loc["wrong", ELSEWHERE] == 1
    assert counts.loc["correct", AT_PART] == int(right.sum()) - len(truth["marked_apples"])
    assert int(counts.to_numpy().sum()) == len(labelled)
    ordered = gallery.filter_rows(rows, order="share inside, lowest first")
    assert set(ordered["name"].head(6)) == {*truth["marked_apples"], *truth["marked_plums"]}
    # the threshold is adjustable: at 0 every image looked at the part
    assert gallery.filter_rows(rows, reason="right answer, looked elsewhere", threshold=0.0).empty
    # tiles say it too
    tile = gallery.tiles(store, model, rows[rows["name"] == truth["marked_apples"][0]], "gradient", {})[0]
    assert "inside the part · peak outside" in tile.caption


def test_the_watermark_group_is_pure_and_flagged(watermarked):
    model, store, labelled, rows, truth = watermarked
    found = gallery.groups.class_groups(store, model, rows, "gradient", {})
    apple = found["apple"]
    name_of = dict(zip(rows["image_hash"], rows["name"]))
    marked = {*truth["marked_apples"], *truth["marked_plums"]}  # all predicted "apple"
    flagged = [g for g in apple.groups if g.flag]
    assert len(flagged) == 1 and len(apple.groups) >= 2
    members = {name_of[h] for h in flagged[0].members}
    purity = len(members & marked) / len(members)
    assert purity >= 0.9 and set(truth["marked_apples"]) <= members
    assert "top-left corner" in flagged[0].flag
    assert "too few" in found["plum"].note and not found["plum"].groups
    # stored at 32 x 32: a second grouping reads them back and gives the same groups
    again = gallery.groups.class_groups(store, model, rows, "gradient", {})["apple"]
    assert [g.members for g in again.groups] == [g.members for g in apple.groups]


def test_downsample_keeps_where_the_relevance_is_and_normalises():
    s = np.zeros((224, 224), np.float32)
    s[:7, :7] = -3.0  # a corner spot of negative values: |map| for unsigned methods
    small = downsample(s)
    assert small.shape == (32, 32) and small[0, 0] == pytest.approx(1.0) and small.sum() == pytest.approx(1.0)
    assert downsample(s, signed=True).sum() == 0.0  # no positive relevance
    assert "top-left corner" in flag(small)
    centre = np.zeros((32, 32), np.float32)
    centre[12:20, 12:20] = 1 / 64
    assert flag(centre) == ""
    band = np.zeros((32, 32), np.float32)
    band[:, :4] = band[:, -4:] = 1 / 256
    assert "edge band" in flag(band)


def test_eigengap_finds_the_number_of_well_separated_groups():
    rng = np.random.default_rng(0)
    spots = []
    for k, (r, c) in enumerate([(0, 0), (24, 24), (0, 24)]):
        for _ in range(20):
            m = rng.random((32, 32)).astype(np.float32) * 0.01
            m[r : r + 8, c : c + 8] += 1
            spots.append((k, m / m.sum()))
    labels, eigenvalues = spectral_groups(np.stack([m for _, m in spots]))
    truth = np.array([k for k, _ in spots])
    assert len(set(labels)) == 3
    for k in range(3):
        assert len(set(labels[truth == k])) == 1
    with pytest.raises(ValueError, match="too few"):
        spectral_groups(np.zeros((3, 32, 32), np.float32))
