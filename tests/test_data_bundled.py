"""The committed bundle: official layouts, manifest consistency, and no evaluation query in training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro_suite.bundled import benchmark_dir, train_dir
from tdro_suite.common.errors import DataError
from tdro_suite.common.jsonl import json_lines
from tdro_suite.data.dedup import find_contamination
from tdro_suite.data.tasks import load_tasks
from tdro_suite.data.text import normalize_text


def _jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in json_lines(path)]


def _eval_queries() -> list[str]:
    queries = [q["text"] for q in _jsonl(benchmark_dir("beir", "nave-kjv") / "queries.jsonl")]
    for topics in sorted(benchmark_dir("miracl").glob("*/topics.miracl-v1.0-*-dev.tsv")):
        queries += [line.split("\t", 1)[1] for line in topics.read_text(encoding="utf-8").splitlines()]
    for record in _jsonl(benchmark_dir("mkqa") / "mkqa.jsonl.gz"):
        queries += list(record["queries"].values())
    return queries


def test_manifest_matches_files() -> None:
    tasks = load_tasks([train_dir()])
    assert len(tasks) >= 10 and len({lang for t in tasks for lang in t.languages}) >= 4
    for task in tasks:
        assert Path(task.path).name == f"{task.name}.jsonl.gz"
        assert task.instruction and task.license and task.source and task.domain
        assert 200 <= task.size <= 1500


def test_beir_layout() -> None:
    folder = benchmark_dir("beir", "nave-kjv")
    corpus = {d["_id"]: d for d in _jsonl(folder / "corpus.jsonl.gz")}
    queries = {q["_id"]: q["text"] for q in _jsonl(folder / "queries.jsonl")}
    lines = (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    rows = [line.split("\t") for line in lines[1:]]
    assert {q for q, _, _ in rows} == set(queries) and all(d in corpus and s == "1" for _, d, s in rows)
    assert set(next(iter(corpus.values()))) == {"_id", "title", "text"}
    assert len(corpus) <= 8000 and len(queries) <= 400


@pytest.mark.parametrize("lang", ["bn", "de", "es", "fr", "id"])
def test_miracl_layout(lang: str) -> None:
    folder = benchmark_dir("miracl", lang)
    topics = dict(line.split("\t") for line in (folder / f"topics.miracl-v1.0-{lang}-dev.tsv").read_text().splitlines())
    docs = {d["docid"]: d for d in _jsonl(folder / "corpus" / "docs-0.jsonl.gz")}
    for line in (folder / f"qrels.miracl-v1.0-{lang}-dev.tsv").read_text().splitlines():
        qid, q0, docid, rel = line.split(" ")
        assert qid in topics and q0 == "Q0" and docid in docs and rel == "1"
    assert set(next(iter(docs.values()))) == {"docid", "title", "text"}


def test_mkqa_layout() -> None:
    folder = benchmark_dir("mkqa")
    records = _jsonl(folder / "mkqa.jsonl.gz")
    corpus = _jsonl(folder / "corpus.jsonl.gz")
    assert 0 < len(records) <= 400 and len(corpus) <= 8000
    for r in records:
        assert set(r) == {"example_id", "query", "queries", "answers"} and isinstance(r["example_id"], int)
        assert set(r["queries"]) == {"en", "it", "ja"} and r["queries"]["en"] == r["query"]
        assert all({"type", "text", "aliases"} == set(a) for a in r["answers"]["en"])
    assert len({r["example_id"] for r in records}) == len(records)


def test_no_evaluation_query_in_training() -> None:
    eval_queries = _eval_queries()
    exact = {normalize_text(q) for q in eval_queries}
    train_queries = [r["query"] for t in load_tasks([train_dir()]) for r in _jsonl(Path(t.path))]
    assert not [q for q in train_queries if normalize_text(q) in exact]
    assert find_contamination(train_queries, eval_queries) == []


def test_unknown_benchmark_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="bundled kinds"):
        benchmark_dir("msmarco")
    with pytest.raises(DataError, match="available: nave-kjv"):
        benchmark_dir("beir", "scifact")
