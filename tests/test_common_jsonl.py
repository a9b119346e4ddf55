"""The one JSON-lines reader and every loader built on it: gzip, exact file:line for a line that is not
UTF-8 or not JSON, and bad lines kept for the training reader to skip and count."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tdro_suite.common.errors import DataError
from tdro_suite.common.jsonl import InvalidLineError, json_lines, numbered_lines
from tdro_suite.data.reader import iter_examples
from tdro_suite.evaluation.benchmarks import read_beir_queries
from tdro_suite.index.corpus import read_corpus
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.index.errors import IndexFormatError
from tdro_suite.index.search import read_queries
from tdro_suite.modeling.encode_texts import read_input

GOOD = {"_id": "1", "id": "1", "text": "some text", "query_id": "q1", "query": "a query",
        "positive_passages": [{"docid": "d1", "text": "a passage"}]}

# every loader that reads JSON lines, as "read this file completely"
LOADERS: dict[str, Callable[[Path], Any]] = {
    "corpus": read_corpus,
    "beir queries": read_beir_queries,
    "search queries": read_queries,
    "encode input": lambda path: read_input(str(path), "jsonl", "text", "id")[1],
    "training set": lambda path: list(iter_examples(path)),
}


def _write(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_reader_yields_where_and_object_skips_blank_lines_and_reads_gzip(tmp_path: Path) -> None:
    for name in ("a.jsonl", "a.jsonl.gz"):
        path = _write(tmp_path / name, [b'{"x": 1}', b"   ", b'{"x": 2}'])
        assert list(json_lines(path)) == [(f"{path}:1", {"x": 1}), (f"{path}:3", {"x": 2})]


def test_not_utf8_names_the_exact_line_and_column_past_the_decoders_first_chunk(tmp_path: Path) -> None:
    lines = [json.dumps({"pad": "x" * 100}).encode()] * 200  # ~21 kB: the bad byte is far past the first chunk
    path = _write(tmp_path / "big.jsonl", [*lines, '{"t": "café"}'.encode("latin-1")])
    with pytest.raises(DataError, match=r"big\.jsonl:201: not UTF-8 text \(byte 0xe9 at column 11\)"):
        list(numbered_lines(path))


def test_broken_json_raises_or_is_kept_for_the_caller(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.jsonl", [b'{"x": 1}', b'{"x": '])
    with pytest.raises(InvalidLineError, match=r"b\.jsonl:2: not valid JSON \(Expecting value at column 7\)"):
        list(json_lines(path))
    (_, first), (where, bad) = json_lines(path, keep_bad_lines=True)
    assert first == {"x": 1} and where == f"{path}:2"
    assert isinstance(bad, InvalidLineError) and bad.reason == "malformed_json"


def test_truncated_gzip_names_the_last_good_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"x": 1}\n' * 1000)[:-30])
    with pytest.raises(DataError, match=r"t\.jsonl\.gz: cannot be read after line \d+ \(EOFError"):
        list(json_lines(path))


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_every_loader_reads_gzip_and_names_file_and_line(tmp_path: Path, loader: Callable[[Path], Any]) -> None:
    good = json.dumps(GOOD).encode()
    assert len(loader(_write(tmp_path / "ok.jsonl.gz", [good]))) == 1
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not UTF-8 text \(byte 0xe9"):
        loader(_write(tmp_path / "latin.jsonl", [good, '{"text": "café"}'.encode("latin-1")]))
    with pytest.raises(DataError, match=r"broken\.jsonl:2: not valid JSON"):
        loader(_write(tmp_path / "broken.jsonl", [good, b"{oops"]))


def test_damaged_stored_documents_are_an_index_format_error_with_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    DenseIndex.build(np.eye(2, dtype=np.float32), ["a", "b"], docs=[{"text": "x"}, {"text": "y"}]).save(folder)
    docs = folder / "docs.jsonl"
    lines = docs.read_bytes().splitlines()
    _write(docs, [lines[0], b"\xff"])
    with pytest.raises(IndexFormatError, match=r"docs\.jsonl:2: not UTF-8 text"):
        DenseIndex.load(folder)
    _write(docs, [lines[0], b'{"id": '])
    with pytest.raises(IndexFormatError, match=r"docs\.jsonl:2: not valid JSON"):
        DenseIndex.load(folder)
