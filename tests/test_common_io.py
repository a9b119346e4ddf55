"""Atomic writes: all-or-nothing, no temporaries left behind, and ordinary (umask) permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tdro_suite.common.io import atomic_dir, atomic_path, atomic_write_json, atomic_write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_027():
    before = os.umask(0o027)
    yield 0o027
    os.umask(before)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_files_and_folders_get_umask_permissions_not_private_ones(tmp_path: Path, umask_027: int) -> None:
    atomic_write_text(tmp_path / "table.md", "x")
    assert mode(tmp_path / "table.md") == 0o666 & ~umask_027 == 0o640
    with atomic_dir(tmp_path / "index") as folder:
        (folder / "ids.json").write_text("[]")
    assert mode(tmp_path / "index") == 0o777 & ~umask_027 == 0o750


def test_atomic_dir_replaces_the_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "index"
    with atomic_dir(target) as folder:
        (folder / "old.txt").write_text("old")
    with atomic_dir(target) as folder:
        (folder / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
