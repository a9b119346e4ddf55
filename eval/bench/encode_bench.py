"""Encoding speed: `Encoder.encode` against sentence-transformers `encode`, same texts, batch size and threads.

    .venv/bin/python eval/bench/encode_bench.py                      # MiniLM, 2 threads, 3 repeats
    .venv/bin/python eval/bench/encode_bench.py --threads 1 --repeats 5 --json encode.json

Texts come from the bundled training data, so the run needs nothing from the internet:
- short: 1,024 distinct queries of 8-40 words (questions, definitions, Python docstrings, verse topics);
- long: 256 distinct passages of at least 60 words (Python source, Bible verses, answers), truncated
  to 256 tokens by every contender.

Contenders, alternated `--repeats` times after one warm-up pass each (the median is reported):
- ours, as shipped (`Encoder.from_pretrained(model)`: the dtype `tdro-suite env` reports, token-count sort);
- ours in float32 (what the dtype choice alone is worth);
- sentence-transformers `SentenceTransformer(path).encode`, float32 (its default): the named baseline;
- sentence-transformers with bf16 weights (`model_kwargs={"dtype": torch.bfloat16}`), where bf16 is native.

Every row prints texts/s, its ratio to the baseline and the smallest cosine between its embeddings and
the baseline's. Target: ours >= 2.0x sentence-transformers on CPUs with native bf16 (AVX512-BF16/AMX);
a CPU without it runs fp32 and is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_texts import bundled_texts

TARGET = 2.0


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def contenders(model: str, max_length: int, batch_size: int, native_bf16: bool) -> dict[str, Callable]:
    from sentence_transformers import SentenceTransformer

    from tdro_suite.modeling import Encoder
    from tdro_suite.modeling.resolve import resolve_model

    path = str(resolve_model(model))
    ours = Encoder.from_pretrained(model, max_length=max_length, device="cpu")
    ours32 = Encoder.from_pretrained(model, max_length=max_length, device="cpu", dtype="float32")
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = max_length
    runs: dict[str, Callable] = {
        f"ours, as shipped ({str(next(ours.parameters()).dtype).replace('torch.', '')})":
            lambda texts: ours.encode(texts, batch_size=batch_size, show_progress=False),
        "ours, float32": lambda texts: ours32.encode(texts, batch_size=batch_size, show_progress=False),
        "sentence-transformers, float32": lambda texts: st.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        ),
    }
    if native_bf16:
        st16 = SentenceTransformer(path, device="cpu", model_kwargs={"dtype": torch.bfloat16})
        st16.max_seq_length = max_length
        runs["sentence-transformers, bfloat16"] = lambda texts: st16.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
    return runs


def measure(runs: dict[str, Callable], texts: list[str], repeats: int) -> dict[str, dict]:
    """Median texts/s per contender (alternated, after a warm-up) and the last embeddings."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    vectors: dict[str, np.ndarray] = {}
    for run in runs.values():
        run(texts[:64])  # warm-up: oneDNN picks its kernels on the first calls
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            vectors[name] = np.asarray(run(texts), dtype=np.float32)
            seconds[name].append(time.perf_counter() - start)
    return {name: {"texts_per_s": len(texts) / statistics.median(s), "seconds": s, "vectors": vectors[name]}
            for name, s in seconds.items()}


def main() -> None:
    from tdro_suite.common.device import cpu_bf16_flag

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--short", type=int, default=1024, help="short texts (queries)")
    parser.add_argument("--long", type=int, default=256, help="long texts (passages)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    flag = cpu_bf16_flag()
    short, long = bundled_texts(args.short, args.long)
    runs = contenders(args.model, args.max_length, args.batch_size, flag is not None)
    baseline = "sentence-transformers, float32"
    load = os.getloadavg()[0]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, native bf16: {flag or 'no'}; "
          f"torch {torch.__version__}, {args.threads} threads; batch {args.batch_size}; load average {load:.2f}")
    rows = []
    for shape, texts in (("short", short), ("long", long)):
        results = measure(runs, texts, args.repeats)
        base = results[baseline]
        print(f"\n{shape}: {len(texts)} texts")
        print(f"| contender | texts/s | vs {baseline} | min cosine to it |\n|---|---:|---:|---:|")
        for name, r in results.items():
            ratio = r["texts_per_s"] / base["texts_per_s"]
            cosine = min_cosine(r["vectors"], base["vectors"])
            print(f"| {name} | {r['texts_per_s']:.1f} | {ratio:.2f}x | {cosine:.5f} |")
            rows.append({"shape": shape, "contender": name, "texts_per_s": round(r["texts_per_s"], 2),
                         "ratio": round(ratio, 3), "min_cosine": round(cosine, 6),
                         "seconds": [round(s, 3) for s in r["seconds"]]})
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    shipped = [r for r in rows if r["contender"].startswith("ours, as shipped")]
    target = TARGET if flag else 1.0
    verdict = "met" if all(r["ratio"] >= target for r in shipped) else "NOT met"
    print(f"target ours >= {target:.1f}x sentence-transformers float32 "
          f"({'native bf16 CPU' if flag else 'fp32-only CPU'}): {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"native_bf16": flag, "threads": args.threads, "load": load, "rows": rows},
                                        indent=2))


if __name__ == "__main__":
    main()
