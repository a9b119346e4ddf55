"""Arrow-backed training data at scale: conversion, start-up, memory per rank, sampler throughput.

Builds a synthetic Tevatron mixture (several tasks, one positive and `--negatives` hard negatives of
`--words` words each), then measures with the code training runs (`tdro_suite.data.tasks.task_examples`,
`HomogeneousBatchSampler` + `global_text_groups`, tDRO's `draw_global_batch`):

- first conversion: validating and writing every task to its cached Arrow file;
- later start-up: a fresh process that lists the tasks, maps their Arrow files and builds the sampler;
- memory per rank after start-up (and 200 drawn batches), with 1 and 2 processes: RSS, split into
  anonymous memory (the process's own) and file pages (the shared, memory-mapped Arrow files);
- samples/s (queries with their passages) of the sampler + collator, fine-tuning's and tDRO's;
- with `--in-memory`, the same start-up and memory for the old loader (every line as Python objects).

    .venv/bin/python eval/bench/data_bench.py --lines 1000000          # about 5 GB of JSON lines
    .venv/bin/python eval/bench/data_bench.py --lines 100000 --in-memory
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORDS = [f"w{i:04x}" for i in range(20000)]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def build(folder: Path, lines: int, tasks: int, words: int, negatives: int) -> list[Path]:
    """Write `tasks` JSON-lines files with `lines` examples in all and a tasks.json (kept if present)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "params.json"
    params = {"lines": lines, "tasks": tasks, "words": words, "negatives": negatives}
    files = [folder / f"task{k}.jsonl" for k in range(tasks)]
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return files
    for k, path in enumerate(files):
        rng = random.Random(k)
        count = lines // tasks + (1 if k < lines % tasks else 0)
        with path.open("w", encoding="utf-8") as fh:
            for i in range(count):
                row = {
                    "query_id": f"{k}-{i}",
                    "query": _text(rng, 12),
                    "positive_passages": [{"docid": f"{k}-{i}-p", "title": "", "text": _text(rng, words)}],
                    "negative_passages": [
                        {"docid": f"{k}-{i}-n{j}", "title": "", "text": _text(rng, words)} for j in range(negatives)
                    ],
                }
                fh.write(json.dumps(row) + "\n")
    manifest = [{"name": p.stem, "path": p.name, "instruction": "Retrieve the passage"} for p in files]
    (folder / "tasks.json").write_text(json.dumps(manifest))
    stamp.write_text(json.dumps(params))
    return files


def _memory() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "anon_mb": fields["RssAnon"], "file_mb": fields["RssFile"]}


def worker(folder: Path, in_memory: bool) -> dict[str, Any]:
    """One rank's start-up (task list, examples, sampler) and its memory after 200 drawn batches."""
    start = time.perf_counter()
    from tdro_suite.data.tasks import load_task_examples, load_tasks, task_examples
    from tdro_suite.train.batching import global_text_groups
    from tdro_suite.train.sampler import HomogeneousBatchSampler

    imported = time.perf_counter()
    tasks = load_tasks([folder])
    examples = [load_task_examples(t) if in_memory else task_examples(t) for t in tasks]
    sampler = HomogeneousBatchSampler([len(e) for e in examples], [1.0] * len(tasks), 64, seed=1)
    ready = time.perf_counter()
    for _ in range(200):
        batch = sampler.next_batch()
        global_text_groups(batch, examples[batch.task], tasks[batch.task], 7, seed=1)
    return {"startup_s": ready - start, "startup_after_imports_s": ready - imported, **_memory()}


def _spawn(folder: Path, cache: Path, in_memory: bool, processes: int) -> list[dict[str, Any]]:
    env = {**os.environ, "TDRO_CACHE_DIR": str(cache)}
    args = [sys.executable, __file__, "--worker", str(folder)] + (["--in-memory"] if in_memory else [])
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def throughput(folder: Path, seconds: float = 5.0) -> dict[str, float]:
    """Queries/s of fine-tuning's sampler + collator and of tDRO's batch draw (64 queries, 7 negatives)."""
    from tdro_suite.data.tasks import load_tasks, task_examples
    from tdro_suite.dro.batches import draw_global_batch, load_task_data
    from tdro_suite.train.batching import global_text_groups
    from tdro_suite.train.sampler import HomogeneousBatchSampler

    tasks = load_tasks([folder])
    examples = [task_examples(t) for t in tasks]
    sampler = HomogeneousBatchSampler([len(e) for e in examples], [1.0] * len(tasks), 64, seed=2)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = sampler.next_batch()
        done += len(global_text_groups(batch, examples[batch.task], tasks[batch.task], 7, seed=2))
    finetune = done / (time.perf_counter() - start)
    data = load_task_data(tasks)
    done, step, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += len(draw_global_batch(data, step, batch_size=64, hard_negatives=7, seed=2))
        step += 1
    return {"finetune_queries_per_s": finetune, "tdro_queries_per_s": done / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--words", type=int, default=80, help="words per passage")
    parser.add_argument("--negatives", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/tdro-data-bench"))
    parser.add_argument("--in-memory", action="store_true", help="also measure the old in-memory loader")
    parser.add_argument("--keep-cache", action="store_true", help="keep converted files (times the check only)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.in_memory)))
        return

    data = args.folder / f"lines-{args.lines}"
    cache = args.folder / f"cache-{args.lines}"
    t0 = time.perf_counter()
    build(data, args.lines, args.tasks, args.words, args.negatives)
    size_mb = sum(p.stat().st_size for p in data.glob("*.jsonl")) / 2**20
    print(f"data: {args.lines} lines in {args.tasks} tasks, {size_mb:.0f} MB ({time.perf_counter() - t0:.1f} s)")
    os.environ["TDRO_CACHE_DIR"] = str(cache)
    if not args.keep_cache:
        for old in cache.glob("tasks/*"):
            old.unlink()
    from tdro_suite.data.arrow import ensure_arrow
    from tdro_suite.data.tasks import load_tasks

    t0 = time.perf_counter()
    for task in load_tasks([data]):
        ensure_arrow(task, progress=False)
    took = "cache_check_s" if args.keep_cache else "first_conversion_s"
    row: dict[str, Any] = {"lines": args.lines, "json_mb": size_mb, took: time.perf_counter() - t0}
    row["arrow_mb"] = sum(p.stat().st_size for p in cache.glob("tasks/*.arrow")) / 2**20
    one = _spawn(data, cache, False, 1)[0]
    two = _spawn(data, cache, False, 2)
    row.update({f"1proc_{k}": v for k, v in one.items()})
    row.update({f"2proc_{k}": max(r[k] for r in two) for k in ("startup_s", "rss_mb", "anon_mb", "file_mb")})
    if args.in_memory:
        row.update({f"in_memory_{k}": v for k, v in _spawn(data, cache, True, 1)[0].items()})
    row.update(throughput(data))
    row["load_average"] = os.getloadavg()[0]
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
