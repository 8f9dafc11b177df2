"""app/uploads.unpack_zip: safe members unpack; traversal, absolute paths, links and bombs are refused."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
import uploads  # app/ helper module (tests/app/conftest.py puts app/ on sys.path)


def make_zip(members: dict[str, bytes], *, links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_single_top_folder_becomes_the_root(tmp_path: Path) -> None:
    data = make_zip(
        {"steel/images/a.png": b"png", "steel/labels.csv": b"file,label\n", "__MACOSX/steel/._a.png": b"x",
         "steel/.DS_Store": b"x"}
    )  # fmt: skip
    root = uploads.unpack_zip(data, tmp_path / "data")
    assert root == tmp_path / "data" / "steel"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["images/a.png", "labels.csv"]
    assert (root / "labels.csv").read_bytes() == b"file,label\n"


@pytest.mark.parametrize(
    "name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt", "a\\..\\evil.txt"]
)
def test_members_outside_the_folder_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "sub" / "data"
    with pytest.raises(uploads.UnsafeArchiveError):
        uploads.unpack_zip(make_zip({"ok.txt": b"1", name: b"evil"}), dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sub" / "evil.txt").exists()
    assert not (tmp_path / "sub").exists() or not list((tmp_path / "sub").iterdir())


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    with pytest.raises(uploads.UnsafeArchiveError, match="link"):
        uploads.unpack_zip(make_zip({"a.txt": b"1"}, links=("passwd",)), tmp_path / "data")


def test_unpacked_size_is_counted_not_trusted(tmp_path: Path) -> None:
    # 3 x 4096 zero bytes compress to a few dozen bytes; the budget of 10,000 bytes is crossed on the third.
    data = make_zip({f"f{i}.bin": bytes(4096) for i in range(3)})
    assert len(data) < 1000
    with pytest.raises(uploads.UnsafeArchiveError, match="more than"):
        uploads.unpack_zip(data, tmp_path / "data", max_bytes=10_000)
    assert list(tmp_path.iterdir()) == []
    root = uploads.unpack_zip(data, tmp_path / "data", max_bytes=3 * 4096)
    assert sum(p.stat().st_size for p in root.iterdir()) == 3 * 4096


def test_too_many_members_and_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(uploads.UnsafeArchiveError, match="at most 2"):
        uploads.unpack_zip(make_zip({f"{i}.txt": b"x" for i in range(3)}), tmp_path / "a", max_members=2)
    with pytest.raises(uploads.DatasetError, match="not a readable zip"):
        uploads.unpack_zip(b"PK\x03\x04 not really", tmp_path / "b")
