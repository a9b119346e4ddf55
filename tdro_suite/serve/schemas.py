"""Request and response bodies. `/v1/embeddings` follows OpenAI's shapes; the rest is ours.

Unknown fields are ignored on the OpenAI-compatible endpoint (clients send `user` and friends) and
rejected on our own endpoints, so a typo there is a 422 rather than a silently ignored option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

InputTypeField = Literal["query", "passage", "none"]

_INPUT_TYPE_HELP = (
    "Extension: which prompt the model puts before each input: 'query', 'passage' or 'none' "
    "(default: the server's default_input_type)."
)


def _text_or_texts(value: Any, what: str) -> Any:
    """One clear message instead of pydantic's per-union-member errors."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(f"must be a string or a list of strings ({what}; token-id arrays are not accepted)")


def _is_token_ids(value: Any) -> bool:
    """OpenAI's token-id forms of `input`: one list of ints, or a list of such lists (bools are not ints here)."""

    def ints(items: Any) -> bool:
        return isinstance(items, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in items)

    return isinstance(value, list) and bool(value) and (ints(value) or all(ints(item) for item in value))


# What LangChain's OpenAIEmbeddings sends by default (it splits texts with tiktoken and sends the ids).
TOKEN_IDS_MESSAGE = (
    "this server embeds text, not token ids: send each input as a string (a string or a list of strings). "
    "LangChain's OpenAIEmbeddings sends tiktoken token ids unless it is built with "
    "OpenAIEmbeddings(..., check_embedding_ctx_length=False); with the openai client, pass the texts themselves"
)


class EmbeddingRequest(BaseModel):
    """OpenAI `POST /v1/embeddings` body plus the `input_type`/`instruction` extensions."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(..., description="One text or a list of texts (token-id arrays are not accepted).")
    model: str | None = Field(None, description="Served model name (GET /v1/models); default: the served model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Output size; only sizes the model was trained for.")
    user: str | None = None
    input_type: InputTypeField | None = Field(None, description=_INPUT_TYPE_HELP)
    instruction: str | None = Field(
        None, max_length=2048, description="Extension: task instruction for queries (LLM retrievers)."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if _is_token_ids(value):
            raise ValueError(TOKEN_IDS_MESSAGE)
        return _text_or_texts(value, "the texts to embed")


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tdro-suite"
    dimension: int
    max_length: int
    pooling: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | list[str] = Field(..., description="One query or a list of queries.")
    top_k: int = Field(10, ge=1, description="Hits per query (at most the server's max_top_k).")
    model: str | None = None
    input_type: InputTypeField = Field("query", description=_INPUT_TYPE_HELP)
    instruction: str | None = Field(None, max_length=2048)
    include_text: bool = Field(True, description="Return the stored title and text of each hit.")

    @field_validator("query", mode="before")
    @classmethod
    def _query(cls, value: Any) -> Any:
        return _text_or_texts(value, "the queries")


class SearchHit(BaseModel):
    id: str
    score: float
    title: str | None = None
    text: str | None = None


class SearchResult(BaseModel):
    query_index: int
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchResult]
    model: str
    usage: Usage


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=512)
    text: str = Field(..., min_length=1)
    title: str = ""


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(..., min_length=1)


class DocumentsResponse(BaseModel):
    added: int
    replaced: int
    total: int


class DeleteResponse(BaseModel):
    id: str
    deleted: bool
    total: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope, so OpenAI clients raise their usual exceptions with our message."""

    error: ErrorDetail
