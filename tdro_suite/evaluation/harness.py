"""Evaluate an encoder on a benchmark: encode (cached), index, search, score; results as JSON + markdown.

`evaluate(encoder, bench, ...)` is the library entry point (the CLI and the end-to-end demo call
it). Its result, also written as results.json:

    {
      "model": "minilm",                  # encoder.name
      "model_fingerprint": "…",           # name + pooling + prompts + weight sample (cache key)
      "benchmark": "beir", "kind": "beir"|"miracl"|"mkqa", "split": "test",
      "index_type": "flat", "search_params": {}, "k_values": [1, 3, 5, 10, 100], "instruction": null,
      "embedding_dtype": "float32",       # as cached on disk: float16 for the public benchmarks by default
      "main_metric": "ndcg@10",           # recall@100 for MKQA (Recall@k by answer match)
      "collections": {
        "<dataset or language>": {
          "language": "sw" | null, "documents": 1234, "queries": 50,
          "metrics": {"ndcg@10": 0.41, "recall@10": …, "mrr@10": …, "map@10": …, "map": …, …},
          "queries_without_results": 0,   # judged queries the index returned nothing for (scored 0)
          "warnings": ["…"],              # e.g. qrels naming documents absent from the corpus
          "timing": {"encode_corpus_s": …, "encode_queries_s": …, "search_s": …, "corpus_cached": true}
        }, …
      },
      "average": {"ndcg@10": …, …},       # unweighted mean over collections of every shared metric
      "created": "2026-…Z", "tdro_suite_version": "0.1.0"
    }

Metrics average over ALL judged queries (see `tdro_suite.evaluation.metrics`). Corpus embeddings
are cached under `cache_dir("embeddings", <model fingerprint>, <corpus hash>)` as resumable shards,
so a second run (or a run after an interruption) does not re-encode the corpus.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import tdro_suite
from tdro_suite.common.io import atomic_write_json, atomic_write_text
from tdro_suite.common.paths import cache_dir as default_cache_root
from tdro_suite.evaluation.answers import answer_recall
from tdro_suite.evaluation.benchmarks import Benchmark, Collection, load_benchmark
from tdro_suite.evaluation.metrics import evaluate_run
from tdro_suite.index.corpus import corpus_hash
from tdro_suite.index.corpus_store import CorpusStore
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.index.encode import (
    DEFAULT_SHARD_SIZE,
    DistInfo,
    barrier,
    encode_shards,
    encoder_fingerprint,
    load_shards,
    share_from_main,
)
from tdro_suite.index.shard_search import search_shards

if TYPE_CHECKING:
    from tdro_suite.modeling.protocol import EmbeddingModel

log = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
QRELS_K = (1, 3, 5, 10, 100)
ANSWER_K = (1, 5, 20, 100)
TABLE_METRICS = {
    "qrels": ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map"),
    "answers": ("recall@1", "recall@5", "recall@20", "recall@100"),
}


def evaluate(
    encoder: EmbeddingModel,
    bench: Benchmark | str | Path,
    *,
    split: str | None = None,
    langs: list[str] | None = None,
    index_type: str = "flat",
    search_params: dict[str, int] | None = None,
    k_values: list[int] | tuple[int, ...] | None = None,
    batch_size: int = 32,
    instruction: str | None = None,
    use_cache: bool = True,
    cache_root: str | Path | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    embedding_dtype: str = "auto",
    info: DistInfo | None = None,
) -> dict[str, Any] | None:
    """Run `encoder` on every collection of `bench`; write results.json/results.md to `out_dir` if given.

    `embedding_dtype="float16"` caches corpus embeddings at half size; "auto" chooses it for the public
    benchmarks (corpora of millions of passages) and float32 for bundled and local ones.
    With several processes (`info`, torchrun), each encodes and searches its share of every corpus's shards;
    the first process scores, writes and returns the results, the others return None.
    """
    info = info or DistInfo()
    benchmark = bench if isinstance(bench, Benchmark) else load_benchmark(bench, split=split, langs=langs)
    by_answers = benchmark.kind == "mkqa"
    ks = sorted(set(k_values or (ANSWER_K if by_answers else QRELS_K)))
    if embedding_dtype == "auto":
        embedding_dtype = "float16" if benchmark.source == "public" else "float32"
    fingerprint = encoder_fingerprint(encoder)
    results: dict[str, Any] = {
        "model": str(encoder.name or ""),
        "model_fingerprint": fingerprint,
        "benchmark": benchmark.name,
        "kind": benchmark.kind,
        "split": benchmark.split,
        "index_type": index_type,
        "search_params": dict(search_params or {}),
        "k_values": ks,
        "instruction": instruction,
        "embedding_dtype": embedding_dtype,
        "main_metric": main_metric(by_answers, ks),
        "collections": {},
    }
    with _embedding_root(cache_root, use_cache, info) as root:
        for collection in benchmark.collections:
            log.info("Evaluating %s / %s", benchmark.name, collection.name)
            scored = evaluate_collection(
                encoder, collection, root / fingerprint, ks=ks, index_type=index_type, batch_size=batch_size,
                search_params=search_params or {},
                instruction=instruction, shard_size=shard_size, fingerprint=fingerprint,
                show_progress=show_progress, embedding_dtype=embedding_dtype, info=info,
            )
            if scored is not None:
                results["collections"][collection.name] = scored
    if not info.is_main:
        return None
    results["average"] = average_metrics(results["collections"])
    results["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    results["tdro_suite_version"] = tdro_suite.__version__
    if out_dir is not None:
        write_report(results, out_dir)
    return results


@contextlib.contextmanager
def _embedding_root(cache_root: str | Path | None, use_cache: bool, info: DistInfo) -> Iterator[Path]:
    """Where corpus embeddings go: `cache_root`, the user cache, or (without the cache) a scratch folder
    that every process shares and the first removes at the end."""
    if cache_root is not None or use_cache:
        yield Path(cache_root) if cache_root else default_cache_root("embeddings")
        return
    scratch = share_from_main(tempfile.mkdtemp(prefix="tdro-eval-", dir=default_cache_root()) if info.is_main
                              else None, info)
    try:
        yield Path(scratch)
    finally:
        barrier()
        if info.is_main:
            shutil.rmtree(scratch, ignore_errors=True)


def main_metric(by_answers: bool, ks: list[int]) -> str:
    """nDCG@10 for judged collections, Recall@100 for MKQA (or the nearest available cutoff)."""
    if by_answers:
        return "recall@100" if 100 in ks else f"recall@{ks[-1]}"
    return "ndcg@10" if 10 in ks else f"ndcg@{ks[-1]}"


def evaluate_collection(
    encoder: EmbeddingModel,
    collection: Collection,
    cache_folder: Path,
    *,
    ks: list[int],
    index_type: str,
    search_params: dict[str, int],
    batch_size: int,
    instruction: str | None,
    shard_size: int,
    fingerprint: str,
    show_progress: bool,
    embedding_dtype: str = "float32",
    info: DistInfo | None = None,
) -> dict[str, Any] | None:
    """Encode (or reuse) the corpus, search the queries, score the ranking (None on processes but the first).

    A flat index is searched shard by shard from the cached embeddings (`index.shard_search`: one shard in
    memory, split among processes); another index type loads every embedding and builds the index in
    memory on the first process. Both hand back corpus positions, read from the memory-mapped corpus.
    """
    info = info or DistInfo()
    corpus = collection.corpus
    work = cache_folder / corpus_hash(corpus)
    started = time.perf_counter()
    written = encode_shards(  # resumes: only shards missing from the cache are encoded
        encoder, corpus, work, batch_size=batch_size, shard_size=shard_size,
        info=info, show_progress=show_progress, fingerprint=fingerprint, dtype=embedding_dtype,
    )
    encode_corpus_s = time.perf_counter() - started

    qids = list(collection.queries)
    instruction = query_instruction(encoder, collection, instruction)
    started = time.perf_counter()
    query_vectors = share_from_main(encoder.encode_queries(
        [collection.queries[q] for q in qids], instruction=instruction, batch_size=batch_size,
        show_progress=show_progress and len(qids) >= 256,
    ) if info.is_main else None, info)
    encode_queries_s = time.perf_counter() - started
    started = time.perf_counter()
    if index_type == "flat":
        scores, positions = search_shards(work, len(corpus), query_vectors, max(ks), info=info)
    else:
        barrier()  # every shard written before the first process reads them all
        scores, positions = _search_in_memory(work, len(corpus), query_vectors, max(ks), index_type, search_params,
                                              encoder.name) if info.is_main else (None, None)
    search_s = time.perf_counter() - started
    if not info.is_main:
        return None
    found = _ranked_rows(positions)

    out: dict[str, Any] = {
        "language": collection.language,
        **({"instruction": instruction} if instruction is not None else {}),
        **({"group": collection.group} if collection.group else {}),
        "documents": len(corpus),
        "queries": len(qids),
    }
    if collection.answers is not None:
        texts = _fields_of(corpus, "text", found)
        scored = answer_recall(
            [collection.answers[q] for q in qids], [[texts[p] for p in row] for row in found], ks,
            match=collection.answer_match,
        )
        if collection.answer_match != "normalized":
            out["answer_match"] = collection.answer_match
        metrics = {key: value for key, value in scored.items() if key != "per_query"}
        out["queries_without_results"] = sum(1 for row in found if not row)
    else:
        ids = _fields_of(corpus, "docid", found)
        run = {
            qid: {ids[p]: float(score) for p, score in zip(row, scores[i][: len(row)], strict=True)}
            for i, (qid, row) in enumerate(zip(qids, found, strict=True))
        }
        scored = evaluate_run(collection.qrels, run, ks)
        metrics = scored["mean"]
        out["queries_without_results"] = scored["queries_without_results"]
    out["metrics"] = {key: round(float(value), 6) for key, value in metrics.items()}
    out["warnings"] = list(collection.warnings)
    out["timing"] = {
        "encode_corpus_s": round(encode_corpus_s, 3),
        "corpus_cached": written == 0,
        "encode_queries_s": round(encode_queries_s, 3),
        "search_s": round(search_s, 4),
    }
    return out


def _search_in_memory(
    work: Path, n: int, queries: np.ndarray, k: int, index_type: str, search_params: dict[str, int], model: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """An approximate index (IVF, HNSW, ...) over all embeddings at once; rows are named by corpus position,
    so the result reads like `search_shards`' (a position of -1 where the index found fewer than k)."""
    index = DenseIndex.build(load_shards(work, n), [str(i) for i in range(n)], index_type=index_type,
                             search_params=search_params, manifest={"model": model or None})
    if len(queries) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64)
    scores, found = index.search(queries, k)
    positions = np.full(scores.shape, -1, dtype=np.int64)
    for i, row in enumerate(found):
        positions[i, : len(row)] = [int(p) for p in row]
    return scores, positions


def _ranked_rows(positions: np.ndarray) -> list[list[int]]:
    """Each query's ranked corpus positions, without the -1 of slots an index left empty."""
    return [[int(p) for p in row if p >= 0] for row in positions]


def _fields_of(corpus: CorpusStore, field: str, rows: list[list[int]]) -> dict[int, str]:
    """`field` of every passage some query found, read once per distinct passage from the mapped corpus."""
    wanted = sorted({p for row in rows for p in row})
    return dict(zip(wanted, corpus.column_at(field, wanted), strict=True))


def query_instruction(encoder: EmbeddingModel, collection: Collection, explicit: str | None) -> str | None:
    """`--instruction` when given; else the dataset's own instruction, but only for a model that saved an
    instruction format (trained with instructions); a model without one (MiniLM) gets none."""
    if explicit is not None:
        return explicit
    return collection.instruction if getattr(encoder, "instructions", None) is not None else None


def average_metrics(collections: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Unweighted mean over collections of every metric all of them report.

    Collections of one `group` (cqadupstack's 12 forums) are averaged first and count as one, as
    BEIR reports cqadupstack; without groups this is the plain mean.
    """
    if not collections:
        return {}
    rows: dict[str, list[dict[str, float]]] = {}
    for name, entry in collections.items():
        rows.setdefault(entry.get("group") or name, []).append(entry["metrics"])
    shared = set.intersection(*(set(c["metrics"]) for c in collections.values()))
    first = next(iter(collections.values()))["metrics"]
    units = [{m: sum(r[m] for r in group) / len(group) for m in shared} for group in rows.values()]
    return {name: round(sum(u[name] for u in units) / len(units), 6) for name in first if name in shared}


def markdown_table(results: dict[str, Any]) -> str:
    """Per collection rows and the average, for the metrics that matter for the benchmark kind."""
    kind = "answers" if results["kind"] == "mkqa" else "qrels"
    average = results.get("average", {})
    columns = [m for m in TABLE_METRICS[kind] if m in average] or sorted(average)[:6]
    lines = [
        f"## {results['benchmark']} ({results['kind']}, split {results['split']}) — model `{results['model']}`",
        "",
        f"Index: {results['index_type']}{_params(results.get('search_params'))}. "
        f"Main metric: {results['main_metric']}. "
        "Means over all judged queries (a query without results scores 0).",
        "",
        "| collection | docs | queries | " + " | ".join(columns) + " |",
        "|---|---:|---:|" + "---:|" * len(columns),
    ]
    for name, entry in results["collections"].items():
        values = " | ".join(f"{100 * entry['metrics'][m]:.2f}" for m in columns)
        lines.append(f"| {name} | {entry['documents']} | {entry['queries']} | {values} |")
    values = " | ".join(f"**{100 * average[m]:.2f}**" for m in columns)
    lines.append(f"| **average** | | | {values} |")
    warnings = [(name, w) for name, entry in results["collections"].items() for w in entry.get("warnings", [])]
    if warnings:
        lines += ["", "Warnings:", *[f"- {name}: {w}" for name, w in warnings]]
    return "\n".join(lines) + "\n"


def _params(params: dict[str, int] | None) -> str:
    return " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else ""


def write_report(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write results.json and results.md (atomically) into `out_dir`."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / RESULTS_JSON, out_dir / RESULTS_MD
    atomic_write_json(json_path, results)
    atomic_write_text(md_path, markdown_table(results))
    return json_path, md_path


def evaluate_model(
    model: str | Path,
    benchmarks: Sequence[str],
    out_root: str | Path,
    *,
    reuse: bool = True,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[str, dict[str, Any], float], None] | None = None,
    **evaluate_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Results of `model` on each benchmark, saved in `out_root/<benchmark name>/`.

    A benchmark whose results are already saved there is read back (with `reuse`); the model loads
    only when one is left to evaluate. `on_start(bench)` and `on_done(bench, results, seconds)` let a
    caller print or time each evaluation. The pipeline and the experiments use this.
    """
    from tdro_suite.modeling import Encoder

    encoder = None
    results: dict[str, dict[str, Any]] = {}
    for bench in benchmarks:
        folder = Path(out_root) / Path(bench).name.replace(":", "-")
        saved = folder / RESULTS_JSON
        if reuse and saved.is_file():
            results[bench] = json.loads(saved.read_text(encoding="utf-8"))
            continue
        if on_start is not None:
            on_start(bench)
        started = time.perf_counter()
        encoder = encoder or Encoder.from_pretrained(model)
        results[bench] = evaluate(encoder, bench, out_dir=folder, **evaluate_kwargs)
        if on_done is not None:
            on_done(bench, results[bench], time.perf_counter() - started)
    return results
