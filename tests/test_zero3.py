"""Fine-tuning under DeepSpeed ZeRO-3, 2 CPU processes (gloo): ZeRO-3 gathers the sharded parameters in
every backbone call, so ranks whose batches would pick different length-bucket counts must still make the
same calls (without the agreement gloo aborts with "Is there a distributed collective mismatch"; NCCL
would hang). Skipped when deepspeed is not importable (`pip install -e ".[deepspeed]"`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdro_suite.runtime.metrics import read_metrics
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import run_finetune

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "dist_scripts" / "zero3_finetune.py"
WORDS = ["apple", "river", "engine", "violin", "desert", "planet", "garden", "coffee"]


def mixed_length_task(folder: Path, n: int = 32) -> Path:
    """One task whose passages have one length but for every 8th positive, ~15× longer: some 8-query
    slices are uniform (one pass), others mixed (two buckets)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        short = f"the {word} number {i}"
        long = " ".join([short] * 15)
        lines.append(json.dumps({
            "query_id": f"q{i}",
            "query": f"which {word} {i}",
            "positive_passages": [{"docid": f"p{i}", "title": "", "text": long if i % 8 == 0 else short}],
            "negative_passages": [{"docid": f"n{i}", "title": "", "text": f"the {WORDS[(i + 3) % 8]} number {i}"}],
        }))
    (folder / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "tasks.json").write_text(json.dumps([{"name": "mixed", "path": "mixed.jsonl", "instruction": ""}]))
    return folder / "tasks.json"


def test_zero3_finetune_makes_equal_backbone_calls_and_follows_one_process(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from test_gradcache import zero_dropout_copy

    model = zero_dropout_copy(tiny_encoder_dir, tmp_path / "enc")
    common = dict(model=str(model), data=[str(mixed_length_task(tmp_path / "data"))], max_steps=4, hard_negatives=1,
                  query_max_length=16, passage_max_length=96, learning_rate=1e-3, temperature=0.05, progress=False,
                  seed=5)
    two = FinetuneConfig(**common, per_device_batch_size=8, output_dir=str(tmp_path / "zero3"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "ACCELERATE_USE_DEEPSPEED": "true",
           "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ROOT / "configs" / "deepspeed" / "zero3.json")}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node=2", str(SCRIPT),
           json.dumps(two.model_dump()), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    ranks = [json.loads((tmp_path / f"zero3-rank{r}.json").read_text()) for r in range(2)]

    assert ranks[0]["layout"] == {"type": "DistributedType.DEEPSPEED", "zero_stage": 3}
    forwards = list(zip(ranks[0]["forwards"], ranks[1]["forwards"], strict=True))
    assert len(forwards) == 4  # one module forward (queries and passages) per step
    assert any(a["own_counts"] != b["own_counts"] for a, b in forwards)  # alone, the ranks would disagree
    assert all(a["backbone_calls"] == b["backbone_calls"] for a, b in forwards)
    assert (tmp_path / "zero3" / "model" / "model.safetensors").is_file()  # the ZeRO-3 export gathers weights

    run_finetune(FinetuneConfig(**common, per_device_batch_size=16, output_dir=str(tmp_path / "one")))
    one = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    zero3 = [r["loss"] for r in read_metrics(tmp_path / "zero3" / "metrics.jsonl")]
    assert zero3 == pytest.approx(one, abs=2e-5)
