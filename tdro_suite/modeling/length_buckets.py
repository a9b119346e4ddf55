"""Length buckets: run one padded batch as a few shorter-padded sub-batches.

A training batch mixes short and long passages; padded to its longest row it spends much of its
compute on pad tokens (on the bundled verse task 2x the real tokens for 32 passages of ≤ 96 tokens).
Sorting the rows by length and cutting them into a few contiguous buckets, each trimmed to its own
longest row, removes most of that waste. Rows do not interact in the backbone, so the embeddings
(and their gradients) are those of the single padded pass, up to float rounding.

The bucket count is the smallest of 1, 2, 4 or 8 whose padded token count is within `SAVING_SLACK`
of the best one, with buckets of at least `min_rows` rows, so nearly uniform batches (or the
length-sorted batches `Encoder.encode` builds) stay one pass.

Ranks that train in lockstep must make the same number of backbone calls: under DeepSpeed ZeRO-3
every call gathers the sharded parameters, and a rank that calls once more than another waits for
ever. `plan_buckets(..., agree=...)` lets them agree on a count (the largest, `all_reduce_max`); a
rank with fewer rows than the agreed count gets empty buckets, which `Encoder.forward` fills with
a row whose output it drops. The count is computed on the device, so agreeing costs no host sync
beyond the one `int()` of the chosen count that planning always needed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

BUCKET_COUNTS = (1, 2, 4, 8)
SAVING_SLACK = 0.05  # a split must save more than 5% of the single pass's padded tokens to be worth it


def padded_tokens(sorted_lengths: torch.Tensor, buckets: int) -> torch.Tensor:
    """Token slots (real + pad) of `buckets` contiguous near-equal buckets of ascending lengths (0-d int64).

    Each bucket's longest row is its last one, so the sum is one gather on the lengths' device.
    """
    n = len(sorted_lengths)
    sizes = [n // buckets + (1 if i < n % buckets else 0) for i in range(buckets)]
    sizes = [size for size in sizes if size]
    ends = torch.tensor(sizes, dtype=torch.long).cumsum(0) - 1
    longest = sorted_lengths[ends.to(sorted_lengths.device)].long()
    return (longest * torch.tensor(sizes, dtype=torch.long, device=sorted_lengths.device)).sum()


def bucket_count(sorted_lengths: torch.Tensor, min_rows: int) -> torch.Tensor:
    """The chosen bucket count as a 0-d int64 tensor on the lengths' device (no host sync).

    Integer costs compared in float64, which is what the comparison of Python ints and floats was.
    """
    counts = [k for k in BUCKET_COUNTS if len(sorted_lengths) // k >= min_rows] or [1]  # 1 is always a candidate
    costs = torch.stack([padded_tokens(sorted_lengths, k) for k in counts]).double()
    good_enough = costs <= costs.min() + SAVING_SLACK * costs[0]
    candidates = torch.tensor(counts, device=sorted_lengths.device)
    return torch.where(good_enough, candidates, max(counts)).min()


def plan_buckets(
    attention_mask: torch.Tensor, min_rows: int, *, agree: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> list[torch.Tensor] | None:
    """Row indices of each bucket (shortest rows first), or None when one padded pass is best.

    `agree` maps this rank's count (a 0-d tensor) to the one every rank uses (e.g. `all_reduce_max`);
    the plan then has that many buckets, some possibly empty. Reading the count is the one device sync.
    """
    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    count = bucket_count(lengths[order], min_rows)
    if agree is not None:
        count = agree(count)
    chosen = int(count)
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
