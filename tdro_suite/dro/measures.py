"""Group measures: per-example losses of one optimizer step → one number per task (group).

Inputs cover the whole step: every example of every micro-batch on every rank, so the result
does not depend on how the batch was split. With proxy losses ℓᵖ, reference losses ℓʳ and the
task id k(i) of each of the N examples (docs/architecture.md, "tDRO"):

- ``relative`` (tDRO, the default): the share rᵢ = ℓʳᵢ / Σⱼ |ℓʳⱼ| (the L1 normalisation of ℓʳ; a sum
  below 1e-12 counts as 1e-12), xᵢ = max(ℓᵖᵢ / r̃ᵢ, 0), g_k = mean of xᵢ over the examples of task k.
  A task the reference also finds hard (noise) gets a ratio near 1. A tiny share r̃ᵢ is handled by
  one of two rules (``SmallShare``, config ``relative_small_share``):

  - ``reference`` (default; the public tDRO code, ``compute_group_dro_loss`` in
    src/tdro/dro/modeling_group_dro_v2.py): r̃ᵢ = 1 where rᵢ < ``threshold`` (1e-4), else rᵢ. Such an
    example adds its raw proxy loss ℓᵖᵢ, tiny next to the others' ℓᵖ·Σℓʳ/ℓʳ, so a task both models
    find trivial gets a tiny value.
  - ``floor``: r̃ᵢ = max(rᵢ, φ/N) (φ = ``floor``, a fraction of the mean share 1/N, so the floor does
    not depend on the batch size). Such an example gets the LARGEST value, ℓᵖᵢ·N/φ: a task only the
    reference has solved keeps a high weight until the proxy solves it too.

- ``loss`` (GroupDRO): g_k = mean ℓᵖᵢ over task k. Noisy tasks keep the largest loss and win.
- ``excess`` (DoReMi): g_k = mean max(ℓᵖᵢ − ℓʳᵢ, 0) over task k.

A task with no example in the step gets g_k = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tdro_suite.dro.config import (
    DEFAULT_RELATIVE_FLOOR,
    DEFAULT_RELATIVE_THRESHOLD,
    DEFAULT_SMALL_SHARE,
    SmallShareRule,
)

MEASURES = ("relative", "loss", "excess")
_NORM_EPS = 1e-12  # torch.nn.functional.normalize's eps, which the public code's L1 normalisation uses


@dataclass(frozen=True)
class SmallShare:
    """How ``relative`` treats an example's tiny share of the reference loss (module docstring)."""

    rule: SmallShareRule = DEFAULT_SMALL_SHARE
    threshold: float = DEFAULT_RELATIVE_THRESHOLD  # rule "reference": a share below it becomes 1
    floor: float = DEFAULT_RELATIVE_FLOOR  # rule "floor": shares are floored at floor / N

    def __post_init__(self) -> None:
        if self.rule not in ("reference", "floor"):
            raise ValueError(f"unknown small-share rule {self.rule!r}; choose 'reference' or 'floor'")


def group_mean(values: torch.Tensor, task_ids: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """Mean of `values` [N] per task id in [0, num_tasks); 0 for a task with no example."""
    ids = task_ids.long()
    sums = torch.zeros(num_tasks, dtype=torch.float64, device=values.device)
    counts = torch.zeros(num_tasks, dtype=torch.float64, device=values.device)
    sums.index_add_(0, ids, values.double())
    counts.index_add_(0, ids, torch.ones_like(values, dtype=torch.float64))
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))


def relative_values(proxy: torch.Tensor, reference: torch.Tensor, small: SmallShare = SmallShare()) -> torch.Tensor:
    """Per-example xᵢ = max(ℓᵖᵢ / r̃ᵢ, 0), r̃ᵢ the share ℓʳᵢ / Σ|ℓʳ| after the small-share rule."""
    ref = reference.double()
    share = ref / ref.abs().sum().clamp(min=_NORM_EPS)
    if small.rule == "reference":
        share = torch.where(share < small.threshold, torch.ones_like(share), share)
    else:
        share = share.clamp(min=small.floor / ref.numel())
    return (proxy.double() / share).clamp(min=0)


def excess_values(proxy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-example max(ℓᵖᵢ − ℓʳᵢ, 0)."""
    return (proxy.double() - reference.double()).clamp(min=0)


def group_measure(
    name: str,
    proxy: torch.Tensor,
    reference: torch.Tensor | None,
    task_ids: torch.Tensor,
    num_tasks: int,
    *,
    small_share: SmallShare = SmallShare(),
) -> torch.Tensor:
    """The measure `name` per task, float64 [num_tasks]; all inputs are detached [N] tensors."""
    if name not in MEASURES:
        raise ValueError(f"unknown group measure {name!r}; choose one of {MEASURES}")
    if proxy.numel() == 0:
        return torch.zeros(num_tasks, dtype=torch.float64, device=proxy.device)
    if name == "loss":
        return group_mean(proxy.double(), task_ids, num_tasks)
    if reference is None:
        raise ValueError(f"the {name!r} measure needs reference losses")
    if name == "relative":
        return group_mean(relative_values(proxy, reference, small_share), task_ids, num_tasks)
    return group_mean(excess_values(proxy, reference), task_ids, num_tasks)


def needs_reference(name: str) -> bool:
    """`loss` (GroupDRO) needs no reference model; the others do."""
    return name != "loss"
