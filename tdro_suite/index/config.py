"""Configs of `tdro-suite index` (build) and `tdro-suite search`."""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator

from tdro_suite.config import CommandConfig
from tdro_suite.modeling.config import ATTN_HELP, DTYPE_HELP, AttnImplementation, InferenceDtype


class SearchKnobsConfig(CommandConfig):
    """A command that builds an index: the FAISS search knobs it may set (saved in the index manifest)."""

    nprobe: PositiveInt | None = Field(None, description="IVF cells visited per query; default: max(8, nlist/32).")
    ef_search: PositiveInt | None = Field(None, description="HNSW search breadth (candidate list size); default: 128.")

    def search_params(self) -> dict[str, int]:
        """FAISS search knobs in ParameterSpace names; only those given."""
        return {k: v for k, v in (("nprobe", self.nprobe), ("efSearch", self.ef_search)) if v is not None}


class IndexConfig(SearchKnobsConfig):
    """Encode a corpus (BEIR/MIRACL corpus jsonl[.gz] files) and write a FAISS index folder."""

    model: str = "minilm"
    corpus: list[str] = Field(description="Corpus file(s): jsonl[.gz] with _id/docid, title, text; repeatable.")
    output: str = Field(description="Index folder to write.")
    index_type: str = "flat"
    batch_size: PositiveInt = 32
    shard_size: PositiveInt = Field(8192, description="Documents per resumable shard.")
    max_length: PositiveInt | None = None
    device: str | None = Field(None, description="torch device (cpu, cuda, cuda:1, ...); default: auto, "
                               "cuda:LOCAL_RANK under torchrun.")
    dtype: InferenceDtype = Field("auto", description=DTYPE_HELP)
    attn_implementation: AttnImplementation = Field("sdpa", description=ATTN_HELP)
    store_docs: bool = Field(True, description="Keep titles and texts in the index (search shows them).")
    keep_shards: bool = Field(False, description="Keep the encoded shards after the build.")

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class SearchConfig(CommandConfig):
    """Queries (command line or file) → ranked document ids, scores and titles from an index folder."""

    index: str = Field(description="Index folder written by `tdro-suite index`.")
    model: str | None = Field(None, description="Query model; default: the one recorded in the index.")
    query: list[str] = Field(default_factory=list, description="A query; repeatable.")
    queries: str | None = Field(None, description="Queries file: .tsv (qid, query), .jsonl or .txt.")
    k: PositiveInt = Field(10, description="Results per query.")
    instruction: str | None = Field(None, description="Task instruction for the query prompt.")
    output: str | None = Field(None, description="Write JSON lines here instead of a table.")
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    device: str | None = None
    dtype: InferenceDtype = Field("auto", description=DTYPE_HELP)
