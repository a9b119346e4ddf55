"""Config of `tdro-suite finetune` (defaults: a small CPU-friendly run; the paper's values are in configs/paper/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tdro_suite.config import CommandConfig


class FinetuneConfig(CommandConfig):
    """Fine-tune a dense retriever with homogeneous batches and InfoNCE (hard + in-batch + cross-device negatives).

    Batch sizes count QUERIES; every query brings 1 positive and `hard_negatives` passages.
    The global batch is `per_device_batch_size × processes × grad_accumulation` and comes from one task.
    """

    # --- data and mixture
    data: list[str] = Field(default_factory=list, description="Task manifests/folders/files; empty = bundled mixture.")
    mixture: str | None = Field(None, description="Weights file (tdro-suite or reference layout); none = uniform.")
    top_percent: float | None = Field(None, gt=0, le=100, description="Keep the top-P% tasks by weight, uniformly.")
    max_examples_per_task: PositiveInt | None = None
    use_instructions: bool = True

    # --- model
    model: str = "minilm"
    pooling: Literal["lasttoken", "mean", "cls"] | None = None
    lora: bool = False
    lora_rank: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | None = None
    merge_lora: bool = Field(True, description="Export a merged plain model (false: the adapter only).")
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 on CUDA, fp32 elsewhere.")

    # --- loss and batches
    per_device_batch_size: PositiveInt = 32
    grad_accumulation: PositiveInt = 1
    hard_negatives: NonNegativeInt = 1
    temperature: PositiveFloat = 0.02
    in_batch_negatives: bool = True
    cross_device_negatives: bool = True
    query_max_length: PositiveInt = 128
    passage_max_length: PositiveInt = 512
    gradcache: bool = False
    gradcache_chunk_size: PositiveInt = 16

    # --- optimisation
    learning_rate: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 0
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Cosine decays to learning_rate × this.")
    max_grad_norm: PositiveFloat | None = 1.0
    max_steps: PositiveInt = 100
    stop_after_steps: PositiveInt | None = Field(
        None, description="Stop (after a checkpoint) at this step, keeping max_steps' schedule: for time-sliced jobs."
    )
    seed: int = 42

    # --- run folder
    output_dir: str = "runs/finetune"
    save_steps: NonNegativeInt = Field(0, description="Checkpoint every N steps (0: only at the end/stop).")
    keep_checkpoints: PositiveInt = 2
    resume: bool = Field(False, description="Continue from the latest checkpoint in output_dir.")
    overwrite: bool = Field(False, description="Start over in an output_dir that holds checkpoints (deletes them).")
    log_steps: PositiveInt = 1
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if self.resume and self.overwrite:
            raise ValueError("give either 'resume' or 'overwrite', not both")
        if self.stop_after_steps is not None and self.stop_after_steps > self.max_steps:
            raise ValueError(f"stop_after_steps {self.stop_after_steps} is beyond max_steps {self.max_steps}")
        if self.warmup_steps >= self.max_steps and self.warmup_steps > 0:
            raise ValueError(f"warmup_steps {self.warmup_steps} must be below max_steps {self.max_steps}")
        return self
