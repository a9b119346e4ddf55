"""Config of `tdro-suite encode`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from tdro_suite.config import CommandConfig

AttnImplementation = Literal["sdpa", "flash_attention_2", "eager"]
InferenceDtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPE_HELP = (
    "Weights' dtype when encoding: auto = bfloat16 on GPUs (float16 where they lack bf16) and on CPUs with native "
    "bf16 (AVX512-BF16 or AMX), else float32 (`tdro-suite env` shows the choice and why)."
)
ATTN_HELP = (
    "Attention kernel of the backbone: sdpa (PyTorch's fused attention), flash_attention_2 (needs the "
    "flash-attn package and a CUDA GPU in bf16/fp16), eager (plain matmuls). Results differ slightly between them."
)


class EncodeConfig(CommandConfig):
    """Texts in (a file or stdin; one per line, or JSON lines with a text field) → vectors (.npy) + ids."""

    model: str = "minilm"
    input: str = Field("-", description="Text file (one text per line, or JSON lines), or '-' for stdin.")
    output: str = Field(description="Where to write the vectors (.npy).")
    ids_output: str | None = Field(None, description="Ids file; default: OUTPUT with .ids.txt.")
    input_format: Literal["auto", "lines", "jsonl"] = Field("auto", description="How the input is read.")
    text_field: str = Field("text", description="JSON field holding the text.")
    id_field: str = Field("id", description="JSON field holding the id.")
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    prompt: str | None = Field(None, description="Literal prefix put before every text.")
    prompt_name: Literal["query", "passage"] | None = Field(None, description="The model's stored prompt to use.")
    device: str | None = None
    dtype: InferenceDtype = Field("auto", description=DTYPE_HELP)
    attn_implementation: AttnImplementation = Field("sdpa", description=ATTN_HELP)
