"""Configs of `tdro-suite index` (build) and `tdro-suite search`."""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator

from tdro_suite.config import CommandConfig


class SearchKnobsConfig(CommandConfig):
    """A command that builds an index: the FAISS search knobs it may set (saved in the index manifest)."""

    nprobe: PositiveInt | None = None  # IVF cells visited per query
    ef_search: PositiveInt | None = None  # HNSW candidate list size

    def search_params(self) -> dict[str, int]:
        """FAISS search knobs in ParameterSpace names; only those given."""
        return {k: v for k, v in (("nprobe", self.nprobe), ("efSearch", self.ef_search)) if v is not None}


class IndexConfig(SearchKnobsConfig):
    """Encode a corpus (BEIR/MIRACL corpus jsonl[.gz] files) and write a FAISS index folder."""

    model: str = "minilm"
    corpus: list[str]
    output: str
    index_type: str = "flat"
    batch_size: PositiveInt = 32
    shard_size: PositiveInt = 8192
    max_length: PositiveInt | None = None
    device: str | None = None
    store_docs: bool = True
    keep_shards: bool = False

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class SearchConfig(CommandConfig):
    """Queries (command line or file) → ranked document ids, scores and titles from an index folder."""

    index: str
    model: str | None = None  # default: the model recorded in the index manifest
    query: list[str] = Field(default_factory=list)
    queries: str | None = None
    k: PositiveInt = 10
    instruction: str | None = None
    output: str | None = None
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    device: str | None = None
