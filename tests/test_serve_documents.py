"""/v1/search and /v1/documents over a served DenseIndex, and persistence across restarts (tiny BERT)."""

from __future__ import annotations

import numpy as np
import pytest
from test_serve_support import failing_client, ready_client, tiny_settings

from tdro_suite.data.types import Passage
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.modeling import Encoder
from tdro_suite.serve import create_app

DOCS = [
    {"id": "fox", "title": "Animals", "text": "the quick brown fox jumps over the lazy dog"},
    {"id": "food", "title": "Meals", "text": "a man is eating food"},
    {"id": "rag", "title": "", "text": "retrieval augmented generation needs a dense retriever"},
]


@pytest.fixture(scope="module")
def reference(tiny_encoder_dir) -> Encoder:
    return Encoder.from_pretrained(tiny_encoder_dir, max_length=64, device="cpu")


def test_documents_search_and_restart_keep_every_acknowledged_change(tmp_path, tiny_encoder_dir, reference) -> None:
    folder = tmp_path / "index"
    settings = tiny_settings(tiny_encoder_dir, index=folder)
    with ready_client(create_app(settings)) as c:
        assert c.get("/ready").json()["documents"] == 0
        added = c.post("/v1/documents", json={"documents": DOCS})
        assert added.json() == {"added": 3, "replaced": 0, "total": 3}
        replaced = c.post("/v1/documents", json={"documents": [{"id": "food", "text": "cats sleep all day"}]})
        assert replaced.json() == {"added": 0, "replaced": 1, "total": 3}
        assert c.delete("/v1/documents/fox").json() == {"id": "fox", "deleted": True, "total": 2}
        gone = c.delete("/v1/documents/fox")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "document_not_found"
        c.post("/v1/documents", json={"documents": [{"id": "wiki/Paris", "text": "Paris is in France"}]})
        assert c.delete("/v1/documents/wiki/Paris").json()["id"] == "wiki/Paris"  # ids may hold slashes

    # "restart": a new app on the same folder sees exactly what was acknowledged
    with ready_client(create_app(settings)) as c:
        assert c.get("/ready").json()["documents"] == 2
        body = c.post("/v1/search", json={"query": ["cats sleep all day", "dense retriever"], "top_k": 5}).json()
        first, second = body["data"]
        assert {h["id"] for h in first["hits"]} == {"food", "rag"}
        assert first["hits"][0] == {"id": "food", "score": pytest.approx(first["hits"][0]["score"]),
                                    "title": "", "text": "cats sleep all day"}
        # scores are the inner products of in-process query and passage embeddings
        queries = reference.encode_queries(["cats sleep all day", "dense retriever"])
        passages = {d["id"]: reference.encode_passages([Passage(d["id"], d["text"], d["title"]).full_text()])[0]
                    for d in [DOCS[2], {"id": "food", "title": "", "text": "cats sleep all day"}]}
        for row, result in enumerate((first, second)):
            scores = [h["score"] for h in result["hits"]]
            assert scores == sorted(scores, reverse=True)
            for hit in result["hits"]:
                assert hit["score"] == pytest.approx(float(queries[row] @ passages[hit["id"]]), abs=1e-5)
        bare = c.post("/v1/search", json={"query": "x", "top_k": 1, "include_text": False}).json()
        assert bare["data"][0]["hits"][0].keys() == {"id", "score"}

    on_disk = DenseIndex.load(folder)
    assert sorted(on_disk.ids) == ["food", "rag"] and on_disk.manifest["model"] == str(tiny_encoder_dir)


def test_search_validation_and_missing_index(tmp_path, tiny_encoder_dir) -> None:
    with ready_client(create_app(tiny_settings(tiny_encoder_dir, max_top_k=5))) as c:
        none = c.post("/v1/search", json={"query": "x"})
        assert none.status_code == 404 and "--index" in none.json()["error"]["message"]
    with ready_client(create_app(tiny_settings(tiny_encoder_dir, index=tmp_path / "i", max_top_k=5))) as c:
        big = c.post("/v1/search", json={"query": "x", "top_k": 6})
        assert big.status_code == 413 and "max_top_k=5" in big.json()["error"]["message"]
        typo = c.post("/v1/search", json={"query": "x", "topk": 3})
        assert typo.status_code == 422 and typo.json()["error"]["param"] == "topk"
        dup = c.post("/v1/documents", json={"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]})
        assert dup.status_code == 422 and "'a'" in dup.json()["error"]["message"]
        assert dup.json()["error"]["param"] == "documents[1].id"
        empty = c.post("/v1/documents", json={"documents": [{"id": "a", "text": ""}]})
        assert empty.status_code == 422 and empty.json()["error"]["param"] == "documents[0].text"


def test_index_built_with_another_model_is_refused(tmp_path, tiny_encoder_dir) -> None:
    vectors = np.eye(4, 32, dtype=np.float32)
    DenseIndex.build(vectors, list("abcd"), manifest={"model": "someone-else"}).save(tmp_path / "idx")
    with failing_client(create_app(tiny_settings(tiny_encoder_dir, index=tmp_path / "idx"))) as body:
        assert body["status"] == "failed"


def test_documents_are_read_only_with_several_workers(tmp_path, tiny_encoder_dir) -> None:
    DenseIndex.build(np.eye(2, 32, dtype=np.float32), ["a", "b"], manifest={"model": str(tiny_encoder_dir)}).save(
        tmp_path / "idx"
    )
    with ready_client(create_app(tiny_settings(tiny_encoder_dir, index=tmp_path / "idx", workers=2))) as c:
        response = c.post("/v1/documents", json={"documents": [{"id": "c", "text": "x"}]})
        assert response.status_code == 409 and "--workers 1" in response.json()["error"]["message"]
        assert c.delete("/v1/documents/a").status_code == 409
        assert c.post("/v1/search", json={"query": "x", "top_k": 2}).status_code == 200
