"""The method parameters' widgets come from the method registry: each widget's label, default,
range, step and help are the method's own Setting, and no page retypes a method default."""

from __future__ import annotations

import ast
import os
import pathlib

from streamlit.testing.v1 import AppTest

import saliency_core as sc
from saliency_core.engine.methods import page_settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _widget(at, key: str):
    for kind in ("slider", "number_input", "selectbox", "select_slider"):
        found = [w for w in at.get(kind) if w.key == key]
        if found:
            return kind, found[0]
    raise AssertionError(f"no widget for {key!r}")


def test_every_sidebar_widget_is_its_methods_setting():
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    assert not at.exception, at.exception
    offered = {k: s for k, s in page_settings().items() if s.place in ("top", "more")}
    assert {"samples", "noise", "seed", "steps", "baseline", "window", "stride", "masks"} <= set(offered)
    for key, setting in offered.items():
        kind, widget = _widget(at.sidebar, key)
        owners = [m for m in sc.METHODS.values() if key in m.settings]
        assert all(m.defaults[key] == widget.value == setting.default for m in owners), key
        assert widget.label == setting.label and (widget.help or "") == setting.help, key
        if kind in ("slider", "number_input"):
            assert (widget.min, widget.max) == (setting.low, setting.high), key
            assert setting.step is None or widget.step == setting.step, key
        else:
            assert list(widget.options) == [str(c) for c in setting.choices], key
    # the methods accept every value the widgets offer at their limits
    assert sc.METHODS["smoothgrad"].settings["samples"].high <= 10_000


def test_explain_pages_sample_limit_is_smoothgrads():
    """The "Most samples" box of Explain's "sample until the map settles" form."""
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    setting = sc.METHODS["smoothgrad"].settings["max_samples"]
    kind, widget = _widget(at, "max_samples")
    assert (
        kind == "number_input"
        and widget.value == setting.default == sc.METHODS["smoothgrad"].defaults["max_samples"]
    )
    assert (widget.min, widget.max, widget.step) == (setting.low, setting.high, setting.step)


def _retyped_defaults(tree: ast.AST, defaults: dict) -> list[str]:
    """``x.get("window", 32)``-style reads and ``{"window": 32}`` literals of a method parameter
    at its method's default."""

    def retyped(name, value) -> bool:
        return (
            isinstance(name, ast.Constant)
            and name.value in defaults
            and isinstance(value, ast.Constant)
            and (value.value == defaults[name.value])
        )

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if len(node.args) == 2 and retyped(*node.args):
                found.append(f"line {node.lineno}: .get({node.args[0].value!r}, {node.args[1].value!r})")
        if isinstance(node, ast.Dict):
            found += [
                f"line {node.lineno}: {k.value!r}: {v.value!r}"
                for k, v in zip(node.keys, node.values)
                if retyped(k, v)
            ]
    return found


def test_no_page_retypes_a_method_default():
    defaults = {key: setting.default for key, setting in page_settings().items()}
    files = [pathlib.Path(ROOT, "app.py"), *pathlib.Path(ROOT, "pages").glob("*.py")]
    found = {str(f.name): _retyped_defaults(ast.parse(f.read_text()), defaults) for f in files}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
