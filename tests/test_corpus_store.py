"""The on-disk corpus (`index.corpus_store`) reads what `read_corpus` reads, hashes it alike, and converts once."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonl_files import write_rows as write

from tdro_suite.common.errors import DataError
from tdro_suite.index.corpus import corpus_hash, read_corpus
from tdro_suite.index.corpus_store import open_corpus

DOCS = [{"_id": f"d{i}", "title": "T" if i % 3 == 0 else "", "text": f"passage {i} ünïcode"} for i in range(50)]


def test_store_equals_the_in_memory_corpus(tmp_path: Path) -> None:
    files = [write(tmp_path / "a.jsonl", DOCS[:30]), write(tmp_path / "b.jsonl.gz", DOCS[30:])]
    store = open_corpus(files, root=tmp_path / "cache", progress=False)
    listed = read_corpus(files)
    assert len(store) == 50 and list(store) == listed and store[7] == listed[7] and store[-1] == listed[-1]
    assert store[10:13] == listed[10:13] and store[::10] == listed[::10]
    assert corpus_hash(store) == corpus_hash(listed)  # the key of cached embeddings does not move
    assert store.column_at("docid", [4, 2, 4]) == ["d4", "d2", "d4"]
    assert store.column_at("text", [0]) == ["passage 0 ünïcode"]
    assert store.present(["d1", "d49", "nope"]) == {"d1", "d49"}
    with pytest.raises(IndexError):
        store[50]


def test_conversion_happens_once_and_again_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.jsonl", DOCS)
    first = open_corpus(path, root=tmp_path / "cache", progress=False)
    stamp = first.path.stat().st_mtime_ns
    assert open_corpus(path, root=tmp_path / "cache", progress=False).path.stat().st_mtime_ns == stamp
    write(path, DOCS[:10])
    changed = open_corpus(path, root=tmp_path / "cache", progress=False)
    assert changed.path != first.path and len(changed) == 10


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"_id": "a", "text": "x"}, {"_id": "b"}], r"corpus.jsonl:2: field 'text' is missing"),
        ([], r"holds no documents"),
    ],
)
def test_bad_corpora_fail_with_file_line_field_and_leave_no_cache(tmp_path: Path, rows, message) -> None:
    path = write(tmp_path / "corpus.jsonl", rows)
    with pytest.raises(DataError, match=message):
        open_corpus(path, root=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*.arrow"))


def test_a_duplicate_id_names_both_places(tmp_path: Path) -> None:
    files = [write(tmp_path / "a.jsonl", DOCS[:5]), write(tmp_path / "b.jsonl", [DOCS[0], DOCS[3]])]
    expected = r"b.jsonl: document id 'd0' appears twice \(first in .*a.jsonl \(document 1\)\)"
    with pytest.raises(DataError, match=expected):
        open_corpus(files, root=tmp_path / "cache", progress=False)
