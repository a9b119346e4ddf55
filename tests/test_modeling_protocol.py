"""`EmbeddingModel` is what index, evaluation and search accept: the Encoder satisfies it, other objects do not."""

from __future__ import annotations

import numpy as np

from tdro_suite.modeling import Encoder
from tdro_suite.modeling.protocol import EmbeddingModel


class EncodeOnly:
    """Has `encode` (like a bare sentence-transformers model) but no query / passage prompts or metadata."""

    name = "encode-only"

    def encode(self, texts: list[str], **kw: object) -> np.ndarray:
        return np.zeros((len(texts), 2), dtype=np.float32)


def test_encoder_is_an_embedding_model_and_other_objects_are_not(tiny_encoder_dir) -> None:
    encoder = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    assert isinstance(encoder, EmbeddingModel)
    assert not isinstance(EncodeOnly(), EmbeddingModel)
    assert not isinstance(object(), EmbeddingModel)
