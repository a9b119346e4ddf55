"""The in-memory shapes of training data, shared by every stage.

A training set ("task", a group for tDRO) is a JSON-lines file of Tevatron-style examples:
`{"query_id", "query", "positive_passages": [{"docid","title","text"}], "negative_passages": [...]}`
plus metadata kept in a manifest next to the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    docid: str
    text: str
    title: str = ""

    def full_text(self) -> str:
        """What the encoder sees: "title text" when there is a title (Tevatron's convention)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class TrainExample:
    query_id: str
    query: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...] = ()


@dataclass
class TaskInfo:
    """Metadata of one training set. `instruction` is the task description put in the query prompt."""

    name: str
    path: str
    instruction: str = ""
    languages: list[str] = field(default_factory=list)
    symmetric: bool = False
    size: int = 0
    source: str = ""
    license: str = ""
    domain: str = ""
