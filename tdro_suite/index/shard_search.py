"""Exact inner-product search over the embedding shards on disk, one shard in memory at a time.

Flat (exact) search needs no index: each shard written by `encode.encode_shards` is loaded (float16 shards
are widened to float32, FAISS's type), searched with `faiss.knn` (`faiss.knn_gpu` when FAISS sees GPUs)
and folded into a running top k per query. Memory is one shard plus the queries' top k, whatever the
corpus size (MIRACL-en's 32.9M x 1024 embeddings would take 135 GB as one float32 matrix). Under torchrun
process r searches the shards it encoded (r, r+W, ...) on its own GPU, and the partial top k of every
process are gathered and merged. The merge orders by score, then by corpus position, so the result does
not depend on how the shards were split among processes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from tdro_suite.index.encode import DistInfo, dist_info, read_shard, shard_meta, shard_ranges


def merge_top_k(
    scores: list[np.ndarray], positions: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best k of several [Q, *] candidate lists per query: higher score first, lower position on ties."""
    all_scores = np.concatenate(scores, axis=1)
    all_positions = np.concatenate(positions, axis=1)
    order = np.lexsort((all_positions, -all_scores))[:, :k]
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_positions, order, axis=1)


@functools.cache
def _gpu_resources(device: int) -> Any:
    """One FAISS GPU context per device for the whole run: each reserves scratch memory on creation."""
    import faiss

    return faiss.StandardGpuResources()


def _knn(queries: np.ndarray, vectors: np.ndarray, k: int, gpu: int | None) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    if gpu is None:
        return faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return faiss.knn_gpu(_gpu_resources(gpu), queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT, device=gpu)


def search_shards(
    folder: str | Path, n: int, queries: np.ndarray, k: int, *, info: DistInfo | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top min(k, n) corpus positions per query over an n-document shard folder: (scores, positions).

    Every process calls it with the same queries; every process gets the merged result.
    """
    info = info or dist_info()
    best = search_own_shards(folder, n, queries, k, info=info)
    if info.world_size == 1:
        return best
    import torch.distributed as dist

    gathered: list[tuple[np.ndarray, np.ndarray] | None] = [None] * info.world_size
    dist.all_gather_object(gathered, best)
    parts = [part for part in gathered if part is not None]
    return merge_top_k([s for s, _ in parts], [p for _, p in parts], min(k, n))


def search_own_shards(
    folder: str | Path, n: int, queries: np.ndarray, k: int, *, info: DistInfo
) -> tuple[np.ndarray, np.ndarray]:
    """This process's part of `search_shards`: the top k over shards info.rank, info.rank + W, ..."""
    from tdro_suite.index.factory import gpu_count

    meta = shard_meta(folder, n)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, n)
    gpus = gpu_count()
    best = (np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64))
    for i, (start, end) in enumerate(shard_ranges(n, int(meta["shard_size"]))):
        if i % info.world_size != info.rank or k == 0:
            continue
        vectors = np.ascontiguousarray(read_shard(folder, i, end - start, meta), dtype=np.float32)
        gpu = ((info.local_rank if info.world_size > 1 else i) % gpus) if gpus else None
        found_scores, found = _knn(queries, vectors, min(k, end - start), gpu)
        best = merge_top_k([best[0], found_scores], [best[1], found.astype(np.int64) + start], k)
    return best
