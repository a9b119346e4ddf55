"""The tDRO loop behind `tdro-suite optimize`: proxy + frozen reference → task weights.

`run_optimize(config)` returns an `OptimizeResult`. It runs in one process or under torchrun (one
process per device, gloo on CPU, NCCL on GPU) on the shared training core (`tdro_suite.runtime`):
the proxy is prepared by accelerate (DDP-wrapped with several processes), the reference never is
(frozen, eval mode, no gradients, on the same device). Every rank draws the same global batch,
works on its slice, and gathers per-example losses and task ids, so the group weights are the
same on every rank and equal those of a 1-process run on the concatenated batch. `plan_optimize` is
the dry run: the same checks and numbers, with no weights loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.common.io import atomic_dir
from tdro_suite.data.mixture import Mixture, read_mixture
from tdro_suite.data.tasks import training_tasks
from tdro_suite.data.types import TaskInfo
from tdro_suite.dro import outputs
from tdro_suite.dro.batches import draw_global_batch, load_task_data, local_micro_batches
from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.group_weights import GroupWeights
from tdro_suite.dro.measures import SmallShare, needs_reference
from tdro_suite.dro.step import Lengths, StepStats, tdro_step
from tdro_suite.modeling.tokens import same_tokenization
from tdro_suite.runtime.accelerator import is_deepspeed, make_accelerator, process_group
from tdro_suite.runtime.build import build_trainable_encoder, load_frozen_encoder
from tdro_suite.runtime.config import result_settings
from tdro_suite.runtime.metrics import read_metrics
from tdro_suite.runtime.module import EncoderModule
from tdro_suite.runtime.plan import (
    Layout,
    Plan,
    begin_plan,
    finish_plan,
    launch_layout,
    plan_layout,
    plan_model,
    plan_tasks,
)
from tdro_suite.runtime.run_dir import RunDir, model_identity, task_identity
from tdro_suite.runtime.session import StepResult, TrainingSession

WEIGHTS_FILE = "weights.json"
TRAJECTORY_FILE = "trajectory.csv"
PLOT_FILE = "weights.png"


@dataclass(frozen=True)
class OptimizeResult:
    """Where a tDRO run put its outputs; `weights` is None when `stop_after_steps` stopped it early."""

    run_dir: Path
    weights: Path | None
    trajectory: Path | None
    reference: str | None
    steps_done: int


def resolve_tasks(cfg: OptimizeConfig) -> list[TaskInfo]:
    return training_tasks(cfg.data, cfg.tasks)


def initial_weights(cfg: OptimizeConfig, tasks: Sequence[TaskInfo]) -> list[float] | None:
    """Uniform (None) or the weights of `initial_weights`, which must give every task a positive weight.

    They are the first α and, as in the public tDRO code, the rates at which the proxy's batches sample tasks.
    """
    if not cfg.initial_weights:
        return None
    mixture = read_mixture(cfg.initial_weights)
    names = [t.name for t in tasks]
    mixture.validate_against(tasks)
    missing = [n for n in names if mixture.weight_of(n) <= 0]
    if missing:
        raise DataError(
            f"{cfg.initial_weights}: tDRO starts from positive weights on every task; "
            f"missing or zero: {', '.join(missing)}."
        )
    return [mixture.weight_of(n) for n in names]


def reference_model_path(cfg: OptimizeConfig, run_dir: Path, tasks: Sequence[TaskInfo], console: Console) -> str | None:
    """The frozen reference: `reference`, or a model fine-tuned here with the uniform mixture."""
    if not needs_reference(cfg.measure):
        return None  # GroupDRO's measure uses the proxy loss alone
    if cfg.reference:
        return cfg.reference
    if not cfg.train_reference:
        return None
    from tdro_suite.dro.reference import train_uniform_reference

    return str(train_uniform_reference(cfg, run_dir, tasks, console))


def trajectory_fields(stats: StepStats, names: Sequence[str]) -> dict[str, float]:
    """One step's losses, weights and measures per task: a metrics line, and a row of trajectory.csv."""
    ref = stats.reference_loss
    row: dict[str, float] = {
        "proxy_loss": stats.overall_proxy,
        "reference_loss": stats.overall_reference if stats.overall_reference is not None else math.nan,
        "weighted_loss": stats.weighted_loss,
    }
    for i, name in enumerate(names):
        row[f"weight/{name}"] = float(stats.weights[i])
        row[f"measure/{name}"] = float(stats.measure[i])
        row[f"proxy_loss/{name}"] = float(stats.proxy_loss[i])
        row[f"reference_loss/{name}"] = float(ref[i]) if ref is not None else math.nan
    return row


def _mixtures(group_weights: GroupWeights, names: Sequence[str], sizes: Sequence[int]) -> dict[str, Mixture]:
    vectors = {"final": group_weights.weights, "mean": group_weights.mean, "ema": group_weights.ema}
    return {kind: Mixture(tuple(names), tuple(float(x) for x in v), tuple(sizes)) for kind, v in vectors.items()}


def write_outputs(
    cfg: OptimizeConfig,
    run_dir: Path,
    group_weights: GroupWeights,
    tasks: Sequence[TaskInfo],
    rows: Sequence[dict[str, float]],
    console: Console,
) -> dict[str, Mixture]:
    """Weights files, top-p% selections, trajectory CSV + PNG, and the printed table (rank 0 only)."""
    names = [t.name for t in tasks]
    sizes = [t.size for t in tasks]
    mixtures = _mixtures(group_weights, names, sizes)
    extra = {"measure": cfg.measure, "steps": group_weights.steps, "step_size": cfg.step_size}
    outputs.write_weight_files(run_dir, mixtures, cfg.weights_output, **extra)
    outputs.write_selections(run_dir, mixtures[cfg.weights_output], **extra)
    outputs.write_trajectory(run_dir / TRAJECTORY_FILE, rows, names)
    if rows:
        outputs.plot_trajectory(run_dir / PLOT_FILE, rows, names, cfg.measure)
    console.print(outputs.weights_table(mixtures, cfg.weights_output, cfg.measure))
    return mixtures


def layout_problem(cfg: OptimizeConfig, *, processes: int, deepspeed: bool) -> str | None:
    """Why this process layout cannot run `cfg` (None: it can); the run and its dry run share the rule."""
    if deepspeed:
        return "optimize runs the proxy under DDP; DeepSpeed is not supported for tDRO (use torchrun)."
    if cfg.global_batch_size % (processes * cfg.grad_accumulation):
        return (
            f"global_batch_size {cfg.global_batch_size} must be divisible by processes × grad_accumulation "
            f"= {processes} × {cfg.grad_accumulation}."
        )
    return None


def run_fingerprint(
    cfg: OptimizeConfig, tasks: Sequence[TaskInfo], reference_path: str | None, start_weights: list[float] | None
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (runtime.run_dir's resume policy)."""
    return {
        **result_settings(cfg),
        "model": model_identity(cfg.model),
        "data": task_identity(tasks),
        "reference": model_identity(reference_path) if reference_path else None,
        "start_weights": start_weights,  # the file's weights: the first α and the sampling rates
    }


REFERENCE_HINT = (
    "The reference is the base model fine-tuned on the uniform mixture (stage 0: `tdro-suite finetune` "
    "without --mixture, e.g. configs/paper/finetune-qwen1.5-0.5b-uniform.yaml, which exports RUN/model); "
    "or set train_reference: true to train it first."
)


def _plan_reference(plan: Plan, cfg: OptimizeConfig) -> str | None:
    """The reference's row; returns its path when it exists already (given, or trained here before)."""
    from tdro_suite.dro.reference import REFERENCE_DIR, reference_finetune_config
    from tdro_suite.train.finetune import exported_model

    if not needs_reference(cfg.measure):
        plan.add("reference", f"none (the '{cfg.measure}' measure uses the proxy loss alone)")
        return None
    if cfg.reference:
        plan_model(plan, "reference", cfg.reference, hint=REFERENCE_HINT)
        return cfg.reference
    folder = Path(cfg.output_dir) / REFERENCE_DIR
    exported = exported_model(folder)
    if exported is not None:
        plan.add("reference", f"{exported}: trained here before (train_reference), reused")
        return str(exported)
    try:
        ft = reference_finetune_config(cfg, Path(cfg.output_dir))
    except ConfigError as exc:
        plan.fail(f"reference_config: {exc}")
        return None
    plan.add(
        "reference",
        f"trained first (train_reference): {cfg.model} fine-tuned on the uniform mixture for {ft.max_steps} steps "
        f"({ft.per_device_batch_size}/device, settings from {cfg.reference_config or 'finetune defaults'}) "
        f"into {folder / 'model'}",
    )
    return None


def plan_optimize(cfg: OptimizeConfig, layout: Layout | None = None) -> Plan:
    """What `run_optimize(cfg)` would do, checked without loading weights or joining processes (--dry-run)."""
    layout = layout or launch_layout()
    plan = begin_plan("optimize", cfg, layout, model_label="proxy model")
    reference_path = _plan_reference(plan, cfg)
    sized = plan_tasks(plan, cfg.data, cfg.max_examples_per_task, cfg.tasks)
    tasks = [s.info for s in sized] if sized is not None else []
    start_weights = None
    if tasks:
        try:
            start_weights = initial_weights(cfg, tasks)
        except DataError as exc:
            plan.fail(f"initial_weights: {exc}")
    plan_layout(plan, layout)
    problem = layout_problem(cfg, processes=layout.processes, deepspeed=layout.deepspeed)
    if problem:
        plan.fail(problem)
    micro = cfg.global_batch_size / (layout.processes * cfg.grad_accumulation)
    rates = "at the initial weights" if cfg.initial_weights else "uniformly"
    plan.add(
        "global batch",
        f"{cfg.global_batch_size} queries per step mixing {len(tasks) or 'all'} tasks {rates}; {micro:g} per "
        f"micro-batch = {cfg.global_batch_size} / ({layout.count()} × {cfg.grad_accumulation} "
        f"accumulation); 1 positive + {cfg.hard_negatives} hard negatives each",
    )
    clip = f"measure clipped to L2 norm {cfg.max_norm:g}" if cfg.max_norm is not None else "measure not clipped"
    plan.add(
        "tDRO",
        f"measure '{cfg.measure}', η = {cfg.step_size:g}, {clip}, smoothing {cfg.smoothing:g}, EMA decay "
        f"{cfg.ema_decay:g}; τ = {cfg.temperature:g}; RUN/{WEIGHTS_FILE} = the {cfg.weights_output} weights",
    )
    fingerprint = run_fingerprint(cfg, tasks, reference_path, start_weights) if tasks else None
    return finish_plan(plan, cfg, layout, outputs=(WEIGHTS_FILE,), fingerprint=fingerprint)


def run_optimize(cfg: OptimizeConfig, *, console: Console | None = None) -> OptimizeResult:
    """Run tDRO end to end (RUN/weights.json is the main result); joins and leaves torchrun's group itself."""
    with process_group():
        return _run_optimize(cfg, console or Console(stderr=True))


def _run_optimize(cfg: OptimizeConfig, console: Console) -> OptimizeResult:
    from accelerate.utils import set_seed

    accelerator = make_accelerator(cfg.precision)  # tDRO's step accumulates by itself (two passes)
    world = accelerator.num_processes
    problem = layout_problem(cfg, processes=world, deepspeed=is_deepspeed(accelerator))
    if problem:
        raise ConfigError(problem)
    is_main = accelerator.is_main_process
    out = console if is_main else Console(quiet=True)
    tasks = resolve_tasks(cfg)
    names = [t.name for t in tasks]
    start_weights = initial_weights(cfg, tasks)
    run_dir = RunDir(cfg.output_dir, accelerator)
    run_dir.prepare(resume=cfg.resume, overwrite=cfg.overwrite, outputs=(WEIGHTS_FILE,))
    task_data = load_task_data(
        tasks, use_instructions=cfg.use_instructions, sample_instructions=cfg.sample_instructions,
        limit=cfg.max_examples_per_task, seed=cfg.seed,
    )
    tasks = [t.info for t in task_data]
    reference_path = reference_model_path(cfg, run_dir.path, tasks, out)
    set_seed(cfg.seed)
    bf16 = accelerator.mixed_precision == "bf16"
    proxy = build_trainable_encoder(cfg, accelerator.device, bf16)
    reference = (
        load_frozen_encoder(reference_path, accelerator.device, cfg.attn_implementation) if reference_path else None
    )
    group_weights = GroupWeights(
        len(tasks),
        step_size=cfg.step_size,
        max_norm=cfg.max_norm,
        smoothing=cfg.smoothing,
        ema_decay=cfg.ema_decay,
        initial=start_weights,
    )
    fingerprint = run_fingerprint(cfg, tasks, reference_path, start_weights)
    session = TrainingSession(
        cfg, accelerator, EncoderModule(proxy),
        run_dir=run_dir, fingerprint=fingerprint, stateful=[group_weights], console=out, label=f"tDRO ({cfg.measure})",
    )
    lengths = Lengths(cfg.query_max_length, cfg.passage_max_length)
    # decided once: the proxy's token tensors serve the reference when both tokenise alike
    shared_tokens = reference is not None and same_tokenization(proxy.tokenizer, reference.tokenizer)
    small_share = SmallShare(cfg.relative_small_share, cfg.relative_threshold, cfg.relative_floor)

    def step_fn(step: int) -> StepResult:
        items = draw_global_batch(
            task_data, step, batch_size=cfg.global_batch_size, hard_negatives=cfg.hard_negatives, seed=cfg.seed,
            rates=start_weights,
        )
        micro = local_micro_batches(
            items, rank=accelerator.process_index, world_size=world, accumulation=cfg.grad_accumulation
        )
        with accelerator.accumulate(session.model):  # one optimizer step; tdro_step accumulates by itself
            stats = tdro_step(
                model=session.model,
                proxy=proxy,
                reference=reference,
                micro_batches=micro,
                group_weights=group_weights,
                measure=cfg.measure,
                small_share=small_share,
                lengths=lengths,
                temperature=cfg.temperature,
                bf16=bf16,
                backward=accelerator.backward,
                shared_tokens=shared_tokens,
            )
        top = int(stats.weights.argmax())
        return StepResult(
            stats.weighted_loss, len(items), trajectory_fields(stats, names),
            f"top {names[top]} {float(stats.weights[top]):.3f}",
        )

    done = session.run(step_fn)
    if not session.finished:
        return OptimizeResult(run_dir.path, None, None, reference_path, done)
    if run_dir.latest() != run_dir.checkpoint_path(done):
        session.save(done)  # a finished run resumes straight to its outputs
    if is_main:
        write_outputs(cfg, run_dir.path, group_weights, tasks, read_metrics(session.metrics_path), out)
        if cfg.save_proxy:
            with atomic_dir(run_dir.path / "proxy") as tmp:
                proxy.save(tmp)
        out.print(f"Weights: {run_dir.path / WEIGHTS_FILE}   trajectory plot: {run_dir.path / PLOT_FILE}")
    accelerator.wait_for_everyone()
    return OptimizeResult(
        run_dir.path, run_dir.path / WEIGHTS_FILE, run_dir.path / TRAJECTORY_FILE, reference_path, done
    )
