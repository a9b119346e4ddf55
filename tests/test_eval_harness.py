"""The evaluation harness and the index/search/eval commands, checked against brute force + pytrec_eval."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from typer.testing import CliRunner

from tdro_suite.cli import app, main
from tdro_suite.evaluation.answers import answer_recall
from tdro_suite.evaluation.benchmarks import load_benchmark
from tdro_suite.evaluation.harness import evaluate

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


@pytest.fixture(scope="module")
def tiny(tiny_encoder_dir):
    from tdro_suite.modeling import Encoder

    return Encoder.from_pretrained(tiny_encoder_dir, device="cpu")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))


def brute_force_run(encoder, collection, k):
    ids = [d.docid for d in collection.corpus]
    docs = encoder.encode_passages([d.full_text() for d in collection.corpus])
    qids = list(collection.queries)
    queries = encoder.encode_queries([collection.queries[q] for q in qids])
    scores = queries @ docs.T
    run = {}
    for i, qid in enumerate(qids):
        top = np.argsort(-scores[i])[:k]
        run[qid] = {ids[j]: float(scores[i, j]) for j in top}
    return run


def test_beir_results_match_brute_force_scored_by_pytrec_eval(tiny, tmp_path):
    results = evaluate(tiny, FIXTURES / "beir", out_dir=tmp_path / "out", show_progress=False)
    assert set(results["collections"]) == {"tinyanimals", "tinyfacts"}
    for collection in load_benchmark(FIXTURES / "beir").collections:
        run = brute_force_run(tiny, collection, 100)
        ref = pytrec_eval.RelevanceEvaluator(collection.qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
        ours = results["collections"][collection.name]["metrics"]
        assert ours["ndcg@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in ref.values()]), abs=1e-5)
        assert ours["recall@100"] == pytest.approx(np.mean([v["recall_100"] for v in ref.values()]), abs=1e-5)
    average = np.mean([c["metrics"]["ndcg@10"] for c in results["collections"].values()])
    assert results["average"]["ndcg@10"] == pytest.approx(average, abs=1e-6)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["main_metric"] == "ndcg@10" and written["k_values"] == [1, 3, 5, 10, 100]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| tinyfacts | 12 | 6 |" in table and "| **average** |" in table


def test_corpus_embeddings_are_cached_by_model_and_corpus(tiny, tmp_path):
    first = evaluate(tiny, FIXTURES / "beir" / "tinyfacts", show_progress=False)
    second = evaluate(tiny, FIXTURES / "beir" / "tinyfacts", show_progress=False)
    assert first["collections"]["tinyfacts"]["timing"]["corpus_cached"] is False
    assert second["collections"]["tinyfacts"]["timing"]["corpus_cached"] is True
    assert first["collections"]["tinyfacts"]["metrics"] == second["collections"]["tinyfacts"]["metrics"]
    cache = tmp_path / "cache" / "embeddings" / first["model_fingerprint"]
    assert len(list(cache.iterdir())) == 1


def test_mkqa_recall_counts_answer_hits_in_the_top_k(tiny):
    results = evaluate(tiny, FIXTURES / "mkqa", langs=["en"], k_values=[1, 5], show_progress=False)
    (collection,) = load_benchmark(FIXTURES / "mkqa", langs=["en"]).collections
    texts = {d.docid: d.text for d in collection.corpus}
    run = brute_force_run(tiny, collection, 5)
    ranked = [[texts[d] for d in sorted(run[q], key=run[q].get, reverse=True)] for q in collection.queries]
    expected = answer_recall([collection.answers[q] for q in collection.queries], ranked, (1, 5))
    for k in (1, 5):
        assert results["collections"]["en"]["metrics"][f"recall@{k}"] == pytest.approx(expected[f"recall@{k}"])
    assert results["main_metric"] == "recall@5" and results["kind"] == "mkqa"


def test_approximate_index_types_run_through_the_harness(tiny):
    flat = evaluate(tiny, FIXTURES / "miracl", show_progress=False)
    hnsw = evaluate(tiny, FIXTURES / "miracl", index_type="hnsw", show_progress=False)
    assert hnsw["index_type"] == "hnsw"
    assert hnsw["average"]["ndcg@10"] == pytest.approx(flat["average"]["ndcg@10"], abs=1e-6)  # tiny: exact


def test_cli_index_search_eval(tiny_encoder_dir, tmp_path):
    runner = CliRunner()
    corpus = FIXTURES / "beir" / "tinyfacts" / "corpus.jsonl"
    result = runner.invoke(app, ["index", "--corpus", str(corpus), "-o", str(tmp_path / "idx"),
                                 "-m", str(tiny_encoder_dir), "--index-type", "ivf-flat", "--nprobe", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["index_type"] == "ivf-flat" and manifest["search_params"] == {"nprobe": 1}
    result = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "-q", "capital of France",
                                 "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["query"] == "capital of France" and len(record["hits"]) == 2 and record["hits"][0]["title"]
    config = tmp_path / "eval.yaml"
    config.write_text(f"bench: {FIXTURES / 'miracl'}\nmodel: {tiny_encoder_dir}\nlangs: sw\nk_values: [1, 10]\n")
    result = runner.invoke(app, ["eval", "--config", str(config), "-o", str(tmp_path / "ev"),
                                 "--index-type", "hnsw", "--ef-search", "16"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert list(written["collections"]) == ["sw"] and written["k_values"] == [1, 10]
    assert written["index_type"] == "hnsw" and written["search_params"] == {"efSearch": 16}
    assert "Index: hnsw (efSearch=16)" in (tmp_path / "ev" / "results.md").read_text()


def test_cli_errors_are_one_clear_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "facts"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "title": "t"}\n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "q"}\n')
    (bad / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    monkeypatch.setattr(sys, "argv", ["tdro-suite", "eval", "--bench", str(bad), "-m", "minilm"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl:1: field 'text' is missing" in err and "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["tdro-suite", "eval", "--bench", str(bad), "--k", "0"])
    with pytest.raises(SystemExit):
        main()
    assert "k_values" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "eval").glob("*.yaml")))
def test_shipped_eval_configs_validate(path):
    from tdro_suite.config import load_config
    from tdro_suite.evaluation.config import EvalConfig

    cfg = load_config(EvalConfig, path)
    assert cfg.bench in ("bundled:beir", "bundled:miracl", "bundled:mkqa") and cfg.model == "minilm"
