"""What the routes call: the loaded model behind the batcher, the served index, and their checks.

The model and the index load in a background thread when the app starts, so `/health` answers at
once and `/ready` turns 200 when both are usable. A failed load is kept in `Service.failure`; under
`tdro-suite serve` it stops the server (see `tdro_suite.serve.server`). Request limits are checked here, before anything
is queued, and each failure names the limit (setting) it hit.

Document changes (POST/DELETE /v1/documents) are applied to the index in memory and appended to the
index folder's change log, fsync'ed, BEFORE the request is acknowledged (`tdro_suite.index.document_log`,
which also argues why no crash loses or doubles a change). If the append fails, the in-memory index is
reloaded from the folder, so memory never holds an unacknowledged change. Once the log reaches
`snapshot_log_bytes` the whole folder is saved again (a snapshot), which empties the log. That snapshot
is read back from the folder and written beside it in a background thread that takes the index lock only
to swap the folders (`_snapshot_unlocked`): searches and changes go on meanwhile, and the changes made
meanwhile move into the new folder's log. A start whose replayed log is past the threshold and `close()`
(a clean shutdown; the app's lifespan calls it after the batcher stops) save under the lock, with nothing
else to serve. A restart,
and every other reader (`DenseIndex.load` replays the log), sees exactly the acknowledged documents. A
change costs one append + fsync (~4 ms on the bench machine) instead of a full save (~5 s at 10^6
documents). A folder with a log is marked format 2 first, so a tdro-suite from before the log refuses it.
"""

from __future__ import annotations

import base64
import copy
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
import numpy as np
import torch

from tdro_suite.common.errors import TdroError
from tdro_suite.data.types import Passage
from tdro_suite.index.document_log import LOG_FILE, Change, DocumentLog, read_log, sync_folder
from tdro_suite.modeling import Encoder
from tdro_suite.modeling.prompts import query_prompt
from tdro_suite.serve.batcher import BatcherStopped, DynamicBatcher, QueueFull
from tdro_suite.serve.errors import ApiError
from tdro_suite.serve.metrics import ServeMetrics
from tdro_suite.serve.pass_plan import pass_overhead, plan_passes
from tdro_suite.serve.settings import ServeSettings

log = logging.getLogger("tdro_suite.serve")


class TokenCounter:
    """Tokens per text before truncation (specials and EOS included), on a private copy of the tokenizer.

    Hugging Face fast tokenizers change their truncation state on every call and fail with
    "Already borrowed" when two threads call them at once; the model thread tokenises batches while
    requests are counted, so counting gets its own copy (and its own thread).
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            ids = self._tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(x) for x in ids]


@dataclass
class Embedded:
    vectors: np.ndarray
    tokens: int


class Service:
    """Model, batcher and index of one app, plus the state that `/ready` reports."""

    def __init__(self, settings: ServeSettings, metrics: ServeMetrics, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.encoder: Encoder | None = encoder
        self.index: Any = None  # DenseIndex once loaded (None: no index yet)
        self.index_lock = threading.Lock()  # FAISS objects are not safe under concurrent add/search
        self._log: DocumentLog | None = None  # the folder's change log, opened by the first write
        self._snapshotter: threading.Thread | None = None  # a snapshot made without the lock (`_snapshot_if_due`)
        self.state = "loading"
        self.failure: str | None = None  # why loading failed (state "failed")
        self.counter: TokenCounter | None = None
        self.pass_overhead = 0.0  # a forward pass's fixed cost in padded tokens, measured at load
        self.batcher: DynamicBatcher | None = None
        self.created = 0
        self._thread = threading.local()  # each model thread's encoder (see `_thread_encoder`)
        self._twins = threading.Lock()
        self._handed_out = False  # the loaded encoder went to a model thread; the next ones get twins

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Load the model and the index (runs in a thread); a failure is logged and kept in `failure`."""
        try:
            if self.encoder is None:
                self.encoder = Encoder.from_pretrained(
                    self.settings.model,
                    max_length=self.settings.max_length,
                    device=self.settings.device,
                    dtype=self.settings.dtype,
                    attn_implementation=self.settings.attn_implementation,
                )
            self.counter = TokenCounter(self.encoder.tokenizer)
            self._measure_pass_overhead()
            self.index = self._load_index()
            self._fold_replayed_log()
        except TdroError as exc:
            log.error("Could not load the model or index: %s", exc)
            self.failure = str(exc)
            self.state = "failed"
            return
        except Exception as exc:
            log.exception("Could not load the model or index")
            self.failure = f"{type(exc).__name__}: {exc}"
            self.state = "failed"
            return
        streams = self.batcher.streams if self.batcher is not None else 1
        log.info("Serving %s (dimension %d, max_length %d, %d model stream(s) of %d torch thread(s), "
                 "a forward pass costs %.0f padded tokens more than its tokens)", self.settings.model_name,
                 self.encoder.dimension, self.encoder.max_length, streams, self.torch_threads(), self.pass_overhead)
        self.state = "ready"

    def _load_index(self) -> Any:
        folder = self.settings.index
        if folder is None:
            return None
        from tdro_suite.index.dense_index import DenseIndex, interrupted_save
        from tdro_suite.index.errors import IndexMismatchError

        if not folder.exists() and interrupted_save(folder) is None:  # else `load` says what to rename back
            log.warning("Index folder %s does not exist; the first POST /v1/documents creates it.", folder)
            return None
        index = DenseIndex.load(folder)
        assert self.encoder is not None
        if index.dimension != self.encoder.dimension:
            raise IndexMismatchError(
                f"index {folder} has dimension {index.dimension}, model '{self.settings.model}' gives "
                f"{self.encoder.dimension}: serve the model the index was built with."
            )
        index.check_model(self.encoder.name)
        log.info("Index %s: %d documents (%d replayed from its change log)", folder, len(index),
                 index.replayed_changes)
        return index

    def _fold_replayed_log(self) -> None:
        """A log past the snapshot threshold (left by a crash) is folded into a snapshot before serving.

        Only when changes were replayed, so a read-only folder without a log is served as before; one
        whose log cannot be opened is served too, and its writes answer 503.
        """
        if self.index is None or self.settings.workers > 1 or not self.index.replayed_changes:
            return
        with self.index_lock:
            try:
                self._maybe_snapshot(self._writer())
            except OSError as exc:
                log.warning("Cannot open the change log of %s (%s); document changes will fail", self._folder(), exc)
                self._close_log()

    def start_batcher(self) -> None:
        """Create the batcher on the running loop; it encodes through `Encoder.encode` in its model threads."""
        from tdro_suite.common.device import resolve_device

        device = self.encoder.device if self.encoder is not None else resolve_device(self.settings.device)
        self.batcher = DynamicBatcher(
            self._encode_batch,
            max_batch_size=self.settings.max_batch_size,
            max_batch_tokens=self.settings.max_batch_tokens,
            max_queue_inputs=self.settings.max_queue_inputs,
            batch_wait_s=self.settings.batch_wait_ms / 1000.0,
            streams=self.settings.streams(device.type),
            metrics=self.metrics,
        )
        self.batcher.start()

    def torch_threads(self) -> int:
        """torch threads of one model call: the worker's threads shared among its model streams."""
        streams = self.batcher.streams if self.batcher is not None else 1
        return max(1, self.settings.model_threads() // streams)

    def _thread_encoder(self) -> Encoder:
        """This model thread's encoder: the loaded one for the first thread, a twin (own tokenizer) for others."""
        encoder = getattr(self._thread, "encoder", None)
        if encoder is None:
            assert self.encoder is not None
            with self._twins:
                encoder = self.encoder.sharing_weights() if self._handed_out else self.encoder
                self._handed_out = True
            self._thread.encoder = encoder
        return encoder

    def _encode_batch(self, texts: list[str], tokens: list[int]) -> np.ndarray:
        """One model call: the cheapest split into padded forward passes for this model (`plan_passes`)."""
        encoder = self._thread_encoder()
        if torch.get_num_threads() != self.torch_threads():  # OpenMP's setting is per calling thread
            torch.set_num_threads(self.torch_threads())
        out = np.empty((len(texts), encoder.dimension), dtype=np.float32)
        for rows in plan_passes(tokens, self.settings.forward_batch_size, self.pass_overhead):
            out[rows] = encoder.encode_pass([texts[i] for i in rows])
        return out

    def _measure_pass_overhead(self) -> None:
        """Time the loaded model once at the model streams' thread count (see `pass_plan`)."""
        assert self.encoder is not None
        threads = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads())
        try:
            self.pass_overhead = pass_overhead(self.encoder.encode_pass)
        finally:
            torch.set_num_threads(threads)

    def require_ready(self) -> Encoder:
        if self.state != "ready" or self.encoder is None:
            message = "The model is still loading." if self.state == "loading" else "The model failed to load."
            raise ApiError(503, message, code="not_ready", headers={"Retry-After": str(self.settings.retry_after_s)})
        return self.encoder

    # ------------------------------------------------------------------ embedding
    def check_model(self, requested: str | None) -> None:
        encoder = self.require_ready()
        if requested and requested not in (self.settings.model_name, self.settings.model, encoder.name):
            raise ApiError(
                404,
                f"Model '{requested}' is not served here; this server serves '{self.settings.model_name}' "
                "(GET /v1/models).",
                param="model",
                code="model_not_found",
            )

    def prompt_for(self, input_type: str | None, instruction: str | None) -> str:
        """The literal prefix `Encoder.encode(prompt=...)` would use for this request."""
        encoder = self.require_ready()
        kind = input_type or self.settings.default_input_type
        if instruction is not None and kind != "query":
            raise ApiError(422, "'instruction' applies to queries only: set input_type to 'query'.",
                           param="instruction", code="invalid_value")
        if kind == "query":
            if instruction is None:
                return encoder.prompts.get("query", "")
            saved = getattr(encoder, "instructions", None)  # the model's own template, when it saved one
            return saved.query_prompt(instruction) if saved is not None else query_prompt(instruction)
        if kind == "passage":
            return encoder.prompts.get("passage", "")
        return ""

    def check_inputs(self, texts: Sequence[str], field: str) -> None:
        limit = self.settings.max_inputs_per_request
        if not texts:
            raise ApiError(422, f"'{field}' must not be empty.", param=field, code="invalid_value")
        if len(texts) > limit:
            raise ApiError(413, f"'{field}' has {len(texts)} items; the limit is max_inputs_per_request={limit}.",
                           param=field, code="max_inputs_per_request")
        max_chars = self.settings.max_chars_per_input
        for i, text in enumerate(texts):
            if not text:
                raise ApiError(422, f"'{field}[{i}]' is an empty string.", param=f"{field}[{i}]", code="invalid_value")
            if len(text) > max_chars:
                raise ApiError(413, f"'{field}[{i}]' has {len(text)} characters; the limit is "
                               f"max_chars_per_input={max_chars}.", param=f"{field}[{i}]", code="max_chars_per_input")

    async def embed(self, texts: Sequence[str], prompt: str, field: str, route: str) -> Embedded:
        """Check limits, count tokens, queue through the batcher; errors become the right HTTP status."""
        encoder = self.require_ready()
        self.check_inputs(texts, field)
        full = [f"{prompt}{t}" if prompt else t for t in texts]
        assert self.counter is not None and self.batcher is not None
        counts = await anyio.to_thread.run_sync(self.counter, full)
        limit = encoder.max_length
        if not self.settings.truncate:
            for i, n in enumerate(counts):
                if n > limit:
                    raise ApiError(413, f"'{field}[{i}]' has {n} tokens; the model's limit is {limit} "
                                   "(the server runs with truncate=false).", param=f"{field}[{i}]",
                                   code="max_tokens_per_input")
        counts = [min(n, limit) for n in counts]
        try:
            vectors = await self.batcher.submit(full, counts)
        except QueueFull as exc:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, f"The server is busy: {exc}. Retry later.", code="queue_full",
                           headers={"Retry-After": str(self.settings.retry_after_s)}) from None
        except BatcherStopped:
            raise ApiError(503, "The server is shutting down.", code="shutting_down",
                           headers={"Retry-After": str(self.settings.retry_after_s)}) from None
        total = int(sum(counts))
        self.metrics.inputs.labels(route).inc(len(full))
        self.metrics.tokens.labels(route).inc(total)
        return Embedded(vectors, total)

    def check_dimensions(self, dimensions: int | None) -> None:
        """OpenAI's `dimensions`: the native size, or a Matryoshka size the model was trained for."""
        native = self.require_ready().dimension
        if dimensions is None or dimensions == native:
            return
        allowed = sorted(d for d in self.settings.matryoshka_dims if d < native)
        if dimensions not in allowed:
            sizes = ", ".join(map(str, [*allowed, native]))
            raise ApiError(400, f"This model does not support dimensions={dimensions}; it supports: {sizes} "
                           "(smaller sizes only for models trained for them, see the matryoshka_dims setting).",
                           param="dimensions", code="unsupported_dimensions")

    def resize(self, vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
        """Cut to a checked Matryoshka size and renormalise (cosine scores stay meaningful)."""
        self.check_dimensions(dimensions)
        if dimensions is None or dimensions == vectors.shape[1]:
            return vectors
        cut = vectors[:, :dimensions]
        return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)

    # ------------------------------------------------------------------ index
    def require_index(self, *, writable: bool = False) -> Path | None:
        self.require_ready()
        if self.settings.index is None:
            raise ApiError(404, "No index is served: start the server with --index DIR.", code="no_index")
        if writable and self.settings.workers > 1:
            raise ApiError(409, "Documents can only be changed when the server runs one worker (--workers 1): "
                           "each worker holds its own copy of the index.", code="read_only")
        return self.settings.index

    def search(self, vectors: np.ndarray, top_k: int, include_text: bool) -> list[list[dict[str, Any]]]:
        """Hits per query, best first: id, score and (optionally) the stored title and text."""
        with self.index_lock:
            if self.index is None:
                return [[] for _ in range(len(vectors))]
            scores, ids = self.index.search(vectors, top_k)
            out = []
            for q, row in enumerate(ids):
                hits = []
                for rank, doc_id in enumerate(row):
                    hit: dict[str, Any] = {"id": doc_id, "score": float(scores[q, rank])}
                    if include_text:
                        doc = self.index.get_doc(doc_id) or {}
                        hit["title"] = doc.get("title")
                        hit["text"] = doc.get("text")
                    hits.append(hit)
                out.append(hits)
            return out

    def add_documents(self, passages: Sequence[Passage], vectors: np.ndarray) -> tuple[int, int]:
        """Add (or replace) documents, durably before returning (added, replaced)."""
        from tdro_suite.index.dense_index import DenseIndex

        ids = [p.docid for p in passages]
        docs = [p.to_dict() for p in passages]
        with self.index_lock:
            if self.index is None:  # the first document creates the folder: a snapshot of its own
                assert self.encoder is not None
                self.index = DenseIndex.build(vectors, ids, docs=docs, manifest={"model": self.encoder.name})
                self._create_folder()
                return len(ids), 0
            replaced = sum(1 for i in ids if i in self.index)
            self._commit(Change(self.index.log_sequence + 1, ids, vectors, docs))
        self._snapshot_if_due()
        return len(ids) - replaced, replaced

    def remove_document(self, doc_id: str) -> bool:
        with self.index_lock:
            if self.index is None or doc_id not in self.index:
                return False
            self._commit(Change(self.index.log_sequence + 1, [doc_id]))
        self._snapshot_if_due()
        return True

    def document_count(self) -> int:
        return len(self.index) if self.index is not None else 0

    def close(self) -> None:
        """At a clean shutdown: fold the change log into a snapshot (the next start replays nothing)."""
        self.wait_for_snapshot()
        with self.index_lock:
            if self._log is not None and self._log.size > 0 and self.index is not None:
                self._snapshot()
            self._close_log()

    # Callers of the methods below hold `index_lock`.
    def _folder(self) -> Path:
        assert self.settings.index is not None
        return self.settings.index

    def _writer(self) -> DocumentLog:
        """The folder's change log, opened on first use and again after each snapshot replaced the folder.

        A new log is created only once the manifest says LOGGED_FORMAT_VERSION, so a tdro-suite from before
        the change log refuses the folder instead of reading the snapshot without the changes.
        """
        from tdro_suite.index.dense_index import mark_logged

        if self._log is None:
            folder = self._folder()
            if not (folder / LOG_FILE).exists():
                mark_logged(folder)
            self._log = DocumentLog.open(folder, self.index.log_sequence)
        return self._log

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _commit(self, change: Change) -> None:
        """Apply `change` in memory (its checks run first), then log it durably; on failure undo it."""
        from tdro_suite.index.errors import IndexMismatchError

        try:
            writer = self._writer()  # opened first: it starts where the index in memory stands
            self.index.apply(change)
        except IndexMismatchError:
            raise  # refused before anything changed
        except Exception:
            self._fail("Applying a document change")
        try:
            writer.append(change)
        except Exception:
            self._fail("Logging a document change")

    def _create_folder(self) -> None:
        try:
            self.index.save(self._folder())
        except Exception:
            self._fail("Creating the index folder", creating=True)

    def _maybe_snapshot(self, writer: DocumentLog) -> None:
        if writer.size >= self.settings.snapshot_log_bytes:
            self._snapshot()

    def _snapshot(self) -> None:
        """Save the whole folder; its new copy has no log. A failure loses nothing: the log keeps the changes."""
        self._close_log()  # the save replaces the folder, and the log file with it
        try:
            self.index.save(self._folder())
        except Exception:
            log.exception("Snapshot of %s failed; its change log still holds every change", self._folder())

    def _snapshot_if_due(self) -> None:
        """Start a snapshot in the background once the log passes `snapshot_log_bytes` (call without the lock)."""
        with self.index_lock:
            writer = self._log
            if self._snapshotter is not None or writer is None or writer.size < self.settings.snapshot_log_bytes:
                return
            self._snapshotter = threading.Thread(target=self._snapshot_unlocked, args=(writer,),
                                                 name="tdro-snapshot", daemon=True)
        self._snapshotter.start()

    def wait_for_snapshot(self) -> None:
        """Wait until a background snapshot, if one runs, has finished."""
        thread = self._snapshotter
        if thread is not None:
            thread.join()

    def _snapshot_unlocked(self, writer: DocumentLog) -> None:
        """Fold the log into a snapshot without holding the index lock while the snapshot is made.

        The snapshot is not taken from the index in memory (a copy of it would hold the lock for ~2 s at 10^6
        documents) but read back from the folder, which holds the same state (`DenseIndex.load` replays the
        log, as every reader does), and written beside it; meanwhile searches and changes go on, the changes
        appending to the old folder's log. Under the lock, just before the swap, the records appended since
        the read move into the new folder's log, so the folder holds every acknowledged change at every
        moment (a crash before the swap leaves the old folder and its whole log; a staging folder left by
        a crash is removed by the next snapshot). The cost: the folder is read once more, and a second copy
        of the index is in memory meanwhile.
        """
        from tdro_suite.index.dense_index import DenseIndex, snapshot_staging

        folder = self._folder()
        staged = snapshot_staging(folder)
        try:
            for stale in folder.parent.glob(f".{folder.name}.snapshot-*"):  # one writer per folder: all ours
                shutil.rmtree(stale, ignore_errors=True)
            state = DenseIndex.load(folder)  # the snapshot and the changes logged so far (a torn tail left out)
            carried_from = read_log(folder / LOG_FILE).end_of(state.log_sequence)
            staged.mkdir()
            state.write_files(staged)
            del state
            self._swap_in(staged, writer, carried_from)
        except Exception:
            log.exception("Snapshot of %s failed; its change log still holds every change", folder)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            with self.index_lock:
                self._snapshotter = None

    def _swap_in(self, staged: Path, writer: DocumentLog, carried_from: int) -> bool:
        """Under the lock: give the staged snapshot the log records from `carried_from` on, then swap it in.

        The files move (renames) into `atomic_dir`'s new folder, which replaces the old one as a whole. Returns
        False when nothing was swapped: the log was closed or reopened meanwhile (a failed write reloaded the
        folder, or `close` saved it), so the snapshot may not match the log any more and is dropped; the next
        change past the threshold retries.
        """
        from tdro_suite.common.io import atomic_dir
        from tdro_suite.index.dense_index import mark_logged

        folder = self._folder()
        with self.index_lock:
            if self._log is not writer:
                return False
            with open(writer.path, "rb") as source:
                source.seek(carried_from)
                tail = source.read(writer.size - carried_from)
            if tail:
                mark_logged(staged)
                with open(staged / LOG_FILE, "wb") as out:
                    out.write(tail)
                    out.flush()
                    os.fsync(out.fileno())
            with atomic_dir(folder) as new:
                for path in staged.iterdir():
                    os.replace(path, new / path.name)
                sync_folder(new)
                self._close_log()  # it writes to the old folder's log
            sync_folder(folder.absolute().parent)
            return True

    def _fail(self, what: str, *, creating: bool = False) -> NoReturn:
        """Reload the folder so memory matches disk (never an unacknowledged change); answer 503.

        If the folder cannot be read back either, the service turns "failed": serving an index that
        may hold a change the disk lacks, or starting a new one over it, would both be wrong.
        """
        from tdro_suite.index.dense_index import DenseIndex

        folder = self._folder()
        log.exception("%s in %s failed; restoring what the folder holds", what, folder)
        self._close_log()
        try:  # no folder is right only where this write was to create it
            self.index = None if creating and not folder.exists() else DenseIndex.load(folder)
        except Exception as exc:
            log.exception("Could not read %s back", folder)
            self.failure = f"the index folder {folder} cannot be read after a failed write: {exc}"
            self.state = "failed"
        raise ApiError(503, "The change could not be saved and was not applied; retry later.",
                       code="persist_failed", headers={"Retry-After": str(self.settings.retry_after_s)}) from None


def encode_base64(vector: np.ndarray) -> str:
    """OpenAI's base64 format: the little-endian float32 bytes of the vector."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
