"""The module that DDP / DeepSpeed wrap: an Encoder plus its loss (Tevatron's EncoderModel split).

Queries and passages are embedded and scored inside ONE forward call, so the distributed wrapper
sees one forward per backward. Called with only queries or only passages it returns embeddings
(what GradCache's chunked passes need).
"""

from __future__ import annotations

from torch import Tensor, nn

from tdro_suite.modeling.encoder import Encoder
from tdro_suite.modeling.losses import InfoNCELoss


class RetrieverTrainingModel(nn.Module):
    def __init__(self, encoder: Encoder, loss: InfoNCELoss) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss

    def forward(
        self,
        queries: dict[str, Tensor] | None = None,
        passages: dict[str, Tensor] | None = None,
        passage_keys: Tensor | None = None,
    ) -> Tensor:
        """Both inputs → the (distributed-scaled) loss; one input → its embeddings [N, D]."""
        if queries is not None and passages is not None:
            return self.loss(self.encoder(queries), self.encoder(passages), passage_keys)
        if queries is not None:
            return self.encoder(queries)
        if passages is not None:
            return self.encoder(passages)
        raise ValueError("give queries, passages or both")
