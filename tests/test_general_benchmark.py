"""`bundled:general`, the general-English benchmark (English Wikipedia sections, eval/data/build_general.py).

It loads by name through eval's own path, its counts are those its README and the build report state, every
query is judged and every judgement points into the corpus, no text of it is a training query or passage,
and (with the `build-data` extra installed) a rebuild gives the committed bytes. `bundled:beir` is untouched.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from tdro_suite.bundled import ROOT, train_dir
from tdro_suite.common.jsonl import json_lines
from tdro_suite.data.tasks import load_tasks, task_examples
from tdro_suite.data.text import normalize_text
from tdro_suite.evaluation.benchmarks import load_benchmark

REPO = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "benchmarks" / "general" / "enwiki-sections"
REPORT = json.loads((REPO / "eval" / "data" / "build_general_report.json").read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in json_lines(path)]


@pytest.fixture(scope="module")
def files() -> tuple[dict[str, dict], dict[str, str], list[list[str]]]:
    corpus = {d["_id"]: d for d in _jsonl(FOLDER / "corpus.jsonl.gz")}
    queries = {q["_id"]: q["text"] for q in _jsonl(FOLDER / "queries.jsonl")}
    lines = (FOLDER / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    return corpus, queries, [line.split("\t") for line in lines[1:]]


def test_loads_by_name_through_the_eval_path() -> None:
    from tdro_suite.evaluation.config import EvalConfig
    from tdro_suite.evaluation.run import plan_eval

    bench = load_benchmark("bundled:general")
    assert bench.name == "bundled:general" and bench.kind == "beir" and bench.split == "test"
    (collection,) = bench.collections
    assert collection.name == "enwiki-sections" and not collection.warnings
    assert set(collection.qrels) == set(collection.queries)
    assert plan_eval(EvalConfig(bench="bundled:general")) == (
        ["bundled:general: local, 1 collections; nothing to fetch."], None
    )


def test_bundled_beir_is_unchanged() -> None:
    """The new set is a benchmark of its own, not one more collection in bundled:beir's average."""
    (collection,) = load_benchmark("bundled:beir").collections
    assert collection.name == "nave-kjv" and len(collection.queries) == 300 and len(collection.corpus) == 8000


def test_counts_match_readme_and_report(files) -> None:
    corpus, queries, rows = files
    readme = FOLDER.joinpath("README.md").read_text(encoding="utf-8")
    stated = {
        "queries": r"(\d+) queries, each",
        "corpus": r"(\d+) passages, every prose paragraph",
        "qrels": r"(\d+) judgements",
        "articles": r"of the (\d+) articles",
    }
    found = {key: int(re.search(pattern, readme).group(1)) for key, pattern in stated.items()}
    assert found == {"queries": len(queries), "corpus": len(corpus), "qrels": len(rows), "articles": found["articles"]}
    assert {k: REPORT["benchmark"][k] for k in stated} == found
    assert 200 <= len(queries) <= 500 and 2000 <= len(corpus) <= 6000


def test_every_query_is_judged_and_judgements_point_into_the_corpus(files) -> None:
    corpus, queries, rows = files
    assert {q for q, _, _ in rows} == set(queries)
    assert all(d in corpus and s == "1" for _, d, s in rows)
    assert len({(q, d) for q, d, _ in rows}) == len(rows)
    assert all(set(doc) == {"_id", "title", "text"} and doc["title"] and doc["text"] for doc in corpus.values())
    assert len({normalize_text(t) for t in queries.values()}) == len(queries)


def test_no_training_query_or_passage_in_it(files) -> None:
    corpus, queries, _ = files
    training: set[str] = set()
    for task in load_tasks([train_dir()]):
        for example in task_examples(task):
            training.add(normalize_text(example.query))
            training.update(normalize_text(p.text) for p in (*example.positives, *example.negatives))
    ours = [*queries.values(), *(d["text"] for d in corpus.values())]
    assert not [t for t in ours if normalize_text(t) in training]


def test_bundle_files_match_the_report() -> None:
    for name, digest in REPORT["sha256"].items():
        path = ROOT / "benchmarks" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    """The parse and the writing, from the installed source package, give the committed files.

    The committed build removed nothing in decontamination (the report says so), so this rebuild skips that
    ~15 s step; `python eval/data/build_general.py --verify` repeats the whole build, decontamination included.
    """
    for name, version in REPORT["packages"].items():
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"rebuilding needs the build-data extra ({name})")
        if importlib.metadata.version(name) != version:
            pytest.skip(f"the bundle is byte-identical with {name} {version}, not {importlib.metadata.version(name)}")
    sys.path.insert(0, str(REPO / "eval" / "data"))
    import build_general

    removed = REPORT["decontamination"]
    counts = [removed[part][kind] for part in ("queries", "passages") for kind in ("exact", "near")]
    report = build_general.build(tmp_path, REPORT["seed"], train=None if any(counts) else [])
    assert report["benchmark"] == REPORT["benchmark"] and report["source"] == REPORT["source"]
    assert build_general.file_hashes(tmp_path) == REPORT["sha256"]
