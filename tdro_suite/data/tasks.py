"""Task manifests: which training files exist and what each one is (languages, instruction, symmetry).

A manifest (`tasks.json`) is a JSON list of TaskInfo-shaped objects (or `{"tasks": [...]}`) whose
`path` is relative to the manifest. `load_tasks` also accepts a folder holding a manifest, a folder
of .jsonl(.gz) files, or single files (task name = file stem, default metadata), so ad-hoc data
works without writing a manifest first (with no instructions, every task asymmetric: a warning says
so). A manifest kept apart from its data (`configs/paper/tdro-tasks.json`, the public tDRO sets) is read
with `load_tasks([folder], manifest=...)`: its paths are then file names inside that folder.
Besides Tevatron JSON-lines, a task's path may be a parquet file, a `save_to_disk` folder or
`hf:NAME[:SUBSET][@SPLIT]` (a hub dataset or a local folder in its layout), with a `columns` mapping for
other column names (FlagEmbedding's `query/pos/neg`, sentence-transformers' `anchor/positive/negative` are
recognised): see `data/sources.py`. Every kind is validated by the same reader and converted to the same
Arrow cache (`data/arrow.py`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_write_json
from tdro_suite.common.jsonl import count_records, read_json_file
from tdro_suite.data.reader import InvalidReport, iter_records
from tdro_suite.data.sources import (
    HF_PREFIX,
    JSONL_SUFFIXES,
    PARQUET_SUFFIX,
    check_columns,
    count_rows,
    is_saved_dataset,
    iter_dataset_records,
    iter_jsonl_records,
    parse_hub_spec,
    source_kind,
)
from tdro_suite.data.types import TaskInfo, TrainExample

log = logging.getLogger(__name__)

MANIFEST_NAME = "tasks.json"
DATA_SUFFIXES = (*JSONL_SUFFIXES, PARQUET_SUFFIX)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "path": (str,),
    "instruction": (str,),
    "languages": (list,),
    "symmetric": (bool,),
    "size": (int,),
    "source": (str,),
    "license": (str,),
    "domain": (str,),
    "instructions": (list,),
    "columns": (dict,),
    "data_files": (list,),
}
_ADDED_FIELDS = ("instructions", "columns", "data_files")  # written only when set, so older manifests keep their bytes


def is_data_file(path: Path) -> bool:
    return path.name.endswith(DATA_SUFFIXES)


def task_name_from_file(path: Path) -> str:
    """`msmarco.jsonl.gz` → `msmarco`."""
    name = path.name
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


class _MissingFile(DataError):
    """A manifest entry whose data file is not there (collected, so one error lists them all)."""


def _task_from_record(record: Any, manifest: Path, index: int, base: Path) -> TaskInfo:
    where = f"{manifest}: task #{index + 1}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object, got {type(record).__name__}.")
    unknown = sorted(set(record) - set(_FIELD_TYPES))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(_FIELD_TYPES)}.")
    for key in ("name", "path"):
        if key not in record:
            raise DataError(f"{where}: field '{key}' is missing.")
    for key, value in record.items():
        allowed = _FIELD_TYPES[key]
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            raise DataError(f"{where}: field '{key}' must be {allowed[0].__name__}, got {type(value).__name__}.")
    for key in ("languages", "instructions", "data_files"):
        if not all(isinstance(item, str) for item in record.get(key, [])):
            raise DataError(f"{where}: field '{key}' must be a list of strings.")
    if not all(isinstance(v, str) for v in record.get("columns", {}).values()):
        raise DataError(f"{where}: field 'columns' must map field names to column names (strings).")
    check_columns(record.get("columns", {}), where)
    values = dict(record)
    if not record["path"].startswith(HF_PREFIX):  # hf:NAME[:SUBSET][@SPLIT] is read through `datasets`
        data_path = (base / record["path"]).resolve()
        if not (data_path.is_file() or is_saved_dataset(data_path)):
            raise _MissingFile(f"{where} ('{record['name']}'): field 'path': file {data_path} does not exist.")
        values["path"] = str(data_path)
    return TaskInfo(**values)


def read_manifest(path: str | Path, data_dir: str | Path | None = None) -> list[TaskInfo]:
    """Read one tasks.json; paths inside are resolved against `data_dir`, by default the manifest's folder.

    Every missing data file is named in one error, so a partial download shows all that is left to fetch.
    """
    manifest = Path(path)
    base = Path(data_dir) if data_dir is not None else manifest.parent
    data = read_json_file(manifest, "task manifest")
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
    if not isinstance(data, list):
        raise DataError(f'{manifest}: expected a list of tasks (or {{"tasks": [...]}}).')
    tasks, missing = [], []
    for i, record in enumerate(data):
        try:
            tasks.append(_task_from_record(record, manifest, i, base))
        except _MissingFile as exc:
            missing.append(str(exc))
    if len(missing) == 1:
        raise DataError(missing[0])
    if missing:
        raise DataError(f"{len(missing)} of {len(data)} data files are missing:\n" + "\n".join(missing))
    return tasks


def write_manifest(path: str | Path, tasks: Iterable[TaskInfo]) -> None:
    """Write tasks.json atomically, storing each data path relative to the manifest's folder."""
    manifest = Path(path)
    records = []
    for task in tasks:
        record = asdict(task)
        for key in _ADDED_FIELDS:
            if not record[key]:
                del record[key]
        if not task.path.startswith(HF_PREFIX):
            record["path"] = Path(os.path.relpath(Path(task.path).resolve(), manifest.parent.resolve())).as_posix()
        records.append(record)
    atomic_write_json(manifest, records)


def _tasks_from_path(path: Path) -> list[TaskInfo]:
    if path.is_file() and path.name.endswith(".json"):
        return read_manifest(path)
    if path.is_file() and is_data_file(path):
        return [TaskInfo(name=task_name_from_file(path), path=str(path.resolve()), source=str(path))]
    if is_saved_dataset(path):
        return [TaskInfo(name=path.name, path=str(path.resolve()), source=str(path))]
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if is_saved_dataset(p))
        raise DataError(f"{path}: a saved DatasetDict; give one split's folder ({', '.join(splits) or 'none found'}) "
                        "as the task, e.g. " + str(path / (splits[0] if splits else "train")) + ".")
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return read_manifest(path / MANIFEST_NAME)
        files = sorted(p for p in path.iterdir() if p.is_file() and is_data_file(p))
        if files:
            return [t for f in files for t in _tasks_from_path(f)]
        raise DataError(f"{path}: folder holds neither {MANIFEST_NAME}, a saved dataset, nor any "
                        ".jsonl/.jsonl.gz/.parquet file.")
    if path.exists():
        raise DataError(f"{path}: not a task manifest (.json) nor a training file (.jsonl, .jsonl.gz, .parquet).")
    raise DataError(f"{path}: no such file or folder.")


def _hf_task(spec: str) -> TaskInfo:
    """`hf:owner/name[:subset][@train]` → a task read with `datasets`, named after the subset if there is
    one, else the name's last path part."""
    hub = parse_hub_spec(spec)
    return TaskInfo(name=hub.subset or task_name_from_file(Path(hub.name)), path=spec, source=spec)


def iter_task_examples(
    task: TaskInfo, *, skip_invalid: bool = False, report: InvalidReport | None = None
) -> Iterator[TrainExample]:
    """A task's examples, validated: a JSON-lines file line by line, any other source through `datasets`."""
    records = iter_jsonl_records(task) if source_kind(task.path) == "jsonl" else iter_dataset_records(task)
    yield from iter_records(records, skip_invalid=skip_invalid, report=report)


def _has_manifest(path: Path) -> bool:
    return (path.is_file() and path.name.endswith(".json")) or (path / MANIFEST_NAME).is_file()


def _tasks_in_folder(folder: Path, manifest: Path) -> list[TaskInfo]:
    if not folder.is_dir():
        raise DataError(f"{folder}: with a task manifest ({manifest}), the data path is the folder holding its files.")
    return read_manifest(manifest, data_dir=folder)


def load_tasks(paths: Iterable[str | Path], manifest: str | Path | None = None) -> list[TaskInfo]:
    """All tasks named by manifests, folders or single files; task names must be unique.

    With `manifest`, every path is a data folder whose files that manifest describes. Data without any
    manifest gets no instructions and asymmetric prompts; a warning names it, since that changes training.
    """
    paths = list(paths)
    if manifest is not None and not paths:
        raise DataError(f"The task manifest {manifest} needs the data folder holding its files (--data FOLDER).")
    tasks: list[TaskInfo] = []
    seen: dict[str, str] = {}
    bare: list[str] = []
    for raw in paths:
        if manifest is not None:
            found = _tasks_in_folder(Path(raw), Path(manifest))
        elif isinstance(raw, str) and raw.startswith(HF_PREFIX):
            found = [_hf_task(raw)]
        else:
            found = _tasks_from_path(Path(raw))
            if not _has_manifest(Path(raw)):
                bare.append(str(raw))
        for task in found:
            if task.name in seen:
                raise DataError(
                    f"Task name '{task.name}' appears twice ({seen[task.name]} and {task.path}); "
                    "task names must be unique."
                )
            seen[task.name] = task.path
            tasks.append(task)
    if not tasks:
        raise DataError("No training tasks given.")
    if bare:
        log.warning(
            "%s: no task manifest, so these tasks use no instructions and are treated as asymmetric "
            "(give a tasks.json, or --tasks MANIFEST, to set them).",
            ", ".join(bare),
        )
    return tasks


def training_tasks(data: Sequence[str | Path], manifest: str | Path | None = None) -> list[TaskInfo]:
    """The tasks a training stage reads: `data` (with `manifest` if given), else the bundled mixture."""
    if data or manifest is not None:
        return load_tasks(data, manifest=manifest)
    from tdro_suite.bundled import train_dir

    return load_tasks([train_dir()])


def task_examples(task: TaskInfo, *, limit: int | None = None, seed: int = 0) -> Sequence[TrainExample]:
    """What training reads: the task Arrow-backed (validated and converted once, then memory-mapped;
    `limit` = a sample of that many rows drawn with `seed`), whatever its source."""
    from tdro_suite.data.arrow import arrow_task_examples

    return arrow_task_examples(task, limit=limit, seed=seed)


def count_task_examples(task: TaskInfo) -> int | None:
    """How many examples a task holds, without parsing them: lines of a JSON-lines file, rows of a parquet
    file or saved dataset (None for an `hf:` task, whose size is known only once it is downloaded)."""
    if source_kind(task.path) == "jsonl":
        return count_records(task.path)
    return count_rows(task)


def load_task_examples(
    task: TaskInfo,
    *,
    skip_invalid: bool = False,
    report: InvalidReport | None = None,
    limit: int | None = None,
) -> list[TrainExample]:
    """Read a whole task into memory (training sets that fit); `limit` keeps the first N examples."""
    out: list[TrainExample] = []
    for example in iter_task_examples(task, skip_invalid=skip_invalid, report=report):
        out.append(example)
        if limit is not None and len(out) >= limit:
            break
    return out
