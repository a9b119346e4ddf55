"""Group measures: per-example losses of one optimizer step → one number per task (group).

Inputs cover the whole step: every example of every micro-batch on every rank, so the result
does not depend on how the batch was split. With proxy losses ℓᵖ, reference losses ℓʳ and the
task id k(i) of each of the N examples (docs/architecture.md, "tDRO"):

- ``relative`` (tDRO, the default): rᵢ = ℓʳᵢ / Σⱼ ℓʳⱼ, floored at φ/N (φ = ``floor``, a fraction of
  the mean share 1/N, so the floor does not depend on the batch size), xᵢ = max(ℓᵖᵢ / rᵢ, 0),
  g_k = mean of xᵢ over the examples of task k. A task the reference also finds hard (noise) gets
  a ratio near 1; a task both find trivial hits the floor and gets a tiny value.
- ``loss`` (GroupDRO): g_k = mean ℓᵖᵢ over task k. Noisy tasks keep the largest loss and win.
- ``excess`` (DoReMi): g_k = mean max(ℓᵖᵢ − ℓʳᵢ, 0) over task k.

A task with no example in the step gets g_k = 0.
"""

from __future__ import annotations

import torch

from tdro_suite.dro.config import DEFAULT_RELATIVE_FLOOR

MEASURES = ("relative", "loss", "excess")


def group_mean(values: torch.Tensor, task_ids: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """Mean of `values` [N] per task id in [0, num_tasks); 0 for a task with no example."""
    ids = task_ids.long()
    sums = torch.zeros(num_tasks, dtype=torch.float64, device=values.device)
    counts = torch.zeros(num_tasks, dtype=torch.float64, device=values.device)
    sums.index_add_(0, ids, values.double())
    counts.index_add_(0, ids, torch.ones_like(values, dtype=torch.float64))
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))


def relative_values(
    proxy: torch.Tensor, reference: torch.Tensor, floor: float = DEFAULT_RELATIVE_FLOOR
) -> torch.Tensor:
    """Per-example xᵢ = max(ℓᵖᵢ / max(ℓʳᵢ / Σℓʳ, floor / N), 0)."""
    n = reference.numel()
    ref = reference.double()
    total = ref.sum()
    share = ref / total if total > 0 else torch.zeros_like(ref)
    share = share.clamp(min=floor / n)
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
    floor: float = DEFAULT_RELATIVE_FLOOR,
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
        return group_mean(relative_values(proxy, reference, floor), task_ids, num_tasks)
    return group_mean(excess_values(proxy, reference), task_ids, num_tasks)


def needs_reference(name: str) -> bool:
    """`loss` (GroupDRO) needs no reference model; the others do."""
    return name != "loss"
