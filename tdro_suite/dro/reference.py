"""`train_reference`: fine-tune the reference model with the uniform mixture before tDRO starts.

The reference is what `tdro-suite finetune` produces on the same tasks with equal weights, from the
same base model as the proxy (DESIGN.md). It lives in RUN/reference/ (RUN/reference/model is the
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
    from tdro_suite.train.finetune import MODEL_DIR, run_finetune

    exported = run_dir / REFERENCE_DIR / MODEL_DIR
    if (exported / "config.json").is_file():
        console.print(f"Reusing the reference model at {exported}.", highlight=False)
        return exported
    ft = reference_finetune_config(cfg, run_dir)
    console.print(
        f"Training the reference: {cfg.model} fine-tuned on {len(tasks)} tasks with the uniform mixture "
        f"({ft.max_steps} steps) → {exported}",
        highlight=False,
    )
    return run_finetune(ft, console=console)
