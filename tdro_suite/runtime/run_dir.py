"""A training run's folder: atomic checkpoints, one naming scheme, and one resume policy for every stage.

`RUN/checkpoints/step-000050/` holds what `accelerator.save_state` writes (model, optimizer, the
registered objects such as the schedule and the stage's own state, and EVERY process's RNG states;
ZeRO shards under DeepSpeed) plus `trainer_state.json` (the step and the run's fingerprint). All
ranks write into one temporary sibling (`.step-000050.tmp`) which the main process renames in one
`os.replace`, so only complete checkpoints are ever named `step-*`. Needs a file system the processes
share (one machine, or a shared disk across nodes).

Resume policy: the fingerprint is every setting that changes the result (`result_settings`) plus what
the stage derives from its inputs (the tasks' names, sizes and files, the global batch, the reference
model's identity). A resumed run whose fingerprint differs is refused, naming each changed setting;
weights load strictly (a missing or unexpected parameter is an error).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tdro_suite.common.errors import ConfigError, TdroError
from tdro_suite.common.io import atomic_write_json

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(TdroError):
    """A checkpoint to resume from is missing, unreadable, or made by a run with other settings."""


class RunDir:
    """The run folder of one stage, seen by every process (`accelerator` says which one is the main one)."""

    def __init__(self, path: str | Path, accelerator: Any) -> None:
        self.path = Path(path)
        self.accelerator = accelerator

    # --- finding checkpoints
    def checkpoint_path(self, step: int) -> Path:
        return self.path / CHECKPOINTS / f"step-{step:06d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        root = self.path / CHECKPOINTS
        if not root.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file()
        ]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    # --- starting
    def holds_run(self, outputs: Iterable[str] = ()) -> bool:
        """Whether the folder holds a run: checkpoints, or one of the stage's `outputs` (e.g. weights.json)."""
        return bool(self.checkpoints()) or any((self.path / name).exists() for name in outputs)

    def refusal(self, *, resume: bool, overwrite: bool, outputs: Iterable[str] = ()) -> str | None:
        """Why `prepare` would refuse to start here (None: it would not); a dry run reports the same."""
        if resume or overwrite or not self.holds_run(outputs):
            return None
        return (
            f"{self.path} already holds a run: pass --resume (resume: true) to continue it, --overwrite "
            "(overwrite: true) to start over, or choose another --output-dir."
        )

    def prepare(self, *, resume: bool, overwrite: bool, outputs: Iterable[str] = ()) -> None:
        """Refuse to mix runs: a folder holding a run (checkpoints, or one of `outputs`) is resumed,
        started over (`overwrite` deletes its checkpoints), or an error."""
        refusal = self.refusal(resume=resume, overwrite=overwrite, outputs=outputs)
        if refusal:
            raise ConfigError(refusal)
        if resume or not self.holds_run(outputs):
            return
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def resume(self, fingerprint: dict[str, Any]) -> int:
        """Restore the latest checkpoint (after checking its fingerprint); the step to continue from, 0 if none."""
        path = self.latest()
        if path is None:
            return 0
        state = self.read_state(path)
        check_fingerprint(state.get("fingerprint", {}), fingerprint, path)
        try:
            self.accelerator.load_state(str(path), strict=True)
        except (RuntimeError, KeyError, OSError) as exc:  # strict: a missing or unexpected tensor is an error
            raise CheckpointError(f"Cannot restore checkpoint {path}: {exc}") from None
        return int(state["step"])

    # --- saving
    def save(self, step: int, fingerprint: dict[str, Any], *, keep: int) -> Path:
        """Save everything needed to continue after `step` (call on EVERY process); keeps the newest `keep`."""
        accelerator = self.accelerator
        final = self.checkpoint_path(step)
        tmp = final.with_name(f".{final.name}.tmp")
        if accelerator.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic_write_json(tmp / STATE_FILE, {"step": step, "fingerprint": fingerprint})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    @staticmethod
    def read_state(path: Path) -> dict[str, Any]:
        try:
            return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"Cannot read checkpoint {path}: {exc}") from None


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse a resume whose result-changing settings differ, naming every one that does."""
    changed = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if changed:
        details = "; ".join(f"'{key}' was {saved.get(key)!r}, now {current.get(key)!r}" for key in changed)
        raise CheckpointError(
            f"Cannot resume from {path}: settings that change the result differ from the interrupted run "
            f"({details}). Resume with the same settings, or start over with --overwrite (or another --output-dir)."
        )


def task_identity(tasks: Sequence[Any]) -> list[list[Any]]:
    """Each task's name, example count and file size in bytes: a resume on other data is refused."""
    return [[t.name, t.size, _file_size(t.path)] for t in tasks]


def model_identity(model: str) -> str:
    """A model's name plus, for a local folder, a hash of its config and of the head of each weights file."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file() and (file.name.endswith((".json", ".safetensors", ".bin"))):
            digest.update(str(file.relative_to(folder)).encode())
            digest.update(str(file.stat().st_size).encode())
            with file.open("rb") as fh:
                digest.update(fh.read(1 << 20))
    return f"{model}#{digest.hexdigest()[:16]}"


def _file_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None
