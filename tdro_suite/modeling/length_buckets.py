"""Length buckets: run one padded batch as a few shorter-padded sub-batches.

A training batch mixes short and long passages; padded to its longest row it spends much of its
compute on pad tokens (on the bundled verse task 2x the real tokens for 32 passages of ≤ 96 tokens).
Sorting the rows by length and cutting them into a few contiguous buckets, each trimmed to its own
longest row, removes most of that waste. Rows do not interact in the backbone, so the embeddings
(and their gradients) are those of the single padded pass, up to float rounding.

The bucket count is the smallest of 1, 2, 4 or 8 whose padded token count is within `SAVING_SLACK`
of the best one, with buckets of at least `min_rows` rows, so nearly uniform batches (or the
length-sorted batches `Encoder.encode` builds) stay one pass.
"""

from __future__ import annotations

import torch

BUCKET_COUNTS = (1, 2, 4, 8)
SAVING_SLACK = 0.05  # a split must save more than 5% of the single pass's padded tokens to be worth it


def padded_tokens(sorted_lengths: torch.Tensor, buckets: int) -> int:
    """Token slots (real + pad) of `buckets` contiguous near-equal buckets of ascending lengths."""
    return sum(int(part.numel() * part.max()) for part in torch.tensor_split(sorted_lengths, buckets))


def plan_buckets(attention_mask: torch.Tensor, min_rows: int) -> list[torch.Tensor] | None:
    """Row indices of each bucket (shortest rows first), or None when one padded pass is best.

    The lengths come to the CPU once, so planning costs one device sync, not one per candidate split.
    """
    lengths = attention_mask.sum(dim=1).cpu()
    order = torch.argsort(lengths, stable=True)
    sorted_lengths = lengths[order]
    counts = [k for k in BUCKET_COUNTS if len(order) // k >= min_rows] or [1]  # 1 is always a candidate
    costs = {k: padded_tokens(sorted_lengths, k) for k in counts}
    best = min(costs.values())
    chosen = min(k for k, cost in costs.items() if cost <= best + SAVING_SLACK * costs[1])
    return None if chosen == 1 else list(torch.tensor_split(order, chosen))


def trim_to_rows(features: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The features of `rows`, without the columns that are padding in every one of them (left or right)."""
    keep = features["attention_mask"][rows].bool().any(dim=0)
    return {key: value[rows][:, keep] for key, value in features.items()}


def restore_order(parts: list[torch.Tensor], buckets: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-bucket outputs and put their rows back in the batch's original order."""
    order = torch.cat(buckets)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return torch.cat(parts)[inverse.to(parts[0].device)]
