"""Write test inputs as JSON-lines files: gzip-compressed when the name ends in .gz, as users' files are."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def write_lines(path: Path, lines: list[str]) -> Path:
    """`lines` (no newlines), one per line, UTF-8."""
    data = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Each dict as one JSON line (non-ASCII kept as is)."""
    return write_lines(path, [json.dumps(row, ensure_ascii=False) for row in rows])
