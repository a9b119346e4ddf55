"""A FAISS index that knows its document ids, documents and provenance, saved as one folder.

Folder layout (`save` writes it atomically; a reader sees the old folder or the new one, never a mix):
    index.faiss     the FAISS index (always a CPU index on disk; cloned to GPUs on load when FAISS sees them)
    ids.json        external document id per internal FAISS id; null for a removed document
    docs.jsonl      optional document store: {"id","title","text", ...} per live document
    manifest.json   model, dimension, metric, normalized, index_type, factory, search_params, build_params,
                    corpus_hash, count, created, format_version (1; 2 once a change log may exist), log_sequence
    changes.log     optional: document changes made since that snapshot (`tdro-suite serve` appends them,
                    see `tdro_suite.index.document_log`); `load` replays them, `save` leaves none

FAISS ids are positions in `ids.json`, so string ids survive every index type. `add` replaces a
document that already exists; `remove` deletes physically where FAISS can (flat, IVF, SQ) and
leaves a tombstone where it cannot (HNSW): tombstoned rows are filtered out at search time, and
searches ask FAISS for extra rows (2k + 16, then 4x more for as long as tombstones fill a query's
list) so a query still gets k live results without paying for every tombstone on every search.
Once tombstones outnumber live documents, `remove` rebuilds the index without them (`compact`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_dir
from tdro_suite.common.jsonl import json_lines
from tdro_suite.index.document_log import LOG_FILE, Change, changes_after, sync_folder
from tdro_suite.index.errors import IndexFormatError, IndexMismatchError
from tdro_suite.index.factory import (
    IndexSpec,
    apply_search_params,
    create_index,
    resolve_spec,
    to_gpus,
    train_sample,
)

FORMAT_VERSION = 1  # what `save` writes: a folder without a change log
# A folder whose manifest may have a change log beside it: readers from before the log (which accept
# format 1 and would silently ignore changes.log) refuse it. `mark_logged` sets it before a log is created.
LOGGED_FORMAT_VERSION = 2
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
DOCS_FILE = "docs.jsonl"
MANIFEST_FILE = "manifest.json"
NORM_TOLERANCE = 1e-3
TOMBSTONE_FETCH_SLACK = 16  # extra rows asked for beyond 2k when the index holds tombstones
COMPACT_MIN_TOMBSTONES = 1024  # `remove` rebuilds once tombstones exceed this AND the live documents


def as_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    """A C-contiguous float32 [N, D] copy-if-needed of `vectors`; anything else is a user error."""
    array = np.asarray(vectors)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise IndexMismatchError(f"{what} must be a 2-D array [N, D], got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise IndexMismatchError(f"{what} contain NaN or infinite values.")
    return np.ascontiguousarray(array, dtype=np.float32)


def is_normalized(vectors: np.ndarray) -> bool:
    """True when every row has unit L2 norm (then inner product is cosine similarity)."""
    if len(vectors) == 0:
        return True
    norms = np.linalg.norm(vectors, axis=1)
    return bool(np.all(np.abs(norms - 1.0) < NORM_TOLERANCE))


def hash_ids(ids: Sequence[str]) -> str:
    """A short content hash of an id list, used as corpus hash when the caller gives none."""
    digest = hashlib.sha256()
    for doc_id in ids:
        digest.update(doc_id.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


class DenseIndex:
    """Search documents by embedding; see the module docstring for the folder layout."""

    def __init__(
        self,
        index: faiss.Index,
        labels: list[str | None],
        manifest: dict[str, Any],
        docs: dict[str, dict] | None = None,
    ) -> None:
        self._index = index
        self._labels = labels
        self._positions = {label: pos for pos, label in enumerate(labels) if label is not None}
        self._docs = docs or {}
        self.manifest = manifest
        self.log_sequence = int(manifest.get("log_sequence") or 0)  # the last logged change this index holds
        self.replayed_changes = 0  # changes `load` applied from the folder's log
        self._gpu: faiss.Index | None = None
        self._gpu_checked = False
        apply_search_params(self._index, manifest.get("search_params") or {})

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: Sequence[str],
        *,
        index_type: str = "flat",
        docs: Sequence[dict] | None = None,
        manifest: dict | None = None,
        search_params: dict[str, Any] | None = None,
        build_params: dict[str, Any] | None = None,
    ) -> DenseIndex:
        """Build an index over `embeddings` (row i is document `ids[i]`), training it on a sample if needed.

        `docs` (optional, aligned with `ids`) is kept as the document store; `manifest` entries
        (model, corpus_hash, ...) are merged into the generated manifest; `search_params` (nprobe,
        efSearch) and `build_params` (HNSW efConstruction) override the type's defaults.
        """
        vectors = as_matrix(embeddings, "document embeddings")
        ids = [str(i) for i in ids]
        if len(ids) != len(vectors):
            raise IndexMismatchError(f"{len(ids)} ids for {len(vectors)} embeddings: they must be aligned.")
        if len(set(ids)) != len(ids):
            dup = next(doc_id for doc_id, count in Counter(ids).items() if count > 1)
            raise IndexMismatchError(f"document id '{dup}' appears more than once.")
        if docs is not None and len(docs) != len(ids):
            raise IndexMismatchError(f"{len(docs)} documents for {len(ids)} ids: they must be aligned.")
        dim = vectors.shape[1]
        spec = resolve_spec(index_type, len(vectors), dim)
        spec.search_params.update(search_params or {})
        spec.build_params.update(build_params or {})
        index = _filled_index(spec, vectors)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": None,
            "dimension": dim,
            "metric": "inner_product",
            "normalized": is_normalized(vectors),
            "index_type": spec.name,
            "factory": spec.factory,
            "search_params": spec.search_params,
            "build_params": spec.build_params,
            "corpus_hash": hash_ids(ids),
            "count": len(ids),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        meta.update({k: v for k, v in (manifest or {}).items() if v is not None})
        store = None
        if docs is not None:
            store = {doc_id: _doc_record(doc_id, doc) for doc_id, doc in zip(ids, docs, strict=True)}
        return cls(index, list(ids), meta, store)

    @classmethod
    def load(cls, folder: str | Path) -> DenseIndex:
        """Read an index folder written by `save` and replay its change log, so the result holds every
        acknowledged change; a missing or inconsistent file is an `IndexFormatError`."""
        folder = Path(folder)
        if not folder.is_dir():
            raise IndexFormatError(f"{folder}: index folder not found.{_interrupted_save_hint(folder)}")
        for name in (INDEX_FILE, IDS_FILE, MANIFEST_FILE):
            if not (folder / name).is_file():
                raise IndexFormatError(f"{folder}: '{name}' is missing; this is not a tdro-suite index folder.")
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
            labels = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IndexFormatError(f"{folder}: a JSON file is damaged ({exc.msg} at line {exc.lineno}).") from None
        if not isinstance(manifest, dict) or not isinstance(labels, list):
            raise IndexFormatError(f"{folder}: manifest.json must be an object and ids.json a list.")
        if manifest.get("format_version", 0) > LOGGED_FORMAT_VERSION:
            raise IndexFormatError(
                f"{folder}: written by a newer tdro-suite (format {manifest['format_version']}); upgrade to read it."
            )
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexFormatError(f"{folder}/{INDEX_FILE}: FAISS cannot read it ({exc}).") from None
        if index.d != manifest.get("dimension"):
            raise IndexFormatError(
                f"{folder}: manifest says dimension {manifest.get('dimension')}, the FAISS index has {index.d}."
            )
        if index.ntotal > len(labels):
            raise IndexFormatError(
                f"{folder}: the FAISS index holds {index.ntotal} vectors but ids.json names only {len(labels)}; "
                "the files come from different builds."
            )
        docs = _read_docs(folder / DOCS_FILE) if (folder / DOCS_FILE).is_file() else None
        loaded = cls(index, labels, manifest, docs)
        for change in changes_after(folder / LOG_FILE, loaded.log_sequence):
            loaded.apply(change)
            loaded.replayed_changes += 1
        return loaded

    def save(self, folder: str | Path) -> None:
        """Write the folder atomically (replacing an existing one only once the new one is complete).

        This is a snapshot: the new folder holds every change up to `log_sequence` and no change log, so
        replacing the folder also empties its log in the same atomic step (see `document_log`). Its files
        are fsync'ed before the rename and the rename after it, since it replaces fsync'ed changes.
        """
        with atomic_dir(folder) as tmp:
            self.write_files(tmp)
        sync_folder(Path(folder).absolute().parent)

    def write_files(self, folder: Path) -> None:
        """Write the index files into the new, empty `folder` and fsync them: a snapshot at `log_sequence`
        without a log, hence format 1 (`save`, or the service's snapshot, which then moves the folder)."""
        self.manifest["count"] = len(self)
        self.manifest["log_sequence"] = self.log_sequence
        self.manifest["format_version"] = FORMAT_VERSION
        faiss.write_index(self._index, str(folder / INDEX_FILE))
        (folder / IDS_FILE).write_text(json.dumps(self._labels, ensure_ascii=False), encoding="utf-8")
        if self._docs:
            with open(folder / DOCS_FILE, "w", encoding="utf-8") as fh:
                for label in self._labels:
                    if label is not None and label in self._docs:
                        fh.write(json.dumps(self._docs[label], ensure_ascii=False) + "\n")
        (folder / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        sync_folder(folder, files=True)

    # ---- queries ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, doc_id: object) -> bool:
        """Whether `doc_id` is a live document (O(1), unlike `doc_id in index.ids`)."""
        return doc_id in self._positions

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    @property
    def tombstones(self) -> int:
        """Rows FAISS still holds for removed documents (HNSW cannot delete); filtered at search time."""
        return int(self._index.ntotal) - len(self._positions)

    @property
    def spec(self) -> IndexSpec:
        """What this index was built as (type, factory string, search and build knobs), from its manifest."""
        return IndexSpec(
            self.manifest.get("index_type") or self.manifest["factory"],
            self.manifest["factory"],
            dict(self.manifest.get("search_params") or {}),
            dict(self.manifest.get("build_params") or {}),
        )

    @property
    def ids(self) -> list[str]:
        """Live document ids, in insertion order."""
        return [label for label in self._labels if label is not None and label in self._positions]

    def get_doc(self, doc_id: str) -> dict | None:
        """The stored document (id, title, text) or None when it is unknown or no store was kept."""
        if doc_id not in self._positions:
            return None
        return self._docs.get(doc_id)

    def check_model(self, model: str | None) -> None:
        """Refuse queries from another model than the one the documents were encoded with."""
        built_with = self.manifest.get("model")
        if model and built_with and str(model) != str(built_with):
            raise IndexMismatchError(
                f"this index was built with model '{built_with}', not '{model}': query and document "
                f"embeddings from different models are not comparable. Rebuild the index or use '{built_with}'."
            )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k documents per query: scores [Q, k] (inner product, best first) and their ids.

        k is capped at the number of live documents. An approximate index may find fewer than k
        documents for a query; that row's id list is shorter and its missing scores are -inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = as_matrix(queries, "query embeddings")
        if q.shape[1] != self.dimension:
            raise IndexMismatchError(
                f"query embeddings have dimension {q.shape[1]}, the index has {self.dimension} "
                f"(built with model '{self.manifest.get('model')}')."
            )
        k = min(k, len(self))
        if k == 0 or len(q) == 0:
            return np.full((len(q), k), -np.inf, dtype=np.float32), [[] for _ in range(len(q))]
        total = int(self._index.ntotal)
        # Tombstoned rows (HNSW) take result slots: ask for a few more, and only when that was not
        # enough for some query (its list is full of tombstones), ask again for 4x as many.
        fetch = k if self.tombstones == 0 else min(total, 2 * k + TOMBSTONE_FETCH_SLACK)
        while True:
            raw_scores, raw_ids = self._searcher().search(q, fetch)
            scores, out_ids, short = self._live_top_k(raw_scores, raw_ids, k)
            if not short or fetch >= total:
                return scores, out_ids
            fetch = min(total, 4 * fetch)

    def _live_top_k(
        self, raw_scores: np.ndarray, raw_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, list[list[str]], bool]:
        """FAISS rows → the first k live ids per query, their scores, and whether some query got fewer
        than k because tombstones filled its list (a larger fetch would find more)."""
        scores = np.full((len(raw_ids), k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        short = False
        for row in range(len(raw_ids)):
            kept: list[str] = []
            skipped = False
            for score, pos in zip(raw_scores[row], raw_ids[row], strict=True):
                if pos < 0:
                    continue
                label = self._labels[pos]
                if label is None:
                    skipped = True
                    continue
                scores[row, len(kept)] = score
                kept.append(label)
                if len(kept) == k:
                    break
            short = short or (skipped and len(kept) < k)
            out_ids.append(kept)
        return scores, out_ids, short

    # ---- updates ------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], embeddings: np.ndarray, docs: Sequence[dict] | None = None) -> None:
        """Add documents; an id that already exists is replaced (its old vector removed or tombstoned)."""
        vectors = as_matrix(embeddings, "document embeddings")
        ids = [str(i) for i in ids]
        if len(ids) != len(vectors):
            raise IndexMismatchError(f"{len(ids)} ids for {len(vectors)} embeddings: they must be aligned.")
        if docs is not None and len(docs) != len(ids):
            raise IndexMismatchError(f"{len(docs)} documents for {len(ids)} ids: they must be aligned.")
        if vectors.shape[1] != self.dimension:
            raise IndexMismatchError(
                f"document embeddings have dimension {vectors.shape[1]}, the index has {self.dimension}."
            )
        if len(set(ids)) != len(ids):
            raise IndexMismatchError("the ids to add contain duplicates.")
        self.remove([i for i in ids if i in self._positions])
        start = len(self._labels)
        self._index.add_with_ids(vectors, np.arange(start, start + len(ids), dtype=np.int64))
        for offset, doc_id in enumerate(ids):
            self._labels.append(doc_id)
            self._positions[doc_id] = start + offset
        if docs is not None:
            for doc_id, doc in zip(ids, docs, strict=True):
                self._docs[doc_id] = _doc_record(doc_id, doc)
        if self.manifest.get("normalized") and not is_normalized(vectors):
            self.manifest["normalized"] = False
        self._invalidate()

    def apply(self, change: Change) -> None:
        """Apply one logged change (add/replace or delete) and remember its sequence number.

        Replay and the service go through here, so a replayed change does exactly what it did live.
        """
        if change.vectors is None:
            self.remove(change.ids)
        else:
            self.add(change.ids, change.vectors, change.docs)
        self.log_sequence = change.sequence

    def remove(self, ids: Sequence[str]) -> int:
        """Remove documents by id; returns how many existed. Unknown ids are ignored."""
        positions = [self._positions.pop(str(i)) for i in ids if str(i) in self._positions]
        if not positions:
            return 0
        for pos in positions:
            label = self._labels[pos]
            self._labels[pos] = None
            if label is not None:
                self._docs.pop(label, None)
        with contextlib.suppress(RuntimeError):  # HNSW (and some factory strings) cannot remove: tombstone
            self._index.remove_ids(np.asarray(positions, dtype=np.int64))
        self._invalidate()
        if self.tombstones > max(COMPACT_MIN_TOMBSTONES, len(self)):
            self.compact()
        return len(positions)

    def compact(self) -> int:
        """Rebuild the FAISS index from the live vectors, dropping tombstones; returns how many were dropped.

        `remove` calls it once tombstones outnumber live documents (and exceed COMPACT_MIN_TOMBSTONES), so
        a delete-heavy HNSW index never holds more dead rows than live ones, at the price of one full
        build every so often (minutes at 1M vectors, see eval/bench/README.md).
        """
        dropped = self.tombstones
        if dropped == 0:
            return 0
        live = [pos for pos, label in enumerate(self._labels) if label is not None]
        try:
            vectors = self._index.reconstruct_batch(np.asarray(live, dtype=np.int64))
        except RuntimeError as exc:
            raise IndexFormatError(
                f"cannot compact a '{self.manifest.get('factory')}' index: FAISS cannot return its vectors ({exc})."
            ) from None
        spec = self.spec
        self._index = _filled_index(spec, np.ascontiguousarray(vectors, dtype=np.float32))
        self._labels = [self._labels[pos] for pos in live]
        self._positions = {label: pos for pos, label in enumerate(self._labels) if label is not None}
        apply_search_params(self._index, spec.search_params)
        self._invalidate()
        return dropped

    # ---- internals ----------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._gpu = None
        self._gpu_checked = False

    def _searcher(self) -> faiss.Index:
        """The GPU clone when FAISS sees GPUs and the type has a GPU version, else the CPU index."""
        if not self._gpu_checked:
            self._gpu_checked = True
            self._gpu = to_gpus(self._index)
            if self._gpu is not None:
                apply_search_params(self._gpu, self.manifest.get("search_params") or {})
        return self._gpu if self._gpu is not None else self._index

    def set_search_params(self, **params: Any) -> None:
        """Change nprobe / efSearch (kept in the manifest, so a saved index remembers them)."""
        self.manifest.setdefault("search_params", {}).update(params)
        apply_search_params(self._index, params)
        if self._gpu is not None:
            apply_search_params(self._gpu, params)


def _filled_index(spec: IndexSpec, vectors: np.ndarray) -> faiss.Index:
    """A new FAISS index of `spec` (id-mapped where needed, trained if needed) holding `vectors` as ids 0..N-1."""
    dim = vectors.shape[1]
    index = faiss.IndexIDMap2(create_index(spec, dim)) if _needs_id_map(spec) else create_index(spec, dim)
    if spec.needs_training:
        sample = train_sample(vectors, spec)
        if len(sample) == 0:
            raise IndexMismatchError(f"index type '{spec.name}' must be trained, but there are no vectors.")
        index.train(sample)
    if len(vectors):
        index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    return index


def _needs_id_map(spec: IndexSpec) -> bool:
    """IVF indexes take ids natively; flat, HNSW and SQ need an IndexIDMap2 wrapper to keep ours."""
    return not spec.factory.startswith("IVF") and ",IVF" not in spec.factory and "IDMap" not in spec.factory


def snapshot_staging(folder: str | Path) -> Path:
    """Where a snapshot of `folder` is written before it replaces the folder (a crash may leave it: ignored)."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.snapshot-{os.getpid()}")


def mark_logged(folder: str | Path) -> None:
    """Raise the folder's manifest to LOGGED_FORMAT_VERSION (atomically, fsync'ed) before a change log is
    created in it, so a tdro-suite from before the change log refuses the folder instead of ignoring the log."""
    path = Path(folder) / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format_version", 0) >= LOGGED_FORMAT_VERSION:
        return
    manifest["format_version"] = LOGGED_FORMAT_VERSION
    staged = path.with_name(f".{MANIFEST_FILE}.{os.getpid()}")
    with open(staged, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, path)
    sync_folder(path.parent)


def interrupted_save(folder: str | Path) -> Path | None:
    """The previous copy of a missing `folder` when a save stopped between moving it aside and moving the
    new one in (`atomic_dir`): complete, change log included, so renaming it back recovers every change."""
    folder = Path(folder)
    aside = sorted(folder.parent.glob(f".{folder.name}.old-*")) if folder.parent.is_dir() else []
    return aside[-1] if aside else None


def _interrupted_save_hint(folder: Path) -> str:
    aside = interrupted_save(folder)
    if aside is None:
        return ""
    return f" A save was interrupted: the previous folder is {aside}; rename it back to {folder.name} to recover."


def _doc_record(doc_id: str, doc: dict) -> dict:
    record = {"id": doc_id, "title": doc.get("title") or "", "text": doc.get("text") or ""}
    for key, value in doc.items():
        if key not in ("id", "_id", "docid", "title", "text"):
            record[key] = value
    return record


def _read_docs(path: Path) -> dict[str, dict]:
    """The stored documents by id; a damaged line is an `IndexFormatError` naming the file and the line."""
    try:
        records = list(json_lines(path))
    except DataError as exc:  # not JSON, not UTF-8: the index folder is damaged
        raise IndexFormatError(str(exc)) from None
    docs: dict[str, dict] = {}
    for where, record in records:
        if not isinstance(record, dict) or "id" not in record:
            raise IndexFormatError(f"{where}: field 'id' is missing.")
        docs[str(record["id"])] = record
    return docs
