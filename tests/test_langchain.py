"""LangChain's `OpenAIEmbeddings` against a real server (uvicorn on 127.0.0.1) serving MiniLM.

The README's LangChain example is run as written (only its URL points at the test server): its vectors
equal in-process `Encoder.encode`. With `check_embedding_ctx_length` left at its default, LangChain splits
texts with tiktoken and sends token ids; the server answers 422 naming `input` and the setting to change.

tiktoken downloads its encodings from the internet, which test machines cannot reach, so that part gives
LangChain an offline byte-level tiktoken encoding (LangChain's own code still builds and sends the
token-id request), and it also sends the same request, lists of token-id lists, through the official
`openai` client.
"""

from __future__ import annotations

import numpy as np
import openai
import pytest
import torch
from test_readme import _blocks
from test_serve_support import live_server

from tdro_suite.serve import ServeSettings, create_app

langchain_openai = pytest.importorskip("langchain_openai")
tiktoken = pytest.importorskip("tiktoken")

pytestmark = pytest.mark.slow

README_URL = "http://127.0.0.1:8000"


def _readme_example() -> str:
    [block] = [block for block in _blocks("python") if "OpenAIEmbeddings(" in block]
    return block


@pytest.fixture(scope="module")
def base_url():
    settings = ServeSettings(model="minilm", device="cpu", torch_threads=torch.get_num_threads())
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture()
def readme_run(base_url) -> dict:
    """The README's example run against the test server: its variables."""
    example = _readme_example()
    assert README_URL in example and "check_embedding_ctx_length=False" in example
    namespace: dict = {}
    exec(compile(example.replace(README_URL, base_url), "README.md", "exec"), namespace)
    return namespace


def test_readme_example_embeds_like_the_encoder(readme_run, minilm) -> None:
    passages = np.array(readme_run["passage_vectors"], dtype=np.float32)
    np.testing.assert_allclose(passages, minilm.encode(["Paris is the capital of France."]), atol=1e-5)
    query = np.array(readme_run["query_vector"], dtype=np.float32)
    np.testing.assert_allclose(query, minilm.encode(["capital of France"])[0], atol=1e-5)


def _assert_token_id_error(error: openai.APIStatusError) -> None:
    assert error.status_code == 422 and error.param == "input"
    assert "not token ids" in error.message and "check_embedding_ctx_length=False" in error.message


def test_default_langchain_config_gets_the_setting_to_change(readme_run, monkeypatch) -> None:
    byte_level = tiktoken.Encoding(
        name="offline-bytes",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={},
    )
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda _name: byte_level)
    default = readme_run["embeddings"].model_copy(update={"check_embedding_ctx_length": True})
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        default.embed_documents(["Paris is the capital of France.", "capital of France"])
    _assert_token_id_error(raised.value)


@pytest.mark.parametrize("token_ids", [[[80, 12], [3, 7, 9]], [80, 12, 3]])
def test_openai_client_token_ids_get_the_setting_to_change(base_url, token_ids) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.embeddings.create(model="minilm", input=token_ids)
    _assert_token_id_error(raised.value)
