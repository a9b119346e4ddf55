"""Exact search over embedding shards on disk equals brute force, whatever the shard split or storage dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tdro_suite.common.errors import DataError
from tdro_suite.index.encode import DistInfo, encode_shards
from tdro_suite.index.shard_search import merge_top_k, search_own_shards, search_shards


class TableEncoder:
    """An `EmbeddingModel` whose passage vectors are fixed rows: the search is what is under test."""

    name, pooling, max_length, prompts = "table", "mean", 8, {}

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.dimension = vectors, vectors.shape[1]
        self.lookup = {f"p{i}": row for i, row in enumerate(vectors)}

    def encode_passages(self, texts: list[str], **_: object) -> np.ndarray:
        return np.stack([self.lookup[text] for text in texts])


def passages(n: int) -> list:
    from tdro_suite.data.types import Passage

    return [Passage(docid=f"d{i}", text=f"p{i}") for i in range(n)]


def brute_force(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors.T
    order = np.lexsort((np.broadcast_to(np.arange(len(vectors)), scores.shape), -scores))[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize(
    ("n", "shard_size", "dtype"), [(103, 10, "float32"), (103, 200, "float32"), (57, 8, "float16")]
)
def test_shards_give_the_brute_force_top_k(tmp_path: Path, n: int, shard_size: int, dtype: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    encode_shards(TableEncoder(vectors), passages(n), tmp_path, shard_size=shard_size, show_progress=False,
                  fingerprint="table", dtype=dtype)
    scores, positions = search_shards(tmp_path, n, queries, 20)
    stored = vectors.astype(dtype).astype(np.float32)  # what the shards hold
    expected_scores, expected = brute_force(queries, stored, 20)
    assert (positions == expected).all()
    assert np.allclose(scores, expected_scores, atol=1e-5)
    assert search_shards(tmp_path, n, queries, 10_000)[1].shape == (7, n)  # k capped at the corpus


def test_each_process_searches_its_own_shards_and_the_merge_is_the_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    encode_shards(TableEncoder(vectors), passages(40), tmp_path, shard_size=6, show_progress=False, fingerprint="t")
    halves = [search_own_shards(tmp_path, 40, queries, 5, info=DistInfo(rank=r, world_size=2)) for r in (0, 1)]
    assert {int(p) // 6 % 2 for p in halves[1][1].ravel()} == {1}  # rank 1 saw only shards 1, 3, 5
    merged = merge_top_k([h[0] for h in halves], [h[1] for h in halves], 5)
    whole = search_shards(tmp_path, 40, queries, 5)
    assert (merged[1] == whole[1]).all() and np.array_equal(merged[0], whole[0])


def test_ties_go_to_the_earlier_position() -> None:
    scores = [np.array([[1.0, 0.5]], np.float32), np.array([[1.0, 0.5]], np.float32)]
    positions = [np.array([[9, 3]]), np.array([[2, 4]])]
    merged_scores, merged = merge_top_k(scores, positions, 3)
    assert merged.tolist() == [[2, 9, 3]] and merged_scores.tolist() == [[1.0, 1.0, 0.5]]


def test_a_missing_shard_or_another_corpus_size_is_an_error(tmp_path: Path) -> None:
    vectors = np.eye(4, dtype=np.float32)
    encode_shards(TableEncoder(vectors), passages(4), tmp_path, shard_size=2, show_progress=False, fingerprint="t")
    with pytest.raises(DataError, match="shards are for 4 documents, expected 5"):
        search_shards(tmp_path, 5, vectors, 2)
    (tmp_path / "shard-00001.npy").unlink()
    with pytest.raises(DataError, match=r"shard-00001\.npy: shard missing"):
        search_shards(tmp_path, 4, vectors, 2)


@pytest.mark.gpu
def test_gpu_search_of_shards_gives_the_cpu_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tdro_suite.index import factory

    if factory.gpu_count() == 0:
        pytest.skip("FAISS sees no GPU (faiss-cpu build or no CUDA device): shards are searched on the CPU")
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    queries = rng.standard_normal((9, 32)).astype(np.float32)
    encode_shards(TableEncoder(vectors), passages(300), tmp_path, shard_size=64, show_progress=False, fingerprint="t")
    on_gpu = search_shards(tmp_path, 300, queries, 10)
    monkeypatch.setattr(factory, "gpu_count", lambda: 0)
    on_cpu = search_shards(tmp_path, 300, queries, 10)
    np.testing.assert_allclose(on_gpu[0], on_cpu[0], atol=1e-4)
    assert (on_gpu[1] == on_cpu[1]).all()
