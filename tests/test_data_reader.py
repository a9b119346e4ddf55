"""The training-file reader: streaming, gzip, and one clear error (file:line:field) per kind of bad line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from jsonl_files import write_lines as _write

from tdro_suite.common.errors import DataError
from tdro_suite.data.reader import InvalidReport, iter_examples
from tdro_suite.data.tasks import iter_task_examples
from tdro_suite.data.types import TaskInfo


def _record(i: int, **override: object) -> dict:
    rec = {
        "query_id": f"q{i}",
        "query": f"question {i}",
        "positive_passages": [{"docid": f"p{i}", "title": "T", "text": f"answer {i}"}],
        "negative_passages": [{"docid": f"n{i}", "title": "", "text": f"wrong {i}"}],
    }
    rec.update(override)
    return rec


def test_reads_plain_and_gzip(tmp_path: Path) -> None:
    lines = [json.dumps(_record(i)) for i in range(3)]
    for name in ("t.jsonl", "t.jsonl.gz"):
        examples = list(iter_examples(_write(tmp_path / name, lines)))
        assert [e.query_id for e in examples] == ["q0", "q1", "q2"]
        assert examples[1].positives[0].full_text() == "T answer 1"
        assert examples[1].negatives[0].text == "wrong 1"


def test_is_lazy(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [json.dumps(_record(0)), "{broken"])
    it = iter_examples(path)
    assert next(it).query_id == "q0"  # the broken line 2 is not read yet
    with pytest.raises(DataError):
        next(it)


BAD_LINES = [
    ("{not json", None, "not valid JSON", "malformed_json"),
    ("[1, 2]", None, "expected a JSON object", "not_an_object"),
    (json.dumps({k: v for k, v in _record(1).items() if k != "query"}), "query", "is missing", "missing_field"),
    (json.dumps(_record(1, query=5)), "query", "expected a string", "wrong_type"),
    (json.dumps(_record(1, query_id=[1])), "query_id", "expected a string id", "wrong_type"),
    (json.dumps(_record(1, positive_passages=[])), "positive_passages", "is empty", "empty_positives"),
    (json.dumps(_record(1, positive_passages="text")), "positive_passages", "expected a list", "wrong_type"),
    (
        json.dumps(_record(1, positive_passages=[{"docid": "d", "title": ""}])),
        "positive_passages[0].text",
        "is missing",
        "missing_field",
    ),
    (
        json.dumps(_record(1, negative_passages=[{"docid": "d", "text": 3}])),
        "negative_passages[0].text",
        "expected a string",
        "wrong_type",
    ),
    (json.dumps(_record(1, query="   ")), "query", "is empty", "empty_value"),
    (
        json.dumps(_record(1, negative_passages=[{"text": "t"}])),
        "negative_passages[0].docid",
        "is missing",
        "missing_field",
    ),
    (
        json.dumps(_record(1, negative_passages=[{"_id": [7], "text": "t"}])),
        "negative_passages[0]._id",
        "string id",
        "wrong_type",
    ),
]


def test_passage_id_may_be_spelled_underscore_id(tmp_path: Path) -> None:
    """The public tDRO reference's mined files give passages `_id` (BEIR's spelling), not `docid`."""
    rec = _record(0, positive_passages=[{"_id": "p0", "title": "T", "text": "answer"}])
    path = _write(tmp_path / "ref.jsonl", [json.dumps(rec)])
    [example] = list(iter_examples(path))
    assert example.positives[0].docid == "p0" and example.negatives[0].docid == "n0"


@pytest.mark.parametrize(("line", "field", "problem", "reason"), BAD_LINES)
def test_each_error_names_file_line_field(tmp_path: Path, line: str, field: str, problem: str, reason: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [json.dumps(_record(0)), "", line])
    with pytest.raises(DataError) as info:
        list(iter_examples(path))
    message = str(info.value)
    assert message.startswith(f"{path}:3: ")  # blank line 2 still counts for numbering
    if field:
        assert f"field '{field}'" in message
    assert problem in message
    assert info.value.reason == reason


def test_skip_invalid_counts_per_reason(tmp_path: Path) -> None:
    lines = [json.dumps(_record(0))] + [b[0] for b in BAD_LINES] + [json.dumps(_record(9))]
    path = _write(tmp_path / "mixed.jsonl.gz", lines)
    report = InvalidReport()
    kept = list(iter_examples(path, skip_invalid=True, report=report))
    assert [e.query_id for e in kept] == ["q0", "q9"]
    assert report.lines_read == len(lines)
    assert report.kept == 2
    assert report.skipped == len(BAD_LINES)
    assert report.counts == {
        "malformed_json": 1,
        "not_an_object": 1,
        "missing_field": 3,
        "wrong_type": 5,
        "empty_positives": 1,
        "empty_value": 1,
    }
    assert report.messages[0].startswith(f"{path}:2: ")
    assert "12 invalid lines skipped" in report.summary()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        list(iter_examples(tmp_path / "nope.jsonl"))


def test_through_datasets_local_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [json.dumps(_record(i)) for i in range(2)])
    examples = list(iter_task_examples(TaskInfo("t", f"hf:{path}")))
    assert [e.query for e in examples] == ["question 0", "question 1"]
    bad = _write(tmp_path / "b.jsonl", [json.dumps(_record(0)), json.dumps(_record(1, positive_passages=[]))])
    report = InvalidReport()
    assert len(list(iter_task_examples(TaskInfo("b", f"hf:{bad}"), skip_invalid=True, report=report))) == 1
    assert report.counts == {"empty_positives": 1}
    with pytest.raises(DataError, match=r"b\.jsonl:2: field 'positive_passages'"):
        list(iter_task_examples(TaskInfo("b", f"hf:{bad}")))


def test_not_utf8_and_broken_gzip_are_data_errors(tmp_path: Path) -> None:
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(_record(0)).encode() + b"\n" + '{"query": "café"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not UTF-8"):
        list(iter_examples(latin))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(("\n".join(json.dumps(_record(i)) for i in range(50)) + "\n").encode())[:-30])
    with pytest.raises(DataError, match=r"broken\.jsonl\.gz: cannot be read after line \d+"):
        list(iter_examples(broken))
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text(json.dumps(_record(0)) + "\n")
    with pytest.raises(DataError, match="cannot be read after line 0"):
        list(iter_examples(not_gzip))
