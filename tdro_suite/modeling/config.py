"""Config of `tdro-suite encode`."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from tdro_suite.config import CommandConfig


class EncodeConfig(CommandConfig):
    """Texts in (a file or stdin; one per line, or JSON lines with a text field) → vectors (.npy) + ids."""

    model: str = "minilm"
    input: str = "-"
    output: str
    ids_output: str | None = None
    input_format: Literal["auto", "lines", "jsonl"] = "auto"
    text_field: str = "text"
    id_field: str = "id"
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    prompt: str | None = None
    prompt_name: Literal["query", "passage"] | None = None
    device: str | None = None
