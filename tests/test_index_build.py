"""Corpus reading, sharded/resumable/multi-process encoding, build_index and the search helpers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.data.types import Passage
from tdro_suite.index.build import build_index, work_dir_for
from tdro_suite.index.corpus import corpus_hash, read_corpus
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.index.encode import DistInfo, encode_shards, encoder_fingerprint, load_shards
from tdro_suite.index.errors import IndexMismatchError
from tdro_suite.index.search import check_encoder, gather_queries, read_queries, search_queries

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


@pytest.fixture(scope="module")
def tiny(tiny_encoder_dir):
    from tdro_suite.modeling import Encoder

    return Encoder.from_pretrained(tiny_encoder_dir, device="cpu")


class CountingEncoder:
    """Wraps an encoder and records how many passages it was asked to encode."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.encoded = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_passages(self, texts, **kw):
        self.encoded += len(texts)
        return self.inner.encode_passages(texts, **kw)


def docs(n: int) -> list[Passage]:
    return [Passage(f"d{i}", f"document number {i} " + "word " * (i % 7), f"title {i}") for i in range(n)]


def test_read_corpus_accepts_beir_miracl_and_gzip(tmp_path):
    beir = read_corpus(FIXTURES / "beir" / "tinyfacts" / "corpus.jsonl")
    assert len(beir) == 12
    assert beir[0] == Passage("d1", "Paris is the capital and most populous city of France.", "Paris")
    assert beir[-1].full_text() == "Coffee is a drink brewed from roasted coffee beans."  # no title: text alone
    miracl = read_corpus(FIXTURES / "miracl" / "sw" / "corpus" / "docs-0.jsonl.gz")
    assert [d.docid for d in miracl][:2] == ["1#0", "1#1"]
    assert corpus_hash(beir) == corpus_hash(read_corpus(FIXTURES / "mkqa" / "corpus.jsonl"))
    assert corpus_hash(beir) != corpus_hash(beir[:-1])


def test_a_training_passage_and_the_same_corpus_document_embed_the_same_text(tmp_path):
    """One `full_text` rule for training, indexing, evaluation and serving (both read into `Passage`)."""
    from tdro_suite.data.reader import iter_examples

    padded = {"docid": "d1", "text": "  padded text \t"}
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"query_id": "q", "query": "x", "positive_passages": [padded]}) + "\n")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(padded) + "\n" + json.dumps({"_id": "d2", "title": "T", "text": "body "}) + "\n")
    (example,) = iter_examples(train)
    docs = read_corpus(corpus)
    assert example.positives[0] == docs[0] and docs[0].full_text() == "padded text"
    assert docs[1].full_text() == "T body" and docs[1].to_dict() == {"id": "d2", "title": "T", "text": "body "}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"_id": "x", "title": "t"}', r"bad\.jsonl:2: field 'text' is missing \(document 'x'\)"),
        ('{"_id": "x", "text": "  "}', r"bad\.jsonl:2: field 'text' is empty"),
        ('{"title": "t", "text": "y"}', r"bad\.jsonl:2: field '_id' is missing"),
        ('{"_id": "x", "text": 3}', r"bad\.jsonl:2: field 'text' must be a string"),
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        ('{"_id": "a", "text": "dup"}', r"document id 'a' appears twice"),
    ],
)
def test_bad_corpus_lines_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"_id": "a", "text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_corpus(path)


def test_shards_resume_after_interruption(tiny, tmp_path):
    corpus = docs(23)
    counting = CountingEncoder(tiny)
    assert encode_shards(counting, corpus, tmp_path, shard_size=5, show_progress=False) == 5
    full = load_shards(tmp_path, len(corpus))
    np.testing.assert_allclose(full, tiny.encode_passages([d.full_text() for d in corpus]), atol=1e-5)
    # an interruption lost shard 2: a rerun encodes exactly that shard again
    (tmp_path / "shard-00002.npy").unlink()
    counting.encoded = 0
    assert encode_shards(counting, corpus, tmp_path, shard_size=5, show_progress=False) == 1
    assert counting.encoded == 5
    np.testing.assert_allclose(load_shards(tmp_path, len(corpus)), full, atol=1e-6)
    # another corpus in the same work folder: the stale shards are cleared, not mixed in
    counting.encoded = 0
    encode_shards(counting, corpus[:7], tmp_path, shard_size=5, show_progress=False)
    assert counting.encoded == 7 and load_shards(tmp_path, 7).shape == (7, tiny.dimension)


def test_float16_shards_halve_the_disk_and_stay_apart_from_float32(tiny, tmp_path):
    corpus = docs(12)
    counting = CountingEncoder(tiny)
    encode_shards(counting, corpus, tmp_path / "fp32", shard_size=5, show_progress=False)
    encode_shards(counting, corpus, tmp_path / "fp16", shard_size=5, show_progress=False, dtype="float16")
    assert np.load(tmp_path / "fp16" / "shard-00000.npy").dtype == np.float16
    size = {d: sum(np.load(p).nbytes for p in (tmp_path / d).glob("shard-*.npy")) for d in ("fp32", "fp16")}
    assert size["fp16"] * 2 == size["fp32"]
    half, full = load_shards(tmp_path / "fp16", 12), load_shards(tmp_path / "fp32", 12)
    assert half.dtype == np.float32 and np.abs(half - full).max() < 1e-3
    assert "dtype" not in json.loads((tmp_path / "fp32" / "encoding.json").read_text())  # float32 caches unchanged
    counting.encoded = 0  # the float16 dtype is part of the folder's identity: float32 re-encodes, never mixes
    encode_shards(counting, corpus, tmp_path / "fp16", shard_size=5, show_progress=False)
    assert counting.encoded == 12 and np.load(tmp_path / "fp16" / "shard-00000.npy").dtype == np.float32


def test_processes_split_shards_and_merge_to_the_single_process_result(tiny, tmp_path):
    corpus = docs(17)
    for rank in (1, 0):  # what two torchrun processes do (rank 1 may finish first)
        encode_shards(tiny, corpus, tmp_path / "multi", shard_size=4, info=DistInfo(rank, 2), show_progress=False)
    written = sorted(p.name for p in (tmp_path / "multi").glob("shard-*.npy"))
    assert written == [f"shard-{i:05d}.npy" for i in range(5)]
    encode_shards(tiny, corpus, tmp_path / "single", shard_size=4, show_progress=False)
    np.testing.assert_allclose(load_shards(tmp_path / "multi", 17), load_shards(tmp_path / "single", 17), atol=1e-6)


def test_missing_shard_is_a_clear_error(tiny, tmp_path):
    corpus = docs(9)
    encode_shards(tiny, corpus, tmp_path, shard_size=4, info=DistInfo(0, 2), show_progress=False)
    with pytest.raises(DataError, match="shard missing"):
        load_shards(tmp_path, 9)


def test_build_index_writes_a_complete_folder(tiny, tmp_path):
    out = tmp_path / "idx"
    index = build_index(
        tiny, FIXTURES / "beir" / "tinyfacts" / "corpus.jsonl", out, index_type="hnsw", show_progress=False
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == str(tiny.name) and manifest["dimension"] == tiny.dimension
    assert manifest["index_type"] == "hnsw" and manifest["normalized"] is True and manifest["count"] == 12
    assert manifest["corpus_hash"] == corpus_hash(read_corpus(FIXTURES / "beir" / "tinyfacts" / "corpus.jsonl"))
    assert manifest["model_fingerprint"] == encoder_fingerprint(tiny)
    assert not work_dir_for(out).exists()  # shards removed after a successful build
    loaded = DenseIndex.load(out)
    assert loaded.get_doc("d8")["title"] == "Eiffel Tower"
    # searching the index for a document's own text finds that document first
    results = search_queries(loaded, tiny, [("x", "Paris Paris is the capital and most populous city of France.")], k=3)
    assert len(results[0]["hits"]) == 3 and results[0]["hits"][0]["id"] == "d1"
    assert results[0]["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4) and index is not None


def test_search_refuses_another_model(tiny, tmp_path):
    index = DenseIndex.build(np.eye(4, dtype=np.float32), list("abcd"), manifest={"model": "minilm"})
    with pytest.raises(IndexMismatchError, match="built with model 'minilm'"):
        check_encoder(index, tiny)


def test_read_queries_in_every_format(tmp_path):
    (tmp_path / "q.tsv").write_text("7\tfirst query\n8\tsecond\n")
    (tmp_path / "q.jsonl").write_text('{"_id": "a", "text": "one"}\n{"query": "two"}\n')
    (tmp_path / "q.txt").write_text("alpha\n\nbeta\n")
    with gzip.open(tmp_path / "q.jsonl.gz", "wt") as fh:
        fh.write('{"id": "z", "text": "zipped"}\n')
    assert read_queries(tmp_path / "q.tsv") == [("7", "first query"), ("8", "second")]
    assert read_queries(tmp_path / "q.jsonl") == [("a", "one"), ("q2", "two")]
    assert read_queries(tmp_path / "q.txt") == [("q1", "alpha"), ("q2", "beta")]
    assert read_queries(tmp_path / "q.jsonl.gz") == [("z", "zipped")]
    assert gather_queries(["hello"], str(tmp_path / "q.tsv"))[0] == ("q1", "hello")
    with pytest.raises(ConfigError, match="No queries"):
        gather_queries([], None)
    (tmp_path / "bad.tsv").write_text("only-one-column\n")
    with pytest.raises(DataError, match=r"bad\.tsv:1"):
        read_queries(tmp_path / "bad.tsv")
