"""LoRA fine-tune of a tiny decoder end to end through the CLI, exported merged and as an adapter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))
from train_data import write_tasks

from tdro_suite.cli import app
from tdro_suite.common.errors import ConfigError
from tdro_suite.modeling import Encoder
from tdro_suite.runtime.metrics import read_metrics
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import run_finetune

TEXTS = ["Instruct: Find passages for task0\nQuery: which apple 1", "the apple number 1", "the river number 2"]


def test_lora_decoder_finetune_via_cli_exports_a_merged_model(tmp_path: Path, tiny_decoder_dir: Path) -> None:
    data = write_tasks(tmp_path / "data", per_task=8)
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_decoder_dir), "lora": True, "lora_rank": 4, "lora_alpha": 8,
        "gradient_checkpointing": True, "per_device_batch_size": 4, "hard_negatives": 1,
        "query_max_length": 24, "passage_max_length": 24, "learning_rate": 5e-3, "progress": False,
    }))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["finetune", "--config", str(config), "--data", str(data), "--output-dir", str(out), "--max-steps", "3"]
    )
    assert result.exit_code == 0, result.output
    model_dir = out / "model"
    assert len(read_metrics(out / "metrics.jsonl")) == 3 and (out / "loss.png").is_file()
    assert not (model_dir / "adapter_config.json").exists()  # merged: a plain model folder

    ours = Encoder.from_pretrained(model_dir, device="cpu")
    assert ours.pooling == "lasttoken"
    base = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    assert not np.allclose(ours.encode(TEXTS), base.encode(TEXTS), atol=1e-4)  # training changed the model

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), ours.encode(TEXTS), atol=1e-5)


def test_lora_adapter_export_loads_onto_its_base(tmp_path: Path, tiny_decoder_dir: Path) -> None:
    data = write_tasks(tmp_path / "data", per_task=8)
    out = run_finetune(FinetuneConfig(
        model=str(tiny_decoder_dir), data=[str(data)], output_dir=str(tmp_path / "run"), max_steps=2,
        lora=True, lora_rank=4, merge_lora=False, per_device_batch_size=4, query_max_length=24,
        passage_max_length=24, learning_rate=5e-3, progress=False,
    )).model_dir
    assert (out / "adapter_config.json").is_file()
    adapter = Encoder.from_pretrained(out, device="cpu")
    assert adapter.encode(TEXTS).shape == (3, 32)


def test_bf16_is_refused_on_cpu_with_a_clear_error(tmp_path: Path, tiny_decoder_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: bf16 is allowed")
    with pytest.raises(ConfigError, match="bf16"):
        run_finetune(FinetuneConfig(model=str(tiny_decoder_dir), data=[str(tmp_path)], precision="bf16"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_lora_finetune_on_gpu(tmp_path: Path, tiny_decoder_dir: Path) -> None:
    data = write_tasks(tmp_path / "data", per_task=8)
    out = run_finetune(FinetuneConfig(
        model=str(tiny_decoder_dir), data=[str(data)], output_dir=str(tmp_path / "run"), max_steps=3,
        lora=True, lora_rank=4, gradient_checkpointing=True, per_device_batch_size=4, query_max_length=24,
        passage_max_length=24, learning_rate=5e-3, progress=False, precision="auto",
    )).model_dir
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert Encoder.from_pretrained(out, device="cpu").encode(TEXTS).shape == (3, 32)
