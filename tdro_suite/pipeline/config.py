"""Config of `tdro-suite pipeline`: which stage configs to chain and what to evaluate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from tdro_suite.config import CommandConfig


class PipelineConfig(CommandConfig):
    """Chain the stages; each stage keeps its own YAML config so it can also be run alone."""

    output_dir: str = Field("runs/pipeline", description="Run folder: every stage's output goes below it.")
    optimize_config: str = Field(
        "configs/optimize/minilm-offline.yaml", description="tDRO config (it also trains the reference)."
    )
    finetune_config: str = Field("configs/finetune/minilm-offline.yaml", description="Fine-tuning config.")
    transfer: Literal["top-percent", "reweight"] = Field(
        "top-percent", description="How tDRO weights reach fine-tuning: keep the top tasks, or sample by weight."
    )
    top_percent: float = Field(70.0, gt=0, le=100, description="Tasks kept by weight, in percent (top-percent).")
    benchmarks: list[str] = Field(
        default_factory=lambda: ["bundled:beir", "bundled:miracl", "bundled:mkqa"],
        description="Benchmarks the fine-tuned model is scored on (the bundled ones run offline)."
    )
    base_benchmarks: list[str] | None = Field(
        None, description="Benchmarks on which the untrained base model is scored too (default: all; 'none': none)."
    )
    index_benchmark: str = Field("bundled:mkqa", description="Whose corpus becomes the served search index.")
    index_type: str = "flat"
    eval_batch_size: PositiveInt = Field(64, description="Texts per forward pass while evaluating.")
    resume: bool = Field(True, description="Reuse finished stages in output_dir (each stage resumes itself).")

    @field_validator("benchmarks", "base_benchmarks", mode="before")
    @classmethod
    def _none_means_no_benchmarks(cls, value: object) -> object:
        """`--base-benchmarks none` (or `base_benchmarks: none`) is the empty list."""
        if value == "none" or value == ["none"]:
            return []
        return value
