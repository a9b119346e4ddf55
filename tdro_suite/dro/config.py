"""Config of `tdro-suite optimize` (defaults: the paper's values, see configs/paper/optimize-*.yaml)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from tdro_suite.runtime.config import RunConfig, TrainingConfig, resumable

# How the relative measure treats an example whose share of the reference loss is tiny (kept here,
# not in measures.py, so reading the config imports no torch; the rules are in dro/measures.py):
# "reference" (the public tDRO code): a share below the threshold becomes 1; "floor": the share is
# floored at φ/N, φ a fraction of the mean share 1/N.
SmallShareRule = Literal["reference", "floor"]
DEFAULT_SMALL_SHARE: SmallShareRule = "reference"
DEFAULT_RELATIVE_THRESHOLD = 1e-4
DEFAULT_RELATIVE_FLOOR = 0.1


class OptimizeConfig(TrainingConfig):
    """Learn task weights with a proxy model against a frozen reference (tDRO)."""

    # --- the reference
    reference: str | None = Field(None, description="The frozen reference: a model fine-tuned on the uniform mixture.")
    # How the reference is made may change on resume: the reference model's identity is what is checked.
    train_reference: bool = resumable(False, "Fine-tune the reference first (uniform mixture), into RUN/reference.")
    reference_config: str | None = resumable(None, "Finetune YAML for train_reference (uniform mixture).")

    # --- group weights
    measure: Literal["relative", "loss", "excess"] = Field(
        "relative", description="Group measure: relative (tDRO), loss (GroupDRO, no reference), excess (DoReMi)."
    )
    step_size: NonNegativeFloat = Field(0.02, description="Weight step size η of the exponentiated gradient ascent.")
    max_norm: PositiveFloat | None = Field(1.0, description="Clip the group measure to this L2 norm (none: no clip).")
    smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Mix ε of the uniform distribution into the weights.")
    ema_decay: float = Field(0.9, ge=0.0, lt=1.0, description="Decay of the weights' exponential moving average.")
    relative_small_share: SmallShareRule = Field(
        DEFAULT_SMALL_SHARE,
        description="Relative measure, an example whose share of the reference loss is tiny: reference (the "
        "public tDRO code: a share below relative_threshold becomes 1, so the example adds its raw proxy loss) "
        "or floor (the share is floored at relative_floor/N, so the example gets the largest value).",
    )
    relative_threshold: float = Field(
        DEFAULT_RELATIVE_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="Share of the reference loss below which it becomes 1 (relative_small_share: reference).",
    )
    relative_floor: PositiveFloat = Field(
        DEFAULT_RELATIVE_FLOOR,
        description="Floor φ/N on an example's share of the reference loss (relative_small_share: floor).",
    )
    initial_weights: str | None = Field(
        None,
        description="Weights file: the starting weights and, as in the public tDRO code, the rates at which the "
        "proxy's batches sample the tasks (default: uniform).",
    )
    weights_output: Literal["final", "mean", "ema"] = resumable(
        "final", "Which weights become RUN/weights.json: the final ones, their mean or their EMA."
    )
    save_proxy: bool = resumable(False, "Also export the trained proxy model to RUN/proxy.")

    # --- the proxy's batches (mixed: every task at rate 1/K, or at its initial weight)
    global_batch_size: PositiveInt = Field(2048, description="Queries per optimizer step over all processes.")
    hard_negatives: PositiveInt = Field(7, description="Hard negatives per query (tDRO's loss uses only these).")
    max_steps: PositiveInt = Field(1000, description="Optimizer steps.")
    temperature: PositiveFloat = Field(0.002, description="InfoNCE temperature τ over cosine scores.")
    output_dir: str = resumable("runs/optimize", "Run folder (RUN/reference keeps a trained reference).")

    renamed_keys: ClassVar[dict[str, str]] = {**RunConfig.renamed_keys, "batch_size": "global_batch_size"}

    @model_validator(mode="after")
    def _check(self) -> OptimizeConfig:
        if self.train_reference and self.reference:
            raise ValueError("give either 'reference' (a trained model) or 'train_reference', not both")
        if self.measure != "loss" and not (self.reference or self.train_reference):
            raise ValueError(
                f"the '{self.measure}' measure needs a reference model: set 'reference' to a model fine-tuned "
                "with the uniform mixture, or 'train_reference: true'"
            )
        if self.global_batch_size % self.grad_accumulation:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not divisible by grad_accumulation "
                f"{self.grad_accumulation}"
            )
        return self
