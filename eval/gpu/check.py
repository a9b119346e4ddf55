#!/usr/bin/env python3
"""One-shot GPU check of tdro-suite: the whole pipeline on a CUDA device, timed, as a markdown table.

    bash eval/gpu/check.sh                       # on a machine with a CUDA GPU (installs carried wheels)
    python3 eval/gpu/check.py --cpu-smoke        # the same pipeline on CPU, tiny sizes (a few minutes)

Every check runs in its own process (this file with `--child NAME`) under its own timeout, so a crash,
a hang or a CUDA error in one check cannot hide the others. The parent prints one row per check
(check | result | seconds | note), writes the table to `$OUT/gpu_check.md` (when OUT is set; else
eval/gpu/results.md, or results-cpu-smoke.md with --cpu-smoke) and exits 1 when any check FAILED.
A check that cannot run here ("not run: reason") is not a failure.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import gzip
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TRAIN_DIR = REPO / "tdro_suite" / "bundled" / "train"
BEIR_DIR = REPO / "tdro_suite" / "bundled" / "benchmarks" / "beir" / "nave-kjv"
ZERO2_ACCELERATE = REPO / "configs" / "accelerate" / "deepspeed-zero2.yaml"

OK, FAILED, NOT_RUN = "ok", "FAILED", "not run"
EOS, PAD = "<|endoftext|>", "<|pad|>"
TAIL_LINES = 30
TAIL_CHARS = 2500
CELL_CHARS = 220
# Why a GPU build of FAISS is not carried to the check machine (see eval/gpu/README.md).
FAISS_GPU_NOTE = (
    "GPU FAISS not checked: faiss-gpu-cu12 (48 MB) needs libcudart/libcublas .so.12, absent with CUDA 13; "
    "faiss-gpu 1.15.1 is 135 MB (eval/gpu/README.md)"
)


# ---------------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the CPU smoke run."""

    label: str
    device: str
    precision: str
    # the small Qwen2 model that is trained, indexed and served
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tokenizer_lines: int
    # fine-tuning and tDRO
    steps: int
    save_steps: int
    warmup_steps: int
    batch: int
    opt_batch: int
    hard_negatives: int
    query_len: int
    passage_len: int
    examples_per_task: int
    # index and search
    corpus_docs: int | None
    queries: int
    index_batch: int
    # encode throughput (Qwen2-0.5B shape on GPU)
    bench_vocab: int | None
    bench_hidden: int
    bench_layers: int
    bench_heads: int
    bench_kv_heads: int
    bench_intermediate: int
    bench_batch: int
    bench_short: int
    bench_long: int
    # serving
    serve_requests: int
    serve_clients: int
    serve_inputs: int
    # per-check timeouts (seconds)
    timeouts: dict[str, int]


GPU = Sizes(
    label="GPU", device="cuda", precision="bf16",
    vocab=8000, hidden=384, layers=4, heads=6, kv_heads=2, intermediate=1024, tokenizer_lines=400,
    steps=20, save_steps=10, warmup_steps=2, batch=32, opt_batch=26, hard_negatives=3, query_len=64,
    passage_len=256, examples_per_task=512,
    corpus_docs=None, queries=100, index_batch=256,
    bench_vocab=151936, bench_hidden=896, bench_layers=24, bench_heads=14, bench_kv_heads=2,
    bench_intermediate=4864, bench_batch=64, bench_short=4096, bench_long=1024,
    serve_requests=400, serve_clients=8, serve_inputs=8,
    timeouts={"env": 90, "build": 90, "finetune": 150, "lora": 150, "optimize": 180, "kv_cache": 90,
              "index": 150, "encode": 240, "serve": 180, "zero2": 240, "pytest": 240},
)
CPU_SMOKE = Sizes(
    label="CPU smoke", device="cpu", precision="fp32",
    vocab=1000, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, tokenizer_lines=40,
    steps=3, save_steps=2, warmup_steps=0, batch=4, opt_batch=13, hard_negatives=1, query_len=32,
    passage_len=48, examples_per_task=16,
    corpus_docs=200, queries=10, index_batch=32,
    bench_vocab=None, bench_hidden=64, bench_layers=2, bench_heads=4, bench_kv_heads=2,
    bench_intermediate=128, bench_batch=8, bench_short=32, bench_long=16,
    serve_requests=24, serve_clients=3, serve_inputs=4,
    timeouts={"env": 120, "build": 120, "finetune": 240, "lora": 240, "optimize": 300, "kv_cache": 120,
              "index": 240, "encode": 300, "serve": 240, "zero2": 120, "pytest": 300},
)


# ---------------------------------------------------------------------------------------------- rows and table
@dataclass
class Row:
    """One line of the table."""

    check: str
    status: str
    result: str
    seconds: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAILED


class NotRun(Exception):
    """The check cannot run here (missing package, no device...); not a failure."""


class CheckFailed(Exception):
    """The check ran and something was wrong."""


def _cell(text: str, limit: int = CELL_CHARS) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_table(rows: Sequence[Row], header: Sequence[str] = ()) -> str:
    """Markdown: header lines, then `check | result | seconds | note`, then a summary line."""
    lines = [*header, "", "| check | result | seconds | note |", "|---|---|---:|---|"]
    for row in rows:
        seconds = "" if row.seconds is None else f"{row.seconds:.1f}"
        result = row.status if not row.result else f"{row.status}: {row.result}"
        lines.append(f"| {_cell(row.check, 60)} | {_cell(result)} | {seconds} | {_cell(row.note)} |")
    failed = sum(r.failed for r in rows)
    not_run = sum(r.status == NOT_RUN for r in rows)
    passed = sum(r.status == OK for r in rows)
    lines += ["", f"{passed} ok, {failed} failed, {not_run} not run."]
    return "\n".join(lines) + "\n"


def exit_code(rows: Sequence[Row]) -> int:
    """1 when any row FAILED, else 0 ("not run" rows do not fail the check)."""
    return 1 if any(r.failed for r in rows) else 0


def default_output(cpu_smoke: bool, environ: dict[str, str] | None = None) -> Path:
    """$OUT/gpu_check.md when OUT is set, else a results file next to this script."""
    env = os.environ if environ is None else environ
    if env.get("OUT"):
        return Path(env["OUT"]) / "gpu_check.md"
    return HERE / ("results-cpu-smoke.md" if cpu_smoke else "results.md")


# ---------------------------------------------------------------------------------------------- config files
def finetune_config(sizes: Sizes, model: Path, output: Path, *, lora: bool = False, steps: int | None = None
                    ) -> dict[str, Any]:
    """The `tdro-suite finetune` YAML of a check (keys of FinetuneConfig)."""
    config: dict[str, Any] = {
        "model": str(model),
        "output_dir": str(output),
        "max_steps": steps or sizes.steps,
        "per_device_batch_size": sizes.batch,
        "hard_negatives": sizes.hard_negatives,
        "query_max_length": sizes.query_len,
        "passage_max_length": sizes.passage_len,
        "max_examples_per_task": sizes.examples_per_task,
        "temperature": 0.02,
        "learning_rate": 5.0e-4 if lora else 1.0e-4,
        "warmup_steps": sizes.warmup_steps,
        "save_steps": sizes.save_steps,
        "precision": sizes.precision,
        "progress": False,
        "seed": 42,
    }
    if lora:
        config.update({"lora": True, "lora_rank": 8, "lora_alpha": 16, "gradient_checkpointing": True})
    return config


def optimize_config(sizes: Sizes, model: Path, reference: Path, output: Path) -> dict[str, Any]:
    """The `tdro-suite optimize` YAML (the renamed keys: max_steps, global_batch_size, save_steps).

    No `device` key: like finetune, optimize runs where accelerate puts it (CUDA when there is one).
    """
    return {
        "model": str(model),
        "reference": str(reference),
        "output_dir": str(output),
        "measure": "relative",
        "max_steps": sizes.steps,
        "global_batch_size": sizes.opt_batch,
        "save_steps": sizes.save_steps,
        "hard_negatives": sizes.hard_negatives,
        "query_max_length": sizes.query_len,
        "passage_max_length": sizes.passage_len,
        "max_examples_per_task": sizes.examples_per_task,
        "temperature": 0.02,
        "learning_rate": 1.0e-4,
        "step_size": 0.1,
        "precision": sizes.precision,
        "progress": False,
        "seed": 42,
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- child context
@dataclass
class Context:
    """What a check (in its child process) gets: the sizes, the work folder and helpers."""

    sizes: Sizes
    work: Path

    @property
    def base_model(self) -> Path:
        return self.work / "base-model"

    @property
    def ft_model(self) -> Path:
        return self.work / "ft" / "model"

    @property
    def index_dir(self) -> Path:
        return self.work / "index"

    def run(self, args: Sequence[str], what: str) -> list[str]:
        """Run a command from the repo root, echo its output into the log, raise CheckFailed on a non-zero exit."""
        print(f"$ {' '.join(args)}", flush=True)
        tail: collections.deque[str] = collections.deque(maxlen=60)
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip())
        rc = proc.wait()
        sys.stdout.flush()
        if rc != 0:
            raise CheckFailed(f"{what} exited {rc}: {_last_error(tail)}")
        return list(tail)

    def cli(self, args: Sequence[str], what: str | None = None) -> list[str]:
        """`python -m tdro_suite.cli ARGS` (the `tdro-suite` command without needing it installed)."""
        return self.run([sys.executable, "-m", "tdro_suite.cli", *args], what or f"tdro-suite {args[0]}")


def _last_error(lines: Sequence[str]) -> str:
    """The most telling line of a failed command's output: the last error/exception line, else the last line."""
    keys = ("Error", "error:", "Exception", "unknown key", "Traceback", "FAILED", "Killed")
    for line in reversed(lines):
        if line.strip() and any(k in line for k in keys) and not line.startswith("Traceback"):
            return line.strip()
    nonempty = [x.strip() for x in lines if x.strip()]
    return nonempty[-1] if nonempty else "(no output)"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def bundled_texts(per_task: int) -> tuple[list[str], list[str]]:
    """(queries, passages) from the bundled training mixture, `per_task` examples of each task."""
    queries: list[str] = []
    passages: list[str] = []
    for path in sorted(TRAIN_DIR.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= per_task:
                    break
                row = json.loads(line)
                queries.append(row["query"])
                for p in row.get("positive_passages", []) + row.get("negative_passages", []):
                    passages.append(f"{p.get('title') or ''} {p['text']}".strip())
    return queries, passages


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- the checks
def check_env(ctx: Context) -> list[Row]:
    """Versions, the device, and whether our package and its dependencies import."""
    import importlib.metadata as md
    import importlib.util

    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    for dist in ("transformers", "sentence-transformers", "peft", "accelerate", "tokenizers", "faiss-cpu",
                 "faiss-gpu", "faiss-gpu-cu12", "pydantic", "fastapi", "uvicorn", "deepspeed", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            info[dist] = md.version(dist)
    cuda = torch.cuda.is_available()
    info["cuda_available"] = cuda
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})"
        info["gpus"] = torch.cuda.device_count()
        info["bf16"] = torch.cuda.is_bf16_supported()
    missing = [m for m in ("pydantic", "pydantic_settings", "fastapi", "uvicorn", "faiss", "yaml", "httpx")
               if importlib.util.find_spec(m) is None]
    ctx.work.joinpath("env.json").write_text(json.dumps(info, indent=2))
    import tdro_suite.cli  # noqa: F401  (every command module imports)

    device = info.get("gpu", "no CUDA device")
    result = f"{device}; torch {info['torch']} (CUDA {info['cuda']}); transformers {info.get('transformers')}"
    note = f"missing modules: {', '.join(missing)}" if missing else "tdro_suite.cli and its dependencies import"
    if ctx.sizes.device == "cuda" and not cuda:
        return [Row("environment", FAILED, f"no CUDA device visible ({result}); use --cpu-smoke", note=note)]
    return [Row("environment", OK, result, note=note)]


def check_build(ctx: Context) -> list[Row]:
    """A BPE tokenizer trained on the bundled text and a random Qwen2 decoder, saved as a HF folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    s = ctx.sizes
    queries, passages = bundled_texts(s.tokenizer_lines)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=s.vocab, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(queries + passages, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, model_max_length=1024)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=s.hidden, intermediate_size=s.intermediate,
        num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
        max_position_embeddings=1024, tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(ctx.base_model)
    tokenizer.save_pretrained(ctx.base_model)
    params = sum(p.numel() for p in model.parameters())

    from tdro_suite.modeling.encoder import Encoder

    enc = Encoder.from_pretrained(ctx.base_model, device="cpu")
    ids = enc.tokenize(["a test"])["input_ids"][0].tolist()
    if enc.pooling != "lasttoken" or ids[-1] != tokenizer.eos_token_id:
        raise CheckFailed(f"expected last-token pooling ending in EOS, got {enc.pooling} and ids {ids}")
    return [Row("build Qwen2 model + tokenizer", OK,
                f"{s.layers} layers, hidden {s.hidden}, vocab {len(tokenizer)}, {params / 1e6:.1f}M params",
                note=f"BPE trained on {len(queries) + len(passages)} bundled texts; last-token pooling, EOS appended")]


def _finetune(ctx: Context, *, lora: bool) -> list[Row]:
    import shutil

    s = ctx.sizes
    name = "ft-lora" if lora else "ft"
    out = ctx.work / name
    shutil.rmtree(out, ignore_errors=True)
    path = write_yaml(ctx.work / f"{name}.yaml", finetune_config(s, ctx.base_model, out, lora=lora))
    ctx.cli(["finetune", "--config", str(path)])
    rows = read_jsonl(out / "metrics.jsonl")
    losses = [r["loss"] for r in rows]
    if len(rows) != s.steps or not all(math.isfinite(x) for x in losses):
        raise CheckFailed(f"metrics.jsonl has {len(rows)} rows (want {s.steps}), losses {losses}")
    model = out / "model"
    if not (model / "config.json").is_file():
        raise CheckFailed(f"no exported model at {model}")
    if lora and (model / "adapter_config.json").is_file():
        raise CheckFailed("merge_lora is on but the export is an adapter")
    speed = statistics.median(r["samples_per_s"] for r in rows[1:] or rows)
    title = "finetune LoRA (r=8, grad. ckpt)" if lora else "finetune full"
    title += f" {s.precision}"
    return [Row(title, OK, f"{s.steps} steps, mean loss {statistics.fmean(losses):.3f}, {speed:.3g} queries/s",
                note=f"batch {s.batch} q × {1 + s.hard_negatives} passages, passages ≤{s.passage_len} tokens; "
                     f"checkpoint every {s.save_steps}; exported {model.name}/; each step is another task, "
                     "so first vs last loss is no trend")]


def check_finetune(ctx: Context) -> list[Row]:
    return _finetune(ctx, lora=False)


def check_lora(ctx: Context) -> list[Row]:
    return _finetune(ctx, lora=True)


def check_optimize(ctx: Context) -> list[Row]:
    """tDRO, `relative` measure, against the fine-tuned model as the reference."""
    import csv
    import shutil

    s = ctx.sizes
    out = ctx.work / "optimize"
    shutil.rmtree(out, ignore_errors=True)
    path = write_yaml(ctx.work / "optimize.yaml", optimize_config(s, ctx.base_model, ctx.ft_model, out))
    started = time.monotonic()
    ctx.cli(["optimize", "--config", str(path)])
    seconds = time.monotonic() - started
    tasks = json.loads((out / "weights.json").read_text())["tasks"]
    weights = [float(t["weight"]) for t in tasks]
    if not all(math.isfinite(w) and w >= 0 for w in weights) or abs(sum(weights) - 1) > 1e-4:
        raise CheckFailed(f"weights.json is not a distribution: {weights}")
    with open(out / "trajectory.csv", encoding="utf-8", newline="") as fh:
        steps = len(list(csv.DictReader(fh)))
    if steps != s.steps:
        raise CheckFailed(f"trajectory.csv has {steps} rows, want {s.steps}")
    top = max(tasks, key=lambda t: t["weight"])
    return [Row(f"tDRO optimize (relative) {s.precision}", OK,
                f"{steps} steps, {len(tasks)} task weights in [{min(weights):.3f}, {max(weights):.3f}], "
                f"top {top['name']}; {seconds:.1f} s wall incl. model loads",
                note=f"global batch {s.opt_batch}, reference = the full fine-tune")]


def check_kv_cache(ctx: Context) -> list[Row]:
    """Our Encoder's decoder forward (inference and training) must build no KV cache."""
    import torch
    from transformers import cache_utils

    from tdro_suite.modeling.encoder import Encoder

    s = ctx.sizes
    enc = Encoder.from_pretrained(ctx.base_model, device=s.device, dtype=torch.float32)
    created: list[str] = []
    original_init = cache_utils.Cache.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        created.append(type(self).__name__)
        original_init(self, *args, **kwargs)

    outputs: list[Any] = []
    hook = enc.base_model.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    cache_utils.Cache.__init__ = counting_init  # type: ignore[method-assign]
    try:
        enc.encode(["what is love", "a much longer passage about the lazy dog and the quick brown fox"] * 4)
        enc.train()
        features = {k: v.to(enc.device) for k, v in enc.tokenize(["a query", "another query"]).items()}
        enc(features).sum().backward()
    finally:
        cache_utils.Cache.__init__ = original_init  # type: ignore[method-assign]
        hook.remove()
    in_outputs = [k for out in outputs if hasattr(out, "items") for k, v in out.items()
                  if isinstance(v, cache_utils.Cache)]
    if created or in_outputs:
        kinds = sorted(set(created))
        return [Row("no KV cache in encoder forward", FAILED,
                    f"{len(created)} cache object(s) built ({', '.join(kinds)}) in {len(outputs)} forwards; "
                    f"output fields holding a cache: {sorted(set(in_outputs))}",
                    note="the backbone runs with use_cache from its config (True for Qwen2): "
                         "pass use_cache=False in Encoder._embed")]
    return [Row("no KV cache in encoder forward", OK, f"0 cache objects in {len(outputs)} forwards",
                note="Cache.__init__ counted; outputs inspected (inference and training)")]


def _corpus_and_queries(ctx: Context) -> tuple[Path, Path]:
    s = ctx.sizes
    corpus = BEIR_DIR / "corpus.jsonl.gz"
    if s.corpus_docs is not None:
        small = ctx.work / "corpus.jsonl.gz"
        with gzip.open(corpus, "rt", encoding="utf-8") as src, gzip.open(small, "wt", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= s.corpus_docs:
                    break
                dst.write(line)
        corpus = small
    queries = ctx.work / "queries.jsonl"
    lines = (BEIR_DIR / "queries.jsonl").read_text(encoding="utf-8").splitlines()[: s.queries]
    queries.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpus, queries


def check_index(ctx: Context) -> list[Row]:
    """`tdro-suite index` over the bundled BEIR corpus with the fine-tuned model, then `search`."""
    import shutil

    s = ctx.sizes
    shutil.rmtree(ctx.index_dir, ignore_errors=True)
    corpus, queries = _corpus_and_queries(ctx)
    ctx.cli(["index", "--corpus", str(corpus), "-m", str(ctx.ft_model), "-o", str(ctx.index_dir),
             "--index-type", "flat", "--batch-size", str(s.index_batch), "--device", s.device])
    manifest = json.loads((ctx.index_dir / "manifest.json").read_text())
    hits_file = ctx.work / "search.jsonl"
    started = time.monotonic()
    ctx.cli(["search", "--index", str(ctx.index_dir), "--queries", str(queries), "-k", "10",
             "-o", str(hits_file), "--device", s.device])
    search_s = time.monotonic() - started
    records = read_jsonl(hits_file)
    n_queries = len(queries.read_text(encoding="utf-8").splitlines())
    if len(records) != n_queries or any(len(r["hits"]) != 10 for r in records):
        raise CheckFailed(f"search returned {len(records)} rankings for {n_queries} queries (or fewer than 10 hits)")
    docs = manifest.get("count")
    encode_s = float(manifest.get("encode_seconds", float("nan")))
    rate = f"{docs / encode_s:.0f} docs/s encoded" if isinstance(docs, int) and encode_s > 0 else ""
    from tdro_suite.index.factory import gpu_count

    faiss_gpus = gpu_count()
    note = (f"FAISS on {faiss_gpus} GPU(s)" if faiss_gpus else
            FAISS_GPU_NOTE if s.device == "cuda" else "faiss-cpu (CPU smoke)")
    return [Row("index + search (flat)", OK,
                f"{docs} docs, {manifest.get('dimension')}-d, {rate}; {n_queries} queries × 10 hits "
                f"(search command {search_s:.1f} s incl. model load)", note=note)]


def _bench_texts(tokenizer: Any, short_n: int, long_n: int) -> tuple[list[str], list[str], float, float]:
    """Short (~32-token) and long (≥512-token) texts cut from bundled passages; their mean token counts."""
    _, passages = bundled_texts(200)
    words = " ".join(passages).split()
    windows = [" ".join(words[i : i + 40]) for i in range(0, max(1, len(words) - 40), 23)]
    ids = tokenizer(windows[: min(len(windows), 2048)], add_special_tokens=False)["input_ids"]
    cut = [tokenizer.decode(x[:31]) for x in ids]  # 31 tokens + the EOS the encoder appends
    short = [cut[i % len(cut)] for i in range(short_n)]
    span = max(1, len(words) - 600)
    long = [" ".join(words[(i * 293) % span :][:600]) for i in range(long_n)]
    lengths_short = [len(x) for x in tokenizer(short[:256])["input_ids"]]
    lengths_long = [min(512, len(x)) for x in tokenizer(long[:64])["input_ids"]]
    return short, long, statistics.mean(lengths_short), statistics.mean(lengths_long)


def check_encode(ctx: Context) -> list[Row]:
    """Texts/s of our Encoder in bf16 and fp32 and of sentence-transformers (bf16) on a Qwen2-0.5B-shaped model."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    from tdro_suite.modeling.encoder import Encoder

    s = ctx.sizes
    device = torch.device(s.device)
    tokenizer = AutoTokenizer.from_pretrained(ctx.base_model)
    config = Qwen2Config(
        vocab_size=s.bench_vocab or len(tokenizer), hidden_size=s.bench_hidden,
        intermediate_size=s.bench_intermediate, num_hidden_layers=s.bench_layers,
        num_attention_heads=s.bench_heads, num_key_value_heads=s.bench_kv_heads, max_position_embeddings=4096,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with device:
        model = Qwen2Model(config)
    params = sum(p.numel() for p in model.parameters())
    folder = ctx.work / "bench-model"
    Encoder(model.to(torch.bfloat16), tokenizer, pooling="lasttoken", max_length=512).save(folder)
    del model
    short, long, short_tokens, long_tokens = _bench_texts(tokenizer, s.bench_short, s.bench_long)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[float, np.ndarray]:
        encode(texts[: s.bench_batch])  # warm-up: kernels, allocator
        sync()
        started = time.perf_counter()
        out = encode(texts)
        sync()
        return len(texts) / (time.perf_counter() - started), out

    rates: dict[tuple[str, str], float] = {}
    vectors: dict[str, np.ndarray] = {}
    peak: dict[str, float] = {}
    for label, dtype in (("ours bf16", torch.bfloat16), ("ours fp32", torch.float32)):
        enc = Encoder.from_pretrained(folder, device=device, dtype=dtype, max_length=512)
        for kind, texts in (("short", short), ("long", long)):
            rates[label, kind], out = timed(lambda t, e=enc: e.encode(t, batch_size=s.bench_batch,
                                                                    show_progress=False), texts)
            if kind == "short":
                vectors[label] = out
        peak[label] = _peak_gib(device)
        del enc
        _free(device)
    st = SentenceTransformer(str(folder), device=s.device, model_kwargs={"dtype": torch.bfloat16})
    st.max_seq_length = 512
    for kind, texts in (("short", short), ("long", long)):
        rates["ST bf16", kind], out = timed(
            lambda t, m=st: m.encode(t, batch_size=s.bench_batch, convert_to_numpy=True, show_progress_bar=False),
            texts,
        )
        if kind == "short":
            vectors["ST bf16"] = out
    peak["ST bf16"] = _peak_gib(device)
    del st
    _free(device)

    def unit(v: np.ndarray) -> np.ndarray:  # bf16 outputs are normalised in bf16: renormalise in float64
        v = np.asarray(v, dtype=np.float64)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cos_st = float(np.mean(np.sum(unit(vectors["ours bf16"]) * unit(vectors["ST bf16"]), axis=1)))
    cos_fp = float(np.mean(np.sum(unit(vectors["ours bf16"]) * unit(vectors["ours fp32"]), axis=1)))
    rows = []
    for kind, n, tokens in (("short", len(short), short_tokens), ("long", len(long), long_tokens)):
        bf16, fp32, st_rate = rates["ours bf16", kind], rates["ours fp32", kind], rates["ST bf16", kind]
        rows.append(Row(
            f"encode {kind} (~{tokens:.0f} tokens), batch {s.bench_batch}",
            OK,
            f"ours bf16 {bf16:,.0f}/s, fp32 {fp32:,.0f}/s (bf16 ×{bf16 / fp32:.2f}); "
            f"sentence-transformers bf16 {st_rate:,.0f}/s (ours ×{bf16 / st_rate:.2f})",
            note=f"{n} texts, {params / 1e6:.1f}M-param Qwen2 ({s.bench_layers}×{s.bench_hidden}, "
                 f"{s.bench_heads}/{s.bench_kv_heads} heads), random init; "
                 + ("peak GiB " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()) if device.type == "cuda"
                    else "CPU"),
        ))
    agree = f"mean cosine ours-bf16 vs ST-bf16 {cos_st:.4f}, vs ours-fp32 {cos_fp:.4f}"
    if cos_st < 0.98:
        rows.append(Row("encode: ours = sentence-transformers", FAILED, agree,
                        note="the saved folder should give the same embeddings in sentence-transformers"))
    else:
        rows[-1].note += f"; {agree}"
    if device.type == "cuda":
        rows[-1].note += f"; TF32 matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
    return rows


def _peak_gib(device: Any) -> float:
    import torch

    if device.type != "cuda":
        return 0.0
    value = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return value


def _free(device: Any) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _server(ctx: Context, port: int, index: Path | None) -> Iterator[subprocess.Popen[bytes]]:
    """`tdro-suite serve` in the background (its output goes to this check's log); stopped on exit."""
    args = [sys.executable, "-m", "tdro_suite.cli", "serve", "--model", str(ctx.ft_model), "--host", "127.0.0.1",
            "--port", str(port), "--device", ctx.sizes.device, "--no-access-log", "--log-level", "warning"]
    if index is not None:
        args += ["--index", str(index)]
    print(f"$ {' '.join(args)}", flush=True)
    proc = subprocess.Popen(args, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def check_serve(ctx: Context) -> list[Row]:
    """Concurrent /v1/embeddings load against `tdro-suite serve`, plus /v1/search over the index."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    s = ctx.sizes
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    index = ctx.index_dir if (ctx.index_dir / "manifest.json").is_file() else None
    _, passages = bundled_texts(20)
    with _server(ctx, port, index) as proc:
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise CheckFailed(f"the server exited with {proc.returncode} before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() - started > 150:
                raise CheckFailed("the server was not ready within 150 s")
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        dims: set[int] = set()
        errors: list[str] = []
        deadline = time.monotonic() + 90

        def one(i: int, client: httpx.Client) -> float:
            texts = [passages[(i * s.serve_inputs + j) % len(passages)][:400] for j in range(s.serve_inputs)]
            tic = time.perf_counter()
            reply = client.post(f"{base}/v1/embeddings", json={"input": texts, "input_type": "passage"}, timeout=60)
            latency = time.perf_counter() - tic
            if reply.status_code != 200:
                errors.append(f"{reply.status_code} {reply.text[:120]}")
            else:
                data = reply.json()["data"]
                if len(data) != len(texts):
                    errors.append(f"{len(data)} embeddings for {len(texts)} inputs")
                dims.update(len(d["embedding"]) for d in data)
            return latency

        def worker(worker_id: int) -> list[float]:
            out = []
            with httpx.Client() as client:
                for i in range(worker_id, s.serve_requests, s.serve_clients):
                    if time.monotonic() > deadline:
                        break
                    out.append(one(i, client))
            return out

        load_started = time.perf_counter()
        with ThreadPoolExecutor(s.serve_clients) as pool:
            latencies = sorted(x for part in pool.map(worker, range(s.serve_clients)) for x in part)
        elapsed = time.perf_counter() - load_started
        search_note = "no index"
        if index is not None:
            reply = httpx.post(f"{base}/v1/search", json={"query": ["who built the ark", "love"], "top_k": 5},
                               timeout=60)
            hits = [len(q["hits"]) for q in reply.json().get("data", [])] if reply.status_code == 200 else []
            if hits != [5, 5]:
                errors.append(f"/v1/search: {reply.status_code} {reply.text[:120]}")
            search_note = "/v1/search 2 queries × 5 hits"
        metrics = httpx.get(f"{base}/metrics", timeout=10)
        if metrics.status_code != 200:
            errors.append(f"/metrics {metrics.status_code}")
    done = len(latencies)
    if errors or done == 0 or len(dims) != 1:
        raise CheckFailed(f"{len(errors)} bad replies of {done}: {errors[:3]}; dims {sorted(dims)}")
    p50 = latencies[done // 2] * 1000
    p95 = latencies[min(done - 1, int(done * 0.95))] * 1000
    return [Row("serve /v1/embeddings (uvicorn)", OK,
                f"{done} requests × {s.serve_inputs} inputs from {s.serve_clients} clients: "
                f"{done * s.serve_inputs / elapsed:,.0f} embeddings/s, {done / elapsed:.0f} req/s, "
                f"p50 {p50:.0f} ms, p95 {p95:.0f} ms",
                note=f"ready after {ready_s:.1f} s; {search_note}; /metrics 200; dim {dims.pop()}")]


def _deepspeed_importable() -> str | None:
    """None when `import deepspeed` works in a fresh process, else why not."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        install = os.environ.get("GPU_CHECK_DEEPSPEED", "not installed and no sdist carried in .whl/")
        return f"deepspeed is not importable ({install})"
    probe = subprocess.run([sys.executable, "-c", "import deepspeed; print(deepspeed.__version__)"],
                           capture_output=True, text=True, timeout=180, cwd=REPO)
    if probe.returncode != 0:
        return f"import deepspeed failed: {_last_error((probe.stdout + probe.stderr).splitlines())}"
    return None


def check_zero2(ctx: Context) -> list[Row]:
    """DeepSpeed ZeRO-2 fine-tune via `accelerate launch` with the shipped accelerate config, 1 process."""
    import shutil

    s = ctx.sizes
    reason = _deepspeed_importable()
    if reason is not None:
        raise NotRun(reason)
    if s.device != "cuda":
        raise NotRun("DeepSpeed ZeRO needs a CUDA device (deepspeed imports here)")
    out = ctx.work / "ft-zero2"
    shutil.rmtree(out, ignore_errors=True)
    steps = s.steps  # the full fine-tune's settings exactly, so the two runs compare step by step
    path = write_yaml(ctx.work / "ft-zero2.yaml", finetune_config(s, ctx.base_model, out, steps=steps))
    ctx.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO2_ACCELERATE),
             "--num_processes", "1", "--main_process_port", str(free_port()), "-m", "tdro_suite.cli", "finetune",
             "--config", str(path)], "accelerate launch (ZeRO-2)")
    rows = read_jsonl(out / "metrics.jsonl")
    losses = [r["loss"] for r in rows]
    if len(rows) != steps or not all(math.isfinite(x) for x in losses):
        raise CheckFailed(f"metrics.jsonl has {len(rows)} rows (want {steps}), losses {losses}")
    if not (out / "model" / "config.json").is_file():
        raise CheckFailed("no exported model")
    speed = statistics.median(r["samples_per_s"] for r in rows[1:] or rows)
    import importlib.metadata as md

    # Against the plain (accelerate bf16 autocast, fp32 master weights) run of the same settings: DeepSpeed
    # keeps bf16 weights, so the steps differ by bf16 rounding, not by a different optimisation.
    plain = [r["loss"] for r in read_jsonl(ctx.work / "ft" / "metrics.jsonl")]
    versus = ""
    if len(plain) == len(losses):
        gaps = [abs(a - b) / abs(b) for a, b in zip(losses, plain, strict=True)]
        ratio = statistics.fmean(losses) / statistics.fmean(plain)
        versus = (f"; vs the plain run: step 1 Δ {gaps[0]:.1%}, median step Δ {statistics.median(gaps):.1%}, "
                  f"mean-loss ratio {ratio:.3f}")
        if not 0.8 < ratio < 1.25:
            raise CheckFailed(f"ZeRO-2 losses {losses} drift from the plain run's {plain}{versus}")
    return [Row("finetune DeepSpeed ZeRO-2 (accelerate launch, 1 proc)", OK,
                f"{steps} steps, mean loss {statistics.fmean(losses):.3f}, {speed:.3g} queries/s{versus}",
                note=f"deepspeed {md.version('deepspeed')} "
                     f"({os.environ.get('GPU_CHECK_DEEPSPEED', 'installed before the check')}), "
                     "configs/accelerate/deepspeed-zero2.yaml")]


def check_pytest(ctx: Context) -> list[Row]:
    """`pytest -m gpu` over the test files that hold GPU tests."""
    import importlib.util
    import re

    if importlib.util.find_spec("pytest") is None:
        raise NotRun("pytest is not installed")
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "mark.gpu" in p.read_text(encoding="utf-8"))
    if not files:
        raise NotRun("no test file has a gpu mark")
    args = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider", *files]
    print(f"$ {' '.join(args)}", flush=True)
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    print(proc.stdout + proc.stderr, flush=True)
    lines = proc.stdout.splitlines()
    summary = next((x.strip("= ") for x in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|error)", x)),
                   "")
    skips = [x.split(": ", 1)[-1] for x in lines if x.startswith("SKIPPED")]
    note = f"{', '.join(Path(f).name for f in files)}" + (f"; skipped: {'; '.join(skips)}" if skips else "")
    if proc.returncode == 5:
        raise NotRun(f"no gpu test collected ({note})")
    if proc.returncode != 0:
        return [Row("pytest -m gpu", FAILED, summary or f"exit {proc.returncode}: {_last_error(lines)}", note=note)]
    return [Row("pytest -m gpu", OK, summary, note=note)]


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    func: Callable[[Context], list[Row]]
    needs: tuple[str, ...] = ()


CHECKS = (
    Check("env", "environment", check_env),
    Check("build", "build Qwen2 model + tokenizer", check_build, ("env",)),
    Check("finetune", "finetune full", check_finetune, ("build",)),
    Check("lora", "finetune LoRA", check_lora, ("build",)),
    Check("optimize", "tDRO optimize (relative)", check_optimize, ("finetune",)),
    Check("kv_cache", "no KV cache in encoder forward", check_kv_cache, ("build",)),
    Check("index", "index + search", check_index, ("finetune",)),
    Check("encode", "encode throughput", check_encode, ("build",)),
    Check("serve", "serve /v1/embeddings", check_serve, ("finetune",)),
    Check("zero2", "finetune DeepSpeed ZeRO-2", check_zero2, ("finetune",)),
    Check("pytest", "pytest -m gpu", check_pytest, ("env",)),
)
BY_NAME = {c.name: c for c in CHECKS}


# ---------------------------------------------------------------------------------------------- parent / child
def child_env(work: Path) -> dict[str, str]:
    """The environment of every check: offline, repo importable, unbuffered, our caches in the work folder."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        paths.append(str(REPO))
    env.update({
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "Agg",
        "TDRO_CACHE_DIR": str(work / "cache"),
        "HF_HOME": str(work / "hf-home"),
    })
    return env


def run_child(check: Check, args: argparse.Namespace, work: Path, timeout: float) -> tuple[list[Row], bool]:
    """Run one check in its own process group under `timeout`; returns its rows and whether to show the log tail."""
    log = work / "logs" / f"{check.name}.log"
    result_file = work / "results" / f"{check.name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", check.name, "--work", str(work)]
    if args.cpu_smoke:
        cmd.append("--cpu-smoke")
    started = time.monotonic()
    timed_out = False
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(work), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = proc.returncode
    seconds = time.monotonic() - started
    _kill_group(proc)  # servers or launchers the check left behind
    if timed_out:
        return [Row(check.title, FAILED, f"timed out after {timeout:.0f} s", seconds,
                    note=f"last line: {_last_error(_tail(log).splitlines())}")], True
    if not result_file.is_file():
        return [Row(check.title, FAILED, f"check process exited {rc} without a result", seconds,
                    note=_last_error(_tail(log).splitlines()))], True
    rows = [Row(**r) for r in json.loads(result_file.read_text())]
    for row in rows:
        if row.seconds is None:
            row.seconds = seconds
    return rows, any(r.failed for r in rows)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End what is left of the process group this script started for one check (the check and its launches)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, 0)  # anything left in the group?
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        time.sleep(1.0)  # let the rest of the group exit before the next probe


def _tail(log: Path, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    if not log.is_file():
        return ""
    text = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return text[-chars:]


def child_main(name: str, work: Path, sizes: Sizes) -> int:
    """Run one check in this process and write its rows as JSON for the parent."""
    check = BY_NAME[name]
    started = time.monotonic()
    try:
        rows = check.func(Context(sizes, work))
    except NotRun as exc:
        rows = [Row(check.title, NOT_RUN, str(exc))]
    except Exception as exc:
        traceback.print_exc()
        rows = [Row(check.title, FAILED, f"{type(exc).__name__}: {exc}")]
    elapsed = time.monotonic() - started
    for row in rows:
        if row.seconds is None and len(rows) == 1:
            row.seconds = elapsed
    out = work / "results" / f"{name}.json"
    out.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    sys.stdout.flush()
    return 0


def header_lines(sizes: Sizes, work: Path, started: datetime.datetime) -> list[str]:
    env_file = work / "env.json"
    info = json.loads(env_file.read_text()) if env_file.is_file() else {}
    versions = ", ".join(f"{k} {info[k]}" for k in ("transformers", "sentence-transformers", "peft", "accelerate",
                                                     "faiss-cpu", "faiss-gpu", "deepspeed") if k in info)
    return [
        f"# tdro-suite GPU check ({sizes.label})",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- device: {info.get('gpu', 'no CUDA device')}; torch {info.get('torch', '?')}, "
        f"CUDA {info.get('cuda') or '-'}, Python {info.get('python', sys.version.split()[0])}",
        f"- {versions}" if versions else "- versions: unknown (environment check did not run)",
        f"- command: python3 eval/gpu/check.py{' --cpu-smoke' if sizes is CPU_SMOKE else ''}",
    ]


def select_checks(only: Sequence[str] | None, skip: Sequence[str] | None) -> list[Check]:
    """The checks to run, in pipeline order; unknown names are an error."""
    for name in [*(only or []), *(skip or [])]:
        if name not in BY_NAME:
            raise SystemExit(f"unknown check {name!r}; known: {', '.join(BY_NAME)}")
    chosen = [c for c in CHECKS if (not only or c.name in only) and c.name not in (skip or [])]
    return chosen


def parent_main(args: argparse.Namespace) -> int:
    sizes = CPU_SMOKE if args.cpu_smoke else GPU
    started_at = datetime.datetime.now(datetime.timezone.utc)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tdro-gpu-check-"))
    for sub in ("logs", "results"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    output = Path(args.output) if args.output else default_output(args.cpu_smoke)
    deadline = time.monotonic() + args.budget_s
    rows: list[Row] = []
    status: dict[str, str] = {}
    tails: list[tuple[str, str]] = []
    print(f"tdro-suite GPU check ({sizes.label}); work folder {work}", flush=True)
    for check in select_checks(args.only, args.skip):
        blocked = [n for n in check.needs if n in status and status[n] != OK]
        remaining = deadline - time.monotonic()
        if blocked:
            row = Row(check.title, NOT_RUN, f"needs {', '.join(blocked)}, which did not pass", 0.0)
            rows.append(row)
            status[check.name] = NOT_RUN
            print(f"--- {check.title}: {row.status}: {row.result}", flush=True)
            continue
        if remaining < 10:
            rows.append(Row(check.title, NOT_RUN, f"time budget (--budget-s {args.budget_s:.0f}) spent", 0.0))
            status[check.name] = NOT_RUN
            continue
        timeout = min(float(sizes.timeouts[check.name]) * args.timeout_scale, remaining)
        print(f"--> {check.title} (timeout {timeout:.0f} s)", flush=True)
        got, show_tail = run_child(check, args, work, timeout)
        rows.extend(got)
        status[check.name] = FAILED if any(r.failed for r in got) else got[0].status
        for row in got:
            print(f"--- {row.check}: {row.status}: {row.result} [{row.seconds or 0:.1f} s]", flush=True)
        if show_tail:
            tails.append((check.title, _tail(work / "logs" / f"{check.name}.log")))

    table = render_table(rows, header_lines(sizes, work, started_at))
    total = sum(r.seconds or 0 for r in rows)
    table += f"Total {total:.0f} s of checks; logs in {work / 'logs'}.\n"
    for title, tail in tails:
        print(f"\n===== log tail: {title} =====\n{tail}", flush=True)
    print("\n" + table, flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table, encoding="utf-8")
    if os.environ.get("OUT"):
        logs_out = Path(os.environ["OUT"]) / "gpu_check_logs"
        logs_out.mkdir(parents=True, exist_ok=True)
        for log in sorted((work / "logs").glob("*.log")):
            (logs_out / log.name).write_text(_tail(log, lines=400, chars=60000), encoding="utf-8")
    print(f"Table written to {output}", flush=True)
    return exit_code(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="Tiny sizes on CPU (fp32) to verify the driver.")
    parser.add_argument("--only", nargs="+", metavar="CHECK", help=f"Run only these checks ({', '.join(BY_NAME)}).")
    parser.add_argument("--skip", nargs="+", metavar="CHECK", help="Skip these checks.")
    parser.add_argument("--work", help="Work folder (default: a new temporary folder).")
    parser.add_argument("--output", help="Markdown file for the table (default: $OUT/gpu_check.md or eval/gpu/).")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="Start no check after this many seconds (default 420).")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="Multiply every per-check timeout.")
    parser.add_argument("--child", choices=sorted(BY_NAME), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = CPU_SMOKE if args.cpu_smoke else GPU
    if args.child:
        return child_main(args.child, Path(args.work), sizes)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
