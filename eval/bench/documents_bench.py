"""Document writes in `tdro-suite serve`: add latency with the change log vs a whole-folder save per add.

    .venv/bin/python eval/bench/documents_bench.py                 # 10,000 documents (CI size)
    .venv/bin/python eval/bench/documents_bench.py --n 1000000     # 1.5 GB of vectors, twice the index on disk

One request is `--docs` (8) new documents with precomputed random L2-normalised vectors (384-d), sent
through the code of POST /v1/documents after the model (no model runs), on a flat index of N documents
that keeps a document store:
- before: `DenseIndex.add` then `DenseIndex.save` of the whole folder, per request: what the service did
  before the change log. fsync is switched off for it, as that save had none (a lower bound, then).
- after: `Service.add_documents`: the change in memory, one log record appended and fsync'ed. The snapshot
  threshold is out of reach here, so no snapshot is timed in this row.
- snapshot: `Service.close()` with a pending log: one `DenseIndex.save`, files and folder fsync'ed. Reported
  once, and amortised per add at the default threshold (snapshot_log_bytes / bytes of one request's record).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import faiss
import numpy as np

from tdro_suite.data.types import Passage
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.index.document_log import LOG_FILE
from tdro_suite.serve.metrics import ServeMetrics
from tdro_suite.serve.service import Service
from tdro_suite.serve.settings import ServeSettings

WARMUP = 3
TEXT = "a synthetic passage of about one hundred characters, standing in for a real document's text"


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """n random L2-normalised rows, generated in chunks to bound memory."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(n, start + 100_000) - start, dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def build(n: int, dim: int, folder: Path, rng: np.random.Generator) -> DenseIndex:
    ids = [f"doc{i}" for i in range(n)]
    index = DenseIndex.build(unit_vectors(n, dim, rng), ids, docs=[{"text": f"{i} {TEXT}"} for i in ids])
    index.save(folder)
    return index


class Requests:
    """The requests of one run: fresh ids, precomputed vectors (nothing but the write is timed)."""

    def __init__(self, count: int, docs: int, dim: int, rng: np.random.Generator, prefix: str) -> None:
        self.vectors = [unit_vectors(docs, dim, rng) for _ in range(count)]
        self.passages = [[Passage(f"{prefix}{r}-{j}", TEXT) for j in range(docs)] for r in range(count)]


def latencies(requests: Requests, send: Callable[[list[Passage], np.ndarray], object]) -> np.ndarray:
    """Seconds per request; the first WARMUP requests are sent but not counted."""
    out = []
    for passages, vectors in zip(requests.passages, requests.vectors, strict=True):
        started = time.perf_counter()
        send(passages, vectors)
        out.append(time.perf_counter() - started)
    return np.asarray(out[WARMUP:])


@contextlib.contextmanager
def without_fsync() -> Iterator[None]:
    """The save as it was before the change log: it never called fsync."""
    with mock.patch.object(os, "fsync", lambda fd: None):
        yield


def before(index: DenseIndex, folder: Path, requests: Requests) -> np.ndarray:
    def add_and_save(passages: list[Passage], vectors: np.ndarray) -> None:
        index.add([p.docid for p in passages], vectors, docs=[p.to_dict() for p in passages])
        index.save(folder)

    with without_fsync():
        return latencies(requests, add_and_save)


def after(index: DenseIndex, folder: Path, requests: Requests) -> tuple[np.ndarray, int, float]:
    """Latencies of logged adds, bytes logged per request, and the seconds of the snapshot at close."""
    service = Service(ServeSettings(index=folder, snapshot_log_bytes=1 << 62), ServeMetrics())
    service.index = index  # what the folder holds: `before` saved it last
    seconds = latencies(requests, service.add_documents)
    record_bytes = (folder / LOG_FILE).stat().st_size // len(requests.passages)
    started = time.perf_counter()
    service.close()
    return seconds, record_bytes, time.perf_counter() - started


def row(n: int, what: str, count: int | str, p50: float | None, p99: float | None, ratio: str = "") -> str:
    """One table row; times in seconds, printed in ms."""
    cells = [f"{1000 * t:.2f}" if t is not None else "" for t in (p50, p99)]
    return f"| {n:,} | {what} | {count} | {cells[0]} | {cells[1]} | {ratio} |"


def ratio(old50: float, old99: float, new50: float, new99: float) -> str:
    return f"{old50 / new50:.0f}x / {old99 / new99:.0f}x"


def run(n: int, args: argparse.Namespace, root: Path) -> list[str]:
    rng = np.random.default_rng(n)
    folder = root / f"index-{n}"
    started = time.perf_counter()
    index = build(n, args.dim, folder, rng)
    print(f"  {n:,} documents built and saved in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    repeats = args.before_repeats or (30 if n <= 100_000 else 5)
    old = before(index, folder, Requests(repeats + WARMUP, args.docs, args.dim, rng, "old"))
    new, record_bytes, snapshot_s = after(index, folder, Requests(args.after_repeats + WARMUP, args.docs, args.dim,
                                                                 rng, "new"))
    shutil.rmtree(folder)
    threshold = ServeSettings.model_fields["snapshot_log_bytes"].default
    per_snapshot = max(1, threshold // record_bytes)
    amortised = snapshot_s / per_snapshot
    (old50, old99), (new50, new99) = np.quantile(old, [0.5, 0.99]), np.quantile(new, [0.5, 0.99])
    return [
        row(n, "before: add + whole-folder save", len(old), old50, old99),
        row(n, "after: add + log append + fsync", len(new), new50, new99, ratio(old50, old99, new50, new99)),
        row(n, f"snapshot (save + fsync), once per {per_snapshot:,} adds of {record_bytes:,} B", 1, snapshot_s, None),
        row(n, "after + snapshot amortised per add", "", new50 + amortised, new99 + amortised,
            ratio(old50, old99, new50 + amortised, new99 + amortised)),
    ]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="10000", help="index sizes, comma-separated [10000]; 1000000 for the full run")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--docs", type=int, default=8, help="documents per request [8]")
    parser.add_argument("--before-repeats", type=int, default=0,
                        help="timed whole-folder saves [30 up to 100,000 documents, else 5]")
    parser.add_argument("--after-repeats", type=int, default=300, help="timed logged adds [300]")
    parser.add_argument("--dir", type=Path, default=None, help="where the index folders go [a temporary folder]")
    args = parser.parse_args()
    sizes = [int(x) for x in args.n.split(",")]

    print(f"{dt.datetime.now().isoformat(timespec='seconds')}  load average {load_average()}  "
          f"faiss {faiss.__version__}  {os.cpu_count()} CPUs\ncommand: {' '.join(sys.argv)}\n")
    rows = ["| documents | request of 8 adds | requests | p50 (ms) | p99 (ms) | before / after (p50 / p99) |",
            "|---:|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="documents-bench-") as root:
        for n in sizes:
            rows += run(n, args, Path(root))
    print("\n".join(rows))
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
