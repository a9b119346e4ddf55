"""A corpus on disk instead of in memory: validated once into a memory-mapped Arrow file.

A corpus read into `Passage` objects costs Python heap on every process in proportion to its size (391 MB
per million 12-word passages, eval/bench/eval_scale_bench.py; MIRACL-en has 32.9M longer ones).
`open_corpus(files)` instead streams the files once through the same validator as `read_corpus`
(`corpus.parse_document`: errors name the file, the line and the field) into an Arrow IPC file under
`$TDRO_CACHE_DIR/corpora/`, keyed by the sha256 of the files' bytes (remembered per path, size and mtime,
as training tasks are), and maps it read-only. `CorpusStore` is a `Sequence[Passage]` that decodes rows on
access, so the sharded encoder takes a slice per shard and memory stays at one shard of text. The content
hash `corpus_hash` would compute from the passages is computed during the conversion and kept beside the
file, so the key of cached embeddings is the same as for the in-memory list.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import pyarrow as pa
import pyarrow.compute as pc

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_write_json, create_once
from tdro_suite.common.paths import cache_dir
from tdro_suite.data.arrow import known_digest, row_progress
from tdro_suite.data.types import Passage
from tdro_suite.index.corpus import iter_corpus, passage_digest_update

STORE_FORMAT = 1  # bump when the schema or the conversion changes: old cache entries are then ignored
_BATCH_ROWS = 65_536
SCHEMA = pa.schema([("docid", pa.string()), ("title", pa.string()), ("text", pa.string())])


class CorpusStore(Sequence[Passage]):
    """The passages of a converted corpus, decoded on access; `content_hash` equals `corpus_hash(list(self))`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._table = pa.ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()
        meta = json.loads(_meta_path(self.path).read_text(encoding="utf-8"))
        self.content_hash: str = meta["content_hash"]

    def __len__(self) -> int:
        return self._table.num_rows

    @overload
    def __getitem__(self, index: int) -> Passage: ...

    @overload
    def __getitem__(self, index: slice) -> list[Passage]: ...

    def __getitem__(self, index: int | slice) -> Passage | list[Passage]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self._passages(self._table.slice(start, max(0, stop - start)))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"passage {index} out of range for {len(self)} passages")
        return self._passages(self._table.slice(index, 1))[0]

    def __iter__(self) -> Iterator[Passage]:
        for batch in self._table.to_batches(max_chunksize=_BATCH_ROWS):
            yield from self._passages(pa.Table.from_batches([batch]))

    def column_at(self, name: str, rows: Sequence[int]) -> list[str]:
        """Field `name` ("docid", "title" or "text") of the passages at `rows` (any order, repeats allowed):
        a search result's ids or texts without decoding whole passages."""
        return self._table.column(name).take(pa.array(rows, pa.int64())).to_pylist()

    def present(self, docids: Iterable[str]) -> set[str]:
        """Which of `docids` the corpus holds, without a set of every id in memory (qrels checks)."""
        wanted = pa.array(sorted(set(docids)), pa.string())
        column = self._table.column("docid")
        return set(pc.filter(column, pc.is_in(column, value_set=wanted)).to_pylist())

    @staticmethod
    def _passages(table: pa.Table) -> list[Passage]:
        ids, titles, texts = (table.column(name).to_pylist() for name in ("docid", "title", "text"))
        return [Passage(docid=d, text=x, title=t) for d, t, x in zip(ids, titles, texts, strict=True)]


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def store_path(files: Sequence[Path], root: Path | None = None) -> Path:
    """`<first file's stem>-<hash of the files' bytes>-v<format>.arrow` in the corpora cache."""
    folder = root if root is not None else cache_dir("corpora")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for file in files:
        digest.update(known_digest(file, folder).encode())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{files[0].parent.name}-{files[0].name.split('.')[0]}")[:80]
    return folder / f"{stem}-{digest.hexdigest()[:20]}-v{STORE_FORMAT}.arrow"


def convert_corpus(files: Sequence[Path], out: Path, *, progress: bool = True) -> int:
    """Validate `files` and write them to the Arrow file `out` (atomically, with its hash beside it)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    starts: list[tuple[int, Path]] = []  # first row of each file, to name a duplicate's file
    rows = 0
    label = f"converting corpus {files[0].parent.name}/{files[0].name} to Arrow (once)"
    try:
        with row_progress(label, progress) as bar, \
                pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            columns: tuple[list[str], list[str], list[str]] = ([], [], [])
            for file in files:
                starts.append((rows, file))
                for doc in iter_corpus(file):
                    passage_digest_update(digest, doc)
                    for column, value in zip(columns, (doc.docid, doc.title, doc.text), strict=True):
                        column.append(value)
                    rows += 1
                    if len(columns[0]) == _BATCH_ROWS:
                        writer.write_batch(pa.record_batch([pa.array(c, pa.string()) for c in columns], SCHEMA))
                        bar(len(columns[0]))
                        columns = ([], [], [])
            if columns[0]:
                writer.write_batch(pa.record_batch([pa.array(c, pa.string()) for c in columns], SCHEMA))
        if rows == 0:
            raise DataError(f"{', '.join(map(str, files))}: the corpus holds no documents.")
        _refuse_duplicates(tmp, starts)
        atomic_write_json(_meta_path(out), {"content_hash": digest.hexdigest()[:20], "documents": rows,
                                            "sources": [str(f) for f in files]})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def _refuse_duplicates(path: Path, starts: list[tuple[int, Path]]) -> None:
    """A document id seen twice is an error naming both places (as `read_corpus` does)."""
    column = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all().column("docid")
    if pc.count_distinct(column).as_py() == len(column):
        return
    counts = pc.value_counts(column)
    duplicate = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))[0].as_py()
    first, second = pc.indices_nonzero(pc.equal(column, duplicate)).to_pylist()[:2]

    def where(row: int) -> tuple[Path, int]:
        start, file = [(s, f) for s, f in starts if s <= row][-1]
        return file, row - start + 1

    (file_a, n_a), (file_b, _) = where(first), where(second)
    raise DataError(f"{file_b}: document id '{duplicate}' appears twice (first in {file_a} (document {n_a})).")


def open_corpus(
    paths: str | Path | Sequence[str | Path], *, root: Path | None = None, progress: bool = True
) -> CorpusStore:
    """The corpus in `paths` as a `CorpusStore`, converted first when the cache lacks it; one process of a
    node converts while the others wait (torchrun ranks, or two evaluations of one corpus)."""
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    out = store_path(files, root)
    create_once(out, lambda: convert_corpus(files, out, progress=progress))
    return CorpusStore(out)
