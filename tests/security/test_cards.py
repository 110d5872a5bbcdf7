"""Hostile model cards: a 323-byte YAML alias bomb, deep nesting, numbers that are too long, too
small or too large, values megabytes long, a card far too big. Each is refused quickly with a
short message that names the card."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

import saliency_core as sc


def _alias_bomb(levels: int = 9, name: str = "xyz") -> str:
    """``mean`` holds lists of lists by alias: 9 ** 9 items when expanded, 323 bytes written."""
    text = "mean: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"
    previous = "a"
    for anchor in "bcdefghi"[: levels - 1]:
        text += f", &{anchor} [" + ",".join([f"*{previous}"] * 9) + "]"
        previous = anchor
    return f"name: {name}\n{text}]\n"


def _card(folder: Path, text: str, name: str = "m.yaml") -> Path:
    (folder / "m.pt").write_bytes(b"never read")  # the card's model file (the card fails first)
    card = folder / name
    card.write_text(text, encoding="utf-8")
    return card


def _refused(card: Path) -> tuple[str, float]:
    """The message and the seconds of loading ``card``."""
    start = time.monotonic()
    with pytest.raises(ValueError) as err:
        sc.load_model(card)
    return str(err.value), time.monotonic() - start


def test_yaml_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    text = _alias_bomb()
    assert len(text.encode()) == 323
    card = _card(tmp_path, text)
    message, seconds = _refused(card)
    assert message == (
        "m.yaml is not valid YAML (line 2, column 8): anchors and aliases (&name, *name) are not "
        "allowed in cards; write the values out."
    )
    assert len(message) < 500
    assert seconds < 2, seconds
    tracemalloc.start()
    try:
        _refused(card)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "m.yaml",
            "labels: " + "[" * 20_000 + "]" * 20_000 + "\n",
            "m.yaml is nested too deeply to be a card.",
        ),
        (
            "m.json",
            '{"labels": ' + "[" * 200_000 + "]" * 200_000 + "}",
            "m.json is nested too deeply to be a card.",
        ),
        (
            "m.yaml",
            "input_size: " + "7" * 5000 + "\n",
            "m.yaml is not a valid card (Exceeds the limit (4300 digits) for integer string conversion*",
        ),
        (
            "m.json",
            '{"input_size": ' + "7" * 5000 + "}",
            "m.json is not a valid card (Exceeds the limit (4300 digits) for integer string conversion*",
        ),
        (
            "m.yaml",
            "std: [1.0e-30, 0.2, 0.2]\n",
            "m.yaml: 'std' must be positive, at least 0.001 (a standard deviation of pixels in [0, 1]); "
            "got [1e-30, 0.2, 0.2].",
        ),
        (
            "m.yaml",
            "interpolation: " + "x" * 500_000 + "\n",
            "m.yaml: 'interpolation' must be one of bilinear, bicubic, nearest; got '" + "x" * 78 + "….",
        ),
        (
            "m.yaml",
            "labels: [" + "y" * 300_000 + ", b]\n",
            "m.yaml 'labels': class name 0 is 300,000 characters long; at most 200 are allowed.",
        ),
        (
            "m.yaml",
            "description: " + "z" * (2 << 20) + "\n",
            "model card m.yaml is larger than 1,024 KiB; this is not a model card.",
        ),
    ],
    ids=[
        "yaml_deep",
        "json_deep",
        "yaml_5000_digits",
        "json_5000_digits",
        "std_1e-30",
        "long_value",
        "long_label",
        "card_2MB",
    ],
)
def test_hostile_card_values_are_refused_with_a_short_message(tmp_path, name, text, message):
    got, seconds = _refused(_card(tmp_path, text, name))
    if message.endswith("*"):  # Python's own words follow, cut short
        assert got.startswith(message[:-1]) and got.endswith("…).")
    else:
        assert got == message
    assert len(got) < 500 and seconds < 5
