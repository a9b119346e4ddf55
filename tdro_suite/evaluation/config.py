"""Config of `tdro-suite eval`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from tdro_suite.index.config import SearchKnobsConfig
from tdro_suite.modeling.config import DTYPE_HELP, InferenceDtype


class EvalConfig(SearchKnobsConfig):
    """A model on a benchmark: public (fetched once, pinned), bundled (offline) or a folder in an official layout."""

    bench: str = Field(description="miracl | miracl-hn | mkqa | beir | beir:<name> (public, fetched once), "
                       "bundled:miracl | bundled:mkqa | bundled:beir (offline stand-ins), bundled:general "
                       "(offline, general English: the forgetting check), or a benchmark folder.")
    model: str = "minilm"
    split: str | None = Field(None, description="Qrels split; default: BEIR test, MIRACL dev.")
    langs: list[str] | None = Field(None, description="MIRACL/MKQA languages or BEIR datasets, comma-separated; "
                                    "default: all.")
    index_type: str = "flat"
    k_values: list[PositiveInt] | None = Field(None, description="Cutoffs, comma-separated; default: 1,3,5,10,100 "
                                               "(MKQA: 1,5,20,100).")
    instruction: str | None = Field(None, description="Query instruction; default: the model's own query prompt.")
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    device: str | None = None
    dtype: InferenceDtype = Field("auto", description=DTYPE_HELP)
    output: str | None = Field(None, description="Folder for results.json / results.md; default: "
                               "outputs/eval/<bench>-<model>.")
    use_cache: bool = Field(True, description="Reuse cached corpus embeddings.")
    shard_size: PositiveInt = Field(8192, description="Corpus documents per cached embedding shard.")
    embedding_dtype: Literal["auto", "float32", "float16"] = Field(
        "auto", description="Cached corpus embeddings on disk: auto = float16 for the public benchmarks (half the "
        "space: MIRACL-en 67 GB instead of 135 GB at 1024-d), float32 for bundled and local ones."
    )

    @field_validator("langs", "k_values", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value
