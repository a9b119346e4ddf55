"""Index benchmark: build time, size, queries/s and recall@10 (against exact search) for every index type.

    .venv/bin/python eval/bench/index_bench.py                # 1,000,000 x 384 (several GB of RAM, slow on 2 cores)
    .venv/bin/python eval/bench/index_bench.py --n 200000     # CI-sized run

Vectors are clustered random data shaped like sentence embeddings (L2-normalised, 384-d): points
around `--clusters` random centres, queries drawn the same way but not in the database. Every
index is built and searched through `tdro_suite.index.DenseIndex` (the code `index`, `eval` and
`serve` run), so the numbers include our id mapping. Search knobs (nprobe, efSearch) are swept,
and `--hnsw-ef-construction 40,100` builds HNSW once per graph quality to compare;
the run ends with the acceptance check: an HNSW or IVF setting with recall@10 >= 0.95 at
>= 10x the queries/s of exact search.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from tdro_suite.index.dense_index import DenseIndex

K = 10


def clustered(
    n: int, dim: int, clusters: int, spread: float, rng: np.random.Generator, centres: np.ndarray
) -> np.ndarray:
    """n points around random centres, normalised; generated in chunks to bound memory."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        end = min(start + 100_000, n)
        labels = rng.integers(0, clusters, size=end - start)
        block = centres[labels] + spread * rng.standard_normal((end - start, dim), dtype=np.float32)
        out[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed_search(index: DenseIndex, queries: np.ndarray, repeats: int) -> tuple[float, list[list[str]]]:
    """Best-of-`repeats` wall time for searching all queries (one batch), and the result ids."""
    best, found = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        _, found = index.search(queries, K)
        best = min(best, time.perf_counter() - started)
    return best, found


def recall_at_k(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors [1,000,000]")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=1000, help="data clusters [1000]")
    parser.add_argument("--spread", type=float, default=0.08, help="per-dimension noise around a centre [0.08]")
    parser.add_argument("--repeats", type=int, default=2, help="search repetitions, best time kept [2]")
    parser.add_argument("--types", default="flat,hnsw,ivf-flat,ivf-pq,sq8")
    parser.add_argument("--hnsw-ef-construction", default=None,
                        help="comma-separated HNSW efConstruction values to build and compare [the shipped default]")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    started = time.perf_counter()
    data = clustered(args.n, args.dim, args.clusters, args.spread, rng, centres)
    queries = clustered(args.queries, args.dim, args.clusters, args.spread, rng, centres)
    ids = [str(i) for i in range(args.n)]
    print(f"data: {args.n:,} x {args.dim} clustered vectors, {args.queries} queries "
          f"({time.perf_counter() - started:.1f}s); faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}", flush=True)

    sweeps = {
        "hnsw": [("efSearch", v) for v in (32, 64, 128, 256, 512)],
        "ivf-flat": [("nprobe", v) for v in (2, 4, 8, 16, 32, 64)],
        "ivf-pq": [("nprobe", v) for v in (8, 32)],
    }
    rows, truth, exact_qps = [], None, None
    builds = []  # (index type, build params): HNSW once per efConstruction asked for
    for index_type in args.types.split(","):
        if index_type == "hnsw" and args.hnsw_ef_construction:
            builds += [(index_type, {"efConstruction": int(v)}) for v in args.hnsw_ef_construction.split(",")]
        else:
            builds.append((index_type, None))
    for index_type, build_params in builds:
        started = time.perf_counter()
        index = DenseIndex.build(data, ids, index_type=index_type, build_params=build_params)
        build_s = time.perf_counter() - started
        built_with = ",".join(f"{k}={v}" for k, v in index.manifest["build_params"].items())
        size_mb = faiss.serialize_index(index._index).nbytes / 2**20
        settings = sweeps.get(index_type) or [(None, None)]
        for knob, value in settings:
            if knob:
                index.set_search_params(**{knob: value})
            seconds, found = timed_search(index, queries, args.repeats)
            qps = args.queries / seconds
            if truth is None:  # the first type is exact: it defines the truth and the baseline speed
                if index_type != "flat":
                    raise SystemExit("--types must start with flat (the exact reference)")
                truth, exact_qps = found, qps
            row = {
                "index": index_type,
                "factory": index.manifest["factory"] + (f" ({built_with})" if built_with else ""),
                "setting": f"{knob}={value}" if knob else "-",
                "build_s": round(build_s, 2),
                "size_mb": round(size_mb, 1),
                "qps": round(qps, 1),
                "speedup": round(qps / exact_qps, 1),
                "recall@10": round(recall_at_k(found, truth), 4),
            }
            rows.append(row)
            print(f"{row['index']:9} {row['factory']:36} {row['setting']:12} build {row['build_s']:8.2f}s  "
                  f"size {row['size_mb']:8.1f} MB  {row['qps']:9.1f} q/s  x{row['speedup']:6.1f}  "
                  f"recall@10 {row['recall@10']:.4f}", flush=True)
        del index

    print("\n| index | factory | setting | build (s) | size (MB) | queries/s | vs exact | recall@10 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['index']} | {r['factory']} | {r['setting']} | {r['build_s']} | {r['size_mb']} | {r['qps']} | "
              f"{r['speedup']}x | {r['recall@10']:.4f} |")
    winners = [r for r in rows if r["index"] in ("hnsw", "ivf-flat", "ivf-pq") and r["recall@10"] >= 0.95
               and r["speedup"] >= 10]
    verdict = "PASS" if winners else "FAIL"
    best = max(winners, key=lambda r: r["speedup"]) if winners else None
    detail = f" — {best['index']} {best['setting']}: recall@10 {best['recall@10']}, {best['speedup']}x" if best else ""
    print(f"\nacceptance (HNSW or IVF: recall@10 >= 0.95 at >= 10x exact q/s): {verdict}{detail}")
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "dim": args.dim, "rows": rows, "verdict": verdict}, indent=2))
    return 0 if winners else 1


if __name__ == "__main__":
    sys.exit(main())
