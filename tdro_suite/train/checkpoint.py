"""Training checkpoints through accelerate, written atomically so a crash never leaves half of one.

`accelerator.save_state` stores the model, optimizer, registered objects (scheduler, batch sampler)
and every process's RNG states (python, numpy, torch, CUDA); with DeepSpeed it writes ZeRO shards.
All ranks write into ONE temporary sibling folder (`.step-000050.tmp`), then the main process
renames it to `step-000050` (a single atomic `os.replace`). Only complete checkpoints are ever
named `step-*`, so `latest_checkpoint` never picks a broken one. Needs a file system shared by
the processes (one machine, or a shared disk across nodes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tdro_suite.common.errors import TdroError
from tdro_suite.common.io import atomic_write_json

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(TdroError):
    """A checkpoint to resume from is missing or does not match this run."""


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `output_dir`, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def save_checkpoint(accelerator: Any, output_dir: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Save everything needed to continue after `step` (call on EVERY process); returns the folder."""
    final = checkpoint_dir(output_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore model, optimizer, registered objects and RNG states from `path`; returns its trainer state."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {STATE_FILE}).")
    accelerator.load_state(str(path))
    return json.loads(state_file.read_text(encoding="utf-8"))
