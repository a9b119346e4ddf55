"""Texts the encoding and serving benchmarks share, drawn from the bundled training data (no download).

- short: distinct queries of 8-40 words (questions, definitions, Python docstrings, verse topics);
- long: distinct passages of at least 60 words (Python source, Bible verses, answers).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "tdro_suite" / "bundled" / "train"
SOURCES = ("qa_en_chatterbot", "definition_wordnet", "code_python_stdlib", "topic_verse_nave", "related_verse_nave")


def bundled_texts(n_short: int, n_long: int) -> tuple[list[str], list[str]]:
    """Up to `n_short` short queries and `n_long` long passages, deduplicated, in a fixed order."""
    short: list[str] = []
    long: list[str] = []
    for name in SOURCES:
        with gzip.open(TRAIN / f"{name}.jsonl.gz", "rt", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if 8 <= len(record["query"].split()) <= 40:
                    short.append(record["query"])
                long.extend(p["text"] for p in record["positive_passages"] if len(p["text"].split()) >= 60)
    return list(dict.fromkeys(short))[:n_short], list(dict.fromkeys(long))[:n_long]
