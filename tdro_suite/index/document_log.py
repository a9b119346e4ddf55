"""The append-only log of document changes inside an index folder: durable writes without a full save.

Why: `tdro-suite serve` must not acknowledge a document change before it would survive a crash. Saving
the whole index folder per change costs a full rewrite (~5 s at 10^6 documents); appending the change
to this log and fsync'ing it costs a few ms whatever the index size (eval/bench/README.md). Now and then the whole
folder is still saved (a *snapshot*, `DenseIndex.save`), which empties the log. `DenseIndex.load` replays
the log, so every reader (serve, search, eval) sees every acknowledged change.

File `changes.log` in the index folder: records one after another, each
    header   16 bytes, little-endian: magic b"TDRC", payload length (u32), crc32 of the payload (u32),
             crc32 of the 12 header bytes before it (u32)
    payload  sequence number (u64), operation (u8: 1 add/replace, 2 delete), JSON length (u32),
             JSON {"ids": [...], "docs": [...] | null, "dimension": D}, then for an add the vectors as
             little-endian float32 [len(ids), D]

Why the guarantees hold:
- An acknowledged change is on disk: the one writer of a folder (`DocumentLog`, used under the service's
  index lock) writes the whole record and fsyncs it (and the folder, when it creates the file) before the
  request is answered.
- A torn last record is ignored: only the last record can be incomplete, since each earlier one was
  fsync'ed before the next was written, and it was never acknowledged. A damaged record is taken for that
  torn tail only when no intact record follows it; damage with intact records after it is corruption in
  the middle, an error naming the file and the byte offset, so replay never skips an acknowledged change
  silently. The writer cuts a torn tail off before it appends, so new records never follow damage.
- A snapshot and the log reset are one step: the log lives inside the folder that the snapshot
  replaces atomically, and the new folder's log holds exactly the changes after the snapshot's copy: none
  for `DenseIndex.save`; for the service's snapshot, written while changes go on (`Service._snapshot_if_due`),
  the records appended since the copy, put in under the writer's lock just before the swap. A crash
    1. while the new folder is written leaves the old folder (old snapshot + its complete log) in place;
    2. between moving the old folder aside and moving the new one in leaves no folder at the path, and
       the old one, complete, as `.NAME.old-PID` beside it: `DenseIndex.load`'s error says to rename it back;
    3. after the new folder is in place leaves the new snapshot and its log, which hold every change.
- A folder with a log says format 2 in its manifest (`dense_index.mark_logged`, before the log file is
  created), so a tdro-suite from before the log, which reads format 1, refuses it instead of serving the
  snapshot without the logged changes. A snapshot without a log is written as format 1 again.
  As a second line of defence each snapshot's manifest records `log_sequence`, the number of the last
  change it holds. Replay skips records at or below it (a log that outlived its snapshot is not applied
  twice: content would not change, since an add replaces and a delete of a missing id does nothing, but
  positions and tombstones would grow) and refuses a gap (a log starting after `log_sequence + 1` lacks
  changes), and sequence numbers inside a log must be consecutive.
- A change whose record reached the disk but whose request was not answered (the server died in between)
  is applied on replay, as in any database; retrying an add is safe (it replaces).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdro_suite.index.errors import IndexFormatError

LOG_FILE = "changes.log"
MAGIC = b"TDRC"
_HEADER = struct.Struct("<4sIII")  # magic, payload length, payload crc32, crc32 of the first 12 bytes
_PAYLOAD_HEAD = struct.Struct("<QBI")  # sequence, operation, JSON length
_OP_ADD, _OP_DELETE = 1, 2


class DocumentLogError(IndexFormatError):
    """The change log is damaged in the middle, or does not fit the snapshot beside it."""


@dataclass(frozen=True)
class Change:
    """One document change: add (or replace) `ids` with `vectors` and optional `docs`, or delete `ids`."""

    sequence: int
    ids: Sequence[str]
    vectors: np.ndarray | None = None  # None: a delete
    docs: Sequence[dict] | None = None

    @property
    def is_delete(self) -> bool:
        return self.vectors is None


@dataclass(frozen=True)
class LogContents:
    """What a log file holds: its intact changes, where they end (a torn tail starts there) and its size."""

    changes: list[Change]
    end: int
    size: int
    ends: tuple[int, ...] = ()  # the byte offset after each change

    def end_of(self, sequence: int) -> int:
        """The byte offset after the last change numbered `sequence` or less (0: none): what a snapshot
        holding changes up to `sequence` leaves out of the log is everything from there on."""
        held = [end for change, end in zip(self.changes, self.ends, strict=True) if change.sequence <= sequence]
        return held[-1] if held else 0


def encode(change: Change) -> bytes:
    """The record of `change`, header included: what `DocumentLog.append` writes in one piece."""
    meta: dict = {"ids": [str(i) for i in change.ids]}
    vector_bytes = b""
    if change.vectors is not None:
        vectors = np.ascontiguousarray(change.vectors, dtype="<f4")
        meta.update(docs=None if change.docs is None else list(change.docs), dimension=int(vectors.shape[1]))
        vector_bytes = vectors.tobytes()
    text = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    op = _OP_DELETE if change.is_delete else _OP_ADD
    payload = _PAYLOAD_HEAD.pack(change.sequence, op, len(text)) + text + vector_bytes
    head = MAGIC + struct.pack("<II", len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def read_log(path: Path) -> LogContents:
    """Every intact change of the log at `path` (none when it does not exist), a torn tail left out.

    Raises `DocumentLogError` for damage with intact records after it, or for non-consecutive sequence
    numbers; both name the file and the byte offset.
    """
    data = path.read_bytes() if path.is_file() else b""
    view = memoryview(data)
    changes: list[Change] = []
    ends: list[int] = []
    offset = 0
    while offset < len(data):
        length = _intact_length(data, offset)
        if length is None:
            _refuse_damage_in_the_middle(path, data, offset)
            break  # a torn tail: an append that never finished, never acknowledged
        change = _decode(path, offset, view[offset + _HEADER.size : offset + _HEADER.size + length])
        if changes and change.sequence != changes[-1].sequence + 1:
            raise DocumentLogError(
                f"{path}: the record at byte {offset} is change {change.sequence}, but the one before it is "
                f"{changes[-1].sequence}: the log is not one writer's sequence of changes."
            )
        changes.append(change)
        offset += _HEADER.size + length
        ends.append(offset)
    return LogContents(changes, offset, len(data), tuple(ends))


def changes_after(path: Path, sequence: int) -> list[Change]:
    """The logged changes a snapshot holding changes up to `sequence` lacks, in order (see the module doc)."""
    pending = [c for c in read_log(path).changes if c.sequence > sequence]
    if pending and pending[0].sequence != sequence + 1:
        raise DocumentLogError(
            f"{path}: the snapshot beside it holds changes up to {sequence}, but the log continues at "
            f"{pending[0].sequence}: changes {sequence + 1}..{pending[0].sequence - 1} are missing "
            "(the log belongs to another copy of this index)."
        )
    return pending


class DocumentLog:
    """Appends changes to one index folder's log, each fsync'ed before `append` returns.

    One writer per folder (the serving process, under its index lock); readers only call `read_log`.
    `size` is what the service compares with its snapshot threshold.
    """

    def __init__(self, path: Path, fd: int, size: int, sequence: int) -> None:
        self.path = path
        self._fd = fd
        self.size = size
        self.sequence = sequence  # the last change in memory and in the log

    @classmethod
    def open(cls, folder: Path, sequence: int) -> DocumentLog:
        """Open the log of `folder` whose index in memory holds changes up to `sequence` (after replay).

        A torn tail is cut off; a log whose changes are all in the snapshot already is emptied, so the
        next change, `sequence + 1`, follows its predecessor.
        """
        path = folder / LOG_FILE
        contents = read_log(path)
        last = contents.changes[-1].sequence if contents.changes else sequence
        if last > sequence:
            raise DocumentLogError(f"{path}: holds change {last}, but the index in memory only {sequence}.")
        keep = contents.end if last == sequence and contents.changes else 0
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            if created:
                sync_folder(folder)
            if contents.size != keep:
                os.ftruncate(fd, keep)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, keep, sequence)

    def append(self, change: Change) -> None:
        """Write `change` and fsync it: once this returns, the change survives a crash.

        On failure the record is cut off again (as far as the disk allows), so a later append does not
        follow half a record.
        """
        if change.sequence != self.sequence + 1:
            raise ValueError(f"change {change.sequence} does not follow change {self.sequence}")
        record = encode(change)
        try:
            written = 0
            while written < len(record):
                written += os.pwrite(self._fd, record[written:], self.size + written)
            os.fsync(self._fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
                os.fsync(self._fd)
            raise
        self.size += len(record)
        self.sequence = change.sequence

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _intact_length(data: bytes, offset: int) -> int | None:
    """The payload length of the record at `offset` when header and payload are intact, else None."""
    if len(data) - offset < _HEADER.size:
        return None
    magic, length, payload_crc, header_crc = _HEADER.unpack_from(data, offset)
    if magic != MAGIC or zlib.crc32(data[offset : offset + _HEADER.size - 4]) != header_crc:
        return None
    start = offset + _HEADER.size
    if start + length > len(data) or zlib.crc32(memoryview(data)[start : start + length]) != payload_crc:
        return None
    return length


def _refuse_damage_in_the_middle(path: Path, data: bytes, offset: int) -> None:
    """A damaged record is a torn tail only when no intact record follows it; otherwise raise."""
    following = data.find(MAGIC, offset + 1)
    while following != -1:
        if _intact_length(data, following) is not None:
            raise DocumentLogError(
                f"{path}: the record at byte {offset} is damaged, but an intact record follows at byte "
                f"{following}: the log is corrupt in the middle, so acknowledged changes would be lost. "
                "Restore the index folder from a backup, or delete the log to fall back to the last snapshot."
            )
        following = data.find(MAGIC, following + 1)


def _decode(path: Path, offset: int, payload: memoryview) -> Change:
    """The change a checksummed payload holds; a payload that passes its checksum but does not parse is
    a format error (written by another version), not a torn write."""
    try:
        sequence, op, text_length = _PAYLOAD_HEAD.unpack_from(payload)
        start = _PAYLOAD_HEAD.size
        meta = json.loads(bytes(payload[start : start + text_length]).decode("utf-8"))
        ids = [str(i) for i in meta["ids"]]
        if op == _OP_DELETE:
            return Change(sequence, ids)
        if op != _OP_ADD:
            raise ValueError(f"unknown operation {op}")
        vectors = np.frombuffer(payload[start + text_length :], dtype="<f4").reshape(len(ids), meta["dimension"])
        return Change(sequence, ids, vectors.astype(np.float32), meta.get("docs"))
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise DocumentLogError(f"{path}: the record at byte {offset} cannot be read ({exc}).") from None


def sync_folder(folder: Path, *, files: bool = False) -> None:
    """fsync `folder` (the names it lists: a new file, a rename), and with `files` every file in it first.

    A snapshot replaces a log whose changes were fsync'ed, so `DenseIndex.save` syncs the new folder's
    files before the rename and the parent folder after it: otherwise a power cut could leave the
    renamed folder with files still unwritten and the log gone.
    """
    if files:
        for path in folder.iterdir():
            if path.is_file():
                _fsync_path(path)
    _fsync_path(folder)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
