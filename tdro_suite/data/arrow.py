"""Arrow-backed tasks: each training file converted once to a memory-mapped Arrow file.

Reading a task into Python objects costs ~7 KB per line on every rank (~80 GB per rank for the paper's
11M lines). Instead each task file is validated and converted once to an Arrow IPC file in the cache
(`$TDRO_CACHE_DIR/tasks/`), keyed by a hash of the source file's bytes (for a saved or hub dataset, the
fingerprint `datasets` gives it), so an edited file converts again and an unchanged one is only mapped
(a file's hash is remembered per path, size and mtime).
The mapping is read-only and shared through the page cache by every rank of a node. `ArrowExamples` is
a `Sequence[TrainExample]` decoding one row on access, so both samplers index it exactly as they
indexed the in-memory list: same rows, same order, same batches.

Validation happens during the conversion (the same reader, the same file:line:field errors); a bad
file raises and leaves no cache entry. Every source kind (`data/sources.py`) converts the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import pyarrow as pa

from tdro_suite.common.io import create_once
from tdro_suite.common.paths import cache_dir
from tdro_suite.data.types import Passage, TaskInfo, TrainExample

ARROW_FORMAT = 1  # bump when the schema or the conversion changes: old cache entries are then ignored
_BATCH_ROWS = 4096
_PASSAGE = pa.struct([("docid", pa.string()), ("title", pa.string()), ("text", pa.string())])
SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("query", pa.string()),
        ("positives", pa.list_(_PASSAGE)),
        ("negatives", pa.list_(_PASSAGE)),
    ]
)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MB blocks (the cache key of its conversion)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def known_digest(path: str | Path, folder: Path) -> str:
    """The file's sha256, read once per (path, size, mtime): hashing the paper's 50 GB on every start of
    every rank would take minutes, so the digest of an unchanged file is remembered in the cache."""
    stat = os.stat(path)
    key = hashlib.sha256(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = folder / f"digest-{key}.txt"
    if memo.is_file():
        return memo.read_text().strip()
    digest = file_digest(path)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
    tmp.write_text(digest)
    os.replace(tmp, memo)
    return digest


def cached_arrow_path(task: TaskInfo, root: Path | None = None) -> Path:
    """Where the conversion of `task`'s source lives: `<name>-<hash of its content>-v<format>.arrow`."""
    from tdro_suite.data.sources import source_key

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", task.name)[:80]
    folder = root if root is not None else cache_dir("tasks")
    key = source_key(task, lambda path: known_digest(path, folder))
    return folder / f"{safe}-{key[:20]}-v{ARROW_FORMAT}.arrow"


def _passages(items: Sequence[Passage]) -> list[dict[str, str]]:
    return [{"docid": p.docid, "title": p.title, "text": p.text} for p in items]


def _batches(examples: Iterator[TrainExample], on_rows: Any = None) -> Iterator[pa.RecordBatch]:
    rows: list[dict[str, Any]] = []
    for example in examples:
        rows.append(
            {
                "query_id": example.query_id,
                "query": example.query,
                "positives": _passages(example.positives),
                "negatives": _passages(example.negatives),
            }
        )
        if len(rows) == _BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
            if on_rows is not None:
                on_rows(len(rows))
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
        if on_rows is not None:
            on_rows(len(rows))


@contextlib.contextmanager
def row_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A spinner with the rows done and the time taken, on stderr: a conversion whose length is unknown."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed} rows"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=True) as bar:
        tracked = bar.add_task(description, total=None)
        yield lambda n: bar.advance(tracked, n)


def convert_task(task: TaskInfo, out: Path, *, progress: bool = True) -> int:
    """Validate and write `task`'s examples to the Arrow file `out` (atomically); returns the row count."""
    from tdro_suite.data.tasks import iter_task_examples

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    rows = 0
    with row_progress(f"converting {task.name} to Arrow (once)", progress) as bar:

        def advance(n: int) -> None:
            nonlocal rows
            rows += n
            bar(n)

        try:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
                for batch in _batches(iter_task_examples(task), advance):
                    writer.write_batch(batch)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return rows


def ensure_arrow(task: TaskInfo, *, root: Path | None = None, progress: bool = True) -> Path:
    """The task's Arrow file, converted first if the cache lacks it. A lock file lets one process of a
    node convert while the others wait, then all of them map the same file."""
    out = cached_arrow_path(task, root)
    return create_once(out, lambda: convert_task(task, out, progress=progress))


def _example(row: dict[str, Any]) -> TrainExample:
    return TrainExample(
        query_id=row["query_id"],
        query=row["query"],
        positives=tuple(Passage(p["docid"], p["text"], p["title"]) for p in row["positives"]),
        negatives=tuple(Passage(p["docid"], p["text"], p["title"]) for p in row["negatives"]),
    )


class ArrowExamples(Sequence[TrainExample]):
    """A task's examples on a memory-mapped Arrow file; `rows` (file row numbers) selects a subset."""

    def __init__(self, path: str | Path, rows: Sequence[int] | None = None) -> None:
        self.path = Path(path)
        self._table = pa.ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._query_ids: np.ndarray | None = None
        self._id_order: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def num_file_rows(self) -> int:
        return self._table.num_rows

    def __len__(self) -> int:
        return self._table.num_rows if self._rows is None else len(self._rows)

    @overload
    def __getitem__(self, index: int) -> TrainExample: ...

    @overload
    def __getitem__(self, index: slice) -> list[TrainExample]: ...

    def __getitem__(self, index: int | slice) -> TrainExample | list[TrainExample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} examples")
        row = int(index if self._rows is None else self._rows[index])
        return _example(self._table.slice(row, 1).to_pylist()[0])

    def query_ids(self) -> np.ndarray:
        """Every example's query id (one column, decoded once and kept): finding an example's task-mates
        without decoding every row."""
        if self._query_ids is None:
            ids = np.asarray(self._table.column("query_id").to_pylist(), dtype=object)
            self._query_ids = ids if self._rows is None else ids[self._rows]
        return self._query_ids

    def rows_of(self, query_id: str) -> np.ndarray:
        """The rows (ascending) whose query id is `query_id`, by binary search in an order sorted once:
        an example without negatives borrows from the others without scanning the whole task each time."""
        if self._id_order is None:
            ids = self.query_ids()
            order = np.argsort(ids, kind="stable")
            self._id_order = (order, ids[order])
        order, sorted_ids = self._id_order
        lo, hi = np.searchsorted(sorted_ids, query_id, "left"), np.searchsorted(sorted_ids, query_id, "right")
        return np.sort(order[lo:hi])

    def negative_counts(self) -> np.ndarray:
        """Hard negatives per example, from the list offsets (no row is decoded)."""
        import pyarrow.compute as pc

        counts = pc.list_value_length(self._table.column("negatives")).to_numpy(zero_copy_only=False)
        return counts if self._rows is None else counts[self._rows]


def sample_rows(total: int, limit: int | None, seed: int) -> list[int] | None:
    """`limit` row numbers drawn without replacement with `seed`, in file order; None keeps every row."""
    if limit is None or limit >= total:
        return None
    rng = np.random.default_rng([seed, 14])
    return sorted(int(i) for i in rng.choice(total, size=limit, replace=False))


def arrow_task_examples(
    task: TaskInfo, *, limit: int | None = None, seed: int = 0, root: Path | None = None, progress: bool = True
) -> ArrowExamples:
    """The task's examples, Arrow-backed; `limit` keeps a seeded sample of that many rows."""
    examples = ArrowExamples(ensure_arrow(task, root=root, progress=progress))
    rows = sample_rows(len(examples), limit, seed)
    return examples if rows is None else ArrowExamples(examples.path, rows)
