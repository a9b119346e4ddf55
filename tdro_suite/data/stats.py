"""Per-task statistics and validation of whole training sets (what `tdro-suite data stats|validate` print).

Both stream every file once, so they work on sets far larger than memory. Lengths are in characters,
which stays meaningful for languages written without spaces (Chinese, Japanese).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tdro_suite.common.errors import DataError
from tdro_suite.data.reader import InvalidReport
from tdro_suite.data.tasks import iter_task_examples
from tdro_suite.data.types import TaskInfo


@dataclass
class TaskStats:
    """Counts and mean lengths of one task, plus what `skip_invalid` dropped from it."""

    name: str
    languages: list[str]
    symmetric: bool
    domain: str
    examples: int = 0
    mean_query_chars: float = 0.0
    mean_passage_chars: float = 0.0
    negatives_per_query: float = 0.0
    min_negatives: int = 0
    positives_per_query: float = 0.0
    invalid: InvalidReport = field(default_factory=InvalidReport)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "languages": self.languages,
            "symmetric": self.symmetric,
            "domain": self.domain,
            "examples": self.examples,
            "mean_query_chars": round(self.mean_query_chars, 2),
            "mean_passage_chars": round(self.mean_passage_chars, 2),
            "positives_per_query": round(self.positives_per_query, 3),
            "negatives_per_query": round(self.negatives_per_query, 3),
            "min_negatives": self.min_negatives,
            "invalid": self.invalid.to_dict(),
        }


ProgressHook = Callable[[int], None]


def compute_task_stats(
    task: TaskInfo, *, skip_invalid: bool = False, on_example: ProgressHook | None = None
) -> TaskStats:
    """Stream one task file and summarise it; bad lines raise unless `skip_invalid`."""
    stats = TaskStats(task.name, list(task.languages), task.symmetric, task.domain)
    q_chars = p_chars = n_passages = n_pos = n_neg = 0
    min_neg: int | None = None
    for example in iter_task_examples(task, skip_invalid=skip_invalid, report=stats.invalid):
        stats.examples += 1
        q_chars += len(example.query)
        for passage in (*example.positives, *example.negatives):
            p_chars += len(passage.full_text())
            n_passages += 1
        n_pos += len(example.positives)
        n_neg += len(example.negatives)
        min_neg = len(example.negatives) if min_neg is None else min(min_neg, len(example.negatives))
        if on_example is not None:
            on_example(1)
    if stats.examples:
        stats.mean_query_chars = q_chars / stats.examples
        stats.mean_passage_chars = p_chars / max(n_passages, 1)
        stats.positives_per_query = n_pos / stats.examples
        stats.negatives_per_query = n_neg / stats.examples
        stats.min_negatives = min_neg or 0
    return stats


@dataclass
class ValidationResult:
    """Per-task stats plus problems that are not about single lines (size mismatch, empty task)."""

    stats: list[TaskStats]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def languages(self) -> list[str]:
        return sorted({lang for s in self.stats for lang in s.languages})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tasks": len(self.stats),
            "languages": self.languages,
            "examples": sum(s.examples for s in self.stats),
            "skipped": sum(s.invalid.skipped for s in self.stats),
            "problems": list(self.problems),
            "per_task": [s.to_dict() for s in self.stats],
        }


def validate_tasks(
    tasks: Sequence[TaskInfo], *, skip_invalid: bool = False, on_example: ProgressHook | None = None
) -> ValidationResult:
    """Read every task fully. A bad line raises `DataError` (file:line:field) unless `skip_invalid`;
    an empty task or a manifest `size` that disagrees with the file is collected as a problem."""
    all_stats: list[TaskStats] = []
    problems: list[str] = []
    for task in tasks:
        stats = compute_task_stats(task, skip_invalid=skip_invalid, on_example=on_example)
        all_stats.append(stats)
        if stats.examples == 0:
            problems.append(f"{task.path}: task '{task.name}' has no valid examples.")
        elif task.size and task.size != stats.invalid.lines_read:
            problems.append(
                f"{task.path}: task '{task.name}': the manifest says size {task.size}, "
                f"the file holds {stats.invalid.lines_read} examples."
            )
    return ValidationResult(all_stats, problems)


def require_valid(result: ValidationResult) -> None:
    """Raise one `DataError` listing every collected problem."""
    if not result.ok:
        raise DataError("Training data is invalid:\n  " + "\n  ".join(result.problems))
