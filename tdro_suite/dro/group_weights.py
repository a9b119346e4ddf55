"""Task weights α on the simplex, updated by exponentiated gradient ascent on a group measure.

One `update(g)` per optimizer step (docs/architecture.md, "tDRO"):

1. clip: g ← g · min(1, c / ‖g‖₂)                      (c = ``max_norm``; the step has a bounded length)
2. ascend: log α ← log α + η · g;  α ← softmax(log α)     (η = ``step_size``; the paper: 0.02)
3. smooth (optional): α ← (1 − ε) · α + ε / K            (ε = ``smoothing``); the smoothed α is what
   the next step starts from, as in DoReMi's code, so no task's weight can collapse below ε / K.
4. track: running mean ᾱ_t = (1/t) Σ_{s≤t} α_s and EMA  α̃_t = β · α̃_{t−1} + (1 − β) · α_t with
   α̃_0 = α_0 (β = ``ema_decay``).

The object is plain PyTorch (float64) with no model or data in it, so it is unit-testable by hand
and its `state_dict` goes into checkpoints for exact resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class GroupWeights:
    """Weights over K tasks with the tDRO update; see the module docstring for the formulas."""

    def __init__(
        self,
        num_tasks: int,
        *,
        step_size: float = 0.02,
        max_norm: float | None = 1.0,
        smoothing: float = 0.0,
        ema_decay: float = 0.9,
        initial: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        if num_tasks < 1:
            raise ValueError("GroupWeights needs at least one task")
        if step_size < 0:
            raise ValueError(f"step_size must be ≥ 0, got {step_size}")
        if max_norm is not None and max_norm <= 0:
            raise ValueError(f"max_norm must be > 0 (or None for no clipping), got {max_norm}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.num_tasks = num_tasks
        self.step_size = float(step_size)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.smoothing = float(smoothing)
        self.ema_decay = float(ema_decay)
        start = self._initial(initial)
        self.log_weights = start.log()
        self.steps = 0
        self._sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.ema = start.clone()
        self.initial = start.clone()

    def _initial(self, initial: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
        if initial is None:
            return torch.full((self.num_tasks,), 1.0 / self.num_tasks, dtype=torch.float64)
        start = torch.as_tensor(initial, dtype=torch.float64).flatten().clone()
        if start.numel() != self.num_tasks or not torch.isfinite(start).all() or (start <= 0).any():
            raise ValueError(f"initial weights must be {self.num_tasks} positive finite numbers")
        return start / start.sum()

    # ------------------------------------------------------------------ views
    @property
    def weights(self) -> torch.Tensor:
        """Current α (sums to 1)."""
        return torch.softmax(self.log_weights, dim=0)

    @property
    def mean(self) -> torch.Tensor:
        """Running mean of α over the updates so far (the initial α before any update)."""
        return self._sum / self.steps if self.steps else self.initial.clone()

    # ------------------------------------------------------------------ update
    def clip(self, measure: torch.Tensor) -> torch.Tensor:
        """g · min(1, c/‖g‖₂): a measure longer than `max_norm` is scaled down to it."""
        g = torch.as_tensor(measure, dtype=torch.float64).flatten()
        if self.max_norm is None:
            return g
        norm = torch.linalg.vector_norm(g)
        return g * (self.max_norm / norm) if norm > self.max_norm else g

    def update(self, measure: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """Apply one step of the update with group measure g [K]; return the new α."""
        g = torch.as_tensor(measure, dtype=torch.float64).flatten().cpu()
        if g.numel() != self.num_tasks:
            raise ValueError(f"measure has {g.numel()} values for {self.num_tasks} tasks")
        if not torch.isfinite(g).all():
            raise ValueError(f"group measure is not finite: {g.tolist()}")
        alpha = torch.softmax(self.log_weights + self.step_size * self.clip(g), dim=0)
        if self.smoothing:
            alpha = (1 - self.smoothing) * alpha + self.smoothing / self.num_tasks
        self.log_weights = alpha.log()
        self.steps += 1
        self._sum += alpha
        self.ema = self.ema_decay * self.ema + (1 - self.ema_decay) * alpha
        return alpha.clone()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "log_weights": self.log_weights.clone(),
            "steps": self.steps,
            "sum": self._sum.clone(),
            "ema": self.ema.clone(),
            "initial": self.initial.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("log_weights", "sum", "ema", "initial"):
            if state[key].numel() != self.num_tasks:
                raise ValueError(f"checkpoint has {state[key].numel()} task weights, this run has {self.num_tasks}")
        self.log_weights = state["log_weights"].to(torch.float64).clone()
        self.steps = int(state["steps"])
        self._sum = state["sum"].to(torch.float64).clone()
        self.ema = state["ema"].to(torch.float64).clone()
        self.initial = state["initial"].to(torch.float64).clone()
