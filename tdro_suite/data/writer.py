"""Write training files and JSON-lines atomically and byte-reproducibly.

gzip output uses mtime=0 and no embedded file name, so the same records always give the same bytes
(the bundled data is checked by hash). Readers never see a half-written file.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tdro_suite.common.io import atomic_path
from tdro_suite.data.types import Passage, TrainExample


def passage_to_json(passage: Passage) -> dict[str, str]:
    return {"docid": passage.docid, "title": passage.title, "text": passage.text}


def example_to_json(example: TrainExample) -> dict[str, Any]:
    """The Tevatron record of one example (the inverse of `reader.parse_example`)."""
    return {
        "query_id": example.query_id,
        "query": example.query,
        "positive_passages": [passage_to_json(p) for p in example.positives],
        "negative_passages": [passage_to_json(p) for p in example.negatives],
    }


def write_text_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Write lines (each gets a trailing newline); `.gz` is compressed deterministically. Returns the count."""
    target = Path(path)
    count = 0
    with atomic_path(target) as tmp:
        if target.suffix == ".gz":
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                for line in lines:
                    gz.write((line + "\n").encode("utf-8"))
                    count += 1
        else:
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                for line in lines:
                    fh.write(line + "\n")
                    count += 1
    return count


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """One compact JSON object per line (UTF-8, not ASCII-escaped)."""
    return write_text_lines(path, (json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records))


def write_examples(path: str | Path, examples: Iterable[TrainExample]) -> int:
    """Write a training file in the Tevatron format; returns the number of examples."""
    return write_jsonl(path, (example_to_json(e) for e in examples))
