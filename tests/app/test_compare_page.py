"""Drive the Compare models page with AppTest: two small ResNet-18 checkpoints (random weights, B with
its last layer changed) and one with other class names, in a models folder given by SALIENCY_MODELS_DIR.
Which top-1 classes change is computed here directly with the networks."""

import os

import pytest
import skimage
import torch
import torchvision.transforms as T
from _checkpoints import CLASSES, accepted_and_candidate
from conftest import shown
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")

SAMPLES = {
    "Cat (chelsea.png)": "chelsea.png",
    "Espresso (coffee.png)": "coffee.png",
    "Rocket (rocket.jpg)": "rocket.jpg",
}


@pytest.fixture(scope="module")
def nets():
    return accepted_and_candidate(CLASSES)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, nets):
    folder = tmp_path_factory.mktemp("models")
    for stem, net, name, labels in (
        ("accepted", nets[0], "Inspector v1", CLASSES),
        ("candidate", nets[1], "Inspector v2", CLASSES),
        ("other", nets[1], "Other", CLASSES[:3] + ["hole", "rust"]),
    ):
        torch.save(net.state_dict(), folder / f"{stem}.pth")
        (folder / f"{stem}.yaml").write_text(
            f"name: {name}\nfile: {stem}.pth\narchitecture: resnet18\n"
            f"labels: [{', '.join(labels)}]\ninput_size: 64\nresize: 72\n"
        )
    return folder


def _top1(nets, files) -> list[tuple[int, int]]:
    prep = T.Compose(
        [
            T.Resize(72),
            T.CenterCrop(64),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    x = torch.stack([prep(Image.open(os.path.join(DATA, f)).convert("RGB")) for f in files])
    with torch.no_grad():
        return list(zip(nets[0](x).argmax(1).tolist(), nets[1](x).argmax(1).tolist()))


def _page(monkeypatch, models_dir) -> AppTest:
    monkeypatch.setenv("SALIENCY_MODELS_DIR", str(models_dir))
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300)
    at.session_state["model_choice"] = str(models_dir / "accepted.yaml")  # the sidebar loads no demo model
    at = at.run()
    at.sidebar.multiselect(key="methods").set_value(["gradient", "smoothgrad"])
    at.sidebar.slider(key="samples").set_value(4)
    next(b for b in at.sidebar.button if b.label == "Apply").click()
    at = at.run()
    at = at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def _press(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Compare the models").click()
    at = at.run()
    assert not at.exception, at.exception
    return at


def _text(at) -> str:
    """The page's Markdown as the reader sees it (names and messages are escaped as text)."""
    return " ".join(shown(m.value) for m in at.markdown)


def test_compare_page_two_checkpoints(monkeypatch, models_dir, nets):
    at = _page(monkeypatch, models_dir)
    assert at.selectbox(key="compare_model_a").value == str(models_dir / "accepted.yaml")
    at.selectbox(key="compare_model_b").set_value(str(models_dir / "candidate.yaml"))
    at.multiselect(key="compare_samples").set_value(list(SAMPLES))
    at = at.run()
    assert any("Nothing is computed until you press" in i.value for i in at.info)
    assert not at.dataframe and not at.get("image")  # nothing computed before the button

    at = _press(at)
    assert not at.error, [e.value for e in at.error]
    truth = _top1(nets, SAMPLES.values())
    changed = [name for name, (a, b) in zip(SAMPLES, truth) if a != b]
    text = _text(at)
    assert "Compared on 3 images" in text
    if changed:
        assert f"The top class changed on {len(changed)} of 3 images" in text
    else:
        assert "No prediction changed" in text
    assert "Gradient: the maps of A and B have a rank correlation" in text
    methods_table, images_table = (d.value for d in at.dataframe)
    assert list(methods_table["method"]) == ["Gradient", "SmoothGrad"]
    assert list(images_table["image"]) == list(SAMPLES)
    assert sorted(images_table.loc[images_table["prediction"] != "unchanged", "image"]) == sorted(changed)
    assert {b.proto.label for b in at.get("download_button")} == {
        "Table (CSV)",
        "Summary, settings and both model cards (JSON)",
    }

    # one image: per method A and B on one scale plus the difference, each with alt text
    alts = [img.alt for el in at.get("image") for img in el.proto.imgs]
    assert all(alts), alts
    assert sum(a.startswith("Model A's Gradient map on Cat (chelsea.png)") for a in alts) == 1
    assert sum(a.startswith("Model B's SmoothGrad map") for a in alts) == 1
    assert sum(a.startswith("Difference of the two") for a in alts) == 2
    captions = [shown(c.value) for c in at.caption]
    assert any("Both models' maps use this one scale" in c for c in captions)
    assert any("A vs A (other seed)" in c for c in captions)

    # the filter: only the images whose prediction changed
    at.radio(key="compare_show").set_value("Prediction changed")
    at = at.run()
    assert not at.exception, at.exception
    assert sorted(at.dataframe[1].value["image"]) == sorted(changed)


def test_compare_page_uploads_with_labels(monkeypatch, models_dir, nets):
    at = _page(monkeypatch, models_dir)
    at.selectbox(key="compare_model_b").set_value(str(models_dir / "candidate.yaml"))
    files = ["chelsea.png", "coffee.png"]
    with open(os.path.join(DATA, files[0]), "rb") as f0, open(os.path.join(DATA, files[1]), "rb") as f1:
        uploads = [
            (files[0], f0.read(), "image/png"),
            (files[1], f1.read(), "image/png"),
            ("notes.png", b"not a picture", "image/png"),
        ]
    at.file_uploader(key="compare_uploads").set_value(uploads)
    at = at.run()
    at.multiselect(key="compare_samples").set_value([])
    truth = _top1(nets, files)
    at.file_uploader(key="compare_labels").set_value(
        (
            "labels.csv",
            f"image,label\n{files[0]},{CLASSES[truth[0][0]]}\n{files[1]},{truth[1][1]}\n"
            "x.png,unicorn\n".encode(),
            "text/csv",
        )
    )
    at = _press(at.run())
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1 and "notes.png" in errors[0]  # the bad upload is named, the rest goes on
    assert any("1 problem(s) in the labels file" in e.label for e in at.expander)
    text = _text(at)
    assert "Compared on 2 images; 1 could not be used" in text
    right_a = 1 + (truth[1][0] == truth[1][1])
    right_b = (truth[0][1] == truth[0][0]) + 1
    assert f"Accuracy on the 2 labelled images: model A {right_a} right" in text
    assert f"model B {right_b} right" in text
    table = at.dataframe[-1].value
    assert list(table["true class"]) == [CLASSES[truth[0][0]], CLASSES[truth[1][1]]]


def test_compare_page_different_classes(monkeypatch, models_dir):
    at = _page(monkeypatch, models_dir)
    at.selectbox(key="compare_model_b").set_value(str(models_dir / "other.yaml"))
    at = at.run()
    assert not at.exception, at.exception
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1 and "different class lists" in errors[0]
    assert "Only in model A (2): 'crack', 'stain'" in errors[0] and "'hole', 'rust'" in errors[0]
    assert not [b for b in at.button if b.label == "Compare the models"]
