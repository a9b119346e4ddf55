"""The process layout of a run: accelerate's `Accelerator` for training, its `PartialState` for the rest.

One place decides how processes meet: plain single process, DDP under torchrun / `accelerate launch`
(gloo on CPU, NCCL on GPU), or DeepSpeed from an accelerate config. `process_group` is the context
every multi-process command runs in; it leaves the group only if it joined it, so a stage called from
another (tDRO training its reference through `finetune`) does not tear down its caller's group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from tdro_suite.runtime.precision import use_bf16


def make_accelerator(precision: str, *, grad_accumulation: int = 1, find_unused_parameters: bool = False) -> Any:
    """An `Accelerator` with bf16 autocast where `precision` asks for it and accelerate's gradient accumulation.

    `grad_accumulation` > 1 lets `accelerator.accumulate` skip syncs and scale the loss; a stage that
    accumulates by itself (tDRO's two-pass step) passes 1. `find_unused_parameters`: DDP searches the
    graph for trainable parameters without a gradient on every step; the stages need none because
    `build_trainable_encoder` freezes what the embedding never reads (BERT's pooler).
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    bf16 = use_bf16(precision, "cuda" if cuda else "cpu")
    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    return Accelerator(
        cpu=not cuda,  # without it, accelerate treats torchrun CPU processes as independent single runs
        mixed_precision="bf16" if bf16 else "no",
        gradient_accumulation_steps=grad_accumulation,
        kwargs_handlers=[ddp],
    )


def is_deepspeed(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


@contextmanager
def process_group() -> Iterator[Any]:
    """Join torchrun's process group (if launched by it) for the duration; yields accelerate's `PartialState`."""
    import torch.distributed as dist
    from accelerate import PartialState

    joined_before = dist.is_available() and dist.is_initialized()
    state = PartialState(cpu=not torch.cuda.is_available())
    try:
        yield state
    finally:
        if not joined_before and dist.is_available() and dist.is_initialized():
            state.destroy_process_group()
