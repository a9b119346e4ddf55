"""One resume policy for both stages: a resumed run whose result-changing settings differ is refused,
naming the setting (learning rate, temperature, LoRA rank, data, reference, measure, ...).

Each stage runs one step and stops (`stop_after_steps`), then every resume below changes one setting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))
from dro_synthetic import build_planted_tasks, without_dropout
from train_data import write_tasks

from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.optimize import run_optimize
from tdro_suite.runtime.config import result_settings
from tdro_suite.runtime.run_dir import CheckpointError
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import run_finetune

QUIET = Console(quiet=True)

# The settings a resume may change: bookkeeping, or an execution strategy with the same result. Every
# other field is fingerprinted, so a new field is checked on resume unless it is added here on purpose.
MAY_CHANGE = {
    "data", "grad_accumulation", "gradient_checkpointing", "output_dir", "save_steps", "keep_checkpoints",
    "resume", "overwrite", "stop_after_steps", "log_steps", "progress",
}
FINETUNE_MAY_CHANGE = MAY_CHANGE | {"per_device_batch_size", "gradcache", "gradcache_chunk_size", "merge_lora"}
OPTIMIZE_MAY_CHANGE = MAY_CHANGE | {"train_reference", "reference_config", "weights_output", "save_proxy"}


def test_every_other_setting_is_fingerprinted() -> None:
    # `added_later` fields are left out at their default, so they are set here
    finetune = FinetuneConfig(task_schedule="stratified", sample_instructions=True)
    assert set(result_settings(finetune)) == set(FinetuneConfig.model_fields) - FINETUNE_MAY_CHANGE
    optimize = OptimizeConfig(measure="loss", sample_instructions=True)
    assert set(result_settings(optimize)) == set(OptimizeConfig.model_fields) - OPTIMIZE_MAY_CHANGE
    assert not {"task_schedule", "sample_instructions"} & set(result_settings(FinetuneConfig()))


@pytest.fixture(scope="module")
def finetune_run(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("resume-finetune")
    data = write_tasks(root / "data", per_task=6)
    values = dict(
        model=str(tiny_encoder_dir), data=[str(data)], output_dir=str(root / "run"), max_steps=3,
        per_device_batch_size=4, hard_negatives=1, query_max_length=16, passage_max_length=16,
        temperature=0.05, learning_rate=1e-3, lora=True, lora_rank=4, progress=False,
    )
    run_finetune(FinetuneConfig(**values, stop_after_steps=1), console=QUIET)
    return {"values": values, "other_data": write_tasks(root / "other", per_task=7)}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"learning_rate": 2e-3}, "learning_rate"),
        ({"temperature": 0.1}, "temperature"),
        ({"lora_rank": 8}, "lora_rank"),
        ({"seed": 7}, "seed"),
        ({"hard_negatives": 0}, "hard_negatives"),
        ({"data": "other"}, "data"),
    ],
)
def test_finetune_refuses_a_changed_setting(finetune_run: dict, change: dict, named: str) -> None:
    values = {**finetune_run["values"], **change}
    if change.get("data") == "other":
        values["data"] = [str(finetune_run["other_data"])]
    with pytest.raises(CheckpointError, match=rf"'{named}' was .*, now "):
        run_finetune(FinetuneConfig(**values, resume=True), console=QUIET)


def test_finetune_resumes_with_bookkeeping_changed(finetune_run: dict) -> None:
    values = {**finetune_run["values"], "per_device_batch_size": 2, "grad_accumulation": 2, "save_steps": 5}
    result = run_finetune(FinetuneConfig(**values, resume=True, stop_after_steps=2), console=QUIET)
    assert result.steps_done == 2 and result.model_dir is None


@pytest.fixture(scope="module")
def optimize_run(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("resume-optimize")
    model = without_dropout(tiny_encoder_dir, root / "encoder")
    values = dict(
        data=[str(build_planted_tasks(root / "data", model))], model=str(model), reference=str(model),
        use_instructions=False, global_batch_size=8, hard_negatives=3, temperature=0.05, learning_rate=1e-3,
        step_size=0.5, max_steps=3, lora=True, lora_rank=4, output_dir=str(root / "run"), progress=False,
    )
    run_optimize(OptimizeConfig(**values, stop_after_steps=1), console=QUIET)
    other = build_planted_tasks(root / "other", model, seed=1)
    return {"values": values, "other_data": other, "other_reference": str(tiny_encoder_dir)}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"learning_rate": 2e-3}, "learning_rate"),
        ({"temperature": 0.1}, "temperature"),
        ({"lora_rank": 8}, "lora_rank"),
        ({"measure": "excess"}, "measure"),
        ({"step_size": 0.25}, "step_size"),
        ({"relative_small_share": "floor"}, "relative_small_share"),
        ({"relative_threshold": 1e-3}, "relative_threshold"),
        ({"reference": "other"}, "reference"),
        ({"data": "other"}, "data"),
    ],
)
def test_optimize_refuses_a_changed_setting(optimize_run: dict, change: dict, named: str) -> None:
    values = {**optimize_run["values"], **change}
    if change.get("reference") == "other":
        values["reference"] = optimize_run["other_reference"]
    if change.get("data") == "other":
        values["data"] = [str(optimize_run["other_data"])]
    with pytest.raises(CheckpointError, match=rf"'{named}' was .*, now "):
        run_optimize(OptimizeConfig(**values, resume=True), console=QUIET)


def test_optimize_refuses_changed_initial_weights_behind_the_same_path(optimize_run: dict, tmp_path: Path) -> None:
    """The file's weights are the first α and the sampling rates: new contents under the same name are refused."""
    start = tmp_path / "start.json"
    names = ["map-a", "map-b", "noisy", "easy"]
    start.write_text(json.dumps({"domain_ids": names, "domain_weights": [1, 1, 1, 1]}))
    values = {**optimize_run["values"], "initial_weights": str(start), "output_dir": str(tmp_path / "run")}
    run_optimize(OptimizeConfig(**values, stop_after_steps=1), console=QUIET)
    start.write_text(json.dumps({"domain_ids": names, "domain_weights": [4, 2, 1, 1]}))
    with pytest.raises(CheckpointError, match=r"'start_weights' was .*, now "):
        run_optimize(OptimizeConfig(**values, resume=True), console=QUIET)


def test_resume_loads_weights_strictly(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """A checkpoint whose model file lacks a tensor is refused, not silently half-loaded."""
    from safetensors.torch import load_file, save_file

    data = write_tasks(tmp_path / "data", per_task=6)
    values = dict(
        model=str(tiny_encoder_dir), data=[str(data)], output_dir=str(tmp_path / "run"), max_steps=3,
        per_device_batch_size=4, query_max_length=16, passage_max_length=16, progress=False,
    )
    run_finetune(FinetuneConfig(**values, stop_after_steps=1), console=QUIET)
    weights = tmp_path / "run" / "checkpoints" / "step-000001" / "model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match=dropped.split(".")[-1]):
        run_finetune(FinetuneConfig(**values, resume=True), console=QUIET)
