"""Atomic writes: a reader never sees half a file, and an interrupted run leaves the old one intact.

Everything goes to a temporary sibling first, is flushed to disk, then renamed over the target
(`os.replace` is atomic on POSIX when source and target share a file system). Temporaries are created
with the usual permissions (0666 / 0777 minus the umask), not `tempfile`'s private 0600 / 0700, so an
index or model written by one user (or container) is readable by another, as a plain write would be.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _sibling(target: Path) -> Path:
    """A fresh hidden name next to `target` (same file system, so the final rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; on success it is renamed onto `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _sibling(target)
    os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` as a whole.

    A previous folder at `path` is moved aside first and removed only after the new one is in place,
    so a crash at any moment leaves either the old or the new folder, never a mix.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target)
    tmp.mkdir(mode=0o777)
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def create_once(path: str | os.PathLike[str], create: Callable[[], object]) -> Path:
    """`path`, made by `create()` (which must write it atomically) unless it exists already.

    A lock file beside it lets one process of a node create it while the others wait, then all of them
    use the same file (torchrun ranks converting one task or corpus)."""
    target = Path(path)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.exists():
                create()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target
