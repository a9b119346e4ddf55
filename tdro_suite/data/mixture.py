"""Mixture (weights) files: which tasks to train on and how often to sample each.

Our file is `{"format": "tdro-suite/mixture-v1", "tasks": [{"name","weight","size"}], ...}` and also
carries the public reference layout, whose `domain_ids`, `domain_weights`, `size` and `epoch` are objects
keyed by task name (its `config/robust_weights/*.json`), so the reference scripts read our files as they
are. `read_mixture` reads our layout, that one, and an older one with the same keys as parallel lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_write_json
from tdro_suite.common.jsonl import read_json_file
from tdro_suite.data.types import TaskInfo

MIXTURE_FORMAT = "tdro-suite/mixture-v1"


def largest_remainder(seats: int, quotas: Sequence[Fraction], order: Sequence[int]) -> list[int]:
    """Apportion `seats` to quotas q_k ≥ 0 summing to `seats`: ⌊q_k⌋ each, the seats left over one each to
    the largest remainders q_k − ⌊q_k⌋, ties in the order `order` lists the tasks (callers pass a seeded
    permutation). Every count is ⌊q_k⌋ or ⌈q_k⌉. Exact fractions keep equal quotas equal, so no rounding
    noise decides a tie. tDRO's per-batch counts and finetune's stratified schedule share this rule.
    """
    counts = [math.floor(q) for q in quotas]
    leftovers = seats - sum(counts)
    by_remainder = sorted(order, key=lambda k: quotas[k] - counts[k], reverse=True)  # stable: ties keep `order`
    for k in by_remainder[:leftovers]:
        counts[k] += 1
    return counts


@dataclass(frozen=True)
class Mixture:
    """Task names with sampling weights (normalised to sum to 1) and task sizes (0 = unknown)."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise DataError("A mixture needs at least one task.")
        if not len(self.names) == len(self.weights) == len(self.sizes):
            raise DataError(
                f"Mixture lists differ in length: {len(self.names)} names, {len(self.weights)} weights, "
                f"{len(self.sizes)} sizes."
            )
        duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
        if duplicates:
            raise DataError(f"Mixture names task(s) {', '.join(duplicates)} more than once.")
        for name, w in zip(self.names, self.weights, strict=True):
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                raise DataError(f"Mixture weight of task '{name}' must be a finite number ≥ 0, got {w!r}.")
        total = float(sum(self.weights))
        if total <= 0:
            raise DataError("Mixture weights sum to 0; at least one task needs a positive weight.")
        object.__setattr__(self, "weights", tuple(float(w) / total for w in self.weights))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, tasks: Sequence[TaskInfo | str]) -> Mixture:
        """Equal weight on every task (the reference model's mixture and tDRO's start)."""
        names = tuple(t.name if isinstance(t, TaskInfo) else str(t) for t in tasks)
        sizes = tuple(t.size if isinstance(t, TaskInfo) else 0 for t in tasks)
        return cls(names, tuple(1.0 for _ in names), sizes)

    # --- views --------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.weights, strict=True))

    def weight_of(self, name: str) -> float:
        """The weight of `name`, or 0 for a task the mixture leaves out."""
        return self.as_dict().get(name, 0.0)

    def top_percent(self, percent: float) -> Mixture:
        """The paper's top-p%: keep the ⌊K·p/100⌋ largest-weight tasks (at least one), sampled uniformly."""
        if not 0 < percent <= 100:
            raise DataError(f"top percent must be in (0, 100], got {percent}.")
        keep = max(1, math.floor(len(self.names) * percent / 100 + 1e-9))
        order = sorted(range(len(self.names)), key=lambda i: (-self.weights[i], i))[:keep]
        chosen = sorted(order)  # keep the original task order
        return Mixture(
            tuple(self.names[i] for i in chosen),
            tuple(1.0 for _ in chosen),
            tuple(self.sizes[i] for i in chosen),
        )

    def validate_against(self, tasks: Sequence[TaskInfo | str]) -> None:
        """Fail clearly when the mixture names a task that the training set does not have."""
        known = [t.name if isinstance(t, TaskInfo) else str(t) for t in tasks]
        missing = [n for n in self.names if n not in set(known)]
        if missing:
            raise DataError(
                f"Mixture task(s) {', '.join(map(repr, missing))} not found in the training set; "
                f"known tasks: {', '.join(known) or '(none)'}."
            )

    def reference_json(self) -> dict[str, Any]:
        """The reference's layout: objects keyed by task name; `epoch` = w·Σsize/size, the passes over a
        task per pass over the mixture's total size (left out when a size is unknown)."""
        data: dict[str, Any] = {
            "domain_ids": {n: i for i, n in enumerate(self.names)},
            "domain_weights": self.as_dict(),
            "size": dict(zip(self.names, self.sizes, strict=True)),
        }
        if all(s > 0 for s in self.sizes):
            total = sum(self.sizes)
            data["epoch"] = {n: w * total / s for n, w, s in zip(self.names, self.weights, self.sizes, strict=True)}
        return data

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """Our layout plus the reference's; `extra` keys (e.g. step, method) are kept."""
        data: dict[str, Any] = {
            "format": MIXTURE_FORMAT,
            "tasks": [
                {"name": n, "weight": w, "size": s}
                for n, w, s in zip(self.names, self.weights, self.sizes, strict=True)
            ],
            **self.reference_json(),
        }
        clash = set(extra) & set(data)
        if clash:
            raise ValueError(f"extra keys {sorted(clash)} would overwrite the mixture itself")
        data.update(extra)
        return data


def write_mixture(path: str | Path, mixture: Mixture, **extra: Any) -> None:
    """Write a mixture file atomically (a crash never leaves half a weights file)."""
    atomic_write_json(path, mixture.to_json(**extra))


def _list_field(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise DataError(f"{path}: field '{key}' must be a list, got {type(value).__name__}.")
    return value


def _parse_ours(data: dict[str, Any], path: Path) -> Mixture:
    tasks = _list_field(data, "tasks", path)
    names, weights, sizes = [], [], []
    for i, task in enumerate(tasks):
        where = f"{path}: tasks[{i}]"
        if not isinstance(task, dict):
            raise DataError(f"{where}: expected an object with name/weight/size.")
        for key in ("name", "weight"):
            if key not in task:
                raise DataError(f"{where}: field '{key}' is missing.")
        if not isinstance(task["name"], str) or not task["name"]:
            raise DataError(f"{where}: field 'name' must be a non-empty string.")
        if not isinstance(task["weight"], (int, float)) or isinstance(task["weight"], bool):
            raise DataError(f"{where}: field 'weight' must be a number, got {task['weight']!r}.")
        size = task.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DataError(f"{where}: field 'size' must be an integer ≥ 0, got {size!r}.")
        names.append(task["name"])
        weights.append(task["weight"])
        sizes.append(size)
    return Mixture(tuple(names), tuple(weights), tuple(sizes))


def _keyed_field(data: dict[str, Any], key: str, names: list[str], path: Path) -> list[Any]:
    """The values of an object keyed by task name, in `names` order (the same keys, no more, no fewer)."""
    value = data.get(key)
    if not isinstance(value, dict):
        raise DataError(f"{path}: field '{key}' must be an object keyed by task name, got {type(value).__name__}.")
    if set(value) != set(names):
        missing = sorted(set(names) - set(value))
        extra = sorted(set(value) - set(names))
        raise DataError(
            f"{path}: field '{key}' must name the tasks of 'domain_ids'"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; not in domain_ids: {', '.join(extra)}" if extra else "")
            + "."
        )
    return [value[n] for n in names]


def _reference_names(data: dict[str, Any], path: Path) -> list[str]:
    """Task names ordered by their `domain_ids` index (the reference's object) or as listed (old lists)."""
    ids = data["domain_ids"]
    if isinstance(ids, list):
        return [str(n) for n in ids]
    if not isinstance(ids, dict):
        raise DataError(f"{path}: field 'domain_ids' must be an object (task → index), got {type(ids).__name__}.")
    for name, index in ids.items():
        if not isinstance(index, int) or isinstance(index, bool):
            raise DataError(f"{path}: field 'domain_ids.{name}' must be an integer index, got {index!r}.")
    if sorted(ids.values()) != list(range(len(ids))):
        raise DataError(f"{path}: field 'domain_ids' must number the tasks 0…{len(ids) - 1}, each once.")
    return sorted(ids, key=lambda n: ids[n])


def _parse_reference(data: dict[str, Any], path: Path) -> Mixture:
    names = _reference_names(data, path)
    if isinstance(data["domain_ids"], dict):
        weights = _keyed_field(data, "domain_weights", names, path)
        sizes = _keyed_field(data, "size", names, path) if "size" in data else [0] * len(names)
        return _reference_mixture(names, weights, sizes, path, keyed=True)
    weights = _list_field(data, "domain_weights", path)
    sizes = _list_field(data, "size", path) if "size" in data else [0] * len(names)
    return _reference_mixture(names, weights, sizes, path, keyed=False)


def _reference_mixture(names: list[str], weights: list[Any], sizes: list[Any], path: Path, *, keyed: bool) -> Mixture:
    """Check the values of the reference layout and build the mixture (`epoch` is derived, not read)."""

    def where(key: str, i: int) -> str:
        return f"{key}.{names[i]}" if keyed else f"{key}[{i}]"

    for i, w in enumerate(weights):
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            raise DataError(f"{path}: field '{where('domain_weights', i)}' must be a number, got {w!r}.")
    for i, s in enumerate(sizes):
        if not isinstance(s, (int, float)) or isinstance(s, bool) or s < 0 or int(s) != s:
            raise DataError(f"{path}: field '{where('size', i)}' must be an integer ≥ 0, got {s!r}.")
    try:
        return Mixture(tuple(names), tuple(weights), tuple(int(s) for s in sizes))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def read_mixture(path: str | Path) -> Mixture:
    """Read our mixture file or the public reference layout (`domain_ids`/`domain_weights`/`size`, as
    objects keyed by task name or as parallel lists)."""
    path = Path(path)
    data = read_json_file(path, "mixture file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: a mixture file holds a JSON object, got {type(data).__name__}.")
    if "tasks" in data:
        fmt = data.get("format", MIXTURE_FORMAT)
        if fmt != MIXTURE_FORMAT:
            raise DataError(f"{path}: unsupported mixture format {fmt!r} (this version reads {MIXTURE_FORMAT}).")
        try:
            return _parse_ours(data, path)
        except DataError as exc:
            raise exc if str(exc).startswith(str(path)) else DataError(f"{path}: {exc}") from None
    if "domain_ids" in data and "domain_weights" in data:
        return _parse_reference(data, path)
    raise DataError(
        f"{path}: not a mixture file: expected 'tasks' (tdro-suite) "
        "or 'domain_ids' + 'domain_weights' (reference layout)."
    )
