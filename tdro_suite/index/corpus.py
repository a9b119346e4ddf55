"""Read a document collection (BEIR / MIRACL corpus layout) and fingerprint it.

One JSON object per line, `.jsonl` or `.jsonl.gz`, with an id under `_id` (BEIR), `docid`
(MIRACL, Tevatron) or `id`, a `text` and an optional `title`. A line without an id or without
text is a `DataError` naming the file, the line and the field: silently indexing an empty
document would make it unretrievable without anyone noticing. Documents are `Passage`s, embedded
by `Passage.full_text` like training passages and documents added to a served index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tdro_suite.common.errors import DataError
from tdro_suite.common.jsonl import json_lines
from tdro_suite.data.types import Passage

ID_FIELDS = ("_id", "docid", "id")


def parse_document(obj: object, where: str) -> Passage:
    """Validate one decoded corpus record."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
    key = next((k for k in ID_FIELDS if obj.get(k) is not None), None)
    if key is None:
        raise DataError(f"{where}: field '_id' is missing (a document needs an id under _id, docid or id).")
    doc_id = obj[key]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or str(doc_id) == "":
        raise DataError(f"{where}: field '{key}' must be a non-empty string id, got {doc_id!r}.")
    text, title = obj.get("text"), obj.get("title")
    if text is None:
        raise DataError(f"{where}: field 'text' is missing (document '{doc_id}').")
    if not isinstance(text, str):
        raise DataError(f"{where}: field 'text' must be a string, got {type(text).__name__} (document '{doc_id}').")
    if title is not None and not isinstance(title, str):
        raise DataError(f"{where}: field 'title' must be a string, got {type(title).__name__}.")
    if not text.strip() and not (title or "").strip():
        raise DataError(f"{where}: field 'text' is empty and there is no title (document '{doc_id}').")
    return Passage(docid=str(doc_id), text=text, title=title or "")


def iter_corpus(path: str | Path) -> Iterator[Passage]:
    """Stream the documents of one corpus file, validating every line."""
    for where, obj in json_lines(path):
        yield parse_document(obj, where)


def read_corpus(paths: str | Path | Sequence[str | Path]) -> list[Passage]:
    """Read one or more corpus files into memory; a document id seen twice is an error."""
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    docs: list[Passage] = []
    seen: dict[str, str] = {}
    for file in files:
        for lineno, doc in enumerate(iter_corpus(file), start=1):
            if doc.docid in seen:
                raise DataError(f"{file}: document id '{doc.docid}' appears twice (first in {seen[doc.docid]}).")
            seen[doc.docid] = f"{file} (document {lineno})"
            docs.append(doc)
    if not docs:
        raise DataError(f"{', '.join(map(str, files))}: the corpus holds no documents.")
    return docs


def passage_digest_update(digest: hashlib._Hash, doc: Passage) -> None:
    """Feed one passage into a content digest (`corpus_hash`'s rule, also used while a corpus is converted)."""
    for part in (doc.docid, doc.title, doc.text):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    digest.update(b"\x1e")


def corpus_hash(docs: Iterable[Passage]) -> str:
    """A content fingerprint (ids, titles, texts, in order): the key of cached corpus embeddings.

    A `CorpusStore` carries the hash computed when it was converted, so it is not read again."""
    known = getattr(docs, "content_hash", None)
    if isinstance(known, str):
        return known
    digest = hashlib.sha256()
    for doc in docs:
        passage_digest_update(digest, doc)
    return digest.hexdigest()[:20]
