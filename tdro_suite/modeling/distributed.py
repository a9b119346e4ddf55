"""Cross-device gathering for contrastive losses.

With data parallelism each rank embeds only its slice of the global batch. To use the other
ranks' passages as negatives, every rank gathers all embeddings; the copies from other ranks are
constants (no gradient), the local slice keeps its gradient (Tevatron's trick). Because every rank
then computes the loss over the whole global batch, multiplying the loss by the world size makes
DDP's gradient *average* equal the gradient of the 1-process loss on the concatenated batch
(see `InfoNCELoss`). Every function is the identity when torch.distributed is not initialised.

Slices may differ in size across ranks: sizes are exchanged first and rows are padded to the largest.
Callers whose slices are equal by construction (both training stages) pass `equal_sizes=True` and
skip that exchange.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_reduce_max(t: Tensor) -> Tensor:
    """The element-wise maximum of `t` over all ranks (a new tensor; `t` itself when not distributed)."""
    if not is_distributed():
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def _gather_padded(t: Tensor, equal_sizes: bool) -> list[Tensor]:
    """All ranks' `t` (same shape except dim 0), as a list indexed by rank, without gradient.

    With `equal_sizes` the caller promises every rank's dim 0 equals this one's, so the sizes are not
    exchanged: one collective instead of two, and no host read of the sizes (a device sync on GPU).
    """
    t = t.contiguous()
    if equal_sizes:
        buffers = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(buffers, t)
        return buffers
    size = torch.tensor([t.shape[0]], device=t.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    if t.shape[0] < longest:
        pad = t.new_zeros((longest - t.shape[0], *t.shape[1:]))
        t = torch.cat([t, pad], dim=0)
    buffers = [torch.empty_like(t) for _ in counts]
    dist.all_gather(buffers, t)
    return [buf[:n] for buf, n in zip(buffers, counts, strict=True)]


def all_gather_nograd(t: Tensor, *, equal_sizes: bool = False) -> Tensor:
    """Concatenate `t` from every rank along dim 0 (rank order); the result carries no gradient.

    `equal_sizes`: every rank's `t` has as many rows (equal slices of a global batch), so no size exchange.
    """
    if not is_distributed():
        return t
    with torch.no_grad():
        return torch.cat(_gather_padded(t.detach(), equal_sizes), dim=0)


def all_gather_with_grad(t: Tensor, *, equal_sizes: bool = False) -> Tensor:
    """Concatenate `t` from every rank along dim 0; the local slice is `t` itself, so it keeps its gradient."""
    if not is_distributed():
        return t
    with torch.no_grad():
        parts = _gather_padded(t.detach(), equal_sizes)
    parts[dist.get_rank()] = t
    return torch.cat(parts, dim=0)
