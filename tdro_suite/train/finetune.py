"""`run_finetune`: fine-tune a dense retriever on a task mixture with homogeneous batches (the library entry point).

The same function runs on one CPU core and on many GPUs: accelerate decides the process layout
(plain, DDP over torchrun/`accelerate launch`, or DeepSpeed ZeRO from an accelerate config),
mixed precision is bf16 on CUDA and fp32 elsewhere. One optimizer step = one task:
  sampler → global batch of one task → this rank's micro-batches → InfoNCE (hard + in-batch +
  cross-device negatives) → AdamW with warmup + cosine → metrics line → maybe a checkpoint.
This module holds only the stage's own part (data, mixture, the step function, the export, and the
dry run's plan of them); the loop, optimizer, checkpoints, resume policy, process layout and the
plan's shared parts are the training core, `tdro_suite.runtime`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.common.io import atomic_dir, atomic_write_json
from tdro_suite.data.mixture import Mixture, read_mixture, write_mixture
from tdro_suite.data.tasks import task_examples, training_tasks
from tdro_suite.data.types import TaskInfo, TrainExample
from tdro_suite.modeling.gradcache import gradcache_backward
from tdro_suite.modeling.losses import InfoNCELoss
from tdro_suite.modeling.prompts import InstructionFormat
from tdro_suite.runtime.accelerator import is_deepspeed, make_accelerator, process_group
from tdro_suite.runtime.build import build_trainable_encoder
from tdro_suite.runtime.config import result_settings
from tdro_suite.runtime.metrics import plot_loss_curve
from tdro_suite.runtime.module import EncoderModule
from tdro_suite.runtime.plan import Layout, Plan, begin_plan, finish_plan, launch_layout, plan_layout, plan_tasks
from tdro_suite.runtime.run_dir import RunDir, model_identity, task_identity
from tdro_suite.runtime.session import StepResult, TrainingSession
from tdro_suite.train.batching import global_text_groups, tokenize_groups
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.sampler import HomogeneousBatchSampler, StratifiedSchedule

MODEL_DIR = "model"
LOSS_PNG = "loss.png"


@dataclass(frozen=True)
class FinetuneResult:
    """Where a fine-tuning run put its outputs; `model_dir` is None when `stop_after_steps` stopped it early."""

    run_dir: Path
    model_dir: Path | None
    metrics: Path
    checkpoint: Path | None
    steps_done: int


@dataclass
class TrainingData:
    """The tasks that take part (weight > 0), their examples, and the effective mixture over them."""

    tasks: list[TaskInfo]
    examples: list[Sequence[TrainExample]]
    mixture: Mixture


def effective_mixture(tasks: list[TaskInfo], mixture_file: str | None, top_percent: float | None) -> Mixture:
    """Uniform, or read from a weights file (checked against the tasks); then optionally the top-P% selection."""
    if mixture_file:
        mixture = read_mixture(mixture_file)
        mixture.validate_against(tasks)
    else:
        mixture = Mixture.uniform(tasks)
    if top_percent is not None:
        mixture = mixture.top_percent(top_percent)
    kept = [(n, w, s) for n, w, s in zip(mixture.names, mixture.weights, mixture.sizes, strict=True) if w > 0]
    return Mixture(tuple(k[0] for k in kept), tuple(k[1] for k in kept), tuple(k[2] for k in kept))


def load_training_data(config: FinetuneConfig) -> TrainingData:
    """The tasks with weight > 0 under the effective mixture, their examples, and the mixture resized to them."""
    all_tasks = training_tasks(config.data, config.tasks)
    mixture = effective_mixture(all_tasks, config.mixture, config.top_percent)
    by_name = {t.name: t for t in all_tasks}
    tasks = [by_name[n] for n in mixture.names]
    examples = [task_examples(t, limit=config.max_examples_per_task, seed=config.seed) for t in tasks]
    for task, rows in zip(tasks, examples, strict=True):
        if not rows:
            raise DataError(f"Task '{task.name}' ({task.path}) has no examples.")
    sized = Mixture(mixture.names, mixture.weights, tuple(len(rows) for rows in examples))
    return TrainingData(tasks, examples, sized)


def exported_model(output_dir: str | Path) -> Path | None:
    """The model a finished run exported into `output_dir` (merged or adapter-only), or None."""
    path = Path(output_dir) / MODEL_DIR
    return path if (path / "modules.json").is_file() else None


def mixture_table(mixture: Mixture) -> Table:
    table = Table(title="effective training mixture")
    table.add_column("task")
    table.add_column("weight", justify="right")
    table.add_column("examples", justify="right")
    for name, weight, size in zip(mixture.names, mixture.weights, mixture.sizes, strict=True):
        table.add_row(name, f"{weight:.4f}", str(size))
    return table


def run_fingerprint(
    config: FinetuneConfig, tasks: list[TaskInfo], mixture: Mixture, global_batch: int
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (runtime.run_dir's resume policy)."""
    return {
        **result_settings(config),
        "model": model_identity(config.model),
        "data": task_identity(tasks),
        "mixture": [
            [n, round(w, 12), s] for n, w, s in zip(mixture.names, mixture.weights, mixture.sizes, strict=True)
        ],
        "global_batch_size": global_batch,
    }


def global_batch_size(config: FinetuneConfig, processes: int) -> int:
    """Queries per optimizer step: per device × processes × accumulation, all from one task."""
    return config.per_device_batch_size * processes * config.grad_accumulation


def layout_problem(config: FinetuneConfig, *, deepspeed: bool) -> str | None:
    """Why this process layout cannot run `config` (None: it can); the run and its dry run share the rule."""
    if config.gradcache and deepspeed:
        return (
            "gradcache is not supported under DeepSpeed; use ZeRO's own memory savings (--no-gradcache, "
            "with a smaller --per-device-batch-size and more --grad-accumulation if memory is short) or DDP."
        )
    return None


def describe_mixture(config: FinetuneConfig, num_tasks: int, mixture: Mixture) -> str:
    """Uniform, a weights file (sampling ratios, "reweight"), or the top-P% selection of one."""
    what = f"weights file {config.mixture} (sampling ratios)" if config.mixture else f"uniform over {num_tasks} tasks"
    if config.top_percent is not None:
        source = config.mixture or "a uniform mixture"
        what = f"top {config.top_percent:g}% of the tasks by weight in {source}: {len(mixture.names)} of {num_tasks}"
        what += " tasks, sampled uniformly"
    if config.task_schedule == "stratified":
        window = StratifiedSchedule(mixture.weights, config.seed).window
        return what + f"; each optimizer step takes ONE task, every {window} steps in these proportions (stratified)"
    return what + "; each optimizer step draws ONE task by these weights"


def plan_finetune(config: FinetuneConfig, layout: Layout | None = None) -> Plan:
    """What `run_finetune(config)` would do, checked without loading weights or joining processes (--dry-run)."""
    layout = layout or launch_layout()
    plan = begin_plan("finetune", config, layout)
    if config.gradcache:
        plan.add("gradcache", f"embeds in chunks of {config.gradcache_chunk_size} texts")
    sized = plan_tasks(plan, config.data, config.max_examples_per_task, config.tasks)
    tasks = [s.info for s in sized] if sized is not None else []
    mixture = None
    if tasks:
        try:
            chosen = effective_mixture(tasks, config.mixture, config.top_percent)
        except DataError as exc:
            plan.fail(f"mixture: {exc}")
        else:
            counts = {s.info.name: s.examples or 0 for s in sized or []}
            mixture = Mixture(chosen.names, chosen.weights, tuple(counts[n] for n in chosen.names))
            plan.add("mixture", describe_mixture(config, len(tasks), mixture))
            plan.tables.append(mixture_table(mixture))
    plan_layout(plan, layout)
    problem = layout_problem(config, deepspeed=layout.deepspeed)
    if problem:
        plan.fail(problem)
    global_batch = global_batch_size(config, layout.processes)
    plan.add(
        "global batch",
        f"{global_batch} queries = {config.per_device_batch_size}/device × {layout.count()} × "
        f"{config.grad_accumulation} accumulation, each with 1 positive and {config.hard_negatives} hard "
        "negative(s)",
    )
    plan.add(
        "loss",
        f"InfoNCE, τ = {config.temperature:g}, hard negatives"
        + (" + in-batch" if config.in_batch_negatives else "")
        + (" + cross-device" if config.in_batch_negatives and config.cross_device_negatives else ""),
    )
    fingerprint = None
    if mixture is not None:
        by_name = {t.name: t for t in tasks}
        fingerprint = run_fingerprint(config, [by_name[n] for n in mixture.names], mixture, global_batch)
    return finish_plan(plan, config, layout, fingerprint=fingerprint)


def _export(accelerator: Any, model: torch.nn.Module, target: Path, merge: bool) -> None:
    """Write the final Encoder folder (HF + sentence-transformers) atomically from the main process."""
    unwrapped = accelerator.unwrap_model(model)
    gather: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if is_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed  # ZeRO-3 shards parameters: gather full ones for the export

        gather = deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None)
    with gather:
        if accelerator.is_main_process:
            with atomic_dir(target) as tmp:
                unwrapped.encoder.save(tmp, merge=merge)
    accelerator.wait_for_everyone()


def run_finetune(config: FinetuneConfig, *, console: Console | None = None) -> FinetuneResult:
    """Train and export (the model folder is `result.model_dir`); joins and leaves torchrun's group itself."""
    with process_group():
        return _run_finetune(config, console or Console())


def _run_finetune(config: FinetuneConfig, console: Console) -> FinetuneResult:
    from accelerate.utils import set_seed

    accelerator = make_accelerator(config.precision, grad_accumulation=config.grad_accumulation)
    main = accelerator.is_main_process
    problem = layout_problem(config, deepspeed=is_deepspeed(accelerator))
    if problem:
        raise ConfigError(problem)
    run_dir = RunDir(config.output_dir, accelerator)
    run_dir.prepare(resume=config.resume, overwrite=config.overwrite)

    data = load_training_data(config)
    world, accum = accelerator.num_processes, config.grad_accumulation
    global_batch = global_batch_size(config, world)
    if main:
        console.print(mixture_table(data.mixture))
        console.print(
            f"global batch {global_batch} queries ({config.per_device_batch_size}/device × {world} processes × "
            f"{accum} accumulation), {1 + config.hard_negatives} passages each, {config.max_steps} steps, "
            f"{accelerator.distributed_type}, mixed precision {accelerator.mixed_precision}"
        )

    set_seed(config.seed)
    encoder = build_trainable_encoder(config, accelerator.device, accelerator.mixed_precision == "bf16")
    loss_fn = InfoNCELoss(
        config.temperature,
        in_batch_negatives=config.in_batch_negatives,
        cross_device=config.cross_device_negatives,
        equal_slices=True,  # every rank's slice of a global batch has per_device_batch_size queries
    )
    if is_deepspeed(accelerator):
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = config.per_device_batch_size
    sampler = HomogeneousBatchSampler(
        list(data.mixture.sizes), list(data.mixture.weights), global_batch, config.seed, config.task_schedule
    )
    session = TrainingSession(
        config, accelerator, EncoderModule(encoder),
        run_dir=run_dir, fingerprint=run_fingerprint(config, data.tasks, data.mixture, global_batch),
        stateful=[sampler], console=console, label="finetune",
    )
    if main:
        atomic_write_json(run_dir.path / "finetune_config.json", config.model_dump())
        write_mixture(run_dir.path / "mixture.json", data.mixture)
    model = session.model
    gathered = config.in_batch_negatives and config.cross_device_negatives and world > 1

    def step_fn(step: int) -> StepResult:
        batch = sampler.next_batch()
        groups = global_text_groups(
            batch, data.examples[batch.task], data.tasks[batch.task], config.hard_negatives, config.seed,
            config.use_instructions, config.sample_instructions,
        )
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(accum):
            local = groups[batch.local_slice(accelerator.process_index, world, micro, accum)]
            every_rank = groups[batch.micro_slice(micro, accum)] if gathered else None  # keys of what the loss gathers
            inputs = tokenize_groups(
                encoder, local, config.query_max_length, config.passage_max_length, key_groups=every_rank
            ).to(accelerator.device)
            with accelerator.accumulate(model):
                if config.gradcache:
                    loss = gradcache_backward(
                        lambda f: model(queries=f)[0],
                        lambda f: model(passages=f)[1],
                        lambda q, p, keys=inputs.passage_keys: loss_fn(q, p, keys),
                        inputs.queries,
                        inputs.passages,
                        config.gradcache_chunk_size,
                        backward=accelerator.backward,
                        no_sync=lambda: accelerator.no_sync(model),
                    )
                else:
                    q, p = model(inputs.queries, inputs.passages)
                    loss = loss_fn(q, p, inputs.passage_keys)
                    accelerator.backward(loss)
            step_loss += loss.detach() / (world if gathered else 1)
        logged = accelerator.reduce(step_loss / accum, reduction="mean").item()
        return StepResult(logged, global_batch, {"task": data.tasks[batch.task].name}, data.tasks[batch.task].name)

    done = session.run(step_fn)
    metrics = session.metrics_path
    if not session.finished:
        accelerator.wait_for_everyone()
        return FinetuneResult(run_dir.path, None, metrics, run_dir.latest(), done)
    if main:
        plot_loss_curve(metrics, run_dir.path / LOSS_PNG)
    model_dir = run_dir.path / MODEL_DIR
    if config.use_instructions:  # eval and serve then prompt the model as it was trained, without --instruction
        encoder.instructions = InstructionFormat()
    _export(accelerator, model, model_dir, config.merge_lora)
    if main:
        console.print(f"Model: {model_dir}; metrics: {metrics}; curve: {run_dir.path / LOSS_PNG}")
    return FinetuneResult(run_dir.path, model_dir, metrics, run_dir.latest(), done)
