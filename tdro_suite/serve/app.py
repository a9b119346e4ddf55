"""The FastAPI app factory: `create_app(settings)` builds one service; uvicorn runs it.

Routes: OpenAI-compatible `POST /v1/embeddings`, `GET /v1/models`; `POST /v1/search`,
`POST /v1/documents`, `DELETE /v1/documents/{doc_id}` over a served index; `GET /health` (the process
answers), `GET /ready` (model and index loaded), `GET /metrics` (Prometheus). `/v1/*` needs the API
key when one is configured; health, readiness and metrics stay open for orchestrators and scrapers.

A model or index that cannot load is fatal when the app runs under `tdro-suite serve`: the worker built
by `create_app_from_env` hands the reason to `report_fatal_startup`, which stops the server so that
the command exits non-zero; `/ready` answers 503 only while loading. An app built with `create_app`
alone (tests, embedding programs) keeps running and reports `"status": "failed"` with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Path
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tdro_suite import __version__
from tdro_suite.data.types import Passage
from tdro_suite.modeling import Encoder
from tdro_suite.serve.auth import require_api_key
from tdro_suite.serve.body_limit import BodySizeLimitMiddleware
from tdro_suite.serve.errors import ApiError, install_error_handlers
from tdro_suite.serve.logging_setup import configure_logging
from tdro_suite.serve.metrics import MetricsMiddleware, ServeMetrics
from tdro_suite.serve.schemas import (
    DeleteResponse,
    DocumentsRequest,
    DocumentsResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
    SearchRequest,
    SearchResponse,
)
from tdro_suite.serve.server import report_fatal_startup
from tdro_suite.serve.service import Service, encode_base64
from tdro_suite.serve.settings import ServeSettings, settings_from_environment


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def create_app(
    settings: ServeSettings | None = None,
    *,
    encoder: Encoder | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the app. `encoder` lets tests (or an embedding program) reuse an already loaded model;
    `on_fatal(reason)` is called (on the event loop) when the model or index fails to load."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    service = Service(settings, metrics, encoder)
    service.created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_batcher()
        loading = asyncio.get_running_loop().run_in_executor(None, service.load)

        def loaded(_: object) -> None:
            if service.state == "failed" and on_fatal is not None:
                on_fatal(service.failure or "the model or index could not be loaded")

        loading.add_done_callback(loaded)
        try:
            yield
        finally:
            assert service.batcher is not None
            await service.batcher.stop()
            await asyncio.wait([loading], timeout=1)
            await asyncio.to_thread(service.close)  # fold the document log into a snapshot

    app = FastAPI(
        title="tdro-suite retriever",
        version=__version__,
        description="OpenAI-compatible embeddings and dense search for RAG, with dynamic batching.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    auth = [Depends(require_api_key(settings.api_key))]

    @app.get("/health", tags=["ops"], summary="Liveness: the process answers.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], summary="Readiness: model and index are loaded.",
             responses={503: {"description": "Still loading (or, for an app built without on_fatal, loading "
                                                 "failed: see the server log)."}})
    async def ready() -> JSONResponse:
        body: dict[str, Any] = {"status": service.state, "model": settings.model_name, "worker": os.getpid()}
        if service.state == "ready":
            body["documents"] = service.document_count() if settings.index is not None else None
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(settings.retry_after_s)})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics.", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["openai"], response_model=ModelList, dependencies=auth,
             responses=_errors(401, 503))
    async def models() -> ModelList:
        encoder = service.require_ready()
        card = ModelCard(id=settings.model_name, created=service.created, dimension=encoder.dimension,
                         max_length=encoder.max_length, pooling=encoder.pooling)
        return ModelList(data=[card])

    @app.post("/v1/embeddings", tags=["openai"], response_model=EmbeddingResponse, dependencies=auth,
              responses=_errors(400, 401, 404, 413, 422, 429, 503))
    async def embeddings(body: EmbeddingRequest) -> JSONResponse:
        service.check_model(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        prompt = service.prompt_for(body.input_type, body.instruction)
        service.check_dimensions(body.dimensions)  # refuse before spending model time
        result = await service.embed(texts, prompt, "input", "/v1/embeddings")
        vectors = service.resize(result.vectors, body.dimensions)
        if body.encoding_format == "base64":
            data = [{"object": "embedding", "index": i, "embedding": encode_base64(v)} for i, v in enumerate(vectors)]
        else:
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return JSONResponse({"object": "list", "data": data, "model": settings.model_name, "usage": usage})

    @app.post("/v1/search", tags=["search"], response_model=SearchResponse, dependencies=auth,
              responses=_errors(401, 404, 413, 422, 429, 503))
    async def search(body: SearchRequest) -> JSONResponse:
        service.check_model(body.model)
        service.require_index()
        if body.top_k > settings.max_top_k:
            raise ApiError(413, f"'top_k' is {body.top_k}; the limit is max_top_k={settings.max_top_k}.",
                           param="top_k", code="max_top_k")
        queries = [body.query] if isinstance(body.query, str) else body.query
        prompt = service.prompt_for(body.input_type, body.instruction)
        result = await service.embed(queries, prompt, "query", "/v1/search")
        # in a thread: the index lock may be held by a document save, which must not stall the event loop
        hits = await asyncio.to_thread(service.search, result.vectors, body.top_k, body.include_text)
        data = [{"query_index": q, "hits": row} for q, row in enumerate(hits)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return JSONResponse({"object": "list", "data": data, "model": settings.model_name, "usage": usage})

    @app.post("/v1/documents", tags=["search"], response_model=DocumentsResponse, dependencies=auth,
              responses=_errors(401, 404, 409, 413, 422, 429, 503))
    async def add_documents(body: DocumentsRequest) -> DocumentsResponse:
        service.require_index(writable=True)
        seen: set[str] = set()
        for n, doc in enumerate(body.documents):
            if doc.id in seen:
                raise ApiError(422, f"Document id '{doc.id}' appears more than once in 'documents'.",
                               param=f"documents[{n}].id", code="duplicate_id")
            seen.add(doc.id)
        passages = [Passage(docid=d.id, text=d.text, title=d.title) for d in body.documents]
        prompt = service.prompt_for("passage", None)
        result = await service.embed([p.full_text() for p in passages], prompt, "documents", "/v1/documents")
        added, replaced = await asyncio.to_thread(service.add_documents, passages, result.vectors)
        return DocumentsResponse(added=added, replaced=replaced, total=service.document_count())

    @app.delete("/v1/documents/{doc_id:path}", tags=["search"], response_model=DeleteResponse, dependencies=auth,
                responses=_errors(401, 404, 409, 503))
    async def delete_document(doc_id: str = Path(..., min_length=1, max_length=512)) -> DeleteResponse:
        service.require_index(writable=True)
        if not await asyncio.to_thread(service.remove_document, doc_id):
            raise ApiError(404, f"No document with id '{doc_id}' in the index.", param="doc_id",
                           code="document_not_found")
        return DeleteResponse(id=doc_id, deleted=True, total=service.document_count())

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory (`--factory tdro_suite.serve.app:create_app_from_env`), used by every worker.

    Start-up failures (settings, model, index) are fatal: they stop the server (`report_fatal_startup`).
    """
    try:
        settings = settings_from_environment()
    except Exception as exc:
        report_fatal_startup(f"invalid settings: {exc}")
        raise
    configure_logging(settings.log_level)
    return create_app(settings, on_fatal=report_fatal_startup)
