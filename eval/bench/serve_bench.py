"""Serving benchmark: `tdro-suite serve` as shipped against infinity_emb and in-process encoding, one run.

    .venv/bin/python eval/bench/serve_bench.py                        # 32 clients x 8 inputs, then 1 x 1
    .venv/bin/python eval/bench/serve_bench.py --shapes 16x1,64x1 --seconds 30 --out serve.json

Shapes are CLIENTSxINPUTS: that many concurrent clients, each sending requests of that many texts
(short bundled queries of 8-40 words, see `bench_texts.py`) as the OpenAI client does (base64 floats),
for `--seconds` after a warm-up, from one aiohttp session (see `load`). Every contender serves MiniLM on
127.0.0.1 with its own defaults:
- `tdro-suite serve --model minilm`, no other flag (its dtype, threads and batching as shipped);
- infinity_emb (pinned, `INFINITY_VERSION`), its defaults (float32 weights on CPU) and, where the CPU
  has native bf16, again with `--dtype bfloat16` (a fair peer for our bf16 default);
- in-process `Encoder.encode` of all texts at once (sorted by length: the best case a server can
  approach), before and after the servers, with every core.
Targets (issue 16): at 32 x 8, >= 1.2x infinity_emb and >= 0.9x in-process; at 1 x 1, >= 1.0x infinity.

infinity_emb pins other transformers versions, so it runs from its own virtual environment: `--infinity`
names its executable, else the script installs it once into the project's cache
(`~/.cache/tdro-suite/bench/infinity-emb-<version>`, `$TDRO_CACHE_DIR` moves it), torch first at our
version so pip keeps a CPU build where ours is one. `--skip-peer` measures ours and in-process only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

import aiohttp
import httpx
import numpy as np
from bench_texts import bundled_texts

INFINITY_VERSION = "0.0.78"
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


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


async def load(base: str, path: str, model: str, texts: list[str], clients: int, inputs: int, seconds: float,
               max_requests: int) -> dict[str, Any]:
    """`clients` concurrent loops, each sending `inputs` texts per request until time or count runs out.

    aiohttp, not httpx: the load generator shares the 2 cores with the server, and at 32 x 8 httpx used
    0.09-0.10 of a core against aiohttp's 0.015 (the same requests and bodies), time the in-process
    baseline never loses.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as client:

        async def post(body: dict[str, Any]) -> int:
            async with client.post(path, json=body) as response:
                await response.read()
                return response.status

        # warm-up: every connection once
        await asyncio.gather(*(post({"model": model, "input": texts[c : c + inputs]}) for c in range(clients)))
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker(offset: int) -> None:
            nonlocal sent
            i = offset * inputs
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                batch = [texts[(i + j) % len(texts)] for j in range(inputs)]
                i += clients * inputs
                t0 = time.perf_counter()
                status = await post({"model": model, "input": batch, "encoding_format": "base64"})
                if status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        await asyncio.gather(*(worker(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    done = len(latencies)
    return {
        "requests": done,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(done / elapsed, 2),
        "embeddings_per_s": round(done * inputs / elapsed, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2) if latencies else None,
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2) if latencies else None,
    }


def probe_cosine(base: str, path: str, model: str, text: str, expected: np.ndarray) -> float:
    """Cosine between the server's vector for `text` and in-process encoding (1.0: the same embedding)."""
    body = httpx.post(f"{base}{path}", json={"model": model, "input": [text], "encoding_format": "float"},
                      timeout=60).json()
    got = np.asarray(body["data"][0]["embedding"], dtype=np.float32)
    return float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))


def in_process(enc: Any, texts: list[str], seconds: float) -> float:
    """Embeddings/s of `Encoder.encode` over all texts at once (globally length-sorted), repeated for `seconds`."""
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        enc.encode(texts, batch_size=32, show_progress=False)
        count += len(texts)
    return round(count / (time.perf_counter() - started), 2)


def infinity_executable(given: Path | None) -> Path:
    """`--infinity`, else the cached install (made on first use: a venv with our torch, then infinity_emb)."""
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"--infinity {given}: no such file")
        return given
    import torch

    from tdro_suite.common.paths import cache_dir

    venv = cache_dir("bench") / f"infinity-emb-{INFINITY_VERSION}"
    executable = venv / "bin" / "infinity_emb"
    if executable.is_file():
        return executable
    print(f"installing infinity_emb {INFINITY_VERSION} into {venv} (once)", flush=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run([*pip, f"infinity_emb[server,torch]=={INFINITY_VERSION}"], check=True)
    return executable


def machine() -> dict[str, Any]:
    import torch

    from tdro_suite.common.device import cpu_bf16_flag

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "native_bf16": cpu_bf16_flag(), "torch": torch.__version__,
            "load_average": os.getloadavg(), "python": platform.python_version(), "platform": platform.platform()}


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        clients, _, inputs = part.strip().partition("x")
        if not (clients.isdigit() and inputs.isdigit()) or not (1 <= int(clients) <= 256 and 1 <= int(inputs) <= 256):
            raise SystemExit(f"--shapes: {part!r} is not CLIENTSxINPUTS with both in 1..256 (e.g. 32x8)")
        shapes.append((int(clients), int(inputs)))
    return shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--shapes", default="32x8,1x1", help="CLIENTSxINPUTS, comma-separated (default 32x8,1x1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per server and shape (at most 300)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="hard cap per server and shape")
    parser.add_argument("--texts", type=int, default=1024, help="distinct short texts sent")
    parser.add_argument("--infinity", type=Path, default=None, help="infinity_emb executable (default: cached install)")
    parser.add_argument("--skip-peer", action="store_true", help="no infinity_emb")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here (atomically)")
    args = parser.parse_args()
    if not 0 < args.seconds <= 300:
        parser.error("--seconds must be in (0, 300] (bounded load)")
    shapes = parse_shapes(args.shapes)

    import torch

    from tdro_suite.common.io import atomic_write_json
    from tdro_suite.modeling import Encoder
    from tdro_suite.modeling.resolve import resolve_model

    texts, _ = bundled_texts(args.texts, 0)
    folder = str(resolve_model(args.model))
    info = machine()
    results: dict[str, Any] = {"machine": info, "model": args.model, "seconds": args.seconds, "texts": len(texts),
                               "shapes": {}}
    print(f"{len(texts)} texts; shapes {args.shapes}; {args.seconds:.0f} s each; {info}", flush=True)

    torch.set_num_threads(os.cpu_count() or 1)
    enc = Encoder.from_pretrained(args.model, device="cpu")
    enc.encode(texts[:64])
    in_seconds = min(args.seconds, 15.0)
    results["in_process_before"] = in_process(enc, texts, in_seconds)
    print(f"in-process: {results['in_process_before']} embeddings/s", flush=True)
    probe = texts[7]
    expected = enc.encode([probe])[0]

    def run_shapes(name: str, command: list[str], port: int | None, health: str, path: str,
                   env: dict[str, str] | None = None) -> None:
        with server(command, port=port, health=health, env=env) as base:
            cosine = probe_cosine(base, path, args.model, probe, expected)
            for clients, inputs in shapes:
                stats = asyncio.run(load(base, path, args.model, texts, clients, inputs, args.seconds,
                                         args.max_requests))
                stats["probe_cosine_vs_in_process"] = round(cosine, 6)
                results["shapes"].setdefault(f"{clients}x{inputs}", {})[name] = stats
                print(f"{clients}x{inputs} {name}: {stats['embeddings_per_s']:.1f} embeddings/s, "
                      f"p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms, errors {stats['errors']}, "
                      f"cosine {cosine:.5f}", flush=True)

    ours = [sys.executable, "-m", "tdro_suite.cli", "serve", "--model", args.model, "--host", "127.0.0.1",
            "--port", "0"]
    run_shapes("tdro-suite serve", ours, None, "/ready", "/v1/embeddings")
    if not args.skip_peer:
        executable = infinity_executable(args.infinity)
        dtypes = ["auto", "bfloat16"] if info["native_bf16"] else ["auto"]
        for dtype in dtypes:
            port = free_port()
            command = [str(executable), "v2", "--model-id", folder, "--served-model-name", args.model,
                       "--host", "127.0.0.1", "--port", str(port), "--engine", "torch", "--device", "cpu",
                       "--dtype", dtype]
            name = f"infinity_emb {INFINITY_VERSION}" + (f" --dtype {dtype}" if dtype != "auto" else "")
            run_shapes(name, command, port, "/health", "/embeddings", {"INFINITY_ANONYMOUS_USAGE_STATS": "0"})
    results["in_process_after"] = in_process(enc, texts, in_seconds)
    print(f"in-process after: {results['in_process_after']} embeddings/s", flush=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    report(results)
    if args.out:
        atomic_write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


def report(results: dict[str, Any]) -> None:
    """One markdown table per shape, then the ratios the targets are about."""
    direct = (results["in_process_before"] + results["in_process_after"]) / 2
    ratios: dict[str, float] = {}
    for shape, rows in results["shapes"].items():
        print(f"\n{shape} (clients x inputs)\n| contender | embeddings/s | p50 / p99 ms | errors |")
        print("|---|---:|---:|---:|")
        for name, r in rows.items():
            errors = sum(r["errors"].values())
            print(f"| {name} | {r['embeddings_per_s']:.1f} | {r['p50_ms']} / {r['p99_ms']} | {errors} |")
        ours = rows["tdro-suite serve"]["embeddings_per_s"]
        print(f"| in-process encode (mean of before/after) | {direct:.1f} | | |")
        ratios[f"{shape} ours / in-process"] = round(ours / direct, 3)
        for name, r in rows.items():
            if name.startswith("infinity") and r["embeddings_per_s"]:
                ratios[f"{shape} ours / {name}"] = round(ours / r["embeddings_per_s"], 3)
    results["ratios"] = ratios
    print("\n" + "\n".join(f"{k}: {v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    sys.exit(main())
