"""A fixed toy encoder and global batch shared by the torchrun scripts and the 1-process reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tdro_suite.modeling.losses import InfoNCELoss

PER_RANK, GROUP, DIM_IN, DIM = 3, 3, 8, 4


class ToyRetriever(nn.Module):
    """Linear encoder + InfoNCE in ONE forward (the model owns the loss, as the trainer's model does)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(DIM_IN, DIM)
        self.loss = InfoNCELoss(temperature=0.1)

    def forward(self, q_in: Tensor, p_in: Tensor, keys: Tensor) -> Tensor:
        q = F.normalize(self.encoder(q_in), dim=-1)
        p = F.normalize(self.encoder(p_in), dim=-1)
        return self.loss(q, p, keys)


def make_model() -> ToyRetriever:
    torch.manual_seed(0)
    return ToyRetriever()


def make_batch(world: int) -> tuple[Tensor, Tensor, Tensor, int, int]:
    """Global batch for `world` ranks; one passage on rank 1 repeats a positive on rank 0 (must be masked)."""
    gen = torch.Generator().manual_seed(1)
    n = PER_RANK * world
    q_in = torch.randn(n, DIM_IN, generator=gen)
    p_in = torch.randn(n * GROUP, DIM_IN, generator=gen)
    keys = torch.arange(n * GROUP, dtype=torch.long)
    if world > 1:
        dup = PER_RANK * GROUP + 1  # a hard negative of rank 1's first query ...
        p_in[dup] = p_in[0]  # ... is the same text as rank 0's first positive
        keys[dup] = keys[0]
        q_in[0] = p_in[0]  # make that positive (and so its duplicate) score high, so masking matters
    return q_in, p_in, keys, PER_RANK, GROUP
