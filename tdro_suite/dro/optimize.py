"""The tDRO loop behind `tdro-suite optimize`: proxy + frozen reference → task weights.

`run_optimize(config)` returns the run folder. It runs in one process or under torchrun (one
process per device, gloo on CPU, NCCL on GPU): the proxy is wrapped in DDP, the reference never
is (frozen, eval mode, no gradients, on the same device). Every rank draws the same global batch,
works on its slice, and gathers per-example losses and task ids, so the group weights are the
same on every rank and equal those of a 1-process run on the concatenated batch.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tdro_suite.common.device import resolve_device
from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.common.io import atomic_dir
from tdro_suite.data.mixture import Mixture, read_mixture
from tdro_suite.data.tasks import load_tasks
from tdro_suite.data.types import TaskInfo
from tdro_suite.dro import checkpoint as ckpt
from tdro_suite.dro import outputs
from tdro_suite.dro.batches import TaskData, draw_global_batch, load_task_data, local_micro_batches
from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.group_weights import GroupWeights
from tdro_suite.dro.measures import needs_reference
from tdro_suite.dro.step import Lengths, PairEncoder, StepStats, tdro_step
from tdro_suite.modeling.distributed import rank, world_size
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.train.optim import build_optimizer, build_scheduler


@contextmanager
def distributed_context(device_hint: str | None) -> Iterator[torch.device]:
    """Join the torchrun process group when launched by torchrun (and leave it after); yield this rank's device."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    created = False
    device = resolve_device(device_hint)
    if launched and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if launched and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    try:
        yield device
    finally:
        if created:
            dist.destroy_process_group()


def _barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def resolve_tasks(cfg: OptimizeConfig) -> list[TaskInfo]:
    if cfg.data:
        return load_tasks(cfg.data)
    from tdro_suite.bundled import train_dir

    return load_tasks([train_dir()])


def initial_weights(cfg: OptimizeConfig, tasks: Sequence[TaskInfo]) -> list[float] | None:
    """Uniform (None) or the weights of `initial_weights`, which must give every task a positive weight."""
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


def use_bf16(cfg: OptimizeConfig, device: torch.device) -> bool:
    """bf16 autocast on CUDA (`auto`/`bf16`), fp32 elsewhere, as fine-tuning does."""
    if cfg.precision == "bf16" and device.type != "cuda":
        raise ConfigError("precision 'bf16' needs a CUDA GPU; on CPU use 'fp32' (or 'auto').")
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def _load_models(
    cfg: OptimizeConfig, reference_path: str | None, device: torch.device, bf16: bool
) -> tuple[Encoder, Encoder | None]:
    """The proxy keeps fp32 master weights (a frozen LoRA base may be bf16); the frozen reference is bf16 under bf16."""
    proxy_dtype = torch.bfloat16 if bf16 and cfg.lora else torch.float32
    proxy = Encoder.from_pretrained(cfg.model, device=device, dtype=proxy_dtype)
    if cfg.lora:
        proxy.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout)  # peft keeps adapters in fp32
    if cfg.gradient_checkpointing:
        proxy.enable_gradient_checkpointing()
    proxy.train()
    reference = None
    if reference_path is not None:
        reference = Encoder.from_pretrained(
            reference_path, device=device, dtype=torch.bfloat16 if bf16 else torch.float32
        )
        reference.eval()
        reference.requires_grad_(False)
    return proxy, reference


def _prepare_run_dir(cfg: OptimizeConfig, is_main: bool) -> Path:
    """Refuse to mix runs: an existing run is resumed (`resume`), restarted (`overwrite`), or an error."""
    run_dir = Path(cfg.output_dir)
    has_results = (run_dir / "weights.json").exists() or ckpt.latest_checkpoint(run_dir) is not None
    if has_results and cfg.overwrite:
        if is_main:  # start tDRO over; a trained reference in RUN/reference is kept and reused
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        _barrier()
    elif has_results and not cfg.resume:
        raise ConfigError(
            f"Run folder {run_dir} already holds a tDRO run; set resume: true to continue it, "
            "overwrite: true to start over, or choose another output_dir."
        )
    return run_dir


def _trajectory_row(step: int, lr: float, stats: StepStats, names: Sequence[str]) -> dict[str, float]:
    ref = stats.reference_loss
    row: dict[str, float] = {
        "step": step,
        "lr": lr,
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
    outputs.write_trajectory(run_dir / "trajectory.csv", rows, names)
    if rows:
        outputs.plot_trajectory(run_dir / "weights.png", rows, names, cfg.measure)
    console.print(outputs.weights_table(mixtures, cfg.weights_output, cfg.measure))
    return mixtures


def _progress(console: Console, disable: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def run_optimize(cfg: OptimizeConfig, *, console: Console | None = None) -> Path:
    """Run tDRO end to end and return the run folder (RUN/weights.json is the main result)."""
    console = console or Console(stderr=True)
    tasks = resolve_tasks(cfg)
    names = [t.name for t in tasks]
    start = initial_weights(cfg, tasks)
    with distributed_context(cfg.device) as device:
        is_main = rank() == 0
        out = console if is_main else Console(quiet=True)
        run_dir = _prepare_run_dir(cfg, is_main)
        world = world_size()
        if cfg.batch_size % (world * cfg.grad_accumulation):
            raise ConfigError(
                f"batch_size {cfg.batch_size} must be divisible by processes × grad_accumulation "
                f"= {world} × {cfg.grad_accumulation}."
            )
        task_data: list[TaskData] = load_task_data(
            tasks, use_instructions=cfg.use_instructions, limit=cfg.max_examples_per_task
        )
        tasks = [t.info for t in task_data]
        reference_path = reference_model_path(cfg, run_dir, tasks, out)
        torch.manual_seed(cfg.seed)
        bf16 = use_bf16(cfg, device)
        proxy, reference = _load_models(cfg, reference_path, device, bf16)
        model: torch.nn.Module = PairEncoder(proxy)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # find_unused_parameters: backbones carry heads the embedding never uses (BERT's pooler)
            model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )
        optimizer = build_optimizer(proxy, cfg.learning_rate, cfg.weight_decay)
        scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        group_weights = GroupWeights(
            len(tasks),
            step_size=cfg.step_size,
            max_norm=cfg.max_norm,
            smoothing=cfg.smoothing,
            ema_decay=cfg.ema_decay,
            initial=start,
        )
        rows: list[dict[str, float]] = []
        step = 0
        latest = ckpt.latest_checkpoint(run_dir) if cfg.resume else None
        if latest is not None:
            state = ckpt.load_checkpoint(latest, names, cfg.model_dump())
            proxy.load_state_dict(state["proxy"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            group_weights.load_state_dict(state["group_weights"])
            rows = list(state["trajectory"])
            step = int(state["step"])
            ckpt.set_rng_state(state["rng"])
            out.print(f"Resuming {run_dir} from step {step} ({latest.name}).", highlight=False)
        lengths = Lengths(cfg.query_max_length, cfg.passage_max_length)

        def checkpoint_state() -> dict[str, Any]:
            return {
                "task_names": names,
                "fingerprint": ckpt.fingerprint(cfg.model_dump()),
                "proxy": ckpt.trainable_state(proxy),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "group_weights": group_weights.state_dict(),
                "trajectory": rows,
            }

        with _progress(out, disable=not is_main) as progress:
            bar = progress.add_task(f"tDRO ({cfg.measure})", total=cfg.steps, completed=step, info="")
            while step < cfg.steps:
                items = draw_global_batch(
                    task_data, step, batch_size=cfg.batch_size, hard_negatives=cfg.hard_negatives, seed=cfg.seed
                )
                micro = local_micro_batches(items, rank=rank(), world_size=world, accumulation=cfg.grad_accumulation)
                lr = scheduler.get_last_lr()[0]
                stats = tdro_step(
                    model=model,
                    proxy=proxy,
                    reference=reference,
                    micro_batches=micro,
                    group_weights=group_weights,
                    measure=cfg.measure,
                    floor=cfg.relative_floor,
                    lengths=lengths,
                    temperature=cfg.temperature,
                    bf16=bf16,
                )
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(proxy.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                rows.append(_trajectory_row(step, lr, stats, names))
                top = int(stats.weights.argmax())
                progress.update(
                    bar,
                    advance=1,
                    info=f"loss {stats.weighted_loss:.3f}  top {names[top]} {float(stats.weights[top]):.3f}",
                )
                if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                    if is_main:
                        ckpt.save_checkpoint(run_dir, step, checkpoint_state())
                    _barrier()
        if is_main:
            ckpt.save_checkpoint(run_dir, step, checkpoint_state())
            write_outputs(cfg, run_dir, group_weights, tasks, rows, out)
            if cfg.save_proxy:
                with atomic_dir(run_dir / "proxy") as tmp:
                    proxy.save(tmp)
            out.print(f"Weights: {run_dir / 'weights.json'}   trajectory plot: {run_dir / 'weights.png'}")
        _barrier()
    return run_dir
