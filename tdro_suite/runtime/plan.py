"""A dry run's plan: what a training stage would do, checked without loading weights or joining processes.

`finetune --dry-run` and `optimize --dry-run` each build a `Plan` (`train.finetune.plan_finetune`,
`dro.optimize.plan_optimize`) from the parts here, which know nothing of either stage: the launch
layout a launcher leaves in the environment (torchrun's WORLD_SIZE, `accelerate launch`'s DeepSpeed
variables; no process group is joined), the precision the run would use on this machine, where a
model would come from (no download), the tasks and their sizes (lines counted, not parsed), the
optimisation schedule and the run folder's state (including whether a resume would be refused).

A `problem` makes the run fail on any machine (missing data, an unknown model, a refused layout):
the dry run exits non-zero. A `warning` concerns this machine only (no CUDA GPU for bf16, a model to
download while HF_HUB_OFFLINE is set): a dry run on a login node is still a valid check of a plan
meant for the GPU nodes, so warnings keep the exit status 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.data.tasks import count_task_examples, training_tasks
from tdro_suite.data.types import TaskInfo
from tdro_suite.modeling.resolve import locate_model
from tdro_suite.runtime.config import ModelConfig, OptimConfig, RunConfig, TrainingConfig
from tdro_suite.runtime.precision import use_bf16
from tdro_suite.runtime.run_dir import CheckpointError, RunDir, check_fingerprint


@dataclass
class Plan:
    """Rows of "what would happen", tables, warnings (this machine) and problems (any machine)."""

    stage: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    quiet: bool = False  # under a launcher only rank 0 prints

    def add(self, key: str, value: str) -> None:
        self.rows.append((key, value))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, console: Console) -> None:
        """Print the plan; the last line says whether the run would start."""
        if self.quiet:
            return
        console.print(f"[bold]Dry run of `{self.stage}`[/bold]: nothing is trained and no weights are loaded.")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for key, value in self.rows:
            grid.add_row(key, value)
        console.print(grid)
        for table in self.tables:
            console.print(table)
        for message in self.warnings:
            console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)
        for message in self.problems:
            console.print(f"[bold red]problem:[/bold red] {message}", highlight=False, soft_wrap=True)
        if self.ok:
            console.print(f"The plan is valid: `{self.stage}` without --dry-run would start.")
        else:
            console.print(f"{len(self.problems)} problem(s): `{self.stage}` would stop; fix them first.")


@dataclass(frozen=True)
class Layout:
    """How many processes the launcher started and how they meet, read from the environment alone."""

    processes: int
    rank: int
    cuda: bool
    deepspeed: bool = False
    zero_stage: int | None = None
    fsdp: bool = False
    local_processes: int | None = None
    launched: bool = False  # WORLD_SIZE is set: torchrun or accelerate launch started this process

    def describe(self) -> str:
        if self.deepspeed:
            kind = f"DeepSpeed ZeRO-{self.zero_stage}" if self.zero_stage is not None else "DeepSpeed"
        elif self.fsdp:
            kind = "FSDP"
        elif self.processes > 1:
            kind = "DDP over NCCL" if self.cuda else "DDP over gloo (CPU)"
        else:
            return "one process" + ("" if self.launched else " (WORLD_SIZE is unset: no launcher)")
        nodes = ""
        if self.local_processes and self.processes > self.local_processes:
            nodes = f" = {self.processes // self.local_processes} machines × {self.local_processes}"
        return f"{kind}, {self.count()}{nodes}"

    def count(self) -> str:
        """"1 process" / "8 processes"."""
        return f"{self.processes} process" + ("es" if self.processes != 1 else "")


def _zero_stage(env: Mapping[str, str]) -> int | None:
    """The ZeRO stage `accelerate launch` passes, or the one in the DeepSpeed JSON it names."""
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage and stage.isdigit():
        return int(stage)
    config_file = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if config_file:
        try:
            return int(json.loads(Path(config_file).read_text(encoding="utf-8"))["zero_optimization"]["stage"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def _env_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number (torchrun and accelerate launch set it).") from None


def launch_layout(env: Mapping[str, str] | None = None, *, cuda: bool | None = None) -> Layout:
    """The layout the launcher set up (WORLD_SIZE, RANK, accelerate's DeepSpeed/FSDP variables), without
    initialising a process group; `cuda` defaults to whether this machine has a CUDA GPU."""
    env = os.environ if env is None else env
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    deepspeed = env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    return Layout(
        processes=_env_int(env, "WORLD_SIZE", 1) or 1,
        rank=_env_int(env, "RANK", 0) or 0,
        cuda=cuda,
        deepspeed=deepspeed,
        zero_stage=_zero_stage(env) if deepspeed else None,
        fsdp=env.get("ACCELERATE_USE_FSDP", "").lower() == "true",
        local_processes=_env_int(env, "LOCAL_WORLD_SIZE", None),
        launched=bool(env.get("WORLD_SIZE")),
    )


def begin_plan(stage: str, cfg: ModelConfig, layout: Layout, *, model_label: str = "model") -> Plan:
    """A stage's plan, opened with the model it trains (printed by rank 0 only)."""
    plan = Plan(stage, quiet=layout.rank != 0)
    plan_model(plan, model_label, cfg.model)
    plan_weights(plan, cfg)
    return plan


def finish_plan(
    plan: Plan, cfg: TrainingConfig, layout: Layout, *, outputs: Iterable[str] = (), fingerprint: dict[str, Any] | None
) -> Plan:
    """Close a stage's plan with what both stages share: schedule, precision, and the run folder's state."""
    plan_schedule(plan, cfg)
    plan_precision(plan, cfg.precision, layout.cuda)
    plan_run_folder(plan, cfg, outputs=outputs, fingerprint=fingerprint)
    return plan


def plan_layout(plan: Plan, layout: Layout) -> None:
    plan.add("processes", layout.describe())
    if layout.fsdp:
        plan.warn("FSDP is not one of the layouts tdro-suite is tested with (DDP, DeepSpeed ZeRO-1/2/3).")


def plan_precision(plan: Plan, precision: str, cuda: bool) -> None:
    """The precision `runtime.precision.use_bf16` would pick here; bf16 without a CUDA GPU is a warning."""
    device = "cuda" if cuda else "cpu"
    try:
        bf16 = use_bf16(precision, device)
    except ConfigError:
        plan.add("precision", "bf16 autocast (needs a CUDA GPU)")
        plan.warn(
            "precision 'bf16' needs a CUDA GPU and this machine has none: the run must start where one is "
            "(or pass --precision auto to train in fp32 here)."
        )
        return
    how = "bf16 autocast, fp32 master weights" if bf16 else "fp32"
    plan.add("precision", how + (" (auto: bf16 on CUDA only)" if precision == "auto" else ""))


def plan_model(plan: Plan, label: str, name: str, *, hint: str = "") -> None:
    """Where the model `name` would come from; an unusable one is a problem (`hint` says how to make it)."""
    found = locate_model(name)
    plan.add(label, f"{name}: {found.where}" + (f"; {found.note}" if found.note else ""))
    if found.problem:
        plan.fail(f"{label}: {found.problem}" + (f" {hint}" if hint else ""))
    if found.warning:
        plan.warn(f"{label} {name}: {found.warning}")


def plan_weights(plan: Plan, cfg: ModelConfig) -> None:
    """What trains: all weights or LoRA adapters, whether activations are recomputed, the attention kernel."""
    what = f"LoRA adapters (r={cfg.lora_rank}, alpha={cfg.lora_alpha})" if cfg.lora else "all weights"
    extra = ", gradient checkpointing" if cfg.gradient_checkpointing else ""
    pooling = cfg.pooling or "from the model"
    plan.add("trains", f"{what}{extra}; pooling {pooling}; attention {cfg.attn_implementation}")
    if cfg.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        plan.warn(
            "attn_implementation 'flash_attention_2' needs the flash-attn package and a CUDA GPU, and this machine "
            "has no flash-attn (pip install flash-attn where the run starts, or pass --attn-implementation sdpa)."
        )


@dataclass(frozen=True)
class SizedTask:
    """A task and its example count (lines counted, capped by max_examples_per_task; None: streamed)."""

    info: TaskInfo
    examples: int | None


def plan_tasks(
    plan: Plan, paths: Sequence[str | Path], limit: int | None, manifest: str | None = None
) -> list[SizedTask] | None:
    """The tasks `paths` name (default: the bundled mixture), each sized without parsing its examples;
    missing or empty data is a problem."""
    shown = ", ".join(str(p) for p in paths) or "the bundled mixture"
    if manifest is not None:
        shown += f" described by {manifest}"
    try:
        tasks = training_tasks(paths, manifest)
    except DataError as exc:
        plan.add("data", shown)
        plan.fail(f"data: {exc}")
        return None
    sized = []
    for task in tasks:
        try:
            count = count_task_examples(task)
        except DataError as exc:
            plan.fail(f"task '{task.name}': {exc}")
            count = 0
        if count is not None and limit is not None:
            count = min(count, limit)
        if count == 0:
            plan.fail(f"Task '{task.name}' ({task.path}) has no examples.")
        sized.append(SizedTask(task, count))
    known = [s.examples for s in sized if s.examples is not None]
    total = f"{sum(known)} examples" + (" + streamed tasks of unknown size" if len(known) < len(sized) else "")
    plan.add("data", f"{len(sized)} tasks, {total} ({shown})")
    return sized


def plan_schedule(plan: Plan, cfg: OptimConfig) -> None:
    """Steps, the AdamW schedule and clipping, as `runtime.optim` and `runtime.session` apply them."""
    clip = f"clip gradient norm {cfg.max_grad_norm:g}" if cfg.max_grad_norm is not None else "no clipping"
    plan.add(
        "steps",
        f"{cfg.max_steps} optimizer steps; AdamW lr {cfg.learning_rate:g}, {cfg.warmup_steps} warmup steps, "
        f"cosine to {cfg.min_lr_ratio:g} × lr, weight decay {cfg.weight_decay:g}, {clip}; seed {cfg.seed}",
    )


def plan_run_folder(
    plan: Plan, cfg: RunConfig, *, outputs: Iterable[str] = (), fingerprint: dict[str, Any] | None = None
) -> None:
    """The run folder's state: new, resumed (refused when a setting that changes the result differs), or
    started over; a folder holding a run without --resume/--overwrite is a problem, as in the run."""
    outputs = tuple(outputs)
    run_dir = RunDir(cfg.output_dir, accelerator=None)
    latest = run_dir.latest()
    if not run_dir.holds_run(outputs):
        state = "new"
    elif cfg.resume:
        state = f"resumed from {latest.name}" if latest else "holds finished outputs; --resume reuses them"
    elif cfg.overwrite:
        state = "holds a run; --overwrite starts over (its checkpoints are deleted)"
    else:
        state = "holds a run"
    plan.add("run folder", f"{run_dir.path} ({state})")
    refusal = run_dir.refusal(resume=cfg.resume, overwrite=cfg.overwrite, outputs=outputs)
    if refusal:
        plan.fail(refusal)
    if cfg.resume and latest is not None and fingerprint is not None:
        try:
            check_fingerprint(RunDir.read_state(latest).get("fingerprint", {}), fingerprint, latest)
        except CheckpointError as exc:
            plan.fail(str(exc))
