"""Serving benchmark: N concurrent clients against `tdro-suite serve`, a batch-of-one configuration of
the same server, a peer server (infinity_emb when installed, else a plain per-request FastAPI app),
and in-process `Encoder.encode` on the same texts, all in one run on one machine.

    .venv/bin/python eval/bench/serve_bench.py                          # MiniLM, 16 clients, 20 s per server
    .venv/bin/python eval/bench/serve_bench.py --clients 32 --seconds 30 --out eval/bench/results/serve.json

Every server listens on 127.0.0.1 only and every load loop is bounded in time and request count.
Texts are real English sentences (chatterbot-corpus), one per request, sent the way the OpenAI client
sends them (base64 floats). For each server: requests/s, embeddings/s, p50/p99 latency; then our
throughput as a multiple of batch-of-one and as a fraction of in-process encoding. The goal is
>= 3x batch-of-one and within 15% of in-process encoding.

The infinity peer runs from its own virtual environment (it pins older transformers): install
infinity_emb 0.0.78 into a separate venv and pass its executable with --infinity (default
/work/.bench-venvs/infinity/bin/infinity_emb).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INFINITY = Path("/work/.bench-venvs/infinity/bin/infinity_emb")
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def corpus_texts(limit: int) -> list[str]:
    """English sentences from chatterbot-corpus (questions and answers), deduplicated."""
    import chatterbot_corpus
    import yaml

    folder = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    texts: list[str] = []
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations") or []:
            texts.extend(str(t).strip() for t in conversation if isinstance(t, str) and t.strip())
    unique = list(dict.fromkeys(texts))
    if not unique:
        raise SystemExit(f"no texts found under {folder}")
    return unique[:limit]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(command: list[str], *, port: int | None, health: str, env: dict[str, str] | None = None,
           timeout: float = 300) -> Iterator[str]:
    """Start a server process, find its port (from uvicorn's log when `port` is None), wait for `health`."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})},
                            start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
    log: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while port is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("server did not report its port:\n" + "".join(log[-40:])) from None
            if line is None:
                raise RuntimeError("server exited:\n" + "".join(log[-40:]))
            log.append(line)
            if match := _LISTENING.search(line):
                port = int(match.group(1))
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n" + "".join(log[-40:]))
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(health).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{base}{health} never answered 200")
                time.sleep(0.25)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _pump(proc: subprocess.Popen, lines: queue.Queue[str | None]) -> None:
    """Read the server's output (so its pipe never fills and blocks it); None marks the end."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


async def load(base: str, path: str, model: str, texts: list[str], clients: int, seconds: float,
               max_requests: int) -> dict[str, Any]:
    """`clients` concurrent loops, each sending one text per request until time or count runs out."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        # warm-up: every connection once
        await asyncio.gather(*(client.post(path, json={"model": model, "input": [t]}) for t in texts[:clients]))
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker(offset: int) -> None:
            nonlocal sent
            i = offset
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                text = texts[i % len(texts)]
                i += clients
                t0 = time.perf_counter()
                response = await client.post(
                    path, json={"model": model, "input": [text], "encoding_format": "base64"}
                )
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

        await asyncio.gather(*(worker(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    done = len(latencies)
    return {
        "requests": done,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(done / elapsed, 2),
        "embeddings_per_s": round(done / elapsed, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2) if latencies else None,
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2) if latencies else None,
    }


def check_vector(base: str, path: str, model: str, text: str, expected: np.ndarray) -> float:
    """Max abs difference between the server's vector for `text` and in-process encoding."""
    body = httpx.post(f"{base}{path}", json={"model": model, "input": [text], "encoding_format": "float"},
                      timeout=60).json()
    got = body["data"][0]["embedding"]
    if isinstance(got, str):
        got = np.frombuffer(base64.b64decode(got), dtype="<f4")
    return float(np.max(np.abs(np.asarray(got, dtype=np.float32) - expected)))


def load_encoder(model: str) -> Any:
    from tdro_suite.modeling import Encoder

    enc = Encoder.from_pretrained(model, device="cpu")
    enc.encode(["warm up"] * 8, batch_size=8)
    return enc


def in_process(enc: Any, texts: list[str], seconds: float, batch_size: int, *, chunked: bool) -> dict[str, Any]:
    """Direct `Encoder.encode` throughput over the same texts, repeated until `seconds` pass.

    sorted: one call over all texts (encode sorts the whole corpus by length: the best case).
    chunked: one call per `batch_size` consecutive texts (the batches a saturated server can form).
    """
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if chunked:
            for i in range(0, len(texts), batch_size):
                enc.encode(texts[i : i + batch_size], batch_size=batch_size, show_progress=False)
                count += len(texts[i : i + batch_size])
                if time.perf_counter() - started >= seconds:
                    break
        else:
            enc.encode(texts, batch_size=batch_size, show_progress=False)
            count += len(texts)
    elapsed = time.perf_counter() - started
    return {"embeddings": count, "seconds": round(elapsed, 3), "embeddings_per_s": round(count / elapsed, 2),
            "batch_size": batch_size}


PLAIN_APP = '''
import sys
from fastapi import FastAPI
from pydantic import BaseModel
from tdro_suite.modeling import Encoder
import base64, numpy as np

enc = Encoder.from_pretrained(sys.argv[1], device="cpu")
app = FastAPI()

class Body(BaseModel):
    input: list[str]
    model: str | None = None
    encoding_format: str = "float"

@app.get("/health")
def health():
    return {"status": "ok"}

@app.post("/v1/embeddings")
def embeddings(body: Body):  # one encode call per request, in FastAPI's thread pool
    vectors = enc.encode(body.input, batch_size=len(body.input), show_progress=False)
    enc64 = body.encoding_format == "base64"
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if enc64 else v.tolist()}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": sys.argv[1]}

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=0, log_level="info", access_log=False)
'''


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "load_average": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per server")
    parser.add_argument("--max-requests", type=int, default=50_000, help="hard cap per server")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64, help="our max batch and in-process batch")
    parser.add_argument("--infinity", type=Path, default=DEFAULT_INFINITY, help="infinity_emb executable")
    parser.add_argument("--torch-threads", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help="torch threads for every contender (default: the server's default, cores - 1)")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here (atomically)")
    args = parser.parse_args()
    if args.clients < 1 or args.clients > 256 or args.seconds <= 0 or args.seconds > 300:
        parser.error("--clients must be 1..256 and --seconds 0..300 (bounded load)")

    import torch

    from tdro_suite.common.io import atomic_write_json
    from tdro_suite.modeling.resolve import resolve_model

    torch.set_num_threads(args.torch_threads)
    texts = corpus_texts(args.texts)
    folder = str(resolve_model(args.model))
    results: dict[str, Any] = {"machine": machine(), "model": args.model, "clients": args.clients,
                               "torch_threads": args.torch_threads,
                               "seconds_per_server": args.seconds, "texts": len(texts)}
    print(f"{len(texts)} texts, {args.clients} clients, {args.seconds:.0f} s per server", flush=True)

    enc = load_encoder(args.model)
    in_seconds = min(args.seconds, 15.0)

    def measure_in_process(tag: str) -> None:
        for chunked in (False, True):
            name = f"in_process_{'chunked' if chunked else 'sorted'}_{tag}"
            results[name] = in_process(enc, texts, in_seconds, args.batch_size, chunked=chunked)
            print(f"{name}: {results[name]['embeddings_per_s']:.1f} embeddings/s", flush=True)

    measure_in_process("before")
    probe = texts[7]
    expected = enc.encode([probe])[0]

    def run(name: str, base: str, path: str, model_name: str) -> None:
        diff = check_vector(base, path, model_name, probe, expected)
        stats = asyncio.run(load(base, path, model_name, texts, args.clients, args.seconds, args.max_requests))
        stats["max_abs_diff_vs_in_process"] = diff
        results[name] = stats
        print(f"{name}: {stats['requests_per_s']:.1f} req/s, p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms, "
              f"errors {stats['errors']}, max |diff| {diff:.2e}", flush=True)

    ours = [sys.executable, "-m", "tdro_suite.cli", "serve", "--model", args.model, "--host", "127.0.0.1",
            "--port", "0", "--max-queue-inputs", "100000", "--no-access-log",
            "--torch-threads", str(args.torch_threads)]
    with server([*ours, "--max-batch-size", str(args.batch_size)], port=None, health="/ready") as base:
        run("tdro_serve_dynamic_batching", base, "/v1/embeddings", args.model)
    with server([*ours, "--max-batch-size", "1"], port=None, health="/ready") as base:
        run("tdro_serve_batch_of_one", base, "/v1/embeddings", args.model)

    if not args.skip_peer:
        if args.infinity.is_file():
            port = free_port()
            command = [str(args.infinity), "v2", "--model-id", folder, "--served-model-name", args.model,
                       "--host", "127.0.0.1", "--port", str(port), "--engine", "torch", "--device", "cpu",
                       "--batch-size", str(args.batch_size)]
            env = {"INFINITY_ANONYMOUS_USAGE_STATS": "0", "OMP_NUM_THREADS": str(args.torch_threads)}
            with server(command, port=port, health="/health", env=env) as base:
                run("infinity_emb", base, "/embeddings", args.model)
        else:
            env = {"OMP_NUM_THREADS": str(args.torch_threads)}
            with server([sys.executable, "-c", PLAIN_APP, args.model], port=None, health="/health", env=env) as base:
                run("plain_fastapi_per_request", base, "/v1/embeddings", args.model)

    measure_in_process("after")  # the machine is shared: bracket the servers to see drift
    direct = {kind: (results[f"in_process_{kind}_before"]["embeddings_per_s"]
                     + results[f"in_process_{kind}_after"]["embeddings_per_s"]) / 2 for kind in ("sorted", "chunked")}
    ours_rate = results["tdro_serve_dynamic_batching"]["embeddings_per_s"]
    one_rate = results["tdro_serve_batch_of_one"]["embeddings_per_s"]
    results["speedup_vs_batch_of_one"] = round(ours_rate / one_rate, 2) if one_rate else None
    results["fraction_of_in_process_sorted"] = round(ours_rate / direct["sorted"], 3)
    results["fraction_of_in_process_chunked"] = round(ours_rate / direct["chunked"], 3)
    for peer in ("infinity_emb", "plain_fastapi_per_request"):
        if peer in results and results[peer]["embeddings_per_s"]:
            results[f"speedup_vs_{peer}"] = round(ours_rate / results[peer]["embeddings_per_s"], 2)
    speedup = results["speedup_vs_batch_of_one"]
    results["goal_met"] = {
        "speedup_vs_batch_of_one>=3": bool(speedup and speedup >= 3),
        "within_15pct_of_in_process_sorted": results["fraction_of_in_process_sorted"] >= 0.85,
    }
    summary = [k for k in results if k.startswith(("speedup", "fraction", "goal"))]
    print(json.dumps({k: results[k] for k in summary}))
    if args.out:
        atomic_write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
