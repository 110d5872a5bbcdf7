"""The one safety module every reader uses (saliency_core/engine/untrusted.py): path containment
with both sides resolved, ZIP members read with their real bytes counted, short messages. One
test per hostile input; real files, links and archives in a temporary folder."""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

import pytest

from saliency_core.engine.untrusted import inside, one_line, read_member, relative_name, short

PACKAGE = Path(__file__).resolve().parents[2] / "saliency_core"


@pytest.fixture
def folders(tmp_path):
    """sets/a.png (real), sets/out.png -> ../private/secret.png, sets-evil/b.png (a sibling whose
    name starts like the folder's), via -> sets (a link to the folder itself)."""
    (tmp_path / "sets").mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "sets-evil").mkdir()
    (tmp_path / "sets" / "a.png").write_bytes(b"a")
    (tmp_path / "private" / "secret.png").write_bytes(b"s")
    (tmp_path / "sets-evil" / "b.png").write_bytes(b"b")
    (tmp_path / "sets" / "out.png").symlink_to(tmp_path / "private" / "secret.png")
    (tmp_path / "via").symlink_to(tmp_path / "sets")
    return tmp_path


def test_a_file_in_the_folder_is_inside_resolved(folders):
    assert inside(folders / "sets", folders / "sets" / "a.png") == (folders / "sets" / "a.png").resolve()


def test_a_link_leading_outside_is_not_inside(folders):
    assert inside(folders / "sets", folders / "sets" / "out.png") is None


def test_dot_dot_leading_outside_is_not_inside(folders):
    assert inside(folders / "sets", folders / "sets" / ".." / "private" / "secret.png") is None


def test_a_sibling_with_the_same_prefix_is_not_inside(folders):
    assert inside(folders / "sets", folders / "sets-evil" / "b.png") is None


def test_the_folder_given_through_a_link_is_resolved_too(folders):
    """A folder named through a link still contains its own files (both sides are resolved)."""
    assert inside(folders / "via", folders / "sets" / "a.png") is not None
    assert inside(folders / "sets", folders / "via" / "a.png") is not None


def test_a_missing_path_or_a_loop_of_links_is_not_inside(folders):
    (folders / "sets" / "loop").symlink_to(folders / "sets" / "loop")
    assert inside(folders / "sets", folders / "sets" / "missing.png") is None
    assert inside(folders / "sets", folders / "sets" / "loop") is None


@pytest.mark.parametrize(
    "name", ["../x.pt", "a/../../x.pt", "/etc/passwd", "C:/x.pt", "c:x.pt", "..\\x.pt", "", "  "]
)
def test_a_hostile_relative_name_is_refused(name):
    assert relative_name(name) is None


def test_a_plain_relative_name_is_kept():
    assert relative_name("weights\\model.pt").parts == ("weights", "model.pt")


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m.bin", data)
    return buffer.getvalue()


def _patched(archive: bytes, offset: int, value: bytes) -> zipfile.ZipFile:
    """The archive with bytes at ``offset`` of its central directory entry replaced."""
    at = archive.index(b"PK\x01\x02") + offset
    return zipfile.ZipFile(io.BytesIO(archive[:at] + value + archive[at + len(value) :]))


def test_a_member_whose_header_says_too_large_is_refused_unread():
    z = zipfile.ZipFile(io.BytesIO(_zip(bytes(2 * 2**20))))
    with pytest.raises(ValueError, match="too large"):
        read_member(z, z.infolist()[0], 2**20)


def test_a_member_whose_header_lies_about_its_size_is_refused():
    """2 MiB of zeros (a few KB packed) whose header claims 100 bytes: never more than the limit read."""
    z = _patched(_zip(bytes(2 * 2**20)), 24, (100).to_bytes(4, "little"))
    with pytest.raises(ValueError, match="m.bin: "):
        read_member(z, z.infolist()[0], 2**20)


def test_an_encrypted_member_is_refused():
    z = _patched(_zip(b"x" * 100), 8, (1).to_bytes(2, "little"))
    with pytest.raises(ValueError, match="encrypted"):
        read_member(z, z.infolist()[0], 2**20)


def test_a_damaged_member_is_refused():
    archive = bytearray(_zip(bytes(range(256)) * 64))
    start = archive.index(b"PK\x03\x04") + 30 + len("m.bin")
    archive[start : start + 40] = bytes(40)
    z = zipfile.ZipFile(io.BytesIO(bytes(archive)))
    with pytest.raises(ValueError, match="cannot read it from the archive"):
        read_member(z, z.infolist()[0], 2**20)


def test_a_good_member_is_read_whole():
    z = zipfile.ZipFile(io.BytesIO(_zip(b"abc" * 1000)))
    assert read_member(z, z.infolist()[0], 2**20) == b"abc" * 1000


def test_messages_are_one_short_line():
    err = ValueError("first line " + "x" * 1000 + "\nTraceback (most recent call last): ...")
    assert short(err, 50) == ("first line " + "x" * 1000)[:50] + "…"
    assert short(ValueError("")) == "ValueError"
    assert one_line(ValueError("bad\n  value"), "a.png") == "a.png: bad value"
    assert one_line(ValueError("a.png: bad"), "a.png") == "a.png: bad"


def test_every_reader_asks_the_safety_module():
    """The readers of folders, archives and cards keep no containment check of their own."""
    readers = [
        "evaluation/labelled.py",
        "evaluation/annotations/datasets.py",
        "engine/cards.py",
        "review/folders.py",
    ]
    for path in readers:
        tree = ast.parse((PACKAGE / path).read_text())
        own = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not own & {"_inside", "inside", "_read_member", "_short", "_one_line"}, path
        used = {
            a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and "untrusted" in (n.module or "")
            for a in n.names
        }
        assert used & {"inside", "relative_name", "read_member"}, path
    copies = [
        f"{p.relative_to(PACKAGE)}:{n.name}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "untrusted.py"
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.FunctionDef) and n.name in {"_short", "_one_line", "_inside", "_read_member"}
    ]
    assert not copies, copies
