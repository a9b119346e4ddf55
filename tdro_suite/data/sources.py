"""Where a task's rows come from, and how they become Tevatron-shaped records.

A task's `path` names one of four kinds of source:

- a JSON-lines file (`.jsonl`, `.jsonl.gz`), read line by line (errors name the file and line);
- a parquet file (`.parquet`), read with `datasets`' parquet builder;
- a `Dataset.save_to_disk` folder (`state.json` + Arrow files), read with `datasets.load_from_disk`;
- `hf:NAME[:SUBSET][@SPLIT]`: `datasets.load_dataset(NAME, SUBSET, split=SPLIT, data_files=...)`, where NAME is
  a hub dataset (`tdro-llm/finetune_data`) or a local folder in the same layout (a hub repository cloned or
  mirrored), which is read through the very same call. A single local file (`hf:train.jsonl`) goes through
  the `json` builder.

Rows whose columns are named differently are mapped onto the training format with the task's `columns`
(manifest field: our field → the source's column) or recognised by their columns: Tevatron
(`positive_passages`), FlagEmbedding (`query`, `pos`, `neg`: lists of strings) and sentence-transformers
(`anchor`, `positive`, `negative` strings). Passages given as bare strings get a docid from a hash of
their text, so the same text is the same passage in every row. Every record then goes through the one
validator (`reader.iter_records`), so errors name the source, the row and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tdro_suite.common.errors import DataError
from tdro_suite.common.jsonl import InvalidLineError, json_lines

if TYPE_CHECKING:
    from datasets import Dataset

    from tdro_suite.data.types import TaskInfo

HF_PREFIX = "hf:"
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
PARQUET_SUFFIX = ".parquet"
SourceKind = Literal["jsonl", "parquet", "disk", "hub"]

# our field -> the source's column; `columns` in a manifest entry overrides any of them
TEVATRON_COLUMNS = {"query_id": "query_id", "query": "query", "positives": "positive_passages",
                    "negatives": "negative_passages"}
FLAGEMBEDDING_COLUMNS = {"query_id": "query_id", "query": "query", "positives": "pos", "negatives": "neg"}
SENTENCE_TRANSFORMERS_COLUMNS = {"query_id": "query_id", "query": "anchor", "positives": "positive",
                                 "negatives": "negative"}
MAPPED_FIELDS = tuple(TEVATRON_COLUMNS)


@dataclass(frozen=True)
class HubSpec:
    """`hf:NAME[:SUBSET][@SPLIT]` taken apart."""

    name: str
    subset: str | None = None
    split: str = "train"

    def __str__(self) -> str:
        return f"{HF_PREFIX}{self.name}" + (f":{self.subset}" if self.subset else "") + f"@{self.split}"


def parse_hub_spec(spec: str) -> HubSpec:
    """`hf:tdro-llm/finetune_data:agnews@train` -> HubSpec('tdro-llm/finetune_data', 'agnews', 'train')."""
    if not spec.startswith(HF_PREFIX):
        raise ValueError(f"not an {HF_PREFIX} source: {spec}")
    rest, _, split = spec[len(HF_PREFIX):].partition("@")
    name, _, subset = rest.partition(":")
    if not name or (_ and not subset) or ("@" in spec and not split):
        raise DataError(f"'{spec}': expected hf:NAME, hf:NAME@SPLIT or hf:NAME:SUBSET@SPLIT.")
    return HubSpec(name, subset or None, split or "train")


def is_saved_dataset(path: Path) -> bool:
    """A `Dataset.save_to_disk` folder (a `DatasetDict` folder holds one per split)."""
    return path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def source_kind(path: str) -> SourceKind:
    if path.startswith(HF_PREFIX):
        return "hub"
    if path.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if path.endswith(PARQUET_SUFFIX):
        return "parquet"
    if is_saved_dataset(Path(path)):
        return "disk"
    raise DataError(f"{path}: not a training source (.jsonl, .jsonl.gz, .parquet, a save_to_disk folder or hf:NAME).")


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _unreachable(exc: BaseException) -> bool:
    """The hub could not be reached (no network), as opposed to a dataset that is not there."""
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, ConnectionError) or any(w in text for w in ("connect", "reach", "offline", "localentry"))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def hub_download_hint(spec: HubSpec) -> str:
    """What to fetch on a machine with internet, and where to put it, for a hub source that is not here."""
    return (
        f"On a machine with internet: `huggingface-cli download {spec.name} --repo-type dataset --local-dir DIR` "
        f"(--include PATTERN fetches a part), copy DIR here and use hf:DIR{':' + spec.subset if spec.subset else ''}"
        f"@{spec.split} (read by the same code); or load it once there with `datasets` and copy its cache "
        "(HF_HOME) here."
    )


def open_dataset(task: TaskInfo) -> Dataset:
    """The task's rows as a (memory-mapped) `datasets.Dataset`: parquet, save_to_disk and hf: sources."""
    import datasets

    kind = source_kind(task.path)
    if kind == "jsonl":
        raise ValueError(f"{task.path} is a JSON-lines file: iter_jsonl_records reads it line by line")
    if kind != "hub":
        try:
            if kind == "parquet":
                return datasets.load_dataset("parquet", data_files=task.path, split="train")
            return datasets.load_from_disk(task.path)
        except Exception as exc:
            raise DataError(f"{task.path}: could not open with datasets ({_reason(exc)}).") from None
    spec = parse_hub_spec(task.path)
    data_files = list(task.data_files) or None
    local = Path(spec.name)
    try:
        if local.is_file():
            builder = "parquet" if spec.name.endswith(PARQUET_SUFFIX) else "json"
            return datasets.load_dataset(builder, data_files=str(local), split="train")
        if is_saved_dataset(local):
            return datasets.load_from_disk(str(local))
        return datasets.load_dataset(spec.name, spec.subset, split=spec.split, data_files=data_files)
    except Exception as exc:  # unknown dataset, offline, bad files: the datasets library decides
        if not local.exists() and (_offline() or _unreachable(exc)):
            raise DataError(
                f"{spec}: not in the local Hugging Face cache and the hub cannot be reached (offline). "
                + hub_download_hint(spec)
            ) from None
        raise DataError(f"{spec}: could not open with datasets ({_reason(exc)}).") from None


def columns_for(row_columns: Any, explicit: Mapping[str, str]) -> dict[str, str]:
    """Our field -> source column: the explicit mapping over the layout the row's columns show."""
    names = set(row_columns)
    if "positive_passages" in names:
        base = TEVATRON_COLUMNS
    elif "pos" in names:
        base = FLAGEMBEDDING_COLUMNS
    elif "anchor" in names:
        base = SENTENCE_TRANSFORMERS_COLUMNS
    else:
        base = TEVATRON_COLUMNS
    return {**base, **explicit}


def check_columns(columns: Mapping[str, str], where: str) -> None:
    unknown = sorted(set(columns) - set(MAPPED_FIELDS))
    if unknown:
        raise DataError(f"{where}: 'columns' maps unknown field(s) {', '.join(unknown)}; known: "
                        f"{', '.join(MAPPED_FIELDS)} (each to the source's column name).")


def text_docid(text: str) -> str:
    """A docid for a passage given as a bare string: the same text is the same passage everywhere."""
    return "t" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _passage_list(value: Any) -> Any:
    """Passages as the validator reads them; bare strings (one or a list) become {docid, text}."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [{"docid": text_docid(v), "title": "", "text": v} if isinstance(v, str) else v for v in value]
    return value


def to_training_record(row: Mapping[str, Any], columns: Mapping[str, str], row_number: int,
                       where: str) -> dict[str, Any]:
    """One source row as a Tevatron record (what `reader.parse_example` validates)."""
    for field in ("query", "positives"):
        if columns[field] not in row:
            raise InvalidLineError(where, columns[field], f"is missing (the column read as '{field}'; "
                                   "map another with the task's 'columns')", "missing_field")
    query_id = row.get(columns["query_id"])
    negatives = row.get(columns["negatives"])
    return {
        "query_id": str(row_number) if query_id is None else query_id,
        "query": row[columns["query"]],
        "positive_passages": _passage_list(row[columns["positives"]]),
        "negative_passages": None if negatives is None else _passage_list(negatives),
    }


def _training_records(rows: Iterator[tuple[str, Any]], explicit: Mapping[str, str]) -> Iterator[tuple[str, Any]]:
    """(where, record) for the validator: Tevatron rows as they are, other rows mapped first (FlagEmbedding,
    sentence-transformers, or the task's `columns`; the layout told by the first row). One rule for every
    source kind, so a row is validated the same whether it came from a file or from `datasets`."""
    columns: dict[str, str] | None = None
    for row_number, (where, obj) in enumerate(rows, start=1):
        if isinstance(obj, InvalidLineError) or not isinstance(obj, dict):
            yield where, obj
            continue
        if columns is None:
            columns = columns_for(obj, explicit)
        if not explicit and "positive_passages" in obj:  # Tevatron: every field checked as the format says
            yield where, obj
            continue
        try:
            yield where, to_training_record(obj, columns, row_number, where)
        except InvalidLineError as exc:
            yield where, exc


def iter_jsonl_records(task: TaskInfo) -> Iterator[tuple[str, Any]]:
    """(file:line, record) for a JSON-lines task, read line by line."""
    yield from _training_records(json_lines(task.path, keep_bad_lines=True), task.columns)


def _dataset_rows(task: TaskInfo) -> Iterator[tuple[str, Any]]:
    dataset = open_dataset(task)
    label = task.path
    if task.path.startswith(HF_PREFIX):
        spec = parse_hub_spec(task.path)
        label = spec.name if Path(spec.name).exists() else str(spec)
    row_number = 0
    try:
        for row_number, row in enumerate(dataset, start=1):
            yield f"{label}:{row_number}", dict(row)
    except Exception as exc:  # a row the builder cannot parse or cast
        raise DataError(f"{label}:{row_number + 1}: datasets could not read this row ({_reason(exc)}).") from None


def iter_dataset_records(task: TaskInfo) -> Iterator[tuple[str, Any]]:
    """(source:row, record) for every row of a parquet / save_to_disk / hf: task."""
    yield from _training_records(_dataset_rows(task), task.columns)


def source_key(task: TaskInfo, file_digest: Any) -> str:
    """What identifies the task's rows for the Arrow cache: the bytes of a file source (`file_digest(path)`),
    the fingerprint `datasets` gives a saved or hub dataset, plus any column mapping and data_files."""
    file_source = source_kind(task.path) in ("jsonl", "parquet")
    key = file_digest(task.path) if file_source else open_dataset(task)._fingerprint
    if task.columns or task.data_files:
        extra = json.dumps([task.columns, list(task.data_files)], sort_keys=True)
        key = hashlib.sha256(f"{key}|{extra}".encode()).hexdigest()
    return key


def count_rows(task: TaskInfo) -> int | None:
    """Rows of a parquet file (its footer) or a saved dataset (its state), without reading them; None for a
    hub dataset, whose size is known only once it is here."""
    kind = source_kind(task.path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(task.path).metadata.num_rows)
        except Exception as exc:
            raise DataError(f"{task.path}: not a readable parquet file ({_reason(exc)}).") from None
    if kind == "disk":
        return len(open_dataset(task))
    return None
