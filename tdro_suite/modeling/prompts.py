"""Instruction prompts (the E5-Mistral / RepLLaMA style the paper uses).

A query becomes "Instruct: {task}\nQuery: {query}"; passages get no prompt. Symmetric tasks
(paraphrase, parallel text) put the instruction on both sides so both are embedded alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def query_prompt(instruction: str | None) -> str:
    """The prefix placed before a query; empty when there is no instruction."""
    return f"Instruct: {instruction}\nQuery: " if instruction else ""


def passage_prompt(instruction: str | None, symmetric: bool) -> str:
    """Passages get the query prompt only for symmetric tasks."""
    return query_prompt(instruction) if symmetric else ""


@dataclass(frozen=True)
class TaskPrompts:
    """The prompts one task's training texts get: always its instruction, or with `sample` one of its
    alternatives drawn per example, the query's and (symmetric tasks) the passages' apart, as the public tDRO
    code draws them (`get_prompt` once for the query, once for the passages)."""

    instructions: tuple[str, ...]  # the task's instruction first, then its alternatives; empty: no prompt
    symmetric: bool
    sample: bool = False

    @classmethod
    def of(cls, instruction: str, alternatives: Sequence[str], symmetric: bool, *, use_instructions: bool,
           sample: bool) -> TaskPrompts:
        if not use_instructions or not instruction:
            return cls((), symmetric)
        rest = tuple(i for i in dict.fromkeys(alternatives) if i and i != instruction)
        return cls((instruction, *rest), symmetric, sample and bool(rest))

    def fixed(self) -> tuple[str, str]:
        """(query prefix, passage prefix) with the task's own instruction."""
        first = self.instructions[0] if self.instructions else ""
        return query_prompt(first), passage_prompt(first, self.symmetric)

    def draw(self, rng: np.random.Generator) -> tuple[str, str]:
        """One example's (query prefix, passage prefix); takes nothing from `rng` unless sampling."""
        if not self.sample:
            return self.fixed()
        n = len(self.instructions)
        query = self.instructions[int(rng.integers(n))]
        passage = self.instructions[int(rng.integers(n))] if self.symmetric else ""
        return query_prompt(query), passage_prompt(passage, self.symmetric)


def prompt_rng(seed: int, step: int) -> np.random.Generator:
    """The instruction draws of one step: their own stream, so sampling them leaves the examples drawn as
    they were."""
    import numpy as np

    return np.random.default_rng([seed, 5, step])


INSTRUCTIONS_FILE = "tdro_instructions.json"
QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: "


@dataclass(frozen=True)
class InstructionFormat:
    """How a model was trained to read instructions, saved in its folder (`tdro_instructions.json`) so that
    `eval` and `serve` prompt it the same way without `--instruction`.

    `query_template` formats the query prefix; `passages` is "none" (passages unprompted, asymmetric
    retrieval) or "symmetric" (symmetric tasks put the query prompt on passages too); `default_instruction`
    is used where a benchmark or request names none. A model without this file (MiniLM) uses no
    instruction unless one is passed explicitly.
    """

    query_template: str = QUERY_TEMPLATE
    passages: str = "symmetric"
    default_instruction: str | None = None

    def query_prompt(self, instruction: str | None) -> str:
        return self.query_template.format(instruction=instruction) if instruction else ""

    def save(self, folder: Path) -> None:
        (folder / INSTRUCTIONS_FILE).write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, folder: Path) -> InstructionFormat | None:
        """The folder's format, or None for a model trained without instructions."""
        path = folder / INSTRUCTIONS_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})
