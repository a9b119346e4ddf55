"""Stream and validate Tevatron-style training files (one JSON object per line, .jsonl or .jsonl.gz).

Reading is lazy (one line at a time), so a multi-GB file never sits in memory. Every problem is a
`DataError` naming the file, the 1-based line and the field; with `skip_invalid=True` the bad line
is dropped instead and counted per reason in an `InvalidReport`, so nothing disappears silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdro_suite.common.jsonl import InvalidLineError, json_lines
from tdro_suite.data.types import Passage, TrainExample

REQUIRED_FIELDS = ("query_id", "query", "positive_passages")
MAX_SHOWN_PROBLEMS = 20


@dataclass
class InvalidReport:
    """What `skip_invalid` dropped: counts per reason and the first few full messages."""

    counts: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    lines_read: int = 0
    kept: int = 0

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def add(self, error: InvalidLineError) -> None:
        self.counts[error.reason] += 1
        if len(self.messages) < MAX_SHOWN_PROBLEMS:
            self.messages.append(str(error))

    def merge(self, other: InvalidReport) -> None:
        self.counts.update(other.counts)
        room = MAX_SHOWN_PROBLEMS - len(self.messages)
        self.messages.extend(other.messages[: max(room, 0)])
        self.lines_read += other.lines_read
        self.kept += other.kept

    def summary(self) -> str:
        """One line per reason, for the CLI and logs."""
        if not self.counts:
            return f"{self.kept} examples read, none skipped."
        parts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
        return f"{self.kept} examples kept, {self.skipped} invalid lines skipped ({parts})."

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines_read": self.lines_read,
            "kept": self.kept,
            "skipped": self.skipped,
            "skipped_by_reason": dict(sorted(self.counts.items())),
            "first_problems": list(self.messages),
        }


def _as_id(value: Any, where: str, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidLineError(where, name, f"expected a string id, got {type(value).__name__}", "wrong_type")
    text = str(value)
    if not text:
        raise InvalidLineError(where, name, "is empty", "empty_value")
    return text


def _as_text(value: Any, where: str, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidLineError(where, name, f"expected a string, got {type(value).__name__}", "wrong_type")
    if not allow_empty and not value.strip():
        raise InvalidLineError(where, name, "is empty", "empty_value")
    return value


def _passages(value: Any, where: str, name: str) -> tuple[Passage, ...]:
    if not isinstance(value, list):
        raise InvalidLineError(where, name, f"expected a list of passages, got {type(value).__name__}", "wrong_type")
    out = []
    for i, item in enumerate(value):
        item_name = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise InvalidLineError(
                where,
                item_name,
                f"expected an object with docid/title/text, got {type(item).__name__}",
                "wrong_type",
            )
        # the public tDRO reference's mining script names a passage's id `_id` (BEIR's corpus field)
        id_key = "_id" if item.get("docid") is None and item.get("_id") is not None else "docid"
        for key in (id_key, "text"):
            if item.get(key) is None:
                raise InvalidLineError(where, f"{item_name}.{key}", "is missing", "missing_field")
        title = item.get("title")
        out.append(
            Passage(
                docid=_as_id(item[id_key], where, f"{item_name}.{id_key}"),
                text=_as_text(item["text"], where, f"{item_name}.text"),
                title="" if title is None else _as_text(title, where, f"{item_name}.title", allow_empty=True),
            )
        )
    return tuple(out)


def parse_example(obj: Any, where: str) -> TrainExample:
    """Check one decoded record against the training format and build a `TrainExample`."""
    if not isinstance(obj, dict):
        raise InvalidLineError(where, None, f"expected a JSON object, got {type(obj).__name__}", "not_an_object")
    for key in REQUIRED_FIELDS:
        if obj.get(key) is None:
            raise InvalidLineError(where, key, "is missing", "missing_field")
    positives = _passages(obj["positive_passages"], where, "positive_passages")
    if not positives:
        raise InvalidLineError(where, "positive_passages", "is empty (every query needs a positive)", "empty_positives")
    negatives_raw = obj.get("negative_passages")
    negatives = () if negatives_raw is None else _passages(negatives_raw, where, "negative_passages")
    return TrainExample(
        query_id=_as_id(obj["query_id"], where, "query_id"),
        query=_as_text(obj["query"], where, "query"),
        positives=positives,
        negatives=negatives,
    )


def iter_records(
    records: Iterable[tuple[str, Any]], *, skip_invalid: bool = False, report: InvalidReport | None = None
) -> Iterator[TrainExample]:
    """Validate `(where, record)` pairs; the shared core of the file and `datasets` readers."""
    for where, obj in records:
        if report is not None:
            report.lines_read += 1
        try:
            if isinstance(obj, InvalidLineError):
                raise obj
            example = parse_example(obj, where)
        except InvalidLineError as exc:
            if not skip_invalid:
                raise
            if report is not None:
                report.add(exc)
            continue
        if report is not None:
            report.kept += 1
        yield example


def iter_examples(
    path: str | Path, *, skip_invalid: bool = False, report: InvalidReport | None = None
) -> Iterator[TrainExample]:
    """Yield the examples of one .jsonl/.jsonl.gz file lazily; bad lines raise or are skipped and counted."""
    yield from iter_records(json_lines(path, keep_bad_lines=True), skip_invalid=skip_invalid, report=report)
