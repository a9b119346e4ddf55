"""The requests `make docker-smoke` sends to a started container (standard library only, so the host
needs nothing but Python 3): wait for /ready, embed, index a document, search for it, check /metrics.

    python3 docker/smoke_check.py http://127.0.0.1:8000 [--ready-timeout 600]

Exits 0 when every answer is what a working service gives; otherwise prints what differed and exits 1.
Also run by tests/test_serve_docker.py against a local `tdro-suite serve`, so the check itself is tested
where no Docker engine exists.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

DOCS = [
    {"id": "paris", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"id": "python", "title": "Python", "text": "Python is a programming language that emphasises readability."},
    {"id": "nile", "title": "Nile", "text": "The Nile is a major river in north-eastern Africa."},
]


def call(base: str, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    key = os.environ.get("TDRO_API_KEY")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def wait_ready(base: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = call(base, "GET", "/ready", timeout=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = f"no answer ({exc})"
        else:
            if status == 200:
                return body
            last = f"{status} {body}"
        time.sleep(1)
    raise SystemExit(f"smoke: not ready after {timeout:.0f} s; last /ready: {last}")


def expect(condition: bool, what: str, answer: Any) -> None:
    if not condition:
        raise SystemExit(f"smoke: {what}; got {str(answer)[:500]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--ready-timeout", type=float, default=600)
    args = parser.parse_args()
    base = args.base.rstrip("/")

    started = time.monotonic()
    ready = wait_ready(base, args.ready_timeout)
    print(f"smoke: ready after {time.monotonic() - started:.0f} s: {ready}")
    status, health = call(base, "GET", "/health")
    expect(status == 200 and health == {"status": "ok"}, "/health is not ok", health)

    status, models = call(base, "GET", "/v1/models")
    expect(status == 200 and models["data"], "GET /v1/models failed", models)
    model = models["data"][0]["id"]
    status, embedded = call(base, "POST", "/v1/embeddings",
                            {"model": model, "input": ["capital of France", "a river in Africa"]})
    expect(status == 200 and len(embedded.get("data", [])) == 2, "POST /v1/embeddings failed", embedded)
    vector = embedded["data"][0]["embedding"]
    norm = math.sqrt(sum(x * x for x in vector))
    expect(len(vector) > 0 and abs(norm - 1) < 1e-3, "the embedding is not a unit vector", norm)
    print(f"smoke: embedded 2 texts with {model}, dimension {len(vector)}")

    status, added = call(base, "POST", "/v1/documents", {"documents": DOCS})
    expect(status == 200 and added.get("total", 0) >= len(DOCS), "POST /v1/documents failed", added)
    status, found = call(base, "POST", "/v1/search", {"query": ["capital of France", "river in Africa"],
                                                      "top_k": 2})
    expect(status == 200, "POST /v1/search failed", found)
    tops = [row["hits"][0]["id"] if row["hits"] else None for row in found["data"]]
    expect(tops == ["paris", "nile"], "search did not find the indexed documents", tops)
    print(f"smoke: indexed {len(DOCS)} documents ({added['total']} in the index); search found {tops}")

    status, ready = call(base, "GET", "/ready")
    expect(status == 200 and ready.get("documents", 0) >= len(DOCS), "/ready does not count the documents", ready)
    status, metrics = call(base, "GET", "/metrics")
    expect(status == 200 and 'route="/v1/search"' in str(metrics), "/metrics has no search request", metrics)
    print("smoke: ok")


if __name__ == "__main__":
    sys.exit(main())
