"""The service in-process (TestClient) on a tiny BERT: shapes, equality with `encode`, limits, auth, errors."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest
from test_serve_support import model_tokens, ready_client, tiny_settings

from tdro_suite.modeling import Encoder
from tdro_suite.serve import create_app

TEXTS = ["the quick brown fox jumps over the lazy dog", "a man is eating food", "dense retrieval"]


@pytest.fixture(scope="module")
def reference(tiny_encoder_dir) -> Encoder:
    """An independently loaded copy of the served model: what in-process encoding gives."""
    return Encoder.from_pretrained(tiny_encoder_dir, max_length=64, device="cpu")


@pytest.fixture(scope="module")
def client(tiny_encoder_dir):
    with ready_client(create_app(tiny_settings(tiny_encoder_dir, matryoshka_dims=[16]))) as c:
        yield c


def _vectors(body: dict) -> np.ndarray:
    return np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], dtype=np.float32)


def test_health_ready_models(client, tiny_encoder_dir) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["documents"] is None
    card = client.get("/v1/models").json()["data"][0]
    assert card["id"] == str(tiny_encoder_dir) and card["dimension"] == 32 and card["max_length"] == 64


def test_embeddings_match_in_process_encode(client, reference) -> None:
    body = client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "float"}).json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1, 2]
    np.testing.assert_allclose(_vectors(body), reference.encode(TEXTS), atol=1e-5)
    assert body["usage"]["prompt_tokens"] == model_tokens(reference, TEXTS) == body["usage"]["total_tokens"]

    single = client.post("/v1/embeddings", json={"input": TEXTS[0]}).json()
    np.testing.assert_allclose(_vectors(single)[0], reference.encode([TEXTS[0]])[0], atol=1e-5)

    b64 = client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]])
    np.testing.assert_allclose(decoded, reference.encode(TEXTS), atol=1e-5)


def test_input_type_and_instruction_select_prompts(client, reference) -> None:
    instruction = "Given a question, retrieve passages that answer it"
    body = client.post(
        "/v1/embeddings", json={"input": TEXTS, "input_type": "query", "instruction": instruction}
    ).json()
    np.testing.assert_allclose(_vectors(body), reference.encode_queries(TEXTS, instruction=instruction), atol=1e-5)
    assert not np.allclose(_vectors(body), reference.encode(TEXTS), atol=1e-3)
    passages = client.post("/v1/embeddings", json={"input": TEXTS, "input_type": "passage"}).json()
    np.testing.assert_allclose(_vectors(passages), reference.encode_passages(TEXTS), atol=1e-5)
    bad = client.post("/v1/embeddings", json={"input": TEXTS, "input_type": "passage", "instruction": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "instruction"


def test_dimensions_native_matryoshka_and_unsupported(client, reference) -> None:
    full = reference.encode(TEXTS)
    native = client.post("/v1/embeddings", json={"input": TEXTS, "dimensions": 32})
    np.testing.assert_allclose(_vectors(native.json()), full, atol=1e-5)
    cut = _vectors(client.post("/v1/embeddings", json={"input": TEXTS, "dimensions": 16}).json())
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, atol=1e-5)
    bad = client.post("/v1/embeddings", json={"input": TEXTS, "dimensions": 8})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "dimensions" and "16, 32" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "input_type": "document"}, "input_type"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({}, "input"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(client, payload, param) -> None:
    response = client.post("/v1/embeddings", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and param.split("[")[0] in error["message"]


@pytest.mark.parametrize("token_ids", [[1, 2, 3], [[1, 2], [3]]])
def test_token_id_input_gets_422_saying_text_and_how_to_configure_langchain(client, token_ids) -> None:
    response = client.post("/v1/embeddings", json={"input": token_ids})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "input" and error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid request: 'input': this server embeds text, not token ids")
    assert "OpenAIEmbeddings(..., check_embedding_ctx_length=False)" in error["message"]
    mixed = client.post("/v1/embeddings", json={"input": [[1, 2], "text"]}).json()["error"]
    assert mixed["param"] == "input" and "token ids" not in mixed["message"]  # not a token-id form


def test_invalid_json_and_unknown_model(client) -> None:
    response = client.post("/v1/embeddings", content=b"{bad", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]["message"]
    missing = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-large"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_request_limits_answer_413_naming_the_limit(tiny_encoder_dir) -> None:
    settings = tiny_settings(
        tiny_encoder_dir, max_inputs_per_request=3, max_chars_per_input=100, max_body_bytes=2048, truncate=False
    )
    with ready_client(create_app(settings)) as c:
        too_many = c.post("/v1/embeddings", json={"input": ["a", "b", "c", "d"]})
        assert too_many.status_code == 413 and "max_inputs_per_request=3" in too_many.json()["error"]["message"]
        too_long = c.post("/v1/embeddings", json={"input": ["a", "b" * 101]})
        assert too_long.status_code == 413 and too_long.json()["error"]["param"] == "input[1]"
        assert "max_chars_per_input=100" in too_long.json()["error"]["message"]
        too_big = c.post("/v1/embeddings", json={"input": ["word " * 19] * 3, "user": "x" * 3000})
        assert too_big.status_code == 413 and "max_body_bytes=2048" in too_big.json()["error"]["message"]

        def chunks():
            yield b'{"input": ["'
            for _ in range(10):
                yield b"x" * 500
            yield b'"]}'

        streamed = c.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "max_body_bytes" in streamed.json()["error"]["message"]
        over_tokens = c.post("/v1/embeddings", json={"input": ["a," * 49]})  # 98 chars, 100 tokens
        assert over_tokens.status_code == 413, over_tokens.text
        assert "limit is 64" in over_tokens.json()["error"]["message"]


def test_truncation_setting_embeds_long_inputs(client, reference) -> None:
    long_text = "retrieval " * 200
    body = client.post("/v1/embeddings", json={"input": [long_text]}).json()
    np.testing.assert_allclose(_vectors(body)[0], reference.encode([long_text])[0], atol=1e-5)
    assert body["usage"]["prompt_tokens"] == 64


def test_api_key_401_and_constant_time_check(tiny_encoder_dir, monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVE_KEY", "s3cret-key")
    settings = tiny_settings(tiny_encoder_dir, api_key_env="MY_SERVE_KEY")
    with ready_client(create_app(settings)) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LWtleQ=="}):
            response = c.post("/v1/embeddings", json={"input": "x"}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "authentication_error"
        assert c.get("/v1/models").status_code == 401
        ok = c.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_unset_api_key_env_is_a_config_error(monkeypatch, tiny_encoder_dir) -> None:
    from pydantic import ValidationError

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValidationError, match="NO_SUCH_KEY_VAR"):
        tiny_settings(tiny_encoder_dir, api_key_env="NO_SUCH_KEY_VAR")


def test_internal_errors_hide_tracebacks_and_paths(tiny_encoder_dir, monkeypatch) -> None:
    with ready_client(create_app(tiny_settings(tiny_encoder_dir)), raise_server_exceptions=False) as c:
        service = c.app.state.service

        def broken(texts, tokens):
            raise RuntimeError("failure in /srv/secret/model/weights.bin")

        monkeypatch.setattr(service.batcher, "encode", broken)
        response = c.post("/v1/embeddings", json={"input": "x"})
        assert response.status_code == 500
        assert "secret" not in response.text and "Traceback" not in response.text
        assert response.json()["error"]["code"] == "internal_error"


def test_cors_is_off_unless_configured(client, tiny_encoder_dir) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/embeddings", headers=preflight).headers
    settings = tiny_settings(tiny_encoder_dir, cors_origins=["https://app.example"])
    with ready_client(create_app(settings)) as c:
        response = c.options("/v1/embeddings", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def _gate_model(service, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make the model thread wait on `release` (and report `entered`), so queue states are deterministic."""
    entered, release = threading.Event(), threading.Event()
    real = service.batcher.encode

    def gated(texts, tokens):
        entered.set()
        assert release.wait(30)
        return real(texts, tokens)

    monkeypatch.setattr(service.batcher, "encode", gated)
    return entered, release


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_full_queue_answers_429_with_retry_after(tiny_encoder_dir, monkeypatch) -> None:
    settings = tiny_settings(tiny_encoder_dir, max_queue_inputs=2, max_inputs_per_request=2, retry_after_s=3)
    with ready_client(create_app(settings)) as c:
        service = c.app.state.service
        entered, release = _gate_model(service, monkeypatch)
        results: dict[str, int] = {}

        def post(name: str, texts: list[str]) -> None:
            results[name] = c.post("/v1/embeddings", json={"input": texts}).status_code

        first = threading.Thread(target=post, args=("first", ["a", "b"]))
        first.start()
        assert entered.wait(10)  # the model is busy with the first request
        second = threading.Thread(target=post, args=("second", ["c", "d"]))
        second.start()
        _wait_for(lambda: service.batcher.pending == 2)  # the queue is full
        flooded = c.post("/v1/embeddings", json={"input": ["e"]})
        assert flooded.status_code == 429 and flooded.headers["retry-after"] == "3"
        assert "max_queue_inputs" in flooded.json()["error"]["message"]
        release.set()
        first.join(30)
        second.join(30)
        assert results == {"first": 200, "second": 200}
        assert 'tdro_rejected_total{reason="queue_full"} 1.0' in c.get("/metrics").text


def test_concurrent_requests_share_a_batch_and_get_their_own_rows(tiny_encoder_dir, reference, monkeypatch) -> None:
    with ready_client(create_app(tiny_settings(tiny_encoder_dir))) as c:
        service = c.app.state.service
        entered, release = _gate_model(service, monkeypatch)
        bodies: dict[int, dict] = {}

        def post(i: int) -> None:
            bodies[i] = c.post("/v1/embeddings", json={"input": [TEXTS[i % 3], f"request {i}"]}).json()

        threads = [threading.Thread(target=post, args=(i,)) for i in range(5)]
        threads[0].start()
        assert entered.wait(10)
        for t in threads[1:]:
            t.start()
        _wait_for(lambda: service.batcher.pending == 8)
        release.set()
        for t in threads:
            t.join(30)
        for i, body in bodies.items():
            np.testing.assert_allclose(_vectors(body), reference.encode([TEXTS[i % 3], f"request {i}"]), atol=1e-5)
        metrics = c.get("/metrics").text
        # one batch of 2 (the first request), then one batch of the 8 queued inputs
        assert "tdro_batch_size_count 2.0" in metrics and 'tdro_batch_size_bucket{le="8.0"} 2.0' in metrics
        assert 'tdro_batch_size_bucket{le="4.0"} 1.0' in metrics


def test_metrics_expose_requests_latency_queue_and_tokens(client) -> None:
    client.post("/v1/embeddings", json={"input": TEXTS})
    text = client.get("/metrics").text
    assert 'tdro_requests_total{method="POST",route="/v1/embeddings",status="200"}' in text
    assert 'tdro_request_latency_seconds_bucket{le="0.005",route="/v1/embeddings"}' in text
    assert "tdro_queue_depth 0.0" in text and "tdro_batch_padded_tokens_count" in text
    assert 'tdro_tokens_total{route="/v1/embeddings"}' in text and 'tdro_inputs_total{route="/v1/embeddings"}' in text


def test_decoder_model_with_last_token_pooling_serves_the_same_vectors(tiny_decoder_dir) -> None:
    from tdro_suite.serve.service import TokenCounter

    reference = Encoder.from_pretrained(tiny_decoder_dir, max_length=64, device="cpu")
    assert reference.pooling == "lasttoken"
    # the request-side counter (a private tokenizer copy) counts the tokens the model runs, EOS included
    assert TokenCounter(reference.tokenizer)(TEXTS) == reference.tokenize(TEXTS)["attention_mask"].sum(1).tolist()
    with ready_client(create_app(tiny_settings(tiny_decoder_dir))) as c:
        body = c.post("/v1/embeddings", json={"input": TEXTS, "input_type": "query", "instruction": "find"}).json()
        np.testing.assert_allclose(_vectors(body), reference.encode_queries(TEXTS, instruction="find"), atol=1e-5)
        assert body["usage"]["prompt_tokens"] == model_tokens(reference, [f"Instruct: find\nQuery: {t}" for t in TEXTS])
