"""`EmbeddingModel`: what indexing, evaluation, search and the MTEB adapter use of an encoder.

A structural type (like mteb 2.x's encoder protocols) rather than the concrete `Encoder`, so those
stages state exactly what they need, and a wrapper (a counting test double, an ONNX or remote
encoder) that provides it plugs in without subclassing a torch module. `isinstance(x,
EmbeddingModel)` checks that the members exist, not their signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class EmbeddingModel(Protocol):
    """Texts → L2-normalised float32 [N, D] vectors, queries and passages each with their own prompt.

    `name`, `pooling`, `max_length`, `prompts` and `dimension` are recorded in index manifests and make
    the model's fingerprint (`index.encode.encoder_fingerprint`), which keys cached corpus embeddings.
    """

    name: str
    pooling: str
    max_length: int
    prompts: dict[str, str]

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        ...

    def encode(
        self, texts: str | Sequence[str], *, batch_size: int = 32, show_progress: bool | None = None
    ) -> np.ndarray:
        """Encode texts as given, with no prompt (MTEB's tasks other than retrieval)."""
        ...

    def encode_queries(self, texts: str | Sequence[str], instruction: str | None = None, **kw: Any) -> np.ndarray:
        """Encode queries with `instruction` as the query prompt, or the model's default query prompt."""
        ...

    def encode_passages(self, texts: str | Sequence[str], **kw: Any) -> np.ndarray:
        """Encode passages with the model's passage prompt."""
        ...
