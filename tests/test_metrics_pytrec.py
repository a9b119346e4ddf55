"""Every ranking metric equals pytrec_eval (trec_eval) to 1e-6 on random runs with graded qrels and ties."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from tdro_suite.evaluation.metrics import evaluate_run, rank

K_VALUES = (1, 3, 5, 10, 20)


def random_collection(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    docs = [f"doc{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.choice(docs, size=int(rng.integers(1, 12)), replace=False)
        qrels[qid] = {d: int(rng.integers(0, 4)) for d in judged}  # graded 0..3, some all-zero queries
        if q % 9 == 8:
            continue  # judged but no results at all: counts as 0 in our mean
        retrieved = rng.choice(docs, size=int(rng.integers(1, 30)), replace=False)
        run[qid] = {d: float(np.round(rng.random(), 1)) for d in retrieved}  # rounding makes ties
    run["unjudged"] = {"doc1": 1.0}  # a query without judgements is ignored by both
    return qrels, run


def pytrec(qrels: dict, run: dict, measures: set[str]) -> dict:
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval(seed):
    qrels, run = random_collection(seed)
    ours = evaluate_run(qrels, run, K_VALUES)
    cuts = ",".join(map(str, K_VALUES))
    theirs = pytrec(qrels, run, {f"ndcg_cut.{cuts}", f"recall.{cuts}", f"map_cut.{cuts}", "map"})
    assert theirs, "pytrec_eval returned nothing"
    for qid, values in theirs.items():
        mine = ours["per_query"][qid]
        for k in K_VALUES:
            assert mine[f"ndcg@{k}"] == pytest.approx(values[f"ndcg_cut_{k}"], abs=1e-6), (qid, k)
            assert mine[f"recall@{k}"] == pytest.approx(values[f"recall_{k}"], abs=1e-6), (qid, k)
            assert mine[f"map@{k}"] == pytest.approx(values[f"map_cut_{k}"], abs=1e-6), (qid, k)
        assert mine["map"] == pytest.approx(values["map"], abs=1e-6), qid
    # MRR@k is trec_eval's recip_rank on the run cut to its top k (trec_eval's order, ties by docid desc)
    for k in K_VALUES:
        cut = {qid: {d: scores[d] for d in rank(scores)[:k]} for qid, scores in run.items()}
        for qid, values in pytrec(qrels, cut, {"recip_rank"}).items():
            assert ours["per_query"][qid][f"mrr@{k}"] == pytest.approx(values["recip_rank"], abs=1e-6), (qid, k)


def test_mean_is_over_all_judged_queries():
    qrels, run = random_collection(3)
    ours = evaluate_run(qrels, run, K_VALUES)
    theirs = pytrec(qrels, run, {"ndcg_cut.10"})
    missing = [q for q in qrels if q not in run]
    assert missing and ours["queries"] == len(qrels) and ours["queries_without_results"] == len(missing)
    assert all(ours["per_query"][q]["ndcg@10"] == 0.0 for q in missing)
    total = sum(v["ndcg_cut_10"] for v in theirs.values())
    assert ours["mean"]["ndcg@10"] == pytest.approx(total / len(qrels), abs=1e-9)
    # BEIR-style averaging (over the queries that have results) would be larger here
    assert total / len(theirs) > ours["mean"]["ndcg@10"]


def test_ties_are_broken_by_docid_descending_like_trec_eval():
    assert rank({"a": 1.0, "c": 1.0, "b": 2.0, "d": 0.5}) == ["b", "c", "a", "d"]


def test_perfect_and_empty_rankings():
    qrels = {"q": {"x": 2, "y": 1, "z": 0}}
    perfect = evaluate_run(qrels, {"q": {"x": 3.0, "y": 2.0, "z": 1.0}}, (1, 10))["mean"]
    assert perfect["ndcg@10"] == pytest.approx(1.0) and perfect["recall@1"] == pytest.approx(0.5)
    assert perfect["mrr@1"] == 1.0 and perfect["map"] == pytest.approx(1.0)
    assert evaluate_run(qrels, {}, (10,))["mean"]["ndcg@10"] == 0.0
