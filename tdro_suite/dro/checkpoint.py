"""tDRO checkpoints: everything needed to continue a run bit for bit.

A checkpoint is a folder `RUN/checkpoints/step-<N>/state.pt` written with `atomic_dir`, holding the
proxy's trainable parameters, optimizer and scheduler states, the group weights (with their running
mean and EMA), the RNG states, the step and the trajectory rows so far. Only the newest one is kept.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdro_suite.common.errors import TdroError
from tdro_suite.common.io import atomic_dir

STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(TdroError):
    """A checkpoint cannot be used to resume this run (unreadable, or made for other tasks)."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that train (all of them, or the LoRA adapters): the rest equals the base model."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return max(found)[1] if found else None


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write `checkpoints/step-<step>` atomically, then drop older checkpoints."""
    folder = run_dir / "checkpoints"
    target = folder / f"step-{step:07d}"
    with atomic_dir(target) as tmp:
        torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
    for old in folder.iterdir():
        if old != target and _STEP_DIR.match(old.name):
            shutil.rmtree(old, ignore_errors=True)
    return target


# What may change between an interrupted run and its resumption without changing the result:
# the process count and gradient accumulation (the step is invariant to both), bookkeeping options.
RESUME_MAY_CHANGE = frozenset(
    {"grad_accumulation", "device", "output_dir", "overwrite", "resume", "save_every", "save_proxy",
     "data", "reference", "train_reference", "reference_config", "weights_output", "gradient_checkpointing"}
)


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """The config values a resumed run must share with the interrupted one."""
    return {k: v for k, v in sorted(config.items()) if k not in RESUME_MAY_CHANGE}


def load_checkpoint(path: Path, task_names: list[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint made for the same tasks (in the same order) and, given `config`, the same settings."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}") from None
    if state.get("task_names") != task_names:
        raise CheckpointError(
            f"Checkpoint {path} was made for tasks {state.get('task_names')}, this run has {task_names}; "
            "use another output_dir or set resume: false with overwrite: true."
        )
    if config is not None:
        saved, current = state.get("fingerprint", {}), fingerprint(config)
        changed = [k for k in current if saved.get(k) != current[k]]
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} → {current[k]!r}" for k in changed)
            raise CheckpointError(
                f"Cannot resume from {path}: settings differ from the interrupted run ({details}). "
                "Resume with the same settings, or start over (resume: false, overwrite: true)."
            )
    return state
