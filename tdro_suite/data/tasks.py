"""Task manifests: which training files exist and what each one is (languages, instruction, symmetry).

A manifest (`tasks.json`) is a JSON list of TaskInfo-shaped objects (or `{"tasks": [...]}`) whose
`path` is relative to the manifest. `load_tasks` also accepts a folder holding a manifest, a folder
of .jsonl(.gz) files, or single files (task name = file stem, default metadata), so ad-hoc data
works without writing a manifest first (with no instructions, every task asymmetric: a warning says
so). A manifest kept apart from its data (`configs/paper/tdro-tasks.json`, the public tDRO sets) is read
with `load_tasks([folder], manifest=...)`: its paths are then file names inside that folder.
`hf:NAME` or `hf:NAME@SPLIT` streams a Hugging Face dataset (a hub name, or a local file through the
`json` builder) with the same validation.
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
from tdro_suite.data.reader import InvalidReport, iter_dataset_examples, iter_examples
from tdro_suite.data.types import TaskInfo, TrainExample

log = logging.getLogger(__name__)

MANIFEST_NAME = "tasks.json"
HF_PREFIX = "hf:"
DATA_SUFFIXES = (".jsonl", ".jsonl.gz")
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
}


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
    if not all(isinstance(lang, str) for lang in record.get("languages", [])):
        raise DataError(f"{where}: field 'languages' must be a list of strings.")
    values = dict(record)
    if not record["path"].startswith(HF_PREFIX):  # hf:NAME[@SPLIT] is streamed through `datasets`
        data_path = (base / record["path"]).resolve()
        if not data_path.is_file():
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
        if not task.path.startswith(HF_PREFIX):
            record["path"] = Path(os.path.relpath(Path(task.path).resolve(), manifest.parent.resolve())).as_posix()
        records.append(record)
    atomic_write_json(manifest, records)


def _tasks_from_path(path: Path) -> list[TaskInfo]:
    if path.is_file() and path.name.endswith(".json"):
        return read_manifest(path)
    if path.is_file() and is_data_file(path):
        return [TaskInfo(name=task_name_from_file(path), path=str(path.resolve()), source=str(path))]
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return read_manifest(path / MANIFEST_NAME)
        files = sorted(p for p in path.iterdir() if p.is_file() and is_data_file(p))
        if files:
            return [t for f in files for t in _tasks_from_path(f)]
        raise DataError(f"{path}: folder holds neither {MANIFEST_NAME} nor any .jsonl/.jsonl.gz file.")
    if path.exists():
        raise DataError(f"{path}: not a task manifest (.json) nor a training file (.jsonl or .jsonl.gz).")
    raise DataError(f"{path}: no such file or folder.")


def _hf_task(spec: str) -> TaskInfo:
    """`hf:owner/name@train` → a task read with `datasets` (name = last path part, split after `@`)."""
    name = spec[len(HF_PREFIX) :].split("@", 1)[0]
    if not name:
        raise DataError(f"'{spec}': expected hf:NAME or hf:NAME@SPLIT.")
    return TaskInfo(name=task_name_from_file(Path(name)), path=spec, source=spec)


def split_hf_path(path: str) -> tuple[str, str] | None:
    """(dataset, split) for an `hf:` task path, None for a plain file."""
    if not path.startswith(HF_PREFIX):
        return None
    name, _, split = path[len(HF_PREFIX) :].partition("@")
    return name, split or "train"


def iter_task_examples(
    task: TaskInfo, *, skip_invalid: bool = False, report: InvalidReport | None = None
) -> Iterator[TrainExample]:
    """Stream a task's examples from its file, or through `datasets` for an `hf:` task."""
    hf = split_hf_path(task.path)
    if hf is not None:
        yield from iter_dataset_examples(hf[0], split=hf[1], skip_invalid=skip_invalid, report=report)
    else:
        yield from iter_examples(task.path, skip_invalid=skip_invalid, report=report)


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
    """What training reads: a file task Arrow-backed (validated and converted once, then memory-mapped;
    `limit` = a sample of that many rows drawn with `seed`); a streamed `hf:` task in memory (first `limit`)."""
    if split_hf_path(task.path) is not None:
        return load_task_examples(task, limit=limit)
    from tdro_suite.data.arrow import arrow_task_examples

    return arrow_task_examples(task, limit=limit, seed=seed)


def count_task_examples(task: TaskInfo) -> int | None:
    """How many examples a task's file holds, counted by lines without parsing them (None for a streamed
    `hf:` task, whose size is known only by reading it)."""
    if split_hf_path(task.path) is not None:
        return None
    return count_records(task.path)


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
