"""Hard-negative mining with BM25 (bm25s), following the paper's recipe.

For every query, rank a passage pool with BM25, skip the top `skip_top` ranks (likely unlabelled
positives) and every known positive (by docid and by identical normalised text), and keep the next
`n_negatives`. When BM25 runs out of lexically matching passages (short queries, other scripts),
the rest is drawn at random from the pool with a fixed seed, and counted, so nothing is hidden.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from tdro_suite.common.errors import DataError
from tdro_suite.data.text import normalize_text, tokenize
from tdro_suite.data.types import Passage

_NO_TOKEN = "\x00"  # stands in for a query with no tokens: matches nothing, so all scores are 0


@dataclass
class MiningStats:
    """How the negatives were found: from BM25 or, failing that, at random."""

    queries: int = 0
    bm25_negatives: int = 0
    random_negatives: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "queries": self.queries,
            "bm25_negatives": self.bm25_negatives,
            "random_negatives": self.random_negatives,
        }


class BM25Index:
    """A bm25s index over passages (title + text), tokenised with `text.tokenize`."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        try:
            import bm25s
        except ImportError:
            raise DataError(
                "Mining hard negatives needs the bm25s package: pip install 'tdro-suite[build-data]'"
            ) from None
        if not passages:
            raise DataError("Cannot build a BM25 index over an empty passage pool.")
        self.size = len(passages)
        self._retriever = bm25s.BM25()
        self._retriever.index([tokenize(p.full_text()) or [_NO_TOKEN] for p in passages], show_progress=False)

    def search(self, texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and scores of the top-k passages per text (k is capped at the pool size)."""
        tokens = [tokenize(t) or [_NO_TOKEN] for t in texts]
        docs, scores = self._retriever.retrieve(tokens, k=min(k, self.size), show_progress=False, n_threads=1)
        return np.asarray(docs), np.asarray(scores)


def mine_hard_negatives(
    search_texts: Sequence[str],
    positive_ids: Sequence[Collection[str]],
    pool: Sequence[Passage],
    *,
    n_negatives: int = 7,
    skip_top: int = 1,
    depth: int = 64,
    seed: int = 0,
    index: BM25Index | None = None,
    eligible: Sequence[bool] | None = None,
    fallback_texts: Sequence[str] | None = None,
) -> tuple[list[list[int]], MiningStats]:
    """Pick `n_negatives` pool indices per query.

    `search_texts[i]` is what BM25 searches with (the query, or its aligned English side for cross-lingual
    tasks); `positive_ids[i]` are the docids to exclude; `eligible[j]` False keeps pool passage j out of every
    negative list (e.g. it has no translation). When a query's own list runs dry, `fallback_texts[i]` (e.g. the
    positive passage) is searched next, giving negatives that resemble the answer; only then random ones.
    """
    if len(search_texts) != len(positive_ids):
        raise ValueError("search_texts and positive_ids differ in length")
    if fallback_texts is not None and len(fallback_texts) != len(search_texts):
        raise ValueError("fallback_texts and search_texts differ in length")
    if n_negatives + 1 > len(pool):
        raise DataError(f"A pool of {len(pool)} passages is too small for {n_negatives} negatives per query.")
    if eligible is not None and len(eligible) != len(pool):
        raise ValueError("eligible must have one flag per pool passage")
    index = index or BM25Index(pool)
    by_id = {p.docid: i for i, p in enumerate(pool)}
    norm = [normalize_text(p.full_text()) for p in pool]
    rng = np.random.default_rng(seed)
    stats = MiningStats(queries=len(search_texts))
    out: list[list[int]] = []
    batch = 512
    for start in range(0, len(search_texts), batch):
        stop = start + len(search_texts[start : start + batch])
        ranked = [index.search(search_texts[start:stop], depth + skip_top)]
        if fallback_texts is not None:
            ranked.append(index.search(fallback_texts[start:stop], depth + skip_top))
        for row, positives in enumerate(positive_ids[start:stop]):
            ids = set(positives)
            pos_text = {norm[by_id[d]] for d in ids if d in by_id}
            skipped: set[int] = set()
            chosen: list[int] = []

            def usable(j: int, ids: set[str] = ids, pos_text: set[str] = pos_text, chosen: list[int] = chosen) -> bool:
                return (
                    (eligible is None or bool(eligible[j]))
                    and pool[j].docid not in ids
                    and norm[j] not in pos_text
                    and j not in chosen
                )

            for docs, scores in ranked:
                for rank, (j, score) in enumerate(zip(docs[row].tolist(), scores[row].tolist(), strict=True)):
                    if len(chosen) == n_negatives or score <= 0:
                        break
                    if rank < skip_top:
                        skipped.add(j)  # the top rank is skipped even when it is not a known positive
                    elif j not in skipped and usable(j):
                        chosen.append(j)
            stats.bm25_negatives += len(chosen)
            attempts = 0
            while len(chosen) < n_negatives:
                j = int(rng.integers(len(pool)))
                attempts += 1
                if j not in skipped and usable(j):
                    chosen.append(j)
                    stats.random_negatives += 1
                elif attempts > 100 * len(pool):
                    raise DataError("Not enough distinct non-positive passages in the pool to draw negatives.")
            out.append(chosen)
    return out, stats
