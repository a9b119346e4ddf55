"""Build an index folder from a corpus: encode (sharded, resumable, multi-process) then index and save.

Under torchrun every process encodes its share of the shards; only rank 0 builds the FAISS index
and writes the folder. The shard work folder sits next to the output (`.<name>.encoding/`) so an
interrupted build resumes; it is removed once the index is saved, unless `keep_shards=True`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tdro_suite.data.types import Passage
from tdro_suite.index.corpus import corpus_hash, read_corpus
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.index.encode import (
    DEFAULT_SHARD_SIZE,
    DistInfo,
    dist_info,
    encode_corpus,
    encoder_fingerprint,
)

if TYPE_CHECKING:
    from tdro_suite.modeling.protocol import EmbeddingModel

log = logging.getLogger(__name__)


def work_dir_for(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.encoding"


def build_index(
    encoder: EmbeddingModel,
    corpus: str | Path | Sequence[str | Path] | Sequence[Passage],
    out_dir: str | Path,
    *,
    index_type: str = "flat",
    search_params: dict[str, int] | None = None,
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    store_docs: bool = True,
    keep_shards: bool = False,
    show_progress: bool = True,
    info: DistInfo | None = None,
    work_dir: str | Path | None = None,
) -> DenseIndex | None:
    """Encode `corpus` with `encoder` and save a `DenseIndex` folder at `out_dir`.

    Returns the index on rank 0 and None on the other ranks. The manifest records the model
    name and fingerprint, the corpus hash, the index type and the encoding time.
    `work_dir` holds the embedding shards (default: a hidden folder beside `out_dir`); pointing it at
    an evaluation cache folder of the same model and corpus reuses those embeddings instead of encoding.
    """
    info = info or dist_info()
    out_dir = Path(out_dir)
    docs = _as_documents(corpus)
    work = Path(work_dir) if work_dir is not None else work_dir_for(out_dir)
    fingerprint = encoder_fingerprint(encoder)
    started = time.perf_counter()
    embeddings = encode_corpus(
        encoder, docs, work, batch_size=batch_size, shard_size=shard_size, info=info,
        show_progress=show_progress,
        fingerprint=fingerprint,
    )
    encode_seconds = time.perf_counter() - started
    if not info.is_main:
        return None
    started = time.perf_counter()
    index = DenseIndex.build(
        embeddings,
        [doc.docid for doc in docs],
        index_type=index_type,
        search_params=search_params,
        docs=[doc.to_dict() for doc in docs] if store_docs else None,
        manifest={
            "model": str(encoder.name or "") or None,
            "model_fingerprint": fingerprint,
            "pooling": encoder.pooling,
            "max_length": encoder.max_length,
            "corpus_hash": corpus_hash(docs),
            "encode_seconds": round(encode_seconds, 3),
        },
    )
    index.manifest["build_seconds"] = round(time.perf_counter() - started, 3)
    index.save(out_dir)
    if not keep_shards:
        shutil.rmtree(work, ignore_errors=True)
    log.info("Saved %s index of %d documents to %s", index.manifest["index_type"], len(index), out_dir)
    return index


def _as_documents(corpus: Any) -> list[Passage]:
    if isinstance(corpus, (str, Path)):
        return read_corpus(corpus)
    items = list(corpus)
    if items and all(isinstance(item, Passage) for item in items):
        return items
    return read_corpus(items)
