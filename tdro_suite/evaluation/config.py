"""Config of `tdro-suite eval`."""

from __future__ import annotations

from pydantic import PositiveInt, field_validator

from tdro_suite.index.config import SearchKnobsConfig


class EvalConfig(SearchKnobsConfig):
    """A model on a benchmark (beir | miracl | mkqa = the bundled copies, or a folder in an official layout)."""

    bench: str
    model: str = "minilm"
    split: str | None = None  # BEIR: test, MIRACL: dev
    langs: list[str] | None = None  # MIRACL/MKQA languages or BEIR dataset names; default all
    index_type: str = "flat"
    k_values: list[PositiveInt] | None = None  # default 1,3,5,10,100 (MKQA: 1,5,20,100)
    instruction: str | None = None  # query instruction; default: the model's own query prompt
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    device: str | None = None
    output: str | None = None  # default outputs/eval/<bench>-<model>
    use_cache: bool = True
    shard_size: PositiveInt = 8192

    @field_validator("langs", "k_values", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value
