"""The part of a training run both stages share: optimizer, schedule, the step loop and its bookkeeping.

A stage builds its model and data, opens a `TrainingSession`, and hands `run` a step function that
does the forward and backward passes of one optimizer step (all its micro-batches) and returns a
`StepResult`. The session then clips gradients, steps the optimizer and the schedule, writes the
metrics line, moves the progress bar and saves checkpoints; `start` is where a resumed run continues.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tdro_suite.runtime.config import TrainingConfig
from tdro_suite.runtime.metrics import MetricsLogger
from tdro_suite.runtime.optim import build_optimizer, build_scheduler
from tdro_suite.runtime.run_dir import RunDir

METRICS_FILE = "metrics.jsonl"


@dataclass
class StepResult:
    """What one optimizer step reports: its loss (equal on every rank), metrics fields and a progress note."""

    loss: float
    samples: int
    record: dict[str, Any] = field(default_factory=dict)
    status: str = ""


class TrainingSession:
    """An accelerate-prepared model and optimizer with their schedule, in a run folder.

    `model` is what the step function calls (DDP/DeepSpeed-wrapped after `prepare`); `stateful` are
    extra objects with `state_dict`/`load_state_dict` that checkpoints carry (a sampler, group weights).
    Construction restores the latest checkpoint when `cfg.resume` is set (after checking `fingerprint`).
    """

    def __init__(
        self,
        cfg: TrainingConfig,
        accelerator: Any,
        model: torch.nn.Module,
        *,
        run_dir: RunDir,
        fingerprint: dict[str, Any],
        stateful: Sequence[Any] = (),
        console: Console,
        label: str,
    ) -> None:
        self.cfg = cfg
        self.accelerator = accelerator
        self.run_dir = run_dir
        self.fingerprint = fingerprint
        self.console = console
        self.label = label
        optimizer = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
        self.scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        accelerator.register_for_checkpointing(self.scheduler, *stateful)
        self.start = run_dir.resume(fingerprint) if cfg.resume else 0
        if self.start and accelerator.is_main_process:
            console.print(f"Resumed {run_dir.path} from step {self.start}.", highlight=False)
        elif cfg.resume and accelerator.is_main_process:
            console.print(f"No checkpoint in {run_dir.path}: starting from step 0.", highlight=False)

    @property
    def stop(self) -> int:
        """The last step this invocation runs: `stop_after_steps` (time-sliced jobs) or `max_steps`."""
        return self.cfg.stop_after_steps or self.cfg.max_steps

    @property
    def metrics_path(self) -> Path:
        return self.run_dir.path / METRICS_FILE

    def run(self, step_fn: Callable[[int], StepResult]) -> int:
        """Run steps `start` … `stop` − 1; returns the number of steps done."""
        cfg, accelerator = self.cfg, self.accelerator
        main = accelerator.is_main_process
        logger = MetricsLogger(self.metrics_path, resume_step=self.start or None) if main else None
        started = time.perf_counter()
        done = self.start
        with _progress(self.label, main and cfg.progress, cfg.max_steps, self.start, self.console) as bar:
            for step in range(self.start, self.stop):
                tic = time.perf_counter()
                lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                # accelerate counts micro-batches (`accumulate`) to decide when gradients sync and the optimizer
                # steps; count within this step only, so a resume with another grad_accumulation (whose restored
                # counter would be off) or an earlier run in this process cannot shift the boundary.
                accelerator.step = 0
                result = step_fn(step)
                if not accelerator.sync_gradients:
                    raise RuntimeError("the step function must run its last micro-batch in accelerator.accumulate")
                grad_norm = self._optimizer_step()
                done = step + 1
                speed = result.samples / (time.perf_counter() - tic)
                if logger is not None and (done % cfg.log_steps == 0 or done == self.stop):
                    logger.log({
                        "step": done,
                        **result.record,
                        "loss": result.loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "samples_per_s": speed,
                        "elapsed_s": time.perf_counter() - started,
                    })
                bar(done, f"loss {result.loss:.4f}  lr {lr:.2e}  {speed:.1f} samples/s  {result.status}")
                if (cfg.save_steps and done % cfg.save_steps == 0) or done == cfg.stop_after_steps:
                    self.save(done)
        if logger is not None:
            logger.close()
        return done

    def save(self, step: int) -> Path:
        """A checkpoint after `step` (every process must call it)."""
        return self.run_dir.save(step, self.fingerprint, keep=self.cfg.keep_checkpoints)

    @property
    def finished(self) -> bool:
        """False when `stop_after_steps` ended this invocation before `max_steps`."""
        return self.stop >= self.cfg.max_steps

    def _optimizer_step(self) -> float | None:
        """Clip, step the optimizer and the schedule, clear gradients; the gradient norm before clipping."""
        grad_norm = None
        if self.cfg.max_grad_norm is not None:
            norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            grad_norm = float(norm) if norm is not None else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm


@contextlib.contextmanager
def _progress(
    label: str, enabled: bool, total: int, done: int, console: Console
) -> Iterator[Callable[[int, str], None]]:
    """A rich bar with rate and ETA; yields `update(completed, text)` (a no-op when disabled)."""
    if not enabled:
        yield lambda completed, text: None
        return
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task(label, total=total, completed=done, info="")
        yield lambda completed, text: progress.update(task, completed=completed, info=text)
