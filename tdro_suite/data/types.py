"""The in-memory shapes of training data and corpora, shared by every stage.

A training set ("task", a group for tDRO) is a JSON-lines file of Tevatron-style examples:
`{"query_id", "query", "positive_passages": [{"docid","title","text"}], "negative_passages": [...]}`
plus metadata kept in a manifest next to the files. A corpus document (index, evaluation, serving) is
the same `Passage`, so every stage embeds a text by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """A training positive / hard negative or a corpus document: the one type every stage embeds."""

    docid: str
    text: str
    title: str = ""

    def full_text(self) -> str:
        """What the encoder reads in training, indexing, evaluation and serving alike: "title text", or the
        text alone when there is no title, stripped (the Tevatron and BEIR / MTEB convention)."""
        return f"{self.title} {self.text}".strip()

    def to_dict(self) -> dict[str, str]:
        """The corpus record an index stores and MTEB reads (`id`, not the training format's `docid`)."""
        return {"id": self.docid, "title": self.title, "text": self.text}


@dataclass(frozen=True)
class TrainExample:
    query_id: str
    query: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...] = ()


@dataclass
class TaskInfo:
    """Metadata of one training set. `instruction` is the task description put in the query prompt (and the one
    inference uses); `instructions` lists alternatives that training may draw among per example, as the public
    tDRO code does (`sample_instructions`)."""

    name: str
    path: str
    instruction: str = ""
    languages: list[str] = field(default_factory=list)
    symmetric: bool = False
    size: int = 0
    source: str = ""
    license: str = ""
    domain: str = ""
    instructions: list[str] = field(default_factory=list)  # alternatives drawn per example (sample_instructions)
    columns: dict[str, str] = field(default_factory=dict)  # our field -> the source's column (data/sources.py)
    data_files: list[str] = field(default_factory=list)  # `data_files` of an hf: source's load_dataset
