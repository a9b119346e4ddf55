"""The real server: `tdro-suite serve` (the image's entrypoint) on 127.0.0.1, driven by the official
`openai` client, and killed without warning to show that acknowledged documents survive a restart."""

from __future__ import annotations

import base64
import os
import signal
import time

import httpx
import numpy as np
import openai
import pytest
from test_serve_support import cli_server, model_tokens

pytestmark = pytest.mark.slow

TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
KEY = "test-key-123"


def test_openai_client_and_restart_after_kill(minilm, tmp_path) -> None:
    index = tmp_path / "index"
    args = ["--model", "minilm", "--index", str(index), "--api-key-env", "SERVE_TEST_KEY"]
    env = {"SERVE_TEST_KEY": KEY}
    with cli_server(args, env) as (base, server):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        expected = minilm.encode(TEXTS)

        floats = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
        np.testing.assert_allclose(np.array([d.embedding for d in floats.data]), expected, atol=1e-5)
        assert floats.model == "minilm" and floats.usage.prompt_tokens == model_tokens(minilm, TEXTS)

        single = client.embeddings.create(model="minilm", input=TEXTS[0])  # the client asks for base64 itself
        np.testing.assert_allclose(np.array(single.data[0].embedding), expected[0], atol=1e-5)

        raw = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="base64")
        decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data])
        np.testing.assert_allclose(decoded, expected, atol=1e-5)

        queries = client.embeddings.create(model="minilm", input=TEXTS, extra_body={"input_type": "query"})
        np.testing.assert_allclose(
            np.array([d.embedding for d in queries.data]), minilm.encode_queries(TEXTS), atol=1e-5
        )
        assert float(expected[0] @ expected[1]) == pytest.approx(0.755, abs=0.01)  # real MiniLM behaviour

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).embeddings.create(
                model="minilm", input="x"
            )
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            client.embeddings.create(model="minilm", input="x", dimensions=64)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="text-embedding-3-small", input="x")

        headers = {"Authorization": f"Bearer {KEY}"}
        docs = [{"id": f"d{i}", "title": f"T{i}", "text": text} for i, text in enumerate(TEXTS)]
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            assert http.post("/v1/documents", json={"documents": docs}).json()["total"] == 3
            assert http.delete("/v1/documents/d2").json()["deleted"] is True
            ready = http.get("/ready").json()
        assert ready["documents"] == 2
        # no graceful shutdown: the acknowledged state must already be on disk
        os.kill(server.pid, signal.SIGKILL)  # one worker: uvicorn serves in the CLI process itself
        server.wait(10)

    with cli_server(args, env) as (base, _), httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        assert http.get("/ready").json()["documents"] == 2
        hits = http.post("/v1/search", json={"query": "Someone eats bread.", "top_k": 3}).json()["data"][0]["hits"]
        assert [h["id"] for h in hits] == ["d1", "d0"]
        assert hits[0]["title"] == "T1" and hits[0]["text"] == TEXTS[1]
        metrics = http.get("/metrics").text
        assert 'tdro_requests_total{method="POST",route="/v1/search",status="200"} 1.0' in metrics


def test_several_workers_serve_one_index_read_only(tiny_encoder_dir, tmp_path) -> None:
    import torch

    from tdro_suite.index.dense_index import DenseIndex

    vectors = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1).numpy()
    DenseIndex.build(vectors, ["a", "b", "c"], docs=[{"text": t} for t in "xyz"],
                     manifest={"model": str(tiny_encoder_dir)}).save(tmp_path / "idx")
    args = ["--model", str(tiny_encoder_dir), "--max-length", "64", "--index", str(tmp_path / "idx"),
            "--workers", "2", "--torch-threads", "1"]
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection per request: either worker answers
    with cli_server(args) as (base, _), httpx.Client(base_url=base, timeout=60, limits=fresh) as http:
        ready, deadline = set(), time.monotonic() + 120
        while len(ready) < 2:  # both workers answered /ready with 200
            response = http.get("/ready")
            if response.status_code == 200:
                ready.add(response.json()["worker"])
            assert time.monotonic() < deadline, f"ready workers: {ready}"
        for _ in range(4):
            response = http.post("/v1/search", json={"query": "x", "top_k": 3})
            assert response.status_code == 200, response.text
            assert sorted(h["id"] for h in response.json()["data"][0]["hits"]) == ["a", "b", "c"]
        refused = http.post("/v1/documents", json={"documents": [{"id": "d", "text": "w"}]})
        assert refused.status_code == 409 and "--workers 1" in refused.json()["error"]["message"]
