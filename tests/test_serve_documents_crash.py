"""The real server killed with SIGKILL in the middle of a stream of document writes, then restarted on the
same folder: every acknowledged add, replace and delete is there, and nothing that was never sent.

A small `--snapshot-log-bytes` makes the server snapshot every few requests, so the kill can land in an
append, in a snapshot, or between them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from test_serve_support import cli_server

from tdro_suite.index.dense_index import DenseIndex

pytestmark = pytest.mark.slow

ACKNOWLEDGED_BEFORE_KILL = 30


@dataclass
class Ledger:
    """What the client knows: the text of every acknowledged live document, the acknowledged deletes,
    and the ids of the request in flight when the server died (they may or may not have been applied)."""

    live: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)
    requests: int = 0


def request_batch(i: int) -> tuple[list[dict], str | None]:
    """Request i: three new documents and a replacement of one of request i-1's; every 4th also deletes."""
    docs = [{"id": f"n{i}-{j}", "text": f"document {i} part {j}"} for j in range(3)]
    if i > 0:
        docs.append({"id": f"n{i - 1}-0", "text": f"document {i - 1} part 0, version {i}"})
    return docs, (f"n{i - 2}-1" if i >= 2 and i % 4 == 0 else None)


def stream(base: str, ledger: Ledger, stop: threading.Event) -> None:
    """POST (and DELETE) until the server stops answering; record only what it acknowledged."""
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(10_000):
            docs, victim = request_batch(i)
            try:
                ledger.uncertain = {d["id"] for d in docs}
                response = http.post("/v1/documents", json={"documents": docs})
                response.raise_for_status()
                ledger.live.update({d["id"]: d["text"] for d in docs})
                if victim is not None:
                    ledger.uncertain = {victim}
                    http.delete(f"/v1/documents/{victim}").raise_for_status()
                    ledger.live.pop(victim)
                    ledger.deleted.add(victim)
                ledger.uncertain = set()
                ledger.requests += 1
            except httpx.HTTPError:
                return  # the server is gone: what was in flight stays uncertain
            if stop.is_set():
                return


def test_every_acknowledged_change_survives_sigkill_mid_stream(tiny_encoder_dir, tmp_path) -> None:
    folder = tmp_path / "index"
    args = ["--model", str(tiny_encoder_dir), "--max-length", "64", "--index", str(folder), "--torch-threads", "1",
            "--snapshot-log-bytes", "3000", "--no-access-log"]
    ledger, stop = Ledger(), threading.Event()
    with cli_server(args) as (base, server):
        client = threading.Thread(target=stream, args=(base, ledger, stop))
        client.start()
        deadline = time.monotonic() + 30
        while ledger.requests < ACKNOWLEDGED_BEFORE_KILL and client.is_alive():
            assert time.monotonic() < deadline, f"only {ledger.requests} requests acknowledged"
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)  # one worker: uvicorn serves in the CLI process itself
        server.wait(10)
        stop.set()
        client.join(30)
    assert ledger.requests >= ACKNOWLEDGED_BEFORE_KILL and ledger.deleted

    with cli_server(args) as (base, _), httpx.Client(base_url=base, timeout=30) as http:
        index = DenseIndex.load(folder)  # what the restarted server loaded, read the same way
        for doc_id, text in ledger.live.items():
            if doc_id not in ledger.uncertain:
                assert doc_id in index, f"acknowledged {doc_id} is lost"
                assert index.get_doc(doc_id)["text"] == text, f"{doc_id}: not its last acknowledged version"
        assert not (ledger.deleted - ledger.uncertain) & set(index.ids), "an acknowledged delete came back"
        assert set(index.ids) <= set(ledger.live) | ledger.uncertain, "a document nobody sent acknowledged"
        assert http.get("/ready").json()["documents"] == len(index)

        replaced = "n10-0"  # a replaced document is found by its new text, which the server returns
        hit = http.post("/v1/search", json={"query": ledger.live[replaced], "top_k": 1}).json()["data"][0]["hits"][0]
        assert hit["id"] == replaced and hit["text"] == ledger.live[replaced]
        after = http.post("/v1/documents", json={"documents": [{"id": "after", "text": "written after restart"}]})
        assert after.status_code == 200 and after.json()["total"] == len(index) + 1
