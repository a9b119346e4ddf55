"""The config sections both training stages share, one class per concern (Tevatron's argument split).

`FinetuneConfig` and `OptimizeConfig` are built from these mixins plus their own section, so a name
means one thing everywhere (`max_steps`, `save_steps`, `grad_accumulation`, ...). YAML files stay
flat; the classes only group the fields for the code that needs one concern (e.g. `build_encoder`
takes a `ModelConfig`). Nothing here imports torch: the CLI reads these classes to build its options.

Every field changes the trained result unless it is marked `resume_may_change` (bookkeeping, or an
execution strategy whose result is the same): `result_settings` is what a resumed run must share with
the interrupted one (docs/architecture.md, "Run folders and resume").
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tdro_suite.config import CommandConfig
from tdro_suite.modeling.config import ATTN_HELP, AttnImplementation

RESUMABLE: dict[str, Any] = {"resume_may_change": True}


OMIT_AT_DEFAULT: dict[str, Any] = {"omit_at_default": True}


def resumable(default: Any, description: str, **kwargs: Any) -> Any:
    """A field a resumed run may change without changing its result (bookkeeping, execution strategy)."""
    return Field(default, description=description, json_schema_extra=RESUMABLE, **kwargs)


def added_later(default: Any, description: str, **kwargs: Any) -> Any:
    """A result-changing field whose default is the behaviour from before it existed: at that default it is
    left out of fingerprints, so checkpoints and experiment folders made before it still resume; any other
    value is checked like every setting."""
    return Field(default, description=description, json_schema_extra=OMIT_AT_DEFAULT, **kwargs)


def at_old_default(config: CommandConfig) -> set[str]:
    """The `added_later` fields of `config` that hold their default (fingerprints leave them out)."""
    return {
        name for name, field in type(config).model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("omit_at_default")
        and getattr(config, name) == field.default
    }


class ModelConfig(CommandConfig):
    """The backbone, its pooling and adapters, and the numeric precision it trains in."""

    model: str = Field("minilm", description="Model folder, bundled alias (minilm, smollm2-135m) or hub id.")
    pooling: Literal["lasttoken", "mean", "cls"] | None = Field(
        None, description="Embedding pooling; default: from the model folder, else lasttoken for decoders, mean else."
    )
    lora: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    lora_rank: PositiveInt = Field(16, description="LoRA rank r.")
    lora_alpha: PositiveInt = Field(32, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    lora_target_modules: list[str] | None = Field(
        None, description="Module names that get adapters; default: found for Llama/Qwen2/Mistral/BERT-style models."
    )
    gradient_checkpointing: bool = resumable(False, "Recompute activations in the backward pass to save memory.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 on CUDA, fp32 elsewhere.")
    attn_implementation: AttnImplementation = Field("sdpa", description=ATTN_HELP + " A resume must keep it.")


class DataConfig(CommandConfig):
    """Which training sets, how many examples of each, and how texts are prompted and truncated."""

    data: list[str] = resumable(
        [], "Task manifest, folder, .jsonl(.gz) / .parquet file, save_to_disk folder or hf:NAME[:SUBSET][@SPLIT]; "
        "repeatable (default: the bundled mixture). "
        "A resume checks the tasks' names, sizes and files, not these paths."
    )
    tasks: str | None = Field(
        None,
        description="A task manifest (e.g. configs/paper/tdro-tasks.json) describing the files of the data "
        "folder(s) given: names, instructions, symmetry. Without one, a folder's own tasks.json is used; a "
        "folder without it gets no instructions and asymmetric tasks.",
    )
    max_examples_per_task: PositiveInt | None = Field(
        None, description="Use a sample of this many examples per task (drawn with the seed; not the first N)."
    )
    use_instructions: bool = Field(True, description="Put each task's instruction in the query prompt.")
    sample_instructions: bool = added_later(
        False, "Draw each example's instruction among its task's `instructions` (the manifest's alternatives), "
        "as the public tDRO code does; off: always the task's `instruction`."
    )
    hard_negatives: NonNegativeInt = Field(1, description="Hard negatives per query.")
    query_max_length: PositiveInt = Field(128, description="Query tokens (longer queries are truncated).")
    passage_max_length: PositiveInt = Field(512, description="Passage tokens (longer passages are truncated).")


class OptimConfig(CommandConfig):
    """The optimizer, its schedule, the loss temperature and the step budget."""

    max_steps: PositiveInt = Field(100, description="Optimizer steps.")
    grad_accumulation: PositiveInt = resumable(1, "Micro-batches per optimizer step.")
    learning_rate: PositiveFloat = Field(1e-4, description="Peak AdamW learning rate.")
    weight_decay: NonNegativeFloat = Field(0.0, description="AdamW weight decay (not on biases and norms).")
    warmup_steps: NonNegativeInt = Field(0, description="Linear warmup steps.")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Cosine decays to learning_rate × this.")
    max_grad_norm: PositiveFloat | None = Field(1.0, description="Clip the gradient norm to this (none: no clipping).")
    temperature: PositiveFloat = Field(0.02, description="InfoNCE temperature τ over cosine scores.")
    seed: int = Field(42, description="Seed of initialisation, task draws and sampling.")


class RunConfig(CommandConfig):
    """The run folder: checkpoints, resume, logging. None of it changes the trained result."""

    output_dir: str = resumable("runs/run", "Run folder.")
    save_steps: NonNegativeInt = resumable(0, "Checkpoint every N steps (0: only at the end or at stop_after_steps).")
    keep_checkpoints: PositiveInt = resumable(2, "How many of the newest checkpoints to keep.")
    resume: bool = resumable(False, "Continue from the latest checkpoint in output_dir.")
    overwrite: bool = resumable(False, "Start over in an output_dir that holds a run (deletes its checkpoints).")
    stop_after_steps: PositiveInt | None = resumable(
        None, "Stop (after a checkpoint) at this step, keeping max_steps' schedule: for time-sliced jobs."
    )
    log_steps: PositiveInt = resumable(1, "Write a metrics line every N steps.")
    progress: bool = resumable(True, "Show a progress bar.")

    renamed_keys: ClassVar[dict[str, str]] = {"steps": "max_steps", "save_every": "save_steps"}


def result_settings(config: CommandConfig) -> dict[str, Any]:
    """The settings that change the trained result: every field not marked `resume_may_change`, less the
    `added_later` ones at their default."""
    dumped = config.model_dump(mode="json")
    omitted = at_old_default(config)
    return {
        name: dumped[name]
        for name, field in sorted(type(config).model_fields.items())
        if not (isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("resume_may_change"))
        and name not in omitted
    }


class TrainingConfig(ModelConfig, DataConfig, OptimConfig, RunConfig):
    """Every section a training stage has; `finetune` and `optimize` add their own section to this."""

    @model_validator(mode="after")
    def _check_run(self) -> TrainingConfig:
        if self.resume and self.overwrite:
            raise ValueError("give either 'resume' or 'overwrite', not both")
        if self.stop_after_steps is not None and self.stop_after_steps > self.max_steps:
            raise ValueError(f"stop_after_steps {self.stop_after_steps} is beyond max_steps {self.max_steps}")
        if self.warmup_steps > 0 and self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} must be below max_steps {self.max_steps}")
        return self
