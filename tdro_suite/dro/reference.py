"""`train_reference`: fine-tune the reference model with the uniform mixture before tDRO starts.

The reference is what `tdro-suite finetune` produces on the same tasks with equal weights, from the
same base model as the proxy (docs/architecture.md, "tDRO"). It lives in RUN/reference/ (RUN/reference/model is the
exported model); a finished one is reused when the run resumes, an interrupted one resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from tdro_suite.config import load_config
from tdro_suite.data.types import TaskInfo
from tdro_suite.dro.config import OptimizeConfig

REFERENCE_DIR = "reference"


def reference_finetune_config(cfg: OptimizeConfig, run_dir: Path):
    """The finetune config of the reference: `reference_config` (or finetune's defaults) on our tasks, uniform."""
    from tdro_suite.train.config import FinetuneConfig

    ft = load_config(
        FinetuneConfig,
        cfg.reference_config,
        {
            "data": list(cfg.data) or None,
            "model": cfg.model,
            "output_dir": str(run_dir / REFERENCE_DIR),
            "max_examples_per_task": cfg.max_examples_per_task,
            "use_instructions": cfg.use_instructions,
            "sample_instructions": cfg.sample_instructions,
            "resume": True,
            "overwrite": False,
        },
    )
    ft.mixture = None  # the reference is trained on the UNIFORM mixture, whatever the file says
    ft.top_percent = None
    ft.stop_after_steps = None
    return ft


def train_uniform_reference(cfg: OptimizeConfig, run_dir: Path, tasks: Sequence[TaskInfo], console: Console) -> Path:
    """Fine-tune (or reuse) the uniform-mixture reference; returns the exported model folder."""
    from tdro_suite.train.finetune import exported_model, run_finetune

    exported = exported_model(run_dir / REFERENCE_DIR)
    if exported is not None:
        console.print(f"Reusing the reference model at {exported}.", highlight=False)
        return exported
    ft = reference_finetune_config(cfg, run_dir)
    console.print(
        f"Training the reference: {cfg.model} fine-tuned on {len(tasks)} tasks with the uniform mixture "
        f"({ft.max_steps} steps) → {run_dir / REFERENCE_DIR}",
        highlight=False,
    )
    result = run_finetune(ft, console=console)
    assert result.model_dir is not None  # the reference config has no stop_after_steps
    return result.model_dir
