"""The one reader of text and JSON-lines input files, used by every loader (training sets, corpora,
benchmarks, query files, texts to encode, an index's stored documents).

Files ending in `.gz` are decompressed on the fly; lines are read lazily. Every problem names the
file and the 1-based line: a line that is not UTF-8 (the exact line, not the start of the decoder's
chunk), a gzip stream that breaks off, a line that is not JSON. Low-level on purpose (it imports only
`common.errors`), so the index, evaluation and modeling code need not import the training-data package.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tdro_suite.common.errors import DataError

# Bytes that are not UTF-8 come through `surrogateescape` as lone surrogates U+DC80..U+DCFF, which a
# strict UTF-8 decode never produces, so finding one pins the bad byte to its line and column.
_UNDECODED = re.compile("[\udc80-\udcff]")


class InvalidLineError(DataError):
    """One bad line; `reason` is a short category (e.g. "malformed_json") used to count skipped lines."""

    def __init__(self, where: str, field_name: str | None, problem: str, reason: str) -> None:
        location = f"{where}: field '{field_name}': {problem}" if field_name else f"{where}: {problem}"
        super().__init__(location)
        self.where = where
        self.field = field_name
        self.problem = problem
        self.reason = reason


def _open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file for reading (`.gz` decompressed); bytes that are not UTF-8 come back as
    lone surrogates for `numbered_lines` to report."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115 (wrapped and returned)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape")


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line with its newline) for every line, blank ones included.

    A line that is not UTF-8, a broken or truncated gzip stream, or a `.gz` that is not gzip at all
    raise `DataError` naming the file and the line.
    """
    lineno = 0
    with _open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                bad = _UNDECODED.search(line)
                if bad is not None:
                    byte = ord(bad.group()) - 0xDC00
                    raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{byte:02x} at column {bad.start() + 1}).")
                yield lineno, line
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: truncated .gz
            raise DataError(f"{path}: cannot be read after line {lineno} ({type(exc).__name__}: {exc}).") from None


def parse_json_line(line: str, where: str) -> Any:
    """Decode one JSON line; a malformed one is an `InvalidLineError` ("malformed_json") naming `where`."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        column = min(exc.pos, len(line.rstrip("\r\n"))) + 1  # an error at the newline is one past the text
        problem = f"not valid JSON ({exc.msg} at column {column})"
        raise InvalidLineError(where, None, problem, "malformed_json") from None


def json_lines(path: str | Path, *, keep_bad_lines: bool = False) -> Iterator[tuple[str, Any]]:
    """Yield ("file:line", decoded object) for every non-blank line of a .jsonl / .jsonl.gz file.

    A line that is not JSON raises `InvalidLineError`; with `keep_bad_lines=True` the error is yielded
    in place of the object instead, so a caller that skips and counts bad lines can go on reading.
    """
    for lineno, line in numbered_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = parse_json_line(line, where)
        except InvalidLineError as exc:
            if not keep_bad_lines:
                raise
            obj = exc
        yield where, obj


def count_records(path: str | Path) -> int:
    """The number of non-blank lines, i.e. of records `json_lines` would yield, counted without decoding JSON
    (a dry run sizes a training set in a fraction of the time reading it takes)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc}).") from None


def read_json_file(path: str | Path, what: str) -> Any:
    """Decode one JSON file (a manifest, a mixture); missing or malformed is a `DataError` naming `what`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found.") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
