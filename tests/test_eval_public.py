"""Public benchmarks (`miracl`, `mkqa`, `beir`): pinned sources, the offline message, the dry run, and small
replicas in the mirrors' schema (configs, splits, columns) fetched through the real `load_dataset` /
`urlopen` code path from a local mirror, scored, and compared with hand-computed metrics."""

from __future__ import annotations

import gzip
import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tdro_suite.common.errors import DataError
from tdro_suite.evaluation import public
from tdro_suite.evaluation.answers import answer_recall
from tdro_suite.evaluation.benchmarks import load_benchmark
from tdro_suite.evaluation.harness import evaluate

VOCAB = ("alpha", "beta", "gamma", "delta", "berlin", "paris")


class BagOfWords:
    """A stub encoder: counts of VOCAB words, L2-normalised, so rankings can be worked out by hand."""

    name, pooling, max_length, prompts = "bow", "mean", 32, {"query": "", "passage": ""}
    dimension = len(VOCAB)

    def encode(self, texts: str | Sequence[str], **_: Any) -> np.ndarray:
        rows = [[t.lower().split().count(w) for w in VOCAB] for t in ([texts] if isinstance(texts, str) else texts)]
        vectors = np.asarray(rows, dtype=np.float32).reshape(-1, self.dimension)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)

    def encode_queries(self, texts: str | Sequence[str], instruction: str | None = None, **kw: Any) -> np.ndarray:
        return self.encode(texts)

    def encode_passages(self, texts: str | Sequence[str], **kw: Any) -> np.ndarray:
        return self.encode(texts)


def write_repo(root: Path, repo: str, configs: dict[str, dict[str, list[dict]]]) -> None:
    """A dataset repository as `push_to_hub` writes it: `<config>/<split>-00000-of-00001.parquet` + README configs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / repo
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            (folder / config).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), folder / config / f"{split}-00000-of-00001.parquet")
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*.parquet"]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]), encoding="utf-8")


def retrieval(prefix: str, split: str, corpus: dict[str, str], queries: dict[str, str],
              qrels: list[tuple[str, str, int]]) -> dict[str, dict[str, list[dict]]]:
    """The mteb retrieval schema: corpus {_id,title,text}, queries {_id,text}, qrels {query-id,corpus-id,score}."""
    return {
        f"{prefix}corpus": {"corpus" if not prefix else split: [{"_id": k, "title": "", "text": v}
                                                               for k, v in corpus.items()]},
        f"{prefix}queries": {"queries" if not prefix else split: [{"_id": k, "text": v} for k, v in queries.items()]},
        f"{prefix}qrels" if prefix else "default": {split: [{"query-id": q, "corpus-id": d, "score": s}
                                                            for q, d, s in qrels]},
    }


DOCS = {"d1": "alpha", "d2": "alpha beta", "d3": "beta", "d4": "gamma"}
# q1 "alpha": d1 (1.0), d2 (0.71) → its relevant d2 at rank 2: nDCG@10 = 1/log2(3), MRR 1/2, R@1 0
# q2 "beta": d3 (1.0) first → nDCG@10 = MRR = R@1 = 1
QUERIES = {"q1": "alpha", "q2": "beta"}
QRELS = [("q1", "d2", 1), ("q1", "d4", 0), ("q2", "d3", 1)]
HAND = {"ndcg@10": (1 / np.log2(3) + 1) / 2, "mrr@10": 0.75, "recall@1": 0.5, "recall@10": 1.0}


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "mirror"
    monkeypatch.setenv(public.MIRROR_ENV, str(root))
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_pins_are_the_ones_mteb_uses():
    mteb = pytest.importorskip("mteb")
    tasks = {"miracl": "MIRACLRetrieval", "miracl-hn": "MIRACLRetrievalHardNegatives"}
    for bench, task in tasks.items():
        part = public.public_collections(bench, ["de"])[0].parts[0]
        dataset = mteb.get_task(task).metadata.dataset
        assert (part.repo, part.revision) == (dataset["path"], dataset["revision"])
    names = {"arguana": "ArguAna", "climate-fever": "ClimateFEVER", "dbpedia-entity": "DBPedia", "fever": "FEVER",
             "fiqa": "FiQA2018", "hotpotqa": "HotpotQA", "msmarco": "MSMARCO", "nfcorpus": "NFCorpus", "nq": "NQ",
             "quora": "QuoraRetrieval", "scidocs": "SCIDOCS", "scifact": "SciFact", "trec-covid": "TRECCOVID",
             "webis-touche2020": "Touche2020"}
    names |= {f"cqadupstack-{f}": f"CQADupstack{f.capitalize()}Retrieval" for f in public.CQADUPSTACK}
    collections = public.public_collections("beir")
    assert len(collections) == 14 + 12 and {c.name for c in collections} == set(names)
    for c in collections:
        meta = mteb.get_task(names[c.name]).metadata
        assert (c.parts[0].repo, c.parts[0].revision) == (meta.dataset["path"], meta.dataset["revision"])
        assert c.split == meta.eval_splits[0]  # MS MARCO: dev
    assert len(public.public_collections("miracl")) == 18


def test_offline_and_not_cached_fails_at_once_with_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as caught:
        load_benchmark("miracl", langs=["sw"])
    text = str(caught.value)
    assert "mteb/MIRACLRetrieval at revision 9c09abc13478308c27598f350e31d8f06b9b5481" in text
    assert "--bench bundled:miracl" in text and str(tmp_path / "cache") in text
    assert not (tmp_path / "cache" / "benchmarks" / "public" / "miracl" / "sw").exists()


def test_unreachable_hub_fails_after_one_probe_not_the_clients_retries(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    import datasets

    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    probes = []

    def no_network(url, timeout):
        probes.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no download may start"))
    with pytest.raises(DataError, match=r"huggingface.co unreachable.*\n  download: huggingface.co/datasets/mteb/nq"):
        load_benchmark("beir:nq")
    assert len(probes) == 1


def test_dry_run_prints_the_sources_and_exits_non_zero_offline(tmp_path, monkeypatch, capsys):
    from tdro_suite.cli import main

    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr("sys.argv", ["tdro-suite", "eval", "--bench", "miracl", "--dry-run"])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code != 0 and "Traceback" not in out + err
    assert "miracl/en (dev) [32,893,221 passages]: to fetch: hf dataset mteb/MIRACLRetrieval@9c09abc13478" in out
    assert "config en-corpus" in out and "--bench bundled:miracl" in " ".join(err.split())
    monkeypatch.setattr("sys.argv", ["tdro-suite", "eval", "--bench", "bundled:miracl", "--dry-run"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0  # the bundled stand-in needs nothing
    assert "nothing to fetch" in capsys.readouterr().out


def test_miracl_replica_fetched_from_the_mirror_scores_as_by_hand(mirror):
    configs = retrieval("de-", "dev", DOCS, QUERIES, QRELS)
    configs |= retrieval("sw-", "dev", {"s1": "gamma", "s2": "delta"}, {"q9": "delta"}, [("q9", "s2", 1)])
    write_repo(mirror, "mteb/MIRACLRetrieval", configs)
    bench = load_benchmark("miracl", langs=["de", "sw"])
    assert [(c.name, c.language, len(c.corpus)) for c in bench.collections] == [("de", "de", 4), ("sw", "sw", 2)]
    results = evaluate(BagOfWords(), bench, use_cache=False, show_progress=False)
    de = results["collections"]["de"]["metrics"]
    for metric, value in HAND.items():
        assert de[metric] == pytest.approx(value, abs=1e-6)
    assert results["average"]["ndcg@10"] == pytest.approx((HAND["ndcg@10"] + 1) / 2, abs=1e-6)
    cached = public.public_collections("miracl", ["de"])[0]
    assert cached.is_cached() and (cached.folder() / "qrels" / "dev.tsv").is_file()
    # collections are read one at a time while iterating (MIRACL's corpora do not fit in memory together)
    lazy = load_benchmark("miracl", langs=["de", "sw"]).collections
    (public.public_collections("miracl", ["sw"])[0].folder() / "corpus.jsonl.gz").write_bytes(b"")
    walk = iter(lazy)
    assert next(walk).name == "de" and len(lazy) == 2
    with pytest.raises(DataError, match="holds no documents"):
        next(walk)


def test_beir_replica_msmarco_dev_and_cqadupstack_averaged_as_one(mirror):
    write_repo(mirror, "mteb/msmarco", retrieval("", "dev", DOCS, QUERIES, QRELS))
    write_repo(mirror, "mteb/scifact", retrieval("", "test", DOCS, {"q2": "beta"}, [("q2", "d3", 1)]))
    for i, (repo, _) in enumerate(public.CQADUPSTACK.values()):  # forum 0 scores 1/log2(3), others 1
        query = {"q": "alpha"} if i == 0 else {"q": "beta"}
        write_repo(mirror, repo, retrieval("", "test", DOCS, query, [("q", "d2" if i == 0 else "d3", 1)]))
    msmarco = evaluate(BagOfWords(), "beir:msmarco", use_cache=False, show_progress=False)
    assert msmarco["embedding_dtype"] == "float16"  # "auto": half the disk for the public corpora
    assert msmarco["split"] == "dev" and msmarco["average"]["ndcg@10"] == pytest.approx(HAND["ndcg@10"], abs=1e-6)
    results = evaluate(BagOfWords(), "beir", langs=["scifact", "cqadupstack"], use_cache=False, show_progress=False)
    assert len(results["collections"]) == 13
    cqa = (1 / np.log2(3) + 11) / 12
    assert results["average"]["ndcg@10"] == pytest.approx((1 + cqa) / 2, abs=1e-6)  # 2 rows, not 13


def test_a_mirror_with_query_and_qrels_configs_is_read_as_mteb_reads_it(mirror):
    layout = retrieval("", "test", DOCS, QUERIES, QRELS)
    layout["query"] = layout.pop("queries")  # some MTEB mirrors name the configs so; mteb's loader reads them
    layout["qrels"] = layout.pop("default")
    write_repo(mirror, "mteb/scifact", layout)
    results = evaluate(BagOfWords(), "beir:scifact", use_cache=False, show_progress=False)
    assert results["average"]["ndcg@10"] == pytest.approx(HAND["ndcg@10"], abs=1e-6)


def test_other_processes_wait_for_the_first_ones_fetch_without_a_collective(mirror):
    import threading

    write_repo(mirror, "mteb/scifact", retrieval("", "test", DOCS, QUERIES, QRELS))
    waited = threading.Thread(target=public.wait_until_cached, args=("beir:scifact",), kwargs={"poll_s": 0.05})
    waited.start()
    waited.join(0.3)
    assert waited.is_alive()  # nothing cached yet: still waiting
    public.fetch_public("beir:scifact")  # what the first process does
    waited.join(5)
    assert not waited.is_alive()


def test_mkqa_replica_from_apples_file_and_the_nq_corpus(mirror):
    records = [
        {"example_id": 1, "query": "capital of germany", "queries": {"en": "berlin capital", "de": "paris hauptstadt"},
         "answers": {"en": [{"type": "entity", "text": "Berlin", "aliases": []}]}},
        {"example_id": 2, "query": "nonsense", "queries": {"en": "gamma", "de": "gamma"},
         "answers": {"en": [{"type": "unanswerable", "text": None}]}},
    ]
    target = mirror / "apple" / "ml-mkqa" / "raw" / "main" / "dataset" / "mkqa.jsonl.gz"
    target.parent.mkdir(parents=True)
    with gzip.open(target, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)
    corpus = {"n1": "Berlin is the capital.", "n2": "Paris is lovely."}
    rows = [{"_id": k, "title": "", "text": v} for k, v in corpus.items()]
    write_repo(mirror, "mteb/nq", {"corpus": {"corpus": rows}})
    results = evaluate(BagOfWords(), "mkqa", k_values=[1, 2], use_cache=False, show_progress=False)
    by_lang = results["collections"]
    assert set(by_lang) == {"en", "de"} and by_lang["en"]["queries"] == 1  # the unanswerable one is filtered out
    assert by_lang["en"]["metrics"]["recall@1"] == 1.0  # "berlin" finds n1
    assert by_lang["de"]["metrics"] == {"recall@1": 0.0, "recall@2": 1.0}  # "paris" finds n2 first
    assert by_lang["de"]["answer_match"] == "dpr"  # the public protocol; the bundled stand-in keeps its own


@pytest.mark.parametrize(("answer", "passage", "hit"), [
    ("Zürich", "He moved to ZÜRICH.", True),  # case and punctuation
    ("Zürich", unicodedata.normalize("NFD", "in Zürich"), True),  # composed = decomposed accents
    ("Zürich", "in Zurich", False),  # an accent is not dropped
    ("U.S.", "the u.s. army", True),
    ("1,000", "about 1,000 people", True),
    ("1,000", "about 1000 people", False),  # numbers are not rewritten
    ("42", "in 1942", False),  # whole tokens only
    ("The Beatles", "beatles songs", True),  # articles dropped
])
def test_answer_match_hand_cases(answer, passage, hit):
    assert answer_recall([[answer]], [[passage]], [1])["recall@1"] == (1.0 if hit else 0.0)


@pytest.mark.parametrize(("answer", "passage", "hit"), [
    ("Zürich", "He moved to ZÜRICH.", True),
    ("Zürich", unicodedata.normalize("NFD", "in Zürich"), True),
    ("Zürich", "in Zurich", False),
    ("U.S.", "the U.S. army", True),
    ("U.S.", "the US army", False),  # punctuation is a token of its own in DPR
    ("1,000", "about 1,000 people", True),
    ("1,000", "about 1000 people", False),
    ("42", "in 1942", False),
    ("The Beatles", "beatles songs", False),  # DPR keeps articles
    ("The Beatles", "songs by the beatles", True),
])
def test_dpr_answer_match_hand_cases(answer, passage, hit):
    """The public MKQA protocol: DPR's `has_answer` (match type "string"), as BGE-M3's evaluation runs it."""
    assert answer_recall([[answer]], [[passage]], [1], match="dpr")["recall@1"] == (1.0 if hit else 0.0)


@pytest.mark.parametrize("kind", ["beir", "miracl", "mkqa"])
def test_bundled_names_load_exactly_the_shipped_folders(kind):
    """`bundled:<kind>` is the old `<kind>`: same folder, same loader, so the demo's numbers cannot move."""
    from tdro_suite.bundled import benchmark_dir
    from tdro_suite.index.corpus import corpus_hash

    named, direct = load_benchmark(f"bundled:{kind}"), load_benchmark(benchmark_dir(kind))
    assert named.name == f"bundled:{kind}" and named.kind == direct.kind == kind
    for a, b in zip(named.collections, direct.collections, strict=True):
        assert (a.name, a.queries, a.qrels, a.answers, a.group) == (b.name, b.queries, b.qrels, b.answers, None)
        assert corpus_hash(a.corpus) == corpus_hash(b.corpus)  # the key of the cached embeddings


def test_average_without_groups_is_the_plain_mean():
    from tdro_suite.evaluation.harness import average_metrics

    rows = {name: {"metrics": {"ndcg@10": v}} for name, v in [("a", 0.1), ("b", 0.2), ("c", 0.7)]}
    assert average_metrics(rows) == {"ndcg@10": round((0.1 + 0.2 + 0.7) / 3, 6)}


# ---------------------------------------------------------------- instructions end to end
class Recording(BagOfWords):
    """Records the instruction each query batch is encoded with."""

    def __init__(self, instructions: Any = None) -> None:
        self.instructions = instructions
        self.seen: list[str | None] = []

    def encode_queries(self, texts: str | Sequence[str], instruction: str | None = None, **kw: Any) -> np.ndarray:
        self.seen.append(instruction)
        return self.encode(texts)


def test_instructions_are_the_e5_mistral_ones_mteb_carries():
    mteb = pytest.importorskip("mteb")
    tasks = {"arguana": "ArguAna", "climate-fever": "ClimateFEVER", "dbpedia-entity": "DBPedia", "fever": "FEVER",
             "fiqa": "FiQA2018", "hotpotqa": "HotpotQA", "msmarco": "MSMARCO", "nfcorpus": "NFCorpus", "nq": "NQ",
             "quora": "QuoraRetrieval", "scidocs": "SCIDOCS", "scifact": "SciFact", "trec-covid": "TRECCOVID",
             "webis-touche2020": "Touche2020"}
    for name, task in tasks.items():
        assert public.BEIR_INSTRUCTIONS[name] == mteb.get_task(task).metadata.prompt["query"], name
    assert mteb.get_task("MIRACLRetrieval").metadata.prompt["query"] == public.QA_INSTRUCTION
    assert all(c.instruction for c in public.public_collections("beir") + public.public_collections("miracl"))
    assert public.public_collections("mkqa")[0].instruction == public.QA_INSTRUCTION


def test_eval_applies_the_dataset_instruction_only_to_models_that_use_instructions(mirror):
    from tdro_suite.modeling.prompts import InstructionFormat

    write_repo(mirror, "mteb/MIRACLRetrieval", retrieval("de-", "dev", DOCS, QUERIES, QRELS))
    trained, plain, told = Recording(InstructionFormat()), Recording(), Recording(InstructionFormat())
    results = evaluate(trained, "miracl", langs=["de"], use_cache=False, show_progress=False)
    assert trained.seen == [public.QA_INSTRUCTION]
    assert results["collections"]["de"]["instruction"] == public.QA_INSTRUCTION
    evaluate(plain, "miracl", langs=["de"], use_cache=False, show_progress=False)
    assert plain.seen == [None]  # MiniLM-like: no instruction
    evaluate(told, "miracl", langs=["de"], instruction="Find it", use_cache=False, show_progress=False)
    assert told.seen == ["Find it"]  # --instruction overrides
    bundled = Recording(InstructionFormat())
    bench = load_benchmark("bundled:miracl", langs=["de"])
    bench.collections[0].queries = dict(list(bench.collections[0].queries.items())[:2])
    evaluate(bundled, bench, use_cache=False, show_progress=False)
    assert bundled.seen == [None]  # the bundled stand-ins carry no instruction: their numbers stay as they were


def test_a_model_saves_how_it_reads_instructions_and_serve_uses_it(tiny_encoder_dir, tmp_path):
    from tdro_suite.modeling import Encoder
    from tdro_suite.modeling.prompts import INSTRUCTIONS_FILE, InstructionFormat
    from tdro_suite.serve.metrics import ServeMetrics
    from tdro_suite.serve.service import Service
    from tdro_suite.serve.settings import ServeSettings

    plain = Encoder.from_pretrained(tiny_encoder_dir, device="cpu", max_length=32)
    assert plain.instructions is None and plain.prompts["query"] == ""
    plain.instructions = InstructionFormat("Task: {instruction}\n", "none", "Find passages")
    plain.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / INSTRUCTIONS_FILE).read_text())["query_template"] == "Task: {instruction}\n"
    loaded = Encoder.from_pretrained(tmp_path / "model", device="cpu", max_length=32)
    assert loaded.instructions == plain.instructions
    assert loaded.query_prompt_for("Answer it") == "Task: Answer it\n"
    assert loaded.prompts["query"] == "Task: Find passages\n"  # the default instruction, without --instruction
    service = Service(ServeSettings(model=str(tmp_path / "model")), ServeMetrics(), encoder=loaded)
    service.state = "ready"
    assert service.prompt_for("query", None) == "Task: Find passages\n"
    assert service.prompt_for("query", "Answer it") == "Task: Answer it\n"
    assert service.prompt_for("passage", None) == ""
