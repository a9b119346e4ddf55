"""Index types: a short name (flat, hnsw, ivf-flat, ivf-pq, sq8) or any FAISS factory string.

Names are turned into a factory string sized for the collection (IVF list count grows with
√N, PQ code size follows the dimension), so `--index-type ivf-pq` works from 100 documents to
100 million. Every index uses inner product: embeddings are L2-normalised, so this is cosine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from tdro_suite.common.errors import ConfigError

INDEX_TYPES = {
    "flat": "exact inner-product search (brute force; the reference for recall)",
    "hnsw": "HNSW graph (M=32, efConstruction=100): fast, high recall, no training, no physical removal",
    "ivf-flat": "inverted lists over k-means cells, full vectors (trained on a sample)",
    "ivf-pq": "inverted lists with product-quantised codes: smallest memory (trained on a sample)",
    "sq8": "8-bit scalar-quantised vectors, exact scan: 4x smaller than flat (trained on a sample)",
}
# How many training points per IVF cell / PQ centroid FAISS recommends (it warns below 39).
TRAIN_POINTS_PER_CENTROID = 64
MAX_TRAIN_SAMPLE = 262_144
# HNSW graph quality (build) and search breadth. With FAISS's efConstruction default, 40, recall@10 on
# 1M clustered 384-d vectors is 0.77 at efSearch 128; with 100 it is 0.98 (18x exact search), for about
# 3x the build time; 200 adds nothing at 200k vectors (eval/bench/README.md).
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128


@dataclass
class IndexSpec:
    """What to build: the FAISS factory string, build-time knobs (HNSW efConstruction), and the
    search-time knobs to set after loading."""

    name: str
    factory: str
    search_params: dict[str, Any] = field(default_factory=dict)
    build_params: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_training(self) -> bool:
        return any(part in self.factory for part in ("IVF", "PQ", "SQ"))


def ivf_lists(n: int) -> int:
    """Number of IVF cells: ~4·√N (the FAISS guideline), at least 1, and ≤ N/39 so k-means is well fed."""
    if n <= 0:
        return 1
    return max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))


def pq_subquantizers(dim: int) -> int:
    """PQ sub-vectors: about 8 dimensions each (a good accuracy/size trade-off), dividing `dim` exactly."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def pq_bits(n: int) -> int:
    """Bits per PQ code: 8 when there are enough training points for 256 centroids, fewer for small corpora."""
    return max(1, min(8, int(math.log2(max(n / TRAIN_POINTS_PER_CENTROID, 2)))))


def default_nprobe(nlist: int) -> int:
    """Cells visited per query: ~nlist/32, at least 8 (recall@10 ≈ 1.0 on the clustered benchmark at
    ~9x exact speed, see eval/bench/README.md); tune with `DenseIndex.set_search_params(nprobe=...)`."""
    return max(1, min(nlist, max(8, round(nlist / 32))))


def resolve_spec(index_type: str, n: int, dim: int) -> IndexSpec:
    """Turn a name (or a raw FAISS factory string) into an `IndexSpec` for N vectors of `dim` dimensions."""
    name = index_type.strip()
    key = name.lower().replace("_", "-")
    if key == "flat":
        return IndexSpec("flat", "Flat")
    if key == "hnsw":
        return IndexSpec("hnsw", "HNSW32", {"efSearch": HNSW_EF_SEARCH}, {"efConstruction": HNSW_EF_CONSTRUCTION})
    if key in ("ivf-flat", "ivf"):
        nlist = ivf_lists(n)
        return IndexSpec("ivf-flat", f"IVF{nlist},Flat", {"nprobe": default_nprobe(nlist)})
    if key == "ivf-pq":
        nlist = ivf_lists(n)
        m, bits = pq_subquantizers(dim), pq_bits(n)
        return IndexSpec("ivf-pq", f"IVF{nlist},PQ{m}x{bits}", {"nprobe": default_nprobe(nlist)})
    if key in ("sq8", "sq"):
        return IndexSpec("sq8", "SQ8")
    try:  # anything else must be a valid FAISS factory string
        faiss.index_factory(dim, name, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "rejected"
        raise ConfigError(
            f"index type '{index_type}' is neither a known name ({', '.join(INDEX_TYPES)}) "
            f"nor a FAISS factory string FAISS accepts for dimension {dim} ({first})."
        ) from None
    return IndexSpec(name, name)


def create_index(spec: IndexSpec, dim: int) -> faiss.Index:
    """An empty inner-product FAISS index for `spec`, with its build parameters set."""
    index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    for key, value in spec.build_params.items():
        if key != "efConstruction":
            raise ConfigError(f"unknown index build parameter '{key}' (known: efConstruction).")
        graph = getattr(faiss.downcast_index(index), "hnsw", None)
        if graph is None:
            raise ConfigError(f"efConstruction applies to HNSW indexes, not to '{spec.factory}'.")
        graph.efConstruction = int(value)
    return index


def train_sample(vectors: np.ndarray, spec: IndexSpec, seed: int = 0) -> np.ndarray:
    """The rows an index is trained on: all of them, or a seeded random sample big enough for its centroids."""
    n = len(vectors)
    if not spec.needs_training:
        return vectors[:0]
    size = min(n, MAX_TRAIN_SAMPLE)
    if size == n:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return np.ascontiguousarray(vectors[rows])


def apply_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    """Set nprobe / efSearch through any wrapper (ID maps, GPU clones) with FAISS's ParameterSpace."""
    if not params:
        return
    space = faiss.GpuParameterSpace() if hasattr(faiss, "GpuParameterSpace") else faiss.ParameterSpace()
    for key, value in params.items():
        try:
            space.set_index_parameter(index, key, value)
        except RuntimeError:  # e.g. efSearch on a GPU flat clone: the parameter does not apply there
            continue


def gpu_count() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu, or when no CUDA device is visible."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


def to_gpus(index: faiss.Index) -> faiss.Index | None:
    """A GPU clone of `index` over all visible GPUs, or None when FAISS has no GPU or the type has no GPU version."""
    if gpu_count() == 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return None
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError):  # HNSW and some factory strings have no GPU implementation
        return None
