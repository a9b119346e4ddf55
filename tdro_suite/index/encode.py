"""Corpus encoding in shards that survive interruption and split across processes.

The corpus is cut into fixed-size shards; shard i is written as `shard-{i:05d}.npy` (atomically)
in a work folder together with `encoding.json` (model fingerprint, corpus hash, shard size). A
rerun skips the shards already on disk, so an interrupted job resumes where it stopped; a work
folder left by another model or corpus is cleared first. Under torchrun (or any launcher that
sets RANK / WORLD_SIZE) process r encodes shards r, r+W, r+2W, ... and everyone waits at a
barrier before the shards are merged. Inside a shard the Encoder sorts texts by length, so
batches pad little.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_path, atomic_write_json
from tdro_suite.data.types import Passage
from tdro_suite.index.corpus import corpus_hash

if TYPE_CHECKING:
    from tdro_suite.modeling.protocol import EmbeddingModel

DEFAULT_SHARD_SIZE = 8192
META_FILE = "encoding.json"
T = TypeVar("T")
SHARD_DTYPES = ("float32", "float16")  # float16 halves the disk (MIRACL-en: ~67 GB instead of ~135 GB at 1024-d)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size from torchrun's environment (a single process when unset)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def share_from_main(value: T, info: DistInfo) -> T:
    """The first process's `value` on every process (one broadcast); `value` itself in a single process."""
    if info.world_size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def encoder_fingerprint(encoder: EmbeddingModel) -> str:
    """Identify an encoder by its name, pooling, length, prompts, weight dtype and a sample of its weights.

    The weight sample makes a fine-tuned model saved over the same folder (or kept in memory)
    a different key, without hashing gigabytes; the dtype keeps bf16 and fp32 embeddings apart.
    """
    digest = hashlib.sha256()
    parameters = getattr(encoder, "named_parameters", None)
    meta = {
        "name": str(encoder.name),
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "prompts": encoder.prompts,
        "dimension": encoder.dimension,
        "dtype": str(next(iter(parameters()))[1].dtype) if parameters is not None else None,
    }
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    if parameters is not None:
        import torch

        with torch.no_grad():
            for name, tensor in parameters():
                flat = tensor.detach().reshape(-1)
                sample = torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy()
                digest.update(name.encode())
                digest.update(sample.tobytes())
    return digest.hexdigest()[:20]


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:05d}.npy"


def prepare_work_dir(folder: Path, meta: dict[str, Any], info: DistInfo) -> None:
    """Create the work folder; clear it when it holds shards of another model/corpus/shard size."""
    meta_path = folder / META_FILE
    if info.is_main:
        if meta_path.is_file():
            try:
                old = json.loads(meta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                old = None
            if old != meta:
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not meta_path.is_file():
            atomic_write_json(meta_path, meta)
    barrier()


def encode_shards(
    encoder: EmbeddingModel,
    docs: Sequence[Passage],
    folder: str | Path,
    *,
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    info: DistInfo | None = None,
    show_progress: bool = True,
    fingerprint: str | None = None,
    dtype: str = "float32",
) -> int:
    """Encode this process's missing shards into `folder`; returns how many shards it wrote.

    `dtype="float16"` stores the shards at half size (vectors are L2-normalised, so float16 keeps ~3
    significant digits of each cosine); it is part of the work folder's identity, so a cache of the other
    dtype is re-encoded rather than mixed. float32 (the default) leaves `encoding.json` as it always was.
    """
    if dtype not in SHARD_DTYPES:
        raise ValueError(f"dtype must be one of {SHARD_DTYPES}, got {dtype!r}")
    info = info or dist_info()
    folder = Path(folder)
    meta = {
        "model": fingerprint or encoder_fingerprint(encoder),
        "corpus_hash": corpus_hash(docs),
        "documents": len(docs),
        "shard_size": shard_size,
        "dimension": int(encoder.dimension),
        **({"dtype": dtype} if dtype != "float32" else {}),
    }
    prepare_work_dir(folder, meta, info)
    ranges = shard_ranges(len(docs), shard_size)
    mine = [i for i in range(len(ranges)) if i % info.world_size == info.rank]
    todo = [i for i in mine if not shard_path(folder, i).is_file()]
    done_docs = sum(ranges[i][1] - ranges[i][0] for i in mine if i not in todo)
    total_docs = sum(ranges[i][1] - ranges[i][0] for i in mine)
    label = "encoding corpus" if info.world_size == 1 else f"encoding corpus (rank {info.rank})"
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total_docs, completed=done_docs)
        for i in todo:
            start, end = ranges[i]
            texts = [doc.full_text() for doc in docs[start:end]]
            vectors = encoder.encode_passages(texts, batch_size=batch_size, show_progress=False)
            with atomic_path(shard_path(folder, i)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=dtype))
            progress.advance(task, end - start)
    return len(todo)


def shard_meta(folder: str | Path, n: int) -> dict[str, Any]:
    """The `encoding.json` of a shard folder encoded for an n-document corpus; anything else is a `DataError`."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise DataError(f"{folder}: no {META_FILE}; the corpus was not encoded here.")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("documents") != n:
        raise DataError(f"{folder}: shards are for {meta.get('documents')} documents, expected {n}.")
    return meta


def read_shard(folder: str | Path, i: int, rows: int, meta: dict[str, Any]) -> np.ndarray:
    """Shard i as stored (float32 or float16); a missing or wrong-sized shard is a `DataError`."""
    path = shard_path(Path(folder), i)
    if not path.is_file():
        raise DataError(f"{path}: shard missing (was a process interrupted? rerun to resume).")
    part = np.load(path)
    if part.shape != (rows, meta["dimension"]):
        raise DataError(f"{path}: shape {part.shape}, expected {(rows, meta['dimension'])}.")
    return part


def load_shards(folder: str | Path, n: int) -> np.ndarray:
    """Concatenate the shards of an n-document corpus; a missing or wrong-sized shard is a `DataError`."""
    meta = shard_meta(folder, n)
    parts = [read_shard(folder, i, end - start, meta)
             for i, (start, end) in enumerate(shard_ranges(n, int(meta["shard_size"])))]
    if not parts:
        return np.zeros((0, int(meta["dimension"])), dtype=np.float32)
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)  # FAISS searches float32


def encode_corpus(
    encoder: EmbeddingModel,
    docs: Sequence[Passage],
    folder: str | Path,
    *,
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    info: DistInfo | None = None,
    show_progress: bool = True,
    fingerprint: str | None = None,
) -> np.ndarray:
    """Encode (or resume encoding) the corpus into `folder`, wait for every process, return all embeddings."""
    info = info or dist_info()
    encode_shards(
        encoder, docs, folder, batch_size=batch_size, shard_size=shard_size, info=info,
        show_progress=show_progress, fingerprint=fingerprint,
    )
    barrier()
    return load_shards(folder, len(docs))
