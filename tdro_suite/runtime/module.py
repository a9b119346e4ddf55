"""The module DDP / DeepSpeed wrap: queries and passages through one Encoder in ONE forward call.

One forward per backward is what the distributed wrappers expect (DDP's reducer, DeepSpeed's engine);
the stages compute their losses on the returned embeddings, outside the wrapper (fine-tuning's InfoNCE
with cross-device gathering, tDRO's per-example losses). GradCache's chunked passes call it with only
queries or only passages.
"""

from __future__ import annotations

from torch import Tensor, nn

from tdro_suite.modeling.encoder import Encoder


class EncoderModule(nn.Module):
    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, queries: dict[str, Tensor] | None = None, passages: dict[str, Tensor] | None = None
    ) -> tuple[Tensor | None, Tensor | None]:
        """Embeddings of the given inputs, `(queries [Q, D] | None, passages [P, D] | None)`.

        Every rank calls this module together (it is what DDP/DeepSpeed wrap), so the Encoder runs in
        `lockstep`: the same number of backbone calls on every rank, as ZeRO-3 needs.
        """
        if queries is None and passages is None:
            raise ValueError("give queries, passages or both")
        return (
            self.encoder(queries, lockstep=True) if queries is not None else None,
            self.encoder(passages, lockstep=True) if passages is not None else None,
        )
