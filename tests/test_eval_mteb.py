"""MTEB's own retrieval evaluation and `tdro-suite eval` agree on the same local collection and model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

mteb = pytest.importorskip("mteb")

from tdro_suite.evaluation.benchmarks import load_benchmark  # noqa: E402
from tdro_suite.evaluation.harness import evaluate  # noqa: E402
from tdro_suite.evaluation.mteb_adapter import MtebEncoder, local_retrieval_task, search_model  # noqa: E402

ANIMALS = ["cat", "dog", "horse", "parrot", "goat", "rabbit", "turtle", "owl"]
PLACES = ["a farm", "the city", "a forest", "the desert", "a river bank"]
FOODS = ["seeds", "fish", "grass", "insects"]


def write_beir(folder: Path) -> Path:
    """160 distinct documents, 24 queries, graded judgements: a collection where ranking is not trivial."""
    (folder / "qrels").mkdir(parents=True)
    docs = []
    for i, (animal, place, food) in enumerate(itertools.product(ANIMALS, PLACES, FOODS)):
        docs.append({"_id": f"d{i}", "title": animal.title() if i % 3 else "",
                     "text": f"This {animal} lives in {place} and mostly eats {food}."})
    queries, qrels = [], []
    for qi, (animal, food) in enumerate(itertools.product(ANIMALS, FOODS[:3])):
        qid = f"q{qi}"
        queries.append({"_id": qid, "text": f"which {animal} eats {food}?"})
        for di, doc in enumerate(docs):
            # graded, and only partly what the text says: the ranking is right at the top, mixed below
            grade = 2 * (animal in doc["text"] and food in doc["text"]) + (animal in doc["text"]) * (di % 2)
            if grade or (di * 7 + qi) % 37 == 0:
                qrels.append(f"{qid}\t{doc['_id']}\t{max(grade, 1)}")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return folder


def mteb_scores(model, collection) -> dict:
    result = mteb.evaluate(model, local_retrieval_task(collection), cache=None, show_progress_bar=False)
    return result.task_results[0].scores["test"][0]


@pytest.mark.slow
def test_mteb_and_tdro_eval_agree_on_ndcg10(minilm, tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_beir(tmp_path / "animals")
    ours = evaluate(minilm, folder, show_progress=False)["collections"]["animals"]["metrics"]
    (collection,) = load_benchmark(folder).collections
    encoder = MtebEncoder(minilm)
    assert isinstance(encoder, mteb.models.EncoderProtocol)
    theirs = mteb_scores(encoder, collection)  # MTEB's exact search + its pytrec_eval scoring
    assert 0.2 < ours["ndcg@10"] < 0.98  # a collection where the ranking matters
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg_at_10"], abs=1e-4)
    assert ours["recall@100"] == pytest.approx(theirs["recall_at_100"], abs=1e-4)
    assert ours["map@10"] == pytest.approx(theirs["map_at_10"], abs=1e-4)
    # MTEB's search protocol served by our FAISS index (HNSW here) gives the same ranking quality
    searcher = search_model(minilm, index_type="hnsw")
    assert isinstance(searcher, mteb.models.SearchProtocol)
    via_index = mteb_scores(searcher, collection)
    assert via_index["ndcg_at_10"] == pytest.approx(theirs["ndcg_at_10"], abs=1e-4)
