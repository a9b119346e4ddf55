"""Helpers for the serve tests: settings for a tiny model, readiness waits, real servers on loopback.

(Named test_serve_* to live with the serve tests; it holds no tests itself.)
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tdro_suite.serve import ServeSettings

READY_TIMEOUT_S = 120.0


def tiny_settings(model_dir: Path, **overrides: Any) -> ServeSettings:
    """Settings for the tiny BERT (its position table has 128 rows, so cap inputs at 64 tokens).

    torch_threads keeps the test process's thread count, so serving does not change it for other tests;
    one model stream keeps the queue states the tests gate deterministic (two streams: `test_serve_batcher`).
    """
    overrides.setdefault("torch_threads", torch.get_num_threads())
    overrides.setdefault("model_streams", 1)
    overrides.setdefault("max_length", 64)
    return ServeSettings(model=str(model_dir), device="cpu", **overrides)


def model_tokens(encoder: Any, texts: list[str]) -> int:
    """Tokens the model runs for `texts` (specials and EOS included): what `usage` must report."""
    return int(encoder.tokenize(texts)["attention_mask"].sum())


def wait_ready(client: TestClient | httpx.Client, timeout: float = READY_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = client.get("/ready")
        except httpx.ConnectError:  # with --workers, the socket listens once a worker has started
            time.sleep(0.1)
            continue
        if response.status_code == 200:
            return response.json()
        if response.json().get("status") == "failed":
            raise RuntimeError("the server failed to load its model or index")
        time.sleep(0.05)
    raise TimeoutError("the server did not become ready")


@contextlib.contextmanager
def ready_client(app: FastAPI, **kwargs: Any) -> Iterator[TestClient]:
    with TestClient(app, **kwargs) as client:
        wait_ready(client)
        yield client


@contextlib.contextmanager
def failing_client(app: FastAPI) -> Iterator[dict]:
    """Start `app` and wait until its loading ends in failure; yields the /ready body."""
    with TestClient(app) as client:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (response := client.get("/ready")).json()["status"] == "loading":
            assert time.monotonic() < deadline, "still loading"
            time.sleep(0.05)
        assert response.status_code == 503
        yield response.json()


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Run `app` under a real uvicorn on 127.0.0.1 (a free port chosen by the OS) in a thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_ready(client)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def cli_server(args: list[str], env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `tdro-suite serve ARGS --host 127.0.0.1 --port 0` (the image's entrypoint); yield (URL, process).

    The server loads fp32 weights (`TDRO_DTYPE`), like the test process (conftest's `fp32_by_default`), so
    its vectors equal in-process ones to 1e-5 on CPUs whose default would be bf16.
    """
    command = [sys.executable, "-m", "tdro_suite.cli", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TDRO_DTYPE": "float32",
                **(env or {})}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
    lines: list[str] = []
    try:
        port = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert proc.stdout is not None
        while port is None:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("tdro-suite serve exited:\n" + "".join(lines))
            lines.append(line)
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
            if time.monotonic() > deadline:
                raise TimeoutError("tdro-suite serve did not start:\n" + "".join(lines))
        threading.Thread(target=lambda: [lines.append(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_ready(client)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
