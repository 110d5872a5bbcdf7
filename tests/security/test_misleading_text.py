"""Text that misleads: labels that look identical but are not (a Cyrillic letter, full-width
letters, a zero-width space) are shown so that a reader can tell them apart; several labels that
name the same class are merged into one true label with the reason; Compare's comparison.csv
(command line and page) and every CSV the project writes neutralise cells that start like a
formula (= + - @ tab CR), through the one CSV helper."""

from __future__ import annotations

import ast
import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import skimage
import torch
import torchvision

from saliency_core.cli import main
from saliency_core.engine.safe_text import FORMULA_STARTS, visible
from saliency_core.evaluation.labelled import open_folder

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = Path(skimage.data_dir) / "chelsea.png"
COFFEE = Path(skimage.data_dir) / "coffee.png"


def _set(tmp_path, folders: dict[str, Path]) -> Path:
    root = tmp_path / "set"
    for folder, photo in folders.items():
        (root / folder).mkdir(parents=True)
        shutil.copy(photo, root / folder / photo.name)
    return root


@pytest.mark.parametrize(
    "lookalike,shown",
    [
        ("t\u0430bby", "t\\u{430}bby"),  # Cyrillic a
        ("\uff54\uff41\uff42\uff42\uff59", "\\u{ff54}\\u{ff41}\\u{ff42}\\u{ff42}\\u{ff59}"),  # full-width
        ("tab\u200bby", "tab\\u{200b}by"),  # zero-width space
    ],
)
def test_lookalike_labels_are_shown_distinguishably(demo, tmp_path, lookalike, shown):
    labelled = open_folder(_set(tmp_path, {"tabby": CHELSEA, lookalike: COFFEE}), demo.labels)
    words = " ".join(f"{p.item} {p.reason}" for p in labelled.problems)
    assert shown in words and lookalike not in words
    assert visible(lookalike) == shown and visible("tabby") == "tabby"


def test_lookalike_label_mapped_by_classes_json_is_merged_and_shown(demo, tmp_path):
    root = _set(tmp_path, {"tabby": CHELSEA, "t\u0430bby": COFFEE})
    (root / "classes.json").write_text('{"t\u0430bby": "tabby"}', encoding="utf-8")
    labelled = open_folder(root, demo.labels)
    assert {it.label for it in labelled.items} == {"tabby"}
    (note,) = [p for p in labelled.problems if p.item.startswith("labels ")]
    assert "t\\u{430}bby" in note.item and "name the same class" in note.reason


def test_labels_naming_the_same_class_are_merged_into_one(demo, tmp_path):
    """Folder name, spelling variant and class number of one class: one row, on the diagonal."""
    index = demo.labels.index("tiger cat")
    root = _set(tmp_path, {"tiger_cat": CHELSEA, "Tiger Cat": COFFEE, str(index): CHELSEA})
    labelled = open_folder(root, demo.labels)
    assert labelled.classes == {"tiger cat": (index,)}
    assert {it.label for it in labelled.items} == {"tiger cat"}
    (note,) = [p for p in labelled.problems if p.item.startswith("labels ")]
    assert "'282'" in note.item and "'Tiger Cat'" in note.item and "'tiger_cat'" in note.item
    assert "counted as one label, 'tiger cat'" in note.reason


def _refuse(name):
    raise ValueError(f"not strict JSON: {name}")


def _bad_csv_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row if cell.startswith(FORMULA_STARTS)]


def test_compare_csv_neutralises_image_names(tmp_path, capsys):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    models = tmp_path / "models"
    models.mkdir()
    torch.save(net.state_dict(), models / "a.pth")
    card = "name: {n}\nfile: a.pth\narchitecture: resnet18\nlabels: [x, y, z]\ninput_size: 64\nresize: 72\n"
    for n in ("a", "b"):
        (models / f"{n}.yaml").write_text(card.format(n=n))
    images = tmp_path / "images"
    images.mkdir()
    for name in ("=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(1).png"):
        shutil.copy(CHELSEA, images / name)
    out = tmp_path / "out"
    args = ["compare", "--model-a", str(models / "a.yaml"), "--model-b", str(models / "b.yaml")]
    args += ["--images", str(images), "--out", str(out), "--method", "gradient", "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    text = (out / "comparison.csv").read_text()
    assert "'=HYPERLINK(1).png" in text and "'@SUM(1).png" in text and not _bad_csv_cells(text)
    json.loads((out / "summary.json").read_text(), parse_constant=_refuse)  # strict JSON


def _csv_calls(tree: ast.AST) -> list[int]:
    """Lines of ``X.to_csv(...)`` with a pandas-style signature (``index=``) or ``csv.writer(``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            pandas_csv = node.func.attr == "to_csv" and any(k.arg == "index" for k in node.keywords)
            raw_writer = (
                node.func.attr in ("writer", "DictWriter") and getattr(node.func.value, "id", "") == "csv"
            )
            if pandas_csv or raw_writer:
                lines.append(node.lineno)
    return lines


def test_every_csv_the_project_writes_goes_through_the_one_helper():
    """pandas' DataFrame.to_csv and csv.writer write cells verbatim; only safe_text.to_csv may."""
    found = {}
    for path in [
        *ROOT.joinpath("saliency_core").rglob("*.py"),
        *ROOT.joinpath("pages").glob("*.py"),
        ROOT / "app.py",
    ]:
        if path.name == "safe_text.py":
            continue
        lines = _csv_calls(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}
