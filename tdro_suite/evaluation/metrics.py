"""Ranking metrics that reproduce trec_eval (and so pytrec_eval) per query, averaged over ALL judged queries.

Per query, for a cutoff k, with `rel(d)` the judged relevance (unjudged = 0) and a document
"relevant" when rel ≥ `relevance_level` (trec_eval's default 1):
    ndcg@k    Σ_{i<k} rel(d_i)/log2(i+2), divided by the same sum over the judged documents sorted by rel
              (linear gain, as trec_eval's ndcg_cut; graded relevance counts)
    recall@k  relevant documents in the top k / relevant documents judged
    mrr@k     1 / rank of the first relevant document in the top k (0 when none)
    map@k     Σ over relevant d_i with i<k of precision@(i+1), divided by the number judged relevant
    map       the same over the whole ranking (trec_eval's `map`)
Ties in score are broken like trec_eval: by document id, descending.

Averaging differs from BEIR on purpose: BEIR (and plain pytrec_eval) average only over the
queries that appear in the run, so a query the system returned nothing for silently disappears.
Here the mean is over every query in the qrels; a query with no results scores 0 on every metric.
When every judged query has results, both averages are equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

DEFAULT_K = (1, 3, 5, 10, 20, 100)
Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


def rank(scores: Mapping[str, float]) -> list[str]:
    """Document ids best first; ties broken by id, descending, as trec_eval does."""
    by_id_desc = sorted(scores, reverse=True)
    return sorted(by_id_desc, key=lambda doc: -scores[doc])  # stable: ties keep the id order


def metric_names(k_values: Iterable[int]) -> list[str]:
    names = []
    for k in k_values:
        names += [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}", f"map@{k}"]
    return [*names, "map"]


def query_metrics(
    judged: Mapping[str, int], ranking: Sequence[str], k_values: Iterable[int], relevance_level: int = 1
) -> dict[str, float]:
    """All metrics for one query, given its judgements and its ranked document ids (best first)."""
    k_values = list(k_values)
    num_rel = sum(1 for rel in judged.values() if rel >= relevance_level)
    gains = [max(judged.get(doc, 0), 0) for doc in ranking]
    relevant = [judged.get(doc, 0) >= relevance_level for doc in ranking]
    ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)

    precision_sum = []  # running Σ precision at each relevant hit
    first_hit = None
    total, hits = 0.0, 0
    for i, is_rel in enumerate(relevant):
        if is_rel:
            hits += 1
            total += hits / (i + 1)
            if first_hit is None:
                first_hit = i + 1
        precision_sum.append(total)

    out: dict[str, float] = {}
    for k in k_values:
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]) if g)
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
        top = min(k, len(ranking))
        out[f"ndcg@{k}"] = dcg / idcg if idcg > 0 else 0.0
        out[f"recall@{k}"] = sum(relevant[:k]) / num_rel if num_rel else 0.0
        out[f"mrr@{k}"] = 1.0 / first_hit if first_hit is not None and first_hit <= k else 0.0
        out[f"map@{k}"] = precision_sum[top - 1] / num_rel if num_rel and top else 0.0
    out["map"] = total / num_rel if num_rel else 0.0
    return out


def evaluate_run(
    qrels: Qrels, run: Run, k_values: Iterable[int] = DEFAULT_K, relevance_level: int = 1
) -> dict[str, dict]:
    """Score a run against qrels: {"per_query": {qid: {metric: v}}, "mean": {metric: v}, "queries": n,
    "queries_without_results": n}. Means are over every query in `qrels` (see the module docstring)."""
    k_values = sorted(set(k_values))
    names = metric_names(k_values)
    per_query: dict[str, dict[str, float]] = {}
    missing = 0
    for qid, judged in qrels.items():
        scores = run.get(qid)
        if not scores:
            missing += 1
            per_query[qid] = dict.fromkeys(names, 0.0)
            continue
        per_query[qid] = query_metrics(judged, rank(scores), k_values, relevance_level)
    count = len(per_query)
    mean = {name: (sum(q[name] for q in per_query.values()) / count if count else 0.0) for name in names}
    return {"per_query": per_query, "mean": mean, "queries": count, "queries_without_results": missing}
