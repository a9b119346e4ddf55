"""`tdro-suite search`: read queries, check the model against the index, search, return ranked hits.

Queries come from the command line or a file: `.tsv` (qid<TAB>query, MIRACL topics), `.jsonl`
(BEIR queries: `_id`/`id` and `text`/`query`) or plain text (one query per line, ids q1, q2, ...).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.common.jsonl import numbered_lines, parse_json_line
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.index.encode import encoder_fingerprint
from tdro_suite.index.errors import IndexMismatchError

if TYPE_CHECKING:
    from tdro_suite.modeling.protocol import EmbeddingModel

log = logging.getLogger(__name__)


def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """(id, text) pairs from a .tsv, .jsonl or plain-text file (each optionally .gz)."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    out: list[tuple[str, str]] = []
    for lineno, line in numbered_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        if name.endswith(".jsonl"):
            obj = parse_json_line(line, where)
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object.")
            qid = next((obj[k] for k in ("_id", "id", "query_id", "qid") if obj.get(k) is not None), None)
            text = obj.get("text", obj.get("query"))
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: field 'text' is missing or empty.")
            out.append((str(qid) if qid is not None else f"q{len(out) + 1}", text))
        elif name.endswith(".tsv"):
            cols = line.rstrip("\n\r").split("\t")
            if len(cols) < 2 or not cols[1].strip():
                raise DataError(f"{where}: expected 'qid<TAB>query'.")
            out.append((cols[0], cols[1]))
        else:
            out.append((f"q{len(out) + 1}", line.strip()))
    return out


def check_encoder(index: DenseIndex, encoder: EmbeddingModel) -> None:
    """Refuse an encoder other than the index's; a same-named but changed model only warns."""
    recorded = index.manifest.get("model_fingerprint")
    if recorded and recorded == encoder_fingerprint(encoder):
        return
    index.check_model(encoder.name)
    if index.dimension != encoder.dimension:
        raise IndexMismatchError(
            f"model '{encoder.name}' makes {encoder.dimension}-d vectors; the index holds {index.dimension}-d "
            f"vectors from '{index.manifest.get('model')}'."
        )
    if recorded:
        log.warning(
            "The model '%s' differs from the one the index was built with (same name, other weights or "
            "settings); scores may be meaningless. Rebuild the index if the model was retrained.",
            encoder.name,
        )


def search_queries(
    index: DenseIndex, encoder: EmbeddingModel, queries: list[tuple[str, str]], *, k: int = 10,
    instruction: str | None = None, batch_size: int = 32,
) -> list[dict[str, Any]]:
    """One record per query: {"query_id", "query", "hits": [{"rank", "id", "score", "title", "text"}]}."""
    vectors = encoder.encode_queries([text for _, text in queries], instruction=instruction, batch_size=batch_size)
    scores, found = index.search(vectors, k)
    results = []
    for row, (qid, text) in enumerate(queries):
        hits = []
        for rank, doc_id in enumerate(found[row], start=1):
            doc = index.get_doc(doc_id) or {}
            hits.append({
                "rank": rank, "id": doc_id, "score": round(float(scores[row, rank - 1]), 6),
                "title": doc.get("title", ""), "text": doc.get("text", ""),
            })
        results.append({"query_id": qid, "query": text, "hits": hits})
    return results


def gather_queries(query: list[str], queries_file: str | None) -> list[tuple[str, str]]:
    pairs = [(f"q{i + 1}", text) for i, text in enumerate(q for q in query if q.strip())]
    if queries_file:
        pairs += read_queries(queries_file)
    if not pairs:
        raise ConfigError("No queries: pass --query TEXT (repeatable) or --queries FILE.")
    return pairs
