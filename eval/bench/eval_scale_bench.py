"""Evaluation at corpus scale: memory while a large corpus is encoded and searched, and resume after a kill.

Builds a synthetic BEIR folder (`--passages` passages of 12 random words, 200 queries that each copy half
of one passage, that passage judged relevant) and runs the real `tdro-suite eval` on it in a child process:

1. baseline: the old loader, `read_corpus` (every passage a Python object), in a child of its own; it and
   the conversion also print the anonymous memory the loaded corpus holds above their imports;
2. conversion: `open_corpus` validates the corpus once into the memory-mapped Arrow store; a second child
   opens the converted store, as every later run does;
3. `tdro-suite eval`, SIGKILLed once `--kill-after` embedding shards are on disk;
4. the same command again: it must re-encode none of the finished shards (their mtimes are compared), encode
   the rest, search shard by shard and write results.json.

Memory per child: peak RSS (`wait4`'s ru_maxrss: everything resident, including the page cache of the
mapped corpus and shards) and peak anonymous memory (the process's own, sampled from /proc every 50 ms).
The encoder is a tiny BERT (2 layers, hidden 32, MiniLM's tokenizer) unless `--model` names one: the
figures are about the pipeline, not a model; a real model only makes encoding slower.

    .venv/bin/python eval/bench/eval_scale_bench.py                         # 1M passages, ~10 min on 2 cores
    .venv/bin/python eval/bench/eval_scale_bench.py --passages 100000 --shard-size 8192 --kill-after 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

WORDS = [f"w{i:04x}" for i in range(20000)]
QUERIES = 200
# A child that loads the corpus with `loader` and prints the anonymous memory it holds afterwards, above
# what the imports took: the corpus's own cost while it is in use.
LOADER = """import json, sys
from pathlib import Path
from tdro_suite.index.corpus import read_corpus
from tdro_suite.index.corpus_store import open_corpus
def anon():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024
before = anon()
docs = {loader}(sys.argv[1])
print(json.dumps({{"documents": len(docs), "held_anon_mb": round(anon() - before, 1)}}))
"""


def build_corpus(folder: Path, passages: int, seed: int = 0) -> Path:
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv (kept when built with the same size)."""
    stamp = folder / "params.json"
    params = {"passages": passages, "seed": seed, "queries": QUERIES}
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "qrels").mkdir(parents=True)
    rng = random.Random(seed)
    targets = set(rng.sample(range(passages), min(QUERIES, passages)))
    queries: dict[str, str] = {}
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(passages):
            words = rng.choices(WORDS, k=12)
            if i in targets:
                queries[f"d{i}"] = " ".join(words[:6])
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(words)}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for n, target in enumerate(sorted(queries)):
            fh.write(json.dumps({"_id": f"q{n}", "text": queries[target]}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        fh.writelines(f"q{n}\t{target}\t1\n" for n, target in enumerate(sorted(queries)))
    stamp.write_text(json.dumps(params))
    return folder


def build_tiny_model(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with MiniLM's tokenizer, saved once."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tdro_suite.modeling.resolve import resolve_model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_measured(args: list[str], env: dict[str, str], *, kill_when: Any = None) -> dict[str, Any]:
    """Run a child to its end (or SIGKILL it once `kill_when()` is true): seconds, exit code, peak memory in MB."""
    started = time.perf_counter()
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(child.stdout or []), daemon=True)
    reader.start()
    peak_anon, killed = 0.0, False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # reaped here, so ru_maxrss is the child's
        if pid:
            break
        try:
            fields = Path(f"/proc/{child.pid}/status").read_text().splitlines()
            anon = next(int(line.split()[1]) for line in fields if line.startswith("RssAnon:"))
            peak_anon = max(peak_anon, anon / 1024)
        except (OSError, StopIteration, ValueError):
            pass
        if kill_when is not None and not killed and kill_when():
            child.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    child.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=5)
    return {"seconds": round(time.perf_counter() - started, 1), "returncode": child.returncode, "killed": killed,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "peak_anon_mb": round(peak_anon, 1),
            "output": "".join(output)[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=65536)
    parser.add_argument("--kill-after", type=int, default=5, help="SIGKILL the first run once this many shards exist")
    parser.add_argument("--model", default=None, help="Model to encode with (default: a tiny BERT built here)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--work", type=Path, default=Path("eval-scale-work"))
    parser.add_argument("--json", type=Path, default=None, help="Write the measurements here")
    args = parser.parse_args()

    work = args.work.resolve()
    bench = build_corpus(work / "bench", args.passages)
    model = args.model or str(build_tiny_model(work / "tiny-model"))
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "TDRO_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    python = sys.executable
    rows: dict[str, Any] = {"passages": args.passages, "shard_size": args.shard_size, "model": args.model or "tiny",
                            "load_at_start": os.getloadavg()[0]}

    for key, loader in (
        ("baseline_read_corpus", "read_corpus"), ("convert_once", "open_corpus"), ("open_converted", "open_corpus")
    ):
        rows[key] = run_measured([python, "-c", LOADER.format(loader=loader), str(bench / "corpus.jsonl")], env)
        rows[key].update(json.loads(rows[key]["output"].strip().splitlines()[-1]))
    command = [python, "-m", "tdro_suite.cli", "eval", "--bench", str(bench), "--model", model, "--shard-size",
               str(args.shard_size), "--batch-size", str(args.batch_size), "--output", str(work / "results")]
    embeddings = cache / "embeddings"

    def shards() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in embeddings.glob("*/*/shard-*.npy")}

    first = run_measured(command, env, kill_when=lambda: len(shards()) >= args.kill_after)
    before = shards()
    rows["interrupted"] = {**first, "shards_on_disk": len(before)}
    second = run_measured(command, env)
    after = shards()
    rows["resumed"] = {**second, "shards_on_disk": len(after),
                       "finished_shards_re_encoded": sum(after.get(name) != t for name, t in before.items())}
    total = -(-args.passages // args.shard_size)
    results_file = work / "results" / "results.json"
    if second["returncode"] == 0 and results_file.is_file():
        results = json.loads(results_file.read_text())
        collection = next(iter(results["collections"].values()))
        rows["resumed"].update({"ndcg@10": collection["metrics"]["ndcg@10"], "timing": collection["timing"]})
    rows["load_at_end"] = os.getloadavg()[0]
    for part in ("baseline_read_corpus", "convert_once", "open_converted", "interrupted", "resumed"):
        if rows[part]["returncode"] == 0 or rows[part]["killed"]:
            rows[part].pop("output")
    rows["peak_anon_ratio_eval_vs_read_corpus"] = round(
        rows["resumed"]["peak_anon_mb"] / max(rows["baseline_read_corpus"]["peak_anon_mb"], 1e-9), 2)

    print(f"{args.passages:,} passages, shards of {args.shard_size:,} ({total} shards), model {rows['model']}, "
          f"load {rows['load_at_start']:.2f} -> {rows['load_at_end']:.2f}")
    print("| step | seconds | peak RSS MB | peak anon MB | corpus held, anon MB | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for label, key, note in (
        ("read_corpus (old loader)", "baseline_read_corpus", "every passage a Python object"),
        ("open_corpus, first time (conversion)", "convert_once", "validated into the Arrow store, once"),
        ("open_corpus, converted", "open_converted", "what every later run pays: the store mapped"),
        ("eval, killed", "interrupted", f"{rows['interrupted']['shards_on_disk']} shards on disk at the kill"),
        ("eval, resumed to the end", "resumed",
         f"{rows['resumed']['finished_shards_re_encoded']} finished shards re-encoded; "
         f"{rows['resumed']['shards_on_disk']}/{total} shards; nDCG@10 {rows['resumed'].get('ndcg@10')}"),
    ):
        row = rows[key]
        held = row.get("held_anon_mb", "")
        print(f"| {label} | {row['seconds']} | {row['peak_rss_mb']} | {row['peak_anon_mb']} | {held} | {note} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    ok = rows["resumed"]["returncode"] == 0 and rows["resumed"]["finished_shards_re_encoded"] == 0
    if not ok:
        print(rows["resumed"].get("output", ""), file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
