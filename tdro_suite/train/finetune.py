"""`run_finetune`: fine-tune a dense retriever on a task mixture with homogeneous batches (the library entry point).

The same function runs on one CPU core and on many GPUs: accelerate decides the process layout
(plain, DDP over torchrun/`accelerate launch`, or DeepSpeed ZeRO from an accelerate config),
mixed precision is bf16 on CUDA and fp32 elsewhere. One optimizer step = one task:
  sampler → global batch of one task → this rank's micro-batches → InfoNCE (hard + in-batch +
  cross-device negatives) → AdamW with warmup + cosine → metrics line → maybe a checkpoint.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.common.io import atomic_dir, atomic_write_json
from tdro_suite.data.mixture import Mixture, read_mixture, write_mixture
from tdro_suite.data.tasks import load_task_examples, load_tasks
from tdro_suite.data.types import TaskInfo, TrainExample
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.modeling.gradcache import gradcache_backward
from tdro_suite.modeling.losses import InfoNCELoss
from tdro_suite.train.batching import global_text_groups, tokenize_groups
from tdro_suite.train.checkpoint import (
    CHECKPOINTS,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)
from tdro_suite.train.checkpoint import save_checkpoint as save_training_checkpoint
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.metrics import MetricsLogger, plot_loss_curve
from tdro_suite.train.model import RetrieverTrainingModel
from tdro_suite.train.optim import build_optimizer, build_scheduler
from tdro_suite.train.sampler import HomogeneousBatchSampler

MODEL_DIR = "model"
METRICS_FILE = "metrics.jsonl"
LOSS_PNG = "loss.png"


@dataclass
class TrainingData:
    """The tasks that take part (weight > 0), their examples, and the effective mixture over them."""

    tasks: list[TaskInfo]
    examples: list[list[TrainExample]]
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
    from tdro_suite.bundled import train_dir

    all_tasks = load_tasks(config.data or [train_dir()])
    mixture = effective_mixture(all_tasks, config.mixture, config.top_percent)
    by_name = {t.name: t for t in all_tasks}
    tasks = [by_name[n] for n in mixture.names]
    examples = [load_task_examples(t, limit=config.max_examples_per_task) for t in tasks]
    for task, rows in zip(tasks, examples, strict=True):
        if not rows:
            raise DataError(f"Task '{task.name}' ({task.path}) has no examples.")
    sized = Mixture(mixture.names, mixture.weights, tuple(len(rows) for rows in examples))
    return TrainingData(tasks, examples, sized)


def mixture_table(mixture: Mixture) -> Table:
    table = Table(title="effective training mixture")
    table.add_column("task")
    table.add_column("weight", justify="right")
    table.add_column("examples", justify="right")
    for name, weight, size in zip(mixture.names, mixture.weights, mixture.sizes, strict=True):
        table.add_row(name, f"{weight:.4f}", str(size))
    return table


def _make_accelerator(config: FinetuneConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    if config.precision == "bf16" and not cuda:
        raise ConfigError("precision 'bf16' needs a CUDA GPU; on CPU use 'fp32' (or 'auto').")
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
    # Parameters outside the embedding path (e.g. BERT's pooler) get no gradient: let DDP skip them.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(
        cpu=not cuda,  # without it, accelerate treats torchrun CPU processes as independent single runs
        mixed_precision="bf16" if bf16 else "no",
        gradient_accumulation_steps=config.grad_accumulation,
        kwargs_handlers=[ddp],
    )


def _is_deepspeed(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def _build_encoder(config: FinetuneConfig, accelerator: Any) -> Encoder:
    # A frozen LoRA base can stay in bf16; fully trained weights stay fp32 under bf16 autocast.
    lora_bf16 = config.lora and accelerator.mixed_precision == "bf16"
    # No max_length here: training truncates per call (query/passage lengths), and the exported model keeps
    # the base model's own max length instead of the (often shorter) training one.
    encoder = Encoder.from_pretrained(
        config.model,
        pooling=config.pooling,
        device=accelerator.device,
        dtype=torch.bfloat16 if lora_bf16 else torch.float32,
    )
    if config.lora:
        encoder.add_lora(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_target_modules)
    if config.gradient_checkpointing:
        encoder.enable_gradient_checkpointing()
    encoder.train()
    return encoder


def _run_fingerprint(config: FinetuneConfig, data: TrainingData, global_batch: int) -> dict[str, Any]:
    """What must match for a resume to continue the same run."""
    return {
        "tasks": list(data.mixture.names),
        "weights": [round(w, 12) for w in data.mixture.weights],
        "sizes": list(data.mixture.sizes),
        "global_batch_size": global_batch,
        "seed": config.seed,
        "max_steps": config.max_steps,
        "model": config.model,
        "hard_negatives": config.hard_negatives,
    }


def _check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    for key, value in current.items():
        if saved.get("fingerprint", {}).get(key) != value:
            raise CheckpointError(
                f"Cannot resume from {path}: '{key}' was {saved.get('fingerprint', {}).get(key)!r} there and is "
                f"{value!r} now. Resume with the same data, mixture, batch size, seed and max_steps, "
                "or start a fresh output_dir."
            )


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int, console: Console) -> Iterator[tuple[Progress | None, Any]]:
    if not enabled:
        yield None, None
        return
    progress = Progress(
        TextColumn("[bold]finetune"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("steps", total=total, completed=done, loss="-", lr="-", speed="-")
        yield progress, task


def _export(accelerator: Any, model: torch.nn.Module, target: Path, merge: bool) -> None:
    """Write the final Encoder folder (HF + sentence-transformers) atomically from the main process."""
    unwrapped = accelerator.unwrap_model(model)
    gather: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if _is_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed  # ZeRO-3 shards parameters: gather full ones for the export

        gather = deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None)
    with gather:
        if accelerator.is_main_process:
            with atomic_dir(target) as tmp:
                unwrapped.encoder.save(tmp, merge=merge)
    accelerator.wait_for_everyone()


def run_finetune(config: FinetuneConfig, *, console: Console | None = None) -> Path:
    """Train and export; returns the exported model folder (or the checkpoint when `stop_after_steps` stops early)."""
    from accelerate.utils import set_seed

    console = console or Console()
    accelerator = _make_accelerator(config)
    main = accelerator.is_main_process
    output = Path(config.output_dir)
    if config.gradcache and _is_deepspeed(accelerator):
        raise ConfigError("gradcache is not supported under DeepSpeed; use ZeRO's own memory savings or DDP.")
    if not config.resume and list_checkpoints(output):
        if not config.overwrite:
            raise ConfigError(
                f"{output} already holds checkpoints of a run: pass --resume to continue it, --overwrite to "
                "start over, or choose another --output-dir."
            )
        accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(output / CHECKPOINTS)
        accelerator.wait_for_everyone()

    data = load_training_data(config)
    world, accum = accelerator.num_processes, config.grad_accumulation
    global_batch = config.per_device_batch_size * world * accum
    if main:
        console.print(mixture_table(data.mixture))
        console.print(
            f"global batch {global_batch} queries ({config.per_device_batch_size}/device × {world} processes × "
            f"{accum} accumulation), {1 + config.hard_negatives} passages each, {config.max_steps} steps, "
            f"{accelerator.distributed_type}, mixed precision {accelerator.mixed_precision}"
        )

    set_seed(config.seed)
    encoder = _build_encoder(config, accelerator)
    loss_fn = InfoNCELoss(
        config.temperature,
        in_batch_negatives=config.in_batch_negatives,
        cross_device=config.cross_device_negatives,
    )
    model = RetrieverTrainingModel(encoder, loss_fn)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = build_scheduler(optimizer, config.warmup_steps, config.max_steps, config.min_lr_ratio)
    if _is_deepspeed(accelerator):
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = config.per_device_batch_size
    model, optimizer = accelerator.prepare(model, optimizer)
    sampler = HomogeneousBatchSampler(list(data.mixture.sizes), list(data.mixture.weights), global_batch, config.seed)
    accelerator.register_for_checkpointing(scheduler, sampler)
    fingerprint = _run_fingerprint(config, data, global_batch)

    start_step = 0
    if config.resume:
        checkpoint = latest_checkpoint(output)
        if checkpoint is None:
            if main:
                console.print(f"No checkpoint in {output}: starting from step 0.")
        else:
            state = load_checkpoint(accelerator, checkpoint)
            _check_fingerprint(state, fingerprint, checkpoint)
            start_step = int(state["step"])
            if main:
                console.print(f"Resumed from {checkpoint} (step {start_step}).")

    stop = config.stop_after_steps or config.max_steps
    logger = MetricsLogger(output / METRICS_FILE, resume_step=start_step if start_step else None) if main else None
    if main:
        atomic_write_json(output / "finetune_config.json", config.model_dump())
        write_mixture(output / "mixture.json", data.mixture)
    gathered = config.in_batch_negatives and config.cross_device_negatives and world > 1
    raw_model = accelerator.unwrap_model(model)
    started = time.perf_counter()

    with _progress(main and config.progress, config.max_steps, start_step, console) as (progress, bar):
        for step in range(start_step, stop):
            tic = time.perf_counter()
            batch = sampler.next_batch()
            groups = global_text_groups(
                batch, data.examples[batch.task], data.tasks[batch.task], config.hard_negatives, config.seed,
                config.use_instructions,
            )
            step_loss = torch.zeros((), device=accelerator.device)
            grad_norm = None
            for micro in range(accum):
                local = groups[batch.local_slice(accelerator.process_index, world, micro, accum)]
                inputs = tokenize_groups(
                    raw_model.encoder, local, config.query_max_length, config.passage_max_length
                ).to(accelerator.device)
                with accelerator.accumulate(model):
                    if config.gradcache:
                        loss = gradcache_backward(
                            lambda f: model(queries=f),
                            lambda f: model(passages=f),
                            lambda q, p, keys=inputs.passage_keys: raw_model.loss(q, p, keys),
                            inputs.queries,
                            inputs.passages,
                            config.gradcache_chunk_size,
                            backward=accelerator.backward,
                            no_sync=lambda: accelerator.no_sync(model),
                        )
                    else:
                        loss = model(inputs.queries, inputs.passages, inputs.passage_keys)
                        accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm is not None:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                step_loss += loss.detach() / (world if gathered else 1)
            lr = scheduler.get_last_lr()[0]  # the rate this step used
            scheduler.step()
            logged = accelerator.reduce(step_loss / accum, reduction="mean").item()
            done = step + 1
            elapsed = time.perf_counter() - tic
            if logger is not None and (done % config.log_steps == 0 or done == stop):
                logger.log({
                    "step": done,
                    "task": data.tasks[batch.task].name,
                    "loss": logged,
                    "lr": lr,
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "samples_per_s": global_batch / elapsed,
                    "elapsed_s": time.perf_counter() - started,
                })
            if progress is not None:
                progress.update(
                    bar, completed=done, loss=f"{logged:.4f}", lr=f"{lr:.2e}", speed=f"{global_batch / elapsed:.1f}"
                )
            if (config.save_steps and done % config.save_steps == 0) or done == config.stop_after_steps:
                save_training_checkpoint(
                    accelerator, output, done, {"fingerprint": fingerprint}, keep=config.keep_checkpoints
                )

    if logger is not None:
        logger.close()
    if stop < config.max_steps:
        accelerator.wait_for_everyone()
        return latest_checkpoint(output) or output
    if main:
        plot_loss_curve(output / METRICS_FILE, output / LOSS_PNG)
    _export(accelerator, model, output / MODEL_DIR, config.merge_lora)
    if main:
        console.print(f"Model: {output / MODEL_DIR}; metrics: {output / METRICS_FILE}; curve: {output / LOSS_PNG}")
    return output / MODEL_DIR
