"""Config of `tdro-suite finetune` (defaults: a small CPU-friendly run; the paper's values are in configs/paper/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from tdro_suite.runtime.config import TrainingConfig, added_later, resumable


class FinetuneConfig(TrainingConfig):
    """Fine-tune a dense retriever with homogeneous batches and InfoNCE (hard + in-batch + cross-device negatives).

    Batch sizes count QUERIES; every query brings 1 positive and `hard_negatives` passages.
    The global batch is `per_device_batch_size × processes × grad_accumulation` and comes from one task.
    """

    # --- mixture
    mixture: str | None = Field(None, description="Weights file (tdro-suite or reference layout); none = uniform.")
    top_percent: float | None = Field(None, gt=0, le=100, description="Keep the top-P% tasks by weight, uniformly.")
    task_schedule: Literal["random", "stratified"] = added_later(
        "random",
        "Which task each global batch comes from: random = an independent draw per step with the mixture's "
        "weights; stratified = every window of ⌈1/min weight⌉ steps gives each task its share by largest "
        "remainder (within one step of steps × weight, carried across windows), in a seeded order. Both are "
        "functions of the seed, the same on every rank.",
    )

    # --- batches and loss
    per_device_batch_size: PositiveInt = resumable(
        32, "Queries per process per micro-batch (a resume checks the global batch they make)."
    )
    in_batch_negatives: bool = Field(True, description="Use the other queries' passages of the batch as negatives.")
    cross_device_negatives: bool = Field(True, description="Also gather the other processes' passages as negatives.")
    gradcache: bool = resumable(False, "Embed in chunks, caching gradients (GradCache): large batches, small memory.")
    gradcache_chunk_size: PositiveInt = resumable(16, "Texts per GradCache chunk.")

    # --- export and run folder
    merge_lora: bool = resumable(True, "Export a merged plain model (false: the adapter only).")
    output_dir: str = resumable("runs/finetune", "Run folder.")
