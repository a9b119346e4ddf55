"""Config of `tdro-suite optimize` (defaults: the paper's values, see configs/paper/optimize-*.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tdro_suite.config import CommandConfig
from tdro_suite.dro.measures import DEFAULT_RELATIVE_FLOOR


class OptimizeConfig(CommandConfig):
    """Learn task weights with a proxy model against a frozen reference (tDRO)."""

    # --- data and models
    data: list[str] = Field(default_factory=list, description="Task manifests/folders/files; empty = bundled mixture.")
    max_examples_per_task: PositiveInt | None = None
    use_instructions: bool = True
    model: str = "minilm"
    reference: str | None = None
    train_reference: bool = False
    reference_config: str | None = Field(None, description="Finetune YAML for train_reference (uniform mixture).")
    output_dir: str = "runs/optimize"
    overwrite: bool = Field(False, description="Restart tDRO in a run folder that holds a run (keeps RUN/reference).")
    save_proxy: bool = False

    # --- group weights
    measure: Literal["relative", "loss", "excess"] = "relative"
    step_size: NonNegativeFloat = 0.02
    max_norm: PositiveFloat | None = 1.0
    smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    ema_decay: float = Field(0.9, ge=0.0, lt=1.0)
    relative_floor: PositiveFloat = DEFAULT_RELATIVE_FLOOR
    initial_weights: str | None = None
    weights_output: Literal["final", "mean", "ema"] = "final"

    # --- proxy training (as fine-tuning)
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 2048
    grad_accumulation: PositiveInt = 1
    hard_negatives: PositiveInt = 7
    temperature: PositiveFloat = 0.002
    query_max_length: PositiveInt = 128
    passage_max_length: PositiveInt = 512
    learning_rate: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 0
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Cosine decays to learning_rate × this.")
    max_grad_norm: PositiveFloat | None = 1.0
    lora: bool = False
    lora_rank: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    gradient_checkpointing: bool = False
    device: str | None = None
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 on CUDA, fp32 elsewhere.")
    seed: int = 42

    # --- run folder
    save_every: NonNegativeInt = 0
    resume: bool = True

    @model_validator(mode="after")
    def _check(self) -> OptimizeConfig:
        if self.train_reference and self.reference:
            raise ValueError("give either 'reference' (a trained model) or 'train_reference', not both")
        if self.measure != "loss" and not (self.reference or self.train_reference):
            raise ValueError(
                f"the '{self.measure}' measure needs a reference model: set 'reference' to a model fine-tuned "
                "with the uniform mixture, or 'train_reference: true'"
            )
        if self.batch_size % self.grad_accumulation:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accumulation {self.grad_accumulation}"
            )
        return self
