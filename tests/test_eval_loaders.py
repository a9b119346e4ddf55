"""Benchmark loaders: official BEIR / MIRACL / MKQA layouts, layout detection and bad input."""

from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from tdro_suite.common.errors import DataError
from tdro_suite.evaluation.benchmarks import detect_kind, load_benchmark

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def test_beir_dataset_and_suite():
    single = load_benchmark(FIXTURES / "beir" / "tinyfacts")
    (facts,) = single.collections
    assert single.kind == "beir" and single.split == "test"
    assert len(facts.corpus) == 12 and len(facts.queries) == 6
    assert facts.qrels["q1"] == {"d1": 2, "d8": 1} and facts.qrels["q6"] == {"d8": 2, "d1": 0}
    suite = load_benchmark(FIXTURES / "beir")
    assert [c.name for c in suite.collections] == ["tinyanimals", "tinyfacts"]  # gzip corpus read too
    only = load_benchmark(FIXTURES / "beir", langs=["tinyanimals"])
    assert [c.name for c in only.collections] == ["tinyanimals"]


def test_miracl_flat_and_hf_release_layouts():
    bench = load_benchmark(FIXTURES / "miracl")
    assert bench.kind == "miracl" and bench.split == "dev"
    by_lang = {c.language: c for c in bench.collections}
    assert set(by_lang) == {"es", "sw"}
    assert by_lang["sw"].qrels == {"10": {"1#0": 1, "1#1": 0}, "11": {"3#0": 1, "4#0": 0}}
    assert by_lang["es"].queries["20"] == "¿Cuál es la capital de España?" and len(by_lang["es"].corpus) == 3
    assert [c.language for c in load_benchmark(FIXTURES / "miracl", langs=["sw"]).collections] == ["sw"]
    assert load_benchmark(FIXTURES / "miracl" / "sw").collections[0].language == "sw"


def test_mkqa_uses_english_answers_for_every_language():
    bench = load_benchmark(FIXTURES / "mkqa", langs=["de", "en"])
    assert bench.kind == "mkqa" and [c.language for c in bench.collections] == ["de", "en"]
    de = bench.collections[0]
    assert de.queries["101"] == "wer hat den eiffelturm gebaut"
    assert de.answers["101"] == ["Gustave Eiffel", "Eiffel"]  # text + aliases of answers["en"]
    assert "104" not in de.queries  # unanswerable: skipped, and said so
    assert any("1 questions without a usable English answer" in w for w in de.warnings)
    assert de.corpus is bench.collections[1].corpus  # one English corpus shared by all languages
    assert [c.language for c in load_benchmark(FIXTURES / "mkqa").collections] == ["de", "en", "es"]


def test_layout_detection():
    assert detect_kind(FIXTURES / "beir") == "beir"
    assert detect_kind(FIXTURES / "miracl" / "miracl-v1.0-es") == "miracl"
    assert detect_kind(FIXTURES / "mkqa") == "mkqa"
    with pytest.raises(DataError, match="cannot tell the benchmark layout"):
        detect_kind(FIXTURES / "beir" / "tinyfacts" / "qrels")
    with pytest.raises(DataError, match="neither a public benchmark"):
        load_benchmark("/no/such/folder")


@pytest.fixture
def beir_copy(tmp_path) -> Path:
    folder = tmp_path / "facts"
    shutil.copytree(FIXTURES / "beir" / "tinyfacts", folder)
    return folder


def test_qrels_naming_unknown_documents_or_queries_warn(beir_copy):
    with open(beir_copy / "qrels" / "test.tsv", "a") as fh:
        fh.write("q2\tghost-doc\t1\nq-missing\td1\t1\n")
    (collection,) = load_benchmark(beir_copy).collections
    text = " ".join(collection.warnings)
    assert "1 judged documents are not in the corpus" in text and "ghost-doc" in text
    assert "1 judged queries have no text" in text and "q-missing" in text
    assert collection.qrels["q2"]["ghost-doc"] == 1 and "q-missing" not in collection.qrels


def test_missing_split_lists_the_available_ones(beir_copy):
    with pytest.raises(DataError, match=r"no qrels for split 'dev'; available splits: test"):
        load_benchmark(beir_copy, split="dev")


def test_corpus_line_without_text_is_an_error(beir_copy):
    with open(beir_copy / "corpus.jsonl", "a") as fh:
        fh.write('{"_id": "d99", "title": "No text"}\n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:13: field 'text' is missing \(document 'd99'\)"):
        load_benchmark(beir_copy)


def test_malformed_qrels_and_topics_name_the_line(beir_copy, tmp_path):
    (beir_copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: expected 3 tab-separated columns"):
        load_benchmark(beir_copy)
    lang = tmp_path / "sw"
    shutil.copytree(FIXTURES / "miracl" / "sw", lang)
    (lang / "qrels.miracl-v1.0-sw-dev.tsv").write_text("10 Q0 1#0\n")
    with pytest.raises(DataError, match=r"qrels\.miracl-v1\.0-sw-dev\.tsv:1: expected 4 columns"):
        load_benchmark(lang)


def test_unknown_language_is_an_error():
    with pytest.raises(DataError, match="no questions in language xx"):
        load_benchmark(FIXTURES / "mkqa", langs=["xx"])
    with pytest.raises(DataError, match="no MIRACL language fr"):
        load_benchmark(FIXTURES / "miracl", langs=["fr"])


class FakeResponse(io.BytesIO):
    headers: ClassVar[dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_public_beir_copy_is_downloaded_once_then_read_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in (FIXTURES / "beir" / "tinyfacts").rglob("*"):
            if path.is_file():
                zipped.write(path, f"tinyfacts/{path.relative_to(FIXTURES / 'beir' / 'tinyfacts')}")
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return FakeResponse(buffer.getvalue())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    bench = load_benchmark("beir:tinyfacts")
    assert calls == ["https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/tinyfacts.zip"]
    assert bench.kind == "beir" and len(bench.collections[0].corpus) == 12
    load_benchmark("beir:tinyfacts")
    assert len(calls) == 1  # cached


def test_offline_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))

    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"Could not download BEIR dataset 'mydata'.*pass the folder"):
        load_benchmark("beir:mydata")  # not one of the pinned public BEIR sets: BEIR's zip URL
