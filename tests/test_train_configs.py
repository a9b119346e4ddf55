"""The shipped finetune / accelerate / DeepSpeed configs load with the libraries that consume them
(the paper configs' values are checked against the reference in test_paper_configs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tdro_suite.config import load_config
from tdro_suite.train.config import FinetuneConfig

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = sorted((ROOT / "configs" / "finetune").glob("*.yaml")) + sorted(
    (ROOT / "configs" / "paper").glob("finetune-*.yaml")
)
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.name)
def test_finetune_configs_validate_and_document_their_command(path: Path) -> None:
    cfg = load_config(FinetuneConfig, path)
    assert cfg.max_steps > 0
    assert "tdro_suite.cli finetune" in path.read_text() or "tdro-suite finetune" in path.read_text()


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_load_and_point_at_existing_deepspeed_files(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    cluster = ClusterConfig.from_yaml_file(str(path))
    if str(cluster.distributed_type).endswith("DEEPSPEED"):
        ds_file = ROOT / cluster.deepspeed_config["deepspeed_config_file"]
        stage = json.loads(ds_file.read_text())["zero_optimization"]["stage"]
        assert f"zero{stage}" in path.name
    assert yaml.safe_load(path.read_text())["num_processes"] >= 1
