"""Contrastive losses for dense retrieval, each a small module with the maths in its docstring.

Layout shared by all losses: `q` is [B, D] (one row per query), `p` is [B*G, D] with the passages
grouped per query as `[positive, hard negative 1, ..., hard negative G-1]`. Scores are dot products
of L2-normalised embeddings (cosine) divided by a temperature τ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tdro_suite.modeling.distributed import all_gather_nograd, all_gather_with_grad, world_size


def text_keys(texts: Iterable[str]) -> Tensor:
    """Stable 63-bit keys of passage texts (int64 [N]) so identical passages can be recognised across ranks."""
    keys = [int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little") >> 1 for t in texts]
    return torch.tensor(keys, dtype=torch.long)


def _group_size(q: Tensor, p: Tensor) -> int:
    if q.dim() != 2 or p.dim() != 2 or q.shape[1] != p.shape[1]:
        raise ValueError(f"expected q [B, D] and p [B*G, D], got {tuple(q.shape)} and {tuple(p.shape)}")
    if q.shape[0] == 0 or p.shape[0] % q.shape[0]:
        raise ValueError(f"p has {p.shape[0]} rows, not a positive multiple of the {q.shape[0]} queries")
    return p.shape[0] // q.shape[0]


class InfoNCELoss(nn.Module):
    """InfoNCE with hard, in-batch and cross-device negatives (the fine-tuning loss).

    For query i with positive p⁺ᵢ and candidate set C (its own hard negatives; with
    `in_batch_negatives` every passage of the local batch; with `cross_device` too, every passage
    of every rank):  ℓᵢ = −log( exp(s(qᵢ,p⁺ᵢ)/τ) / Σ_{c∈C} exp(s(qᵢ,c)/τ) ).
    Candidates whose `passage_keys` equal the positive's (the same text appearing as another query's
    positive or as a mined "negative") are masked out: they are not negatives.

    Across devices, queries and passages are gathered (the local slice keeps its gradient), every
    rank computes the mean over the GLOBAL batch, and the result is multiplied by the world size, so
    that DDP's averaged gradient equals the 1-process gradient on the concatenated batch. Divide the
    returned value by `world_size()` to log the true loss. `equal_slices`: every rank has as many
    queries (equal slices of a global batch), so the gathers skip their size exchange.

    `passage_keys` are the keys of the local passages (gathered here when the passages are), or of
    every rank's passages in rank order: a trainer that knows the global batch's texts computes
    those itself and saves the gather.
    """

    def __init__(
        self,
        temperature: float = 0.02,
        *,
        in_batch_negatives: bool = True,
        cross_device: bool = True,
        equal_slices: bool = False,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.in_batch_negatives = in_batch_negatives
        self.cross_device = cross_device
        self.equal_slices = equal_slices

    def gathers(self) -> bool:
        """Whether the loss sees every rank's queries and passages (so it wants every rank's passage keys)."""
        return self.in_batch_negatives and self.cross_device and world_size() > 1

    def forward(self, q: Tensor, p: Tensor, passage_keys: Tensor | None = None) -> Tensor:
        group = _group_size(q, p)
        gathered = self.gathers()
        local_passages = p.shape[0]
        if gathered:
            q = all_gather_with_grad(q, equal_sizes=self.equal_slices)
            p = all_gather_with_grad(p, equal_sizes=self.equal_slices)
        if passage_keys is not None and len(passage_keys) != p.shape[0]:
            if not gathered or len(passage_keys) != local_passages:
                raise ValueError(f"{len(passage_keys)} passage keys for {local_passages} local passages")
            passage_keys = all_gather_nograd(passage_keys.to(p.device), equal_sizes=self.equal_slices)
        n = q.shape[0]
        scores = (q.float() @ p.float().T) / self.temperature  # [n, n*G]
        target = torch.arange(n, device=q.device) * group
        masked = torch.zeros_like(scores, dtype=torch.bool)
        if not self.in_batch_negatives:
            columns = torch.arange(scores.shape[1], device=q.device)
            masked |= (columns // group).unsqueeze(0) != torch.arange(n, device=q.device).unsqueeze(1)
        if passage_keys is not None:
            keys = passage_keys.to(q.device)
            same = keys.unsqueeze(0) == keys[target].unsqueeze(1)
            same[torch.arange(n, device=q.device), target] = False
            masked |= same
        scores = scores.masked_fill(masked, torch.finfo(scores.dtype).min)
        loss = F.cross_entropy(scores, target)
        return loss * world_size() if gathered else loss


def hard_negative_infonce(q: Tensor, p: Tensor, temperature: float) -> Tensor:
    """Per-example InfoNCE [B] where each query sees only its OWN group [positive, hard negatives].

    ℓᵢ = −log softmax(s(qᵢ, pᵢ,·)/τ)[0]. Used by tDRO: examples of different tasks share a batch,
    so in-batch negatives from other tasks would be trivially easy; per-example losses feed the
    group measures. Purely local: no cross-device gathering.
    """
    group = _group_size(q, p)
    scores = torch.einsum("bd,bgd->bg", q.float(), p.float().view(q.shape[0], group, -1)) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(scores, target, reduction="none")
