"""Decontamination: find training queries that equal or nearly equal an evaluation query.

Exact duplicates are found on normalised text. Near duplicates use 64-bit SimHash over character
3-grams (script-independent), as the paper did before training; because SimHash alone is noisy on
queries of a few words, a SimHash match (Hamming distance <= `max_distance`) is confirmed by the
Jaccard similarity of the two 3-gram sets (>= `min_jaccard`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tdro_suite.data.text import normalize_text


def _shingles(text: str, n: int = 3) -> list[str]:
    text = f" {text} "
    return [text[i : i + n] for i in range(max(len(text) - n + 1, 1))]


_BIT = np.arange(64, dtype=np.uint64)


def simhash64(text: str) -> int:
    """SimHash of the normalised text's character 3-grams (each hashed with blake2b-64)."""
    hashes = np.array(
        [
            int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")
            for s in _shingles(normalize_text(text))
        ],
        dtype=np.uint64,
    )
    bits = ((hashes[:, None] >> _BIT[None, :]) & np.uint64(1)).astype(np.int64)
    votes = (2 * bits - 1).sum(axis=0)
    return int(sum(1 << int(b) for b in np.flatnonzero(votes > 0)))


def _shingle_set(text: str) -> frozenset[str]:
    return frozenset(_shingles(normalize_text(text)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass(frozen=True)
class Contamination:
    """Training query `train_index` matches evaluation query `eval_index` (`kind`: exact or near)."""

    train_index: int
    eval_index: int
    kind: str
    distance: int
    similarity: float


def find_contamination(
    train_queries: Sequence[str],
    eval_queries: Sequence[str],
    *,
    max_distance: int = 12,
    min_jaccard: float = 0.8,
    chunk: int = 2048,
) -> list[Contamination]:
    """Every training query that is an exact (normalised) or near duplicate of an evaluation query."""
    if not train_queries or not eval_queries:
        return []
    exact: dict[str, int] = {}
    for j, q in enumerate(eval_queries):
        exact.setdefault(normalize_text(q), j)
    eval_hashes = np.array([simhash64(q) for q in eval_queries], dtype=np.uint64)
    eval_shingles: dict[int, frozenset[str]] = {}
    hits: list[Contamination] = []
    for start in range(0, len(train_queries), chunk):
        part = train_queries[start : start + chunk]
        hashes = np.array([simhash64(q) for q in part], dtype=np.uint64)
        distances = np.bitwise_count(hashes[:, None] ^ eval_hashes[None, :])
        for offset, q in enumerate(part):
            i = start + offset
            j = exact.get(normalize_text(q))
            if j is not None:
                hits.append(Contamination(i, j, "exact", 0, 1.0))
                continue
            close = np.flatnonzero(distances[offset] <= max_distance)
            if close.size == 0:
                continue
            mine = _shingle_set(q)
            best_j, best_sim = -1, 0.0
            for j in close.tolist():
                if j not in eval_shingles:
                    eval_shingles[j] = _shingle_set(eval_queries[j])
                sim = jaccard(mine, eval_shingles[j])
                if sim > best_sim:
                    best_j, best_sim = j, sim
            if best_sim >= min_jaccard:
                hits.append(Contamination(i, best_j, "near", int(distances[offset, best_j]), round(best_sim, 4)))
    return hits
